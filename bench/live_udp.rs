//! Live reception over loopback at rising frame rates: the receiving thread's CPU per GB beside bare
//! `recvmmsg` drains of the same stream in the same run (the kernel's copy and nothing else: waiting in
//! `poll`, inside a blocking receive, and pausing after a short batch as hitgate does), for hitgate's
//! defaults, without the pause, through io_uring, and as before (poll, copy from a buffer); the
//! whole process's CPU per GB; packets lost; packet-to-verdict latency. Then a backlog drained flat out.
//!
//! The sender is `hitgate send`, a separate process, so this process's CPU time is the receiver's.
//! `cargo bench --bench live_udp`; `HITGATE_BENCH_PACE=packets cargo bench --bench live_udp` spaces
//! every packet evenly instead of sending whole frames at the frame rate.

#[path = "common.rs"]
mod common;

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hitgate::config::{Config, SinkSection};
use hitgate::ingest::udp::{RecvBatch, UdpBatchSocket, pollfd, wait_readable};
use hitgate::ingest::{ReceiveWait, UdpBackend};
use hitgate::pipeline::{Plan, Progress};
use hitgate::sim::SimConfig;

const FRAMES: u64 = 200;
const LOOPS: u32 = 4;
const RECV_BUFFER: usize = 16 << 20;
const RATES_HZ: [f64; 13] =
    [200.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 5000.0, 6000.0, 8000.0, 10000.0];

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

struct Trial {
    /// Frame rate the sender actually reached.
    sent_hz: f64,
    received: u64,
    expected: u64,
    bytes: u64,
    /// CPU of the whole receiving process (hitgate: receive, assemble, reduce, sink).
    cpu_s: f64,
    /// CPU of the receiving thread alone (hitgate: receive and place into frames).
    receive_cpu_s: f64,
    latency: Option<(u64, u64)>,
}

