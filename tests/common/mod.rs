//! Helpers shared by the integration tests: simulate a run into a temporary folder and replay it.

#![allow(dead_code)]

pub mod live;

use std::path::Path;

use hitgate::config::Config;
use hitgate::ingest::Capture;
use hitgate::pipeline::{Pace, Plan, Progress, ReplayOptions, RunSummary};
use hitgate::sim::{SimConfig, SimOutputs, simulate};

pub fn simulated(dir: &Path, cfg: &SimConfig) -> SimOutputs {
    simulate(cfg, dir, &mut |_| {}).expect("simulation")
}

pub fn replay_config(outputs: &SimOutputs) -> Config {
    Config::load(&outputs.replay_config).expect("the simulator's replay config loads")
}

pub fn replay(config: Config, capture: &Path) -> RunSummary {
    let plan = Plan::new(config).expect("plan");
    let cap = Capture::open(capture).expect("capture opens");
    plan.replay(&cap, ReplayOptions { pace: Pace::AsFastAsPossible }, &Progress::default()).expect("replay")
}

/// A committed model's golden vectors: inputs, onnxruntime's outputs on them, and the tolerance tract
/// is held to.
#[derive(serde::Deserialize)]
pub struct Golden {
    pub input_shape: Vec<usize>,
    pub inputs: Vec<f32>,
    pub outputs: Vec<f32>,
    pub tolerance: f32,
}

/// `models/NAME.golden.json`.
pub fn golden(name: &str) -> Golden {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/{name}.golden.json"));
    serde_json::from_slice(&std::fs::read(path).expect("golden vectors")).expect("golden file")
}

/// Every frame of a capture, assembled into slots of a pool big enough to hold them all.
pub fn assembled(
    capture: &Path,
    geometry: &hitgate::detector::DetectorGeometry,
    frames: usize,
) -> Vec<hitgate::frame::FrameHandle> {
    let pool =
        hitgate::frame::FramePool::new(geometry.frame_bytes(), geometry.packets_per_frame(), frames + 2, 16).unwrap();
    let mut assembler = hitgate::frame::Assembler::new(geometry.clone(), Default::default(), pool);
    let mut out = Vec::new();
    for r in Capture::open(capture).unwrap().records() {
        let r = r.unwrap();
        let udp = r.udp().unwrap();
        let _ = assembler.push(udp.dst_port, udp.payload, r.timestamp_ns);
        out.extend(std::iter::from_fn(|| assembler.pop_ready()));
    }
    assembler.flush();
    out.extend(std::iter::from_fn(|| assembler.pop_ready()));
    out
}

/// Whether every tool and data set a check uses must be there: in CI (`CI=true`) or when
/// `HITGATE_REQUIRE_ALL=1`. Then a missing one fails its check instead of skipping it.
pub fn required() -> bool {
    let set = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case(value));
    set("CI", "true") || set("HITGATE_REQUIRE_ALL", "1")
}

/// A check that cannot run here for want of `what`: where everything is required (CI) it fails,
/// naming what is missing; elsewhere it says it is skipped.
#[track_caller]
pub fn missing(what: &str) {
    assert!(!required(), "missing, and required here (CI or HITGATE_REQUIRE_ALL=1): {what}");
    eprintln!("SKIPPED: {what}");
}

/// The real JUNGFRAU data (`../shared/realdata`, or `$HITGATE_REALDATA`), read in place; `None`
/// (and the check says it is skipped, or fails where everything is required) where it is absent.
pub fn realdata() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("HITGATE_REALDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realdata"));
    if dir.join("jungfrau-mod5/raw_00.bin").is_file() {
        Some(dir)
    } else {
        missing(&format!("the real JUNGFRAU data at {} (set HITGATE_REALDATA)", dir.display()));
        None
    }
}

/// A Python with h5py and hdf5plugin: `$HITGATE_PYTHON`, else the test environment's
/// (`scripts/python-env`); `None` (and the check says it is skipped) where neither has them.
pub fn h5py_python() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("HITGATE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/hitgate-train/venv/bin/python".into());
    let ok = std::process::Command::new(&p)
        .args(["-c", "import h5py, hdf5plugin"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing("a Python with h5py and hdf5plugin (scripts/python-env makes one)");
    }
    ok.then_some(p)
}

/// A Python that can `import` every module of `modules`: `$HITGATE_PYTHON`, else the test
/// environment's (`scripts/python-env`); `None` (and the check says it is skipped) otherwise.
pub fn python_with(modules: &str) -> Option<std::path::PathBuf> {
    let p = std::env::var_os("HITGATE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/hitgate-train/venv/bin/python".into());
    let ok = std::process::Command::new(&p)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing(&format!("a Python with {modules} (scripts/python-env makes one)"));
    }
    ok.then_some(p)
}

/// `text` with every run of white space made one space: what a table or summary says, whatever its
/// columns.
pub fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The summary line that starts with `label`, its spacing made single (see [`words`]).
pub fn line_of(summary: &str, label: &str) -> Option<String> {
    summary.lines().map(words).find(|l| l.starts_with(label))
}

