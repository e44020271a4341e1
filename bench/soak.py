#!/usr/bin/env python3
"""Soak: the live pipeline (UDP receive, assembly, calibration, spot finding, trigger, features and
NeXus/HDF5 sinks) fed by `hitgate send` over loopback for a long time at a share of this machine's
lossless rate, measured first in the same run. Every few seconds it samples the run's resident memory,
open file descriptors, frames queued between stages, free pool slots and every loss counter.

Closed NeXus data files are removed as the run goes, as a facility's data mover would take them
off the node: a 30-minute run writes tens of GB.

It fails (exit 1) on any loss, or when memory, descriptors or queue occupancy grow: the last third of
the samples against the first third (after a warm-up), beyond the tolerances printed.

    bench/soak.py --minutes 30          # the documented run
    bench/soak.py --minutes 2           # CI-sized (scripts/test)
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import live_harness as h

RSS_GROWTH_BYTES = 32 << 20
RSS_GROWTH_SHARE = 0.10
FD_GROWTH = 2
QUEUE_GROWTH_FRAMES = 8


def trial(binary, capture, work, ports, rate, seconds):
    """One short run at `rate`: (lossless?, rate the sender reached, what was counted)."""
    out = work / f"trial-{rate:.0f}"
    run = h.LiveRun(binary, h.live_config(work, ports, out))
    try:
        frames = max(h.SIM_FRAMES, int(rate * seconds))
        sent = h.send(binary, capture, ports, rate_hz=rate, frames=frames)
        run.wait_idle()
        m = run.metrics()
    finally:
        code, summary, _ = run.stop()
        shutil.rmtree(out, ignore_errors=True)
    counted = h.losses(m)
    complete = m.get('hitgate_frames_total{outcome="complete"}', 0)
    lossless = code == 0 and not any(counted.values()) and complete == h.frames_sent(frames)
    return lossless, h.sent_rate(sent), counted


def lossless_rate(binary, capture, work, ports, seconds):
    """The highest whole-frame rate with nothing lost: doubling from 250 frames/s until a loss (or
    until the sender cannot go faster), then halving the gap three times."""
    good, bad = 0.0, None
    rate = 250.0
    while bad is None and rate >= 50:
        ok, reached, counted = trial(binary, capture, work, ports, rate, seconds)
        print(f"  {rate:7.0f} frames/s asked, {reached:7.0f} sent: {'lossless' if ok else counted}", flush=True)
        if not ok and good == 0:
            rate /= 2  # not even the first rate: look lower
        elif not ok:
            bad = rate
        elif reached < 0.95 * rate:
            # The sender is the limit: its own rate is as far as this machine can show.
            return reached
        else:
            good, rate = rate, rate * 2
    if bad is None:
        return good
    for _ in range(3):
        rate = (good + bad) / 2
        ok, reached, counted = trial(binary, capture, work, ports, rate, seconds)
        print(f"  {rate:7.0f} frames/s asked, {reached:7.0f} sent: {'lossless' if ok else counted}", flush=True)
        if ok:
            good = rate
        else:
            bad = rate
    return good


def drain_storage(nexus_dir, keep=2):
    """Remove all but the newest `keep` data files (the newest is the one being written, those before
    it are closed): bytes removed."""
    files = sorted(Path(nexus_dir).glob("*_data_*.h5"))
    removed = 0
    for f in files[:max(0, len(files) - keep)]:
        try:
            removed += f.stat().st_size
            f.unlink()
        except FileNotFoundError:
            pass
    return removed


def thirds(samples, key, warmup):
    body = samples[warmup:]
    n = max(1, len(body) // 3)
    return [s[key] for s in body[:n]], [s[key] for s in body[-n:]]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    # 10 s trials find a rate two shared cores (the sender takes one) do not always hold for minutes:
    # at 80% one soak of four saw its queues creep at ~1010 frames/s with nothing lost.
    p.add_argument("--share", type=float, default=0.7, help="share of the lossless rate to soak at")
    p.add_argument("--every-s", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--trial-s", type=float, default=10.0, help="seconds of each lossless-rate trial")
    p.add_argument("--hit-rate", type=float, default=0.02, help="share of simulated frames with a crystal hit")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    a = p.parse_args()

    binary = h.hitgate_binary()
    work = Path(tempfile.mkdtemp(prefix="hitgate-soak-", dir="/var/tmp"))
    failures = []
    try:
        capture = h.simulate(binary, work, a.hit_rate)
        ports = h.free_udp_ports(2)
        print(f"lossless rate of this machine ({a.trial_s:.0f} s trials, {h.MODEL}, one module):", flush=True)
        limit = lossless_rate(binary, capture, work, ports, a.trial_s)
        if limit < 50:
            print(f"SOAK FAILED: no lossless rate found (best {limit:.0f} frames/s): is the machine saturated?")
            return 1
        rate = a.share * limit
        seconds = a.minutes * 60
        frames = int(rate * seconds)
        print(f"lossless: {limit:.0f} frames/s; soaking at {rate:.0f} frames/s ({a.share:.0%}) for "
              f"{seconds:.0f} s, {frames} frames", flush=True)

        out = work / "soak"
        run = h.LiveRun(binary, h.live_config(work, ports, out))
        sender = h.send(binary, capture, ports, rate_hz=rate, frames=frames, background=True)
        started = time.monotonic()
        samples = []
        moved = 0
        print(f"{'t s':>6} {'RSS MiB':>8} {'fds':>4} {'queued':>6} {'free':>5} {'frames':>9} {'kept':>7}  losses",
              flush=True)
        while sender.poll() is None:
            time.sleep(a.every_s)
            moved += drain_storage(out / "nexus")
            m = run.metrics()
            s = {
                "t": time.monotonic() - started,
                "rss": run.rss_bytes(),
                "fds": run.open_fds(),
                "queued": h.queued(m),
                "free": m.get("hitgate_pool_free_slots", 0),
                "frames": h.frames_out(m),
                "kept": m.get("hitgate_frames_accepted_total", 0),
                "losses": h.losses(m),
            }
            samples.append(s)
            lost = sum(s["losses"].values())
            print(f"{s['t']:6.0f} {s['rss'] / 2**20:8.1f} {s['fds']:4d} {s['queued']:6.0f} {s['free']:5.0f} "
                  f"{s['frames']:9.0f} {s['kept']:7.0f}  {lost}", flush=True)
        sent_out, sent_err = sender.communicate()
        if sender.returncode != 0:
            failures.append(f"hitgate send failed: {sent_err.strip()}")
        run.wait_idle()
        final = run.metrics()
        code, summary, stderr = run.stop()
        print(summary)
        moved += drain_storage(out / "nexus", keep=0)
        print(f"NeXus data written (removed as it was closed): {moved / 1e9:.2f} GB")
        if code != 0:
            failures.append(f"hitgate run exited {code}: {stderr[-2000:]}")

        counted = h.losses(final)
        if any(counted.values()):
            failures.append(f"loss: {counted}")
        complete = final.get('hitgate_frames_total{outcome="complete"}', 0)
        want = h.frames_sent(frames)
        if complete != want:
            failures.append(f"{complete:.0f} frames complete of {want} sent")
        warmup = max(1, len(samples) // 10)
        if len(samples) - warmup < 3:
            failures.append("too few samples to judge growth (a longer run is needed)")
        else:
            first, last = thirds(samples, "rss", warmup)
            grown = statistics.mean(last) - statistics.mean(first)
            allowed = max(RSS_GROWTH_BYTES, RSS_GROWTH_SHARE * statistics.mean(first))
            print(f"RSS: {statistics.mean(first) / 2**20:.1f} MiB first third, {statistics.mean(last) / 2**20:.1f} "
                  f"MiB last third (growth allowed {allowed / 2**20:.0f} MiB)")
            if grown > allowed:
                failures.append(f"memory grew by {grown / 2**20:.1f} MiB")
            first, last = thirds(samples, "fds", warmup)
            print(f"open fds: {max(first)} first third, {max(last)} last third (growth allowed {FD_GROWTH})")
            if max(last) > max(first) + FD_GROWTH:
                failures.append(f"open descriptors grew from {max(first)} to {max(last)}")
            first, last = thirds(samples, "queued", warmup)
            print(f"frames queued: mean {statistics.mean(first):.1f} first third, {statistics.mean(last):.1f} last "
                  f"third, at most {max(s['queued'] for s in samples):.0f} (growth allowed {QUEUE_GROWTH_FRAMES})")
            if statistics.mean(last) > statistics.mean(first) + QUEUE_GROWTH_FRAMES:
                failures.append("frames queued between stages grew")
        print(f"sent: {sent_out.strip().splitlines()[0] if sent_out.strip() else '?'}")
    finally:
        if a.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("soak passed: nothing lost, no growth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