/// Runs `hitgate send` on the capture to 127.0.0.1:`port` with `pace` arguments and `loops` passes;
/// returns what it printed.
fn hitgate_send(capture: &std::path::Path, port: u16, pace: &[&str], loops: u64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hitgate"))
        .args(["send", capture.to_str().unwrap(), "--to", &format!("127.0.0.1:{port}"), "--loops", &loops.to_string()])
        .args(pace)
        .output()
        .expect("hitgate send");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends the capture at `hz`; the packets sent and the frame rate reached.
/// Sends the capture at `hz` frames/s: whole frames at a time, or, with `HITGATE_BENCH_PACE=packets`,
/// every packet spaced evenly (as a detector's own sender spreads them).
fn send(capture: &std::path::Path, port: u16, hz: f64) -> (u64, f64) {
    let by_packet = std::env::var("HITGATE_BENCH_PACE").is_ok_and(|v| v == "packets");
    let pace = if by_packet {
        ["--packet-rate".to_string(), (hz * 128.0).to_string()]
    } else {
        ["--frame-rate-hz".to_string(), hz.to_string()]
    };
    let text = hitgate_send(capture, port, &[pace[0].as_str(), pace[1].as_str()], u64::from(LOOPS));
    // "sent  N datagrams, X GB in T s: R datagrams/s, ..."
    let per_second: f64 =
        text.split("s: ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (u64::from(LOOPS) * FRAMES * 128, per_second / 128.0)
}

/// A bare drain: `recvmmsg` and nothing else, waiting in `poll` (`blocking` false) or inside the
/// receive (`MSG_WAITFORONE` on a blocking socket); after a short batch it sleeps `linger`.
fn bare_drain(capture: &std::path::Path, port: u16, hz: f64, blocking: bool, linger: Duration) -> Trial {
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    let (mut socket, _) = UdpBatchSocket::bind(localhost, port, RECV_BUFFER).unwrap();
    if blocking {
        socket.wait_in_receive(Duration::from_millis(2)).unwrap();
    }
    let socket = socket;
    let stop = AtomicBool::new(false);
    let cpu0 = cpu_seconds();
    let (received, bytes, expected) = std::thread::scope(|s| {
        let drain = s.spawn(|| {
            let cpu0 = hitgate::telemetry::thread_cpu_seconds();
            let mut batch = RecvBatch::new(64, 9216);
            let mut fds = [pollfd(socket.raw_fd())];
            let (mut n, mut bytes) = (0u64, 0u64);
            loop {
                let got = socket.recv_batch(&mut batch).unwrap();
                bytes += batch.datagrams().map(|(d, _)| d.len() as u64).sum::<u64>();
                n += got as u64;
                if got > 0 && got < 64 && !linger.is_zero() {
                    std::thread::sleep(linger);
                }
                if got == 0 {
                    if stop.load(Ordering::Relaxed) {
                        return (n, bytes, hitgate::telemetry::thread_cpu_seconds() - cpu0);
                    }
                    if !blocking {
                        let _ = wait_readable(&mut fds, 2);
                    }
                }
            }
        });
        let (expected, sent_hz) = send(capture, port, hz);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let (n, bytes, thread_cpu) = drain.join().unwrap();
        (n, bytes, (expected, sent_hz, thread_cpu))
    });
    let (expected, sent_hz, receive_cpu_s) = expected;
    Trial { sent_hz, received, expected, bytes, cpu_s: cpu_seconds() - cpu0, receive_cpu_s, latency: None }
}

fn hitgate_live(plan: &Plan, capture: &std::path::Path, port: u16, hz: f64) -> Trial {
    let sources = plan.bind_udp().unwrap();
    let stop = AtomicBool::new(false);
    let progress = Progress::default();
    let cpu0 = cpu_seconds();
    let (summary, expected) = std::thread::scope(|s| {
        let run = s.spawn(|| plan.run_live(sources, &stop, &progress).unwrap());
        let sent = send(capture, port, hz);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (run.join().unwrap(), sent)
    });
    let (expected, sent_hz) = expected;
    let a = &summary.assembly;
    let clean =
        a.packets_offered() == a.packets_placed && summary.frames_dropped_queue_full == 0 && a.frames_no_slot == 0;
    let received = if clean { a.packets_placed } else { a.packets_placed.min(expected.saturating_sub(1)) };
    let latency = summary.latency_p50_us.zip(summary.latency_p99_us);
    Trial {
        sent_hz,
        received,
        expected,
        bytes: summary.input_bytes,
        cpu_s: cpu_seconds() - cpu0,
        receive_cpu_s: summary.source_cpu_seconds,
        latency,
    }
}

/// Receive buffer for the backlog measurement: room for the whole stream, queued before reading.
const BACKLOG_BUFFER: usize = 1 << 30;
const BACKLOG_FRAMES: u64 = 400;
const BACKLOG_ROUNDS: usize = 3;

/// Queues the backlog in the socket's buffer with nothing reading; returns the datagrams sent.
fn queue_backlog(capture: &std::path::Path, port: u16) -> u64 {
    hitgate_send(capture, port, &["--fast"], BACKLOG_FRAMES / FRAMES);
    BACKLOG_FRAMES * 128
}

/// How fast each receiver empties the same backlog: its own capacity, with no sender sharing the cores.
/// Returns the ratio of rates (hitgate / bare drain), or `None` when the buffer could not be had.
fn backlog_drain(plan_for: &dyn Fn(u16) -> Plan, capture: &std::path::Path) -> Option<f64> {
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    // Bare drain.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (socket, report) = UdpBatchSocket::bind(localhost, port, BACKLOG_BUFFER).unwrap();
    if report.is_short() {
        println!("backlog drain skipped: {}", report.advice());
        return None;
    }
    let sent = queue_backlog(capture, port);
    let mut batch = RecvBatch::new(64, 9216);
    let cpu0 = hitgate::telemetry::thread_cpu_seconds();
    let t0 = Instant::now();
    let mut got = 0u64;
    while let Ok(n) = socket.recv_batch(&mut batch) {
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let bare_s = t0.elapsed().as_secs_f64();
    let bare_cpu = hitgate::telemetry::thread_cpu_seconds() - cpu0;
    drop(socket);
    // hitgate: the same backlog queued on its bound socket before the pipeline starts.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let plan = plan_for(port);
    let sources = plan.bind_udp().unwrap();
    let sent_again = queue_backlog(capture, port);
    let stop = AtomicBool::new(false);
    let progress = Progress::default();
    let bytes = sent_again * 8240;
    let t0 = Instant::now();
    let mut last_change = t0;
    let summary = std::thread::scope(|s| {
        let run = s.spawn(|| plan.run_live(sources, &stop, &progress).unwrap());
        // Done when nothing has moved for 300 ms (every frame has a verdict or was dropped); the
        // drain took until the last movement. Sleeping, not spinning: this thread must not take a
        // core from the pipeline it measures.
        let state = || {
            (
                progress.input_bytes_read.load(Ordering::Relaxed),
                progress.frames_done.load(Ordering::Relaxed),
                progress.frames_dropped.load(Ordering::Relaxed),
            )
        };
        let mut seen = state();
        while last_change.elapsed() < Duration::from_millis(300) && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_micros(200));
            let now = state();
            if now != seen {
                seen = now;
                last_change = Instant::now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        run.join().unwrap()
    });
    let ours_s = (last_change - t0).as_secs_f64();
    let placed = summary.assembly.packets_placed;
    println!(
        "backlog of {BACKLOG_FRAMES} frames ({:.2} GB) queued in a {} MiB receive buffer, then drained:",
        bytes as f64 / 1e9,
        BACKLOG_BUFFER >> 20
    );
    println!(
        "  bare recvmmsg drain  {got} of {sent} datagrams in {bare_s:.3} s: {:.0} frames/s, {:.2} GB/s, thread CPU {:.2} s/GB",
        got as f64 / 128.0 / bare_s,
        got as f64 * 8240.0 / 1e9 / bare_s,
        bare_cpu / (got as f64 * 8240.0 / 1e9)
    );
    println!(
        "  hitgate run          {placed} of {sent_again} placed, {} verdicts in {ours_s:.3} s: {:.0} frames/s, {:.2} GB/s (receiving thread CPU {:.2} s/GB)",
        summary.frames_out(),
        summary.frames_out() as f64 / ours_s,
        placed as f64 * 8240.0 / 1e9 / ours_s,
        summary.source_cpu_seconds / (placed.max(1) as f64 * 8240.0 / 1e9)
    );
    let dropped = summary.frames_dropped_queue_full + summary.assembly.frames_no_slot;
    let ratio = (summary.frames_out() as f64 / ours_s) / (got as f64 / 128.0 / bare_s);
    let caveat = if dropped > 0 {
        format!(" — LOSS: hitgate dropped {dropped} frames (its reducers could not keep up)")
    } else if got == sent && placed == sent_again {
        String::new()
    } else {
        " — the kernel dropped part of the backlog: figures are for what was queued".to_string()
    };
    println!("  ratio of rates (hitgate / bare drain): {ratio:.2}{caveat}");
    // A round with loss is not a sustained rate.
    Some(if dropped > 0 { 0.0 } else { ratio })
}

fn main() {
    let (dir, out) = common::simulated(&SimConfig { frames: FRAMES, hit_rate: 0.25, seed: 5, ..SimConfig::default() });
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = Config::load(&out.replay_config).unwrap();
    config.detector.first_udp_port = Some(port);
    config.udp.bind_address = "127.0.0.1".parse().unwrap();
    config.udp.recv_buffer_bytes = RECV_BUFFER;
    config.control.enabled = false;
    config.sinks = vec![SinkSection::Null(hitgate::config::NullSection { write_delay_us: 0 })];
    // `HITGATE_BENCH_REALTIME=N`: every hitgate run receives at real-time priority N.
    config.udp.realtime_priority =
        std::env::var("HITGATE_BENCH_REALTIME").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let plan = Plan::new(config.clone()).unwrap();
    let linger = Duration::from_micros(u64::from(config.udp.linger_us));
    // The same pipeline without the pause after a short batch; and as before these changes: waiting
    // in `poll`, receiving into a buffer and copying each payload into its slot.
    let mut eager = config.clone();
    eager.udp.linger_us = 0;
    let eager = Plan::new(eager).unwrap();
    let mut uring = config.clone();
    uring.udp.backend = UdpBackend::IoUring;
    let uring = Plan::new(uring).unwrap();
    config.udp.receive_into_slots = false;
    config.udp.wait = ReceiveWait::Poll;
    config.udp.linger_us = 0;
    let before = Plan::new(config).unwrap();
    let _ = hitgate::control::prometheus();
    println!(
        "live UDP over loopback, JUNGFRAU module (128 × 8240 B per frame), {} frames per trial, {RECV_BUFFER} B receive buffer",
        FRAMES * u64::from(LOOPS)
    );
    println!(
        "hitgate: the defaults (payloads into their slots, waiting inside recvmmsg, {} µs pause after a short batch); without the pause; through io_uring (with the pause); and as before (poll, copy from a buffer, no pause)",
        linger.as_micros()
    );
    // Every receiver at each rate in turn, so every comparison is at the same rate in the same run.
    let mut last_both: Option<(f64, Trial, Trial)> = None;
    for hz in RATES_HZ {
        let started = Instant::now();
        let bare_poll = bare_drain(&out.capture, port, hz, false, Duration::ZERO);
        let bare_block = bare_drain(&out.capture, port, hz, true, Duration::ZERO);
        let bare_linger = bare_drain(&out.capture, port, hz, true, linger);
        let ours = hitgate_live(&plan, &out.capture, port, hz);
        let eager_t = hitgate_live(&eager, &out.capture, port, hz);
        let uring_t = hitgate_live(&uring, &out.capture, port, hz);
        let before_t = hitgate_live(&before, &out.capture, port, hz);
        let trials = [
            ("bare drain, poll", &bare_poll),
            ("bare drain, blocking", &bare_block),
            ("bare drain, pausing", &bare_linger),
            ("hitgate", &ours),
            ("hitgate, no pause", &eager_t),
            ("hitgate, io_uring", &uring_t),
            ("hitgate as before", &before_t),
        ];
        for (name, t) in trials {
            println!(
                "  {name:<21} asked {hz:6.0} Hz, sent {:6.0} Hz ({:5.2} GB/s): {} of {} packets{}  CPU {:.2} s/GB (receiving thread {:.3}){}",
                t.sent_hz,
                t.sent_hz * 128.0 * 8240.0 / 1e9,
                t.received,
                t.expected,
                if t.received == t.expected { ", no loss" } else { ", LOSS" },
                t.cpu_s / (t.bytes.max(1) as f64 / 1e9),
                t.receive_cpu_s / (t.bytes.max(1) as f64 / 1e9),
                t.latency.map(|(a, b)| format!(", packet→verdict p50 ≤ {a} µs p99 ≤ {b} µs")).unwrap_or_default(),
            );
        }
        let per_gb = |t: &Trial| t.receive_cpu_s / (t.bytes.max(1) as f64 / 1e9);
        // The budget's floor: the cheaper plain bare drain (no pause).
        let bare = if per_gb(&bare_block) <= per_gb(&bare_poll) { bare_block } else { bare_poll };
        println!(
            "  receiving thread CPU per GB ÷ the cheaper plain bare drain's at {hz:.0} Hz: hitgate {:.2}, no pause {:.2}, io_uring {:.2}, as before {:.2} (budget ≤ 1.1); hitgate ÷ the pausing bare drain {:.2}",
            per_gb(&ours) / per_gb(&bare),
            per_gb(&eager_t) / per_gb(&bare),
            per_gb(&uring_t) / per_gb(&bare),
            per_gb(&before_t) / per_gb(&bare),
            per_gb(&ours) / per_gb(&bare_linger),
        );
        println!("  ({:.1} s)", started.elapsed().as_secs_f64());
        let lossless = bare.received == bare.expected && ours.received == ours.expected;
        let topped = bare.sent_hz < 0.9 * hz || ours.sent_hz < 0.9 * hz;
        if !lossless {
            println!(
                "  loss at {hz:.0} Hz: {} by the bare drain, {} by hitgate",
                bare.expected - bare.received,
                ours.expected - ours.received
            );
            break;
        }
        last_both = Some((hz, bare, ours));
        if topped {
            println!("  the sender cannot go faster beside the receiver on this machine: stopping here");
            break;
        }
    }
    if let Some((hz, bare, ours)) = last_both {
        let per_gb = |t: &Trial, cpu: f64| cpu / (t.bytes as f64 / 1e9);
        println!(
            "highest rate asked with zero loss by both: {hz:.0} Hz (sent: bare {:.0} Hz, hitgate {:.0} Hz; ratio of rates reached {:.2}, target ≥ 0.9)",
            bare.sent_hz,
            ours.sent_hz,
            ours.sent_hz / bare.sent_hz
        );
        println!(
            "receive + place CPU per GB: hitgate's receiving thread {:.3} s vs bare drain {:.3} s, ratio {:.2} (budget ≤ 1.1); whole hitgate process {:.2} s/GB",
            per_gb(&ours, ours.receive_cpu_s),
            per_gb(&bare, bare.receive_cpu_s),
            per_gb(&ours, ours.receive_cpu_s) / per_gb(&bare, bare.receive_cpu_s),
            per_gb(&ours, ours.cpu_s)
        );
        if let Some((p50, p99)) = ours.latency {
            println!("packet-to-verdict latency at that rate: p50 ≤ {p50} µs, p99 ≤ {p99} µs");
        }
    }
    let base = plan.config.clone();
    drop(plan);
    drop(eager);
    drop(uring);
    drop(before);
    let receiver_threads: usize =
        std::env::var("HITGATE_BENCH_RECEIVER_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    println!("hitgate with udp.receiver_threads = {receiver_threads} (0: the assembling thread receives)");
    let plan_for = |port| {
        let mut c = base.clone();
        c.detector.first_udp_port = Some(port);
        c.udp.recv_buffer_bytes = BACKLOG_BUFFER;
        c.assembler.pool_frames = 256;
        c.reducer.queue_frames = 128;
        c.udp.receiver_threads = receiver_threads;
        Plan::new(c).unwrap()
    };
    let mut ratios: Vec<f64> = (0..BACKLOG_ROUNDS).filter_map(|_| backlog_drain(&plan_for, &out.capture)).collect();
    ratios.sort_by(f64::total_cmp);
    if let Some(median) = ratios.get(ratios.len() / 2) {
        println!(
            "backlog drain, hitgate / bare drain over {} rounds: {:?}, median {median:.2} (target ≥ 0.9)",
            ratios.len(),
            ratios.iter().map(|r| (r * 100.0).round() / 100.0).collect::<Vec<_>>()
        );
    }
    drop(dir);
}