/// A TCP port free on 127.0.0.1 a moment ago, below the kernel's ephemeral range (32768 and up):
/// a port from that range can be taken, before the test binds it, as the local end of some
/// outgoing connection (a NATS route dialling a server not yet up). No port is handed out twice
/// in one test binary, and each binary starts at its own place in the range.
pub fn free_tcp_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let start = (std::process::id().wrapping_mul(2_654_435_761) ^ nanos) % SPAN;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 between {LOW} and {}", LOW + SPAN)
}

/// Tests of one binary that must not overlap take turns through this lock.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A NATS server with JetStream on 127.0.0.1, stopped when dropped; `None` (and the check says it
/// is skipped) where `nats-server` is not installed (`scripts/setup` installs it).
pub struct NatsServer {
    child: std::process::Child,
    pub url: String,
    pub port: u16,
}

impl NatsServer {
    pub fn start(store: &Path) -> Option<NatsServer> {
        Self::start_with(store, common_port(), &[])
    }

    /// A server with extra arguments (cluster routes, a name).
    pub fn start_with(store: &Path, port: u16, extra: &[&str]) -> Option<NatsServer> {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].into_iter().find(|p| Path::new(p).exists())?;
        std::fs::create_dir_all(store).unwrap();
        let log_path = store.join("nats-server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = std::process::Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .ok()?;
        let mut server = NatsServer { child, url: format!("nats://127.0.0.1:{port}"), port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("nats-server on {port} exited ({status}) before it listened:\n{}", log());
            }
            assert!(std::time::Instant::now() < deadline, "nats-server did not listen on {port} in 30 s:\n{}", log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn common_port() -> u16 {
    free_tcp_port()
}

/// Says the check is skipped for want of nats-server (fails where everything is required).
#[track_caller]
pub fn no_nats() {
    missing("nats-server (scripts/setup installs it)");
}

/// A frame of `jungfrau-mod5` as the detector sent it (`raw_NN.bin`).
pub fn raw_frame(path: &Path) -> Vec<u16> {
    std::fs::read(path).unwrap().chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

/// A one-module config whose calibration is PSI's files for mod5, at the energy the gains assume.
pub fn mod5_config(dir: &Path, mod5: &Path, gain_file: &Path) -> Config {
    let text = format!(
        r#"[detector]
model = "jungfrau-1if"
photon_energy_kev = 12.4
[calibration]
pedestal_files = ["{m}/pedestal_g0.bin", "{m}/pedestal_g1.bin", "{m}/pedestal_g2.bin"]
gain_files = ["{g}"]
[[sink]]
kind = "null"
"#,
        m = mod5.display(),
        g = gain_file.display()
    );
    let path = dir.join("mod5.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// `jungfrau-mod5` ready to read: its config (PSI's calibration files, in a temporary folder), the
/// conversion to photons and the module's assembled image.
pub struct Mod5 {
    pub path: std::path::PathBuf,
    pub config: Config,
    pub converter: hitgate::calib::PhotonConverter,
    pub image: hitgate::detector::PanelImage,
    _dir: tempfile::TempDir,
}

impl Mod5 {
    /// The real data, or `None` where it is absent (said, and a failure in CI).
    pub fn open() -> Option<Mod5> {
        let path = realdata()?.join("jungfrau-mod5");
        let dir = tempfile::tempdir().unwrap();
        let config = mod5_config(dir.path(), &path, &path.join("gainMaps_derived.bin"));
        let maps = config.calibration.maps(1, 512, 1024).unwrap();
        let converter = hitgate::calib::PhotonConverter::new(&maps, config.detector.photon_energy_kev() as f32);
        let image = config.panel_image(&config.geometry().unwrap());
        Some(Mod5 { path, config, converter, image, _dir: dir })
    }

    /// Frame `n`'s photons in the assembled module (`out`: the image's size), `raw` as scratch.
    pub fn photons(&self, n: usize, raw: &mut [f32], out: &mut [f32]) {
        self.converter.jungfrau_photons(&raw_frame(&self.path.join(format!("raw_{n:02}.bin"))), 0, raw);
        self.image.assemble(raw, out);
    }
}

/// Hits kept when frames scoring above the `rejection` quantile of the misses' scores are kept, the
/// misses rejected, and the share of all frames kept.
pub fn at_rejection(values: &[f64], hit: &[bool], rejection: f64) -> (f64, f64, f64) {
    let mut misses: Vec<f64> = values.iter().zip(hit).filter(|(_, h)| !**h).map(|(v, _)| *v).collect();
    misses.sort_by(f64::total_cmp);
    let cut = misses[((misses.len() as f64 * rejection).ceil() as usize).min(misses.len() - 1)];
    let kept = |want: bool| values.iter().zip(hit).filter(|(v, h)| **h == want && **v > cut).count() as f64;
    let hits = hit.iter().filter(|h| **h).count() as f64;
    let rejected = 1.0 - kept(false) / misses.len() as f64;
    (kept(true) / hits, rejected, (kept(true) + kept(false)) / values.len() as f64)
}
