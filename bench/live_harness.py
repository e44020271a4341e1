"""Drives the real `hitgate` binary live over loopback: a simulated JUNGFRAU module, `hitgate run`
with its control plane, `hitgate send` at a chosen rate, and the run's Prometheus metrics.
Shared by the soak (bench/soak.py) and the fault campaign (bench/faults.py); standard library only."""

import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIM_FRAMES = 500
MODEL = "jungfrau-2if"
PACKETS_PER_FRAME = 128


def hitgate_binary():
    """The release binary, built first unless HITGATE_BIN names one."""
    if os.environ.get("HITGATE_BIN"):
        return os.environ["HITGATE_BIN"]
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    return str(Path(target) / "release" / "hitgate")


def free_udp_ports(n):
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = sorted(s.getsockname()[1] for s in sockets)
    for s in sockets:
        s.close()
    return ports


def simulate(binary, work, hit_rate, frames=SIM_FRAMES):
    """A simulated module run in work/sim: capture, calibration, mask. Returns its capture."""
    sim = work / "sim"
    subprocess.run(
        [binary, "simulate", "--out", str(sim), "--frames", str(frames), "--hit-rate", str(hit_rate),
         "--model", MODEL, "--seed", "7"],
        check=True, stdout=subprocess.DEVNULL)
    return sim / "run.pcap"


def nexus_sink(out, frames_per_file=1000):
    """The NeXus/HDF5 sink of kept frames, in out/nexus."""
    return f"""
[[sink]]
kind = "hdf5"
dir = "{out}/nexus"
prefix = "run"
frames_per_file = {frames_per_file}
"""


def live_config(work, ports, out, sinks=None, extra="", trigger="spots"):
    """A live config for the simulated module: the shipped live config's UDP settings and queues
    (half a second of a stalled reducer at 1000 frames/s; the defaults hold 30 ms: on a shared
    two-core machine the 30-minute soak lost frames in bursts with them), the simulation's
    calibration, the `trigger` (`extra` follows its kind), features for every frame in
    out/features.jsonl and then `sinks` (NeXus/HDF5 for kept frames by default). Frames time out after
    100 ms, not the shipped 5: here the sender shares the two cores and can be descheduled mid-frame
    for longer than 5 ms, which a detector never is (its late packets would be counted as lost)."""
    sim = work / "sim"
    if sinks is None:
        sinks = nexus_sink(out)
    text = f"""[detector]
model = "{MODEL}"
modules = 1
udp_ports = [{", ".join(map(str, ports))}]
beam_center_row_px = 259.3
beam_center_col_px = 506.3
distance_mm = 100.0
photon_energy_kev = 12.4

[assembler]
frame_timeout_us = 100000
pool_frames = 1024

[reducer]
queue_frames = 512

[udp]
bind_address = "127.0.0.1"
recv_buffer_bytes = 268435456

[control]
listen_address = "127.0.0.1:0"

[calibration]
file = "{sim}/calibration.bin"
mask_file = "{sim}/mask.bin"

[trigger]
kind = "{trigger}"
{extra}

[[sink]]
kind = "features"
path = "{out}/features.jsonl"
{sinks}"""
    path = work / f"live-{len(list(work.glob('live-*.toml')))}.toml"
    path.write_text(text)
    return path


class LiveRun:
    """`hitgate run` in the background, its stderr kept, its control plane found."""

    def __init__(self, binary, config, args=()):
        self.proc = subprocess.Popen(
            [binary, "run", "--config", str(config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines = []
        self.control = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = re.match(r"control plane on http://(\S+)", line)
                if m:
                    self.control = m.group(1)
                if "receiving" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30) or self.proc.poll() is not None:
            raise RuntimeError("hitgate run did not start:\n" + "".join(self.stderr_lines))

    @property
    def pid(self):
        return self.proc.pid

    def metrics(self):
        """Every sample of /metrics, keyed `name{labels}` as printed."""
        with urllib.request.urlopen(f"http://{self.control}/metrics", timeout=5) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def rss_bytes(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_idle(self, timeout=10.0):
        """Until the queues are empty and no frame count moves (the last frames stored)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            m = self.metrics()
            now = (frames_out(m), queued(m), m.get('hitgate_sink_backlog_frames{sink="features"}', 0))
            if now == last and now[1] == 0:
                return
            last = now
            time.sleep(0.3)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals the run (unless it has ended) and returns (exit code, summary on stdout, stderr);
        asked again, the same."""
        if getattr(self, "result", None) is None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            out, _ = self.proc.communicate(timeout=timeout)
            time.sleep(0.1)  # the stderr reader's last lines
            self.result = (self.proc.returncode, out, "".join(self.stderr_lines))
        return self.result


def send_loops(frames):
    """Passes over the simulated capture that send makes for `frames` frames (whole passes)."""
    return max(1, math.ceil(frames / SIM_FRAMES))


def frames_sent(frames):
    """Frames send puts on the wire when asked for `frames`."""
    return SIM_FRAMES * send_loops(frames)


def send(binary, capture, ports, rate_hz=None, frames=SIM_FRAMES, extra=(), background=False):
    """`hitgate send` of the capture to the ports, whole frames at rate_hz (as fast as the socket
    takes them without), looped until `frames` frames have gone."""
    loops = send_loops(frames)
    args = [binary, "send", str(capture), "--to", "127.0.0.1:" + ",".join(map(str, ports)), "--loops", str(loops)]
    args += ["--frame-rate-hz", str(rate_hz)] if rate_hz else ["--fast"]
    args += list(extra)
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return done.stdout


def sent_rate(send_stdout):
    """Frames a second the sender reached, from its summary."""
    m = re.search(r"sent\s+(\d+) datagrams, [\d.]+ GB in ([\d.]+) s", send_stdout)
    return int(m.group(1)) / PACKETS_PER_FRAME / float(m.group(2)) if m else 0.0


def metric_sum(m, name):
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def frames_out(m):
    return metric_sum(m, "hitgate_frames_total")


def queued(m):
    """Frames between stages right now: pushed less popped, over every ring."""
    pushed = metric_sum(m, "hitgate_queue_pushed_total")
    popped = metric_sum(m, "hitgate_queue_popped_total")
    return pushed - popped


def losses(m):
    """Everything the run counted as not taken, by name; all zero on a lossless run."""
    found = {
        "packets lost": m.get("hitgate_packets_lost_total", 0),
        "packets dropped": metric_sum(m, "hitgate_packets_dropped_total"),
        "frames partial": m.get('hitgate_frames_total{outcome="partial"}', 0),
        "frames partial dropped": m.get('hitgate_frames_total{outcome="partial_dropped"}', 0),
        "frames without slot": m.get('hitgate_frames_total{outcome="dropped_no_slot"}', 0),
        "frames reducers' queue full": m.get('hitgate_frames_total{outcome="dropped_queue_full"}', 0),
        "frames a sink dropped": metric_sum(m, "hitgate_sink_dropped_total"),
    }
    return {k: int(v) for k, v in found.items()}
