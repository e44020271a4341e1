#!/usr/bin/env python3
"""What the live monitor costs a run: a simulated JUNGFRAU 4M (8 modules) received live over loopback at
a paced rate, once with the control plane (and so the monitor, drawing sampled frames on its thread)
and once without, same stream, same config otherwise (the simulator's replay settings: a frame times
out after its default 10 ms, as on a beamline). The two alternate, `--pairs` times, since on a shared
two-core machine the sender itself sometimes stalls a run past the timeout. Prints packets lost,
partial frames, frames the monitor drew and the whole process's CPU for each run, and fails (exit 1)
when the monitored runs lost packets and the unmonitored ones none.

    bench/monitor_cost.py                 # 2 pairs of 800 frames at 10 frames/s (~6 minutes)
    bench/monitor_cost.py --rate 20 --pairs 3
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import live_harness as h

CAPTURE_FRAMES = 40


def config(sim, ports, monitored):
    """The simulator's replay config received live on `ports`, stored nowhere."""
    text = (sim / "replay.toml").read_text()
    text = re.sub(r"first_udp_port = \d+", f"udp_ports = [{', '.join(map(str, ports))}]", text)
    text = text[: text.index("[[sink]]")]
    control = 'listen_address = "127.0.0.1:0"' if monitored else "enabled = false"
    text += f'[udp]\nbind_address = "127.0.0.1"\nrecv_buffer_bytes = 67108864\n\n[control]\n{control}\n\n'
    text += '[[sink]]\nkind = "null"\n'
    path = sim / ("monitored.toml" if monitored else "unmonitored.toml")
    path.write_text(text)
    return path


def one_run(binary, sim, ports, monitored, rate, frames):
    run = h.LiveRun(binary, config(sim, ports, monitored))
    loops = max(1, frames // CAPTURE_FRAMES)
    subprocess.run([binary, "send", str(sim / "run.pcap"), "--to", "127.0.0.1:" + ",".join(map(str, ports)),
                    "--frame-rate-hz", str(rate), "--loops", str(loops)], check=True, capture_output=True)
    time.sleep(1.0)
    drawn = None
    if monitored:
        with urllib.request.urlopen(f"http://{run.control}/monitor", timeout=10) as r:
            drawn = json.load(r)["frames_sampled"]
    cpu = cpu_seconds(run.pid)
    code, summary, stderr = run.stop()
    if code != 0:
        raise RuntimeError(f"hitgate run exited {code}:\n{stderr}")
    lost = int(re.search(r"placed, (\d+) lost", summary).group(1))
    partial = int(re.search(r"(\d+) partial kept", summary).group(1))
    frames_in = int(re.search(r"frames in\s+(\d+)", summary).group(1))
    return {"lost": lost, "partial": partial, "frames": frames_in, "drawn": drawn, "cpu_s": cpu}


def cpu_seconds(pid):
    """User and system CPU of the whole process so far (fields 14 and 15 of its stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=10.0, help="frames a second sent")
    ap.add_argument("--frames", type=int, default=800)
    ap.add_argument("--pairs", type=int, default=2)
    a = ap.parse_args()
    binary = h.hitgate_binary()
    with tempfile.TemporaryDirectory(prefix="hitgate-monitor-cost-") as work:
        sim = Path(work) / "sim"
        subprocess.run([binary, "simulate", "--out", str(sim), "--frames", str(CAPTURE_FRAMES), "--modules", "8",
                        "--hit-rate", "0.5"], check=True, capture_output=True)
        ports = h.free_udp_ports(8)
        runs = []
        for pair in range(a.pairs):
            for monitored in (False, True) if pair % 2 == 0 else (True, False):
                runs.append((monitored, one_run(binary, sim, ports, monitored, a.rate, a.frames)))
    print(f"JUNGFRAU 4M (simulated), {a.frames} frames at {a.rate:g} frames/s over loopback, in the order run")
    print("| run | frames | packets lost | partial frames | frames the monitor drew | process CPU |")
    print("|---|---|---|---|---|---|")
    for monitored, r in runs:
        name = "with the monitor" if monitored else "control plane off (no monitor)"
        drawn = r["drawn"] if monitored else "—"
        print(f"| {name} | {r['frames']} | {r['lost']} | {r['partial']} | {drawn} | {r['cpu_s']:.1f} s |")
    lost = {m: sum(r["lost"] for mm, r in runs if mm == m) for m in (False, True)}
    print(f"packets lost: {lost[True]} with the monitor, {lost[False]} without")
    if lost[True] > 0 and lost[False] == 0:
        print("only the monitored runs lost packets")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
