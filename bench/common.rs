//! Shared by the benchmarks: simulated frames and simple timing statistics.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use hitgate::detector::DetectorGeometry;
use hitgate::frame::{Assembler, AssemblerConfig, FrameHandle, FramePool};
use hitgate::ingest::Capture;
use hitgate::sim::{SimConfig, SimOutputs, simulate};

/// Simulates a run into a temporary folder (kept alive by the returned guard).
pub fn simulated(cfg: &SimConfig) -> (tempfile::TempDir, SimOutputs) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = simulate(cfg, dir.path(), &mut |_| {}).expect("simulation");
    (dir, out)
}

/// Every frame of a capture, assembled into slots of a pool big enough to hold them all.
pub fn assembled(
    capture: &std::path::Path,
    geometry: &DetectorGeometry,
    frames: usize,
    spots: usize,
) -> Vec<FrameHandle> {
    let pool = FramePool::new(geometry.frame_bytes(), geometry.packets_per_frame(), frames + 2, spots).unwrap();
    let mut a = Assembler::new(geometry.clone(), AssemblerConfig::default(), pool);
    let cap = Capture::open(capture).unwrap();
    let mut out = Vec::new();
    for r in cap.records() {
        let r = r.unwrap();
        let udp = r.udp().unwrap();
        let _ = a.push(udp.dst_port, udp.payload, r.timestamp_ns);
        out.extend(std::iter::from_fn(|| a.pop_ready()));
    }
    a.flush();
    out.extend(std::iter::from_fn(|| a.pop_ready()));
    out
}

/// Median and 99th percentile of samples.
pub fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed())
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The installed `nats-server`, if any (`scripts/setup` installs it).
pub fn nats_server() -> Option<&'static str> {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"].into_iter().find(|p| std::path::Path::new(p).exists())
}

/// Starts `binary` with JetStream on a free port of 127.0.0.1, storing in `store`; returns once it
/// listens, with its port.
pub fn start_nats(binary: &str, store: &std::path::Path) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}
