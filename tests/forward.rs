//! The durable forward on a real NATS JetStream server on 127.0.0.1 whose maximum payload (256 KiB)
//! is smaller than a kept frame's chunk: a replay publishes every frame's record and the kept
//! frames' chunks in parts; `hitgate consume` processes on the other side rebuild them into the
//! files the node wrote itself, replay the stream from its start under another name, and resume
//! after being killed without writing a frame twice or losing one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hitgate::config::{Config, ForwardSection, Hdf5Section, SinkSection};
use hitgate::sim::SimConfig;

fn hitgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hitgate"))
}

struct Forwarded {
    _server: common::NatsServer,
    config: PathBuf,
    local: PathBuf,
    kept: usize,
    frames: u64,
}

/// A server, a simulated 2-module run replayed with local storage and the forward, and the config.
fn forwarded(dir: &Path, frames: u64, seed: u64) -> Option<Forwarded> {
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, "max_payload: 262144\n").unwrap();
    let server =
        common::NatsServer::start_with(&dir.join("nats"), common::free_tcp_port(), &["-c", conf.to_str().unwrap()])?;
    let sim = common::simulated(
        &dir.join("sim"),
        &SimConfig { frames, hit_rate: 0.4, seed, modules: 2, ..SimConfig::default() },
    );
    let mut config: Config = common::replay_config(&sim);
    let local = dir.join("local");
    config.sinks = vec![
        SinkSection::Features(hitgate::config::FeaturesSinkSection { path: local.join("features.jsonl") }),
        SinkSection::Hdf5(Hdf5Section::in_dir(local.join("nexus"))),
        SinkSection::Jetstream(ForwardSection::to(&server.url)),
    ];
    let path = dir.join("forward.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let summary = common::replay(config, &sim.capture);
    let text = summary.to_string();
    assert!(text.contains(&format!("sink jetstream {frames} frames")), "{text}");
    let kept = (summary.frames_accepted + summary.frames_audited) as usize;
    assert!(kept > 3 && kept < frames as usize, "a run that keeps some frames: {text}");
    Some(Forwarded { _server: server, config: path, local, kept, frames })
}

fn consume(f: &Forwarded, out: &Path, durable: &str, per_part: u64) -> Command {
    let mut c = hitgate();
    c.arg("consume")
        .arg("--config")
        .arg(&f.config)
        .arg("--out")
        .arg(out)
        .args(["--durable", durable, "--frames-per-part", &per_part.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run_to_end(mut command: Command) -> String {
    let child = command.arg("--exit-at-end").spawn().unwrap();
    let id = child.id();
    let started = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
    });
    let o: Output = child.wait_with_output().unwrap();
    drop(watchdog);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "consume:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    stdout
}

/// The parts a consumer wrote, in order.
fn parts(out: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("part-"))
        .collect();
    parts.sort();
    parts
}

/// The parts' features records back to back.
fn records(out: &Path) -> String {
    parts(out).iter().map(|p| std::fs::read_to_string(p.join("features.jsonl")).unwrap()).collect()
}

/// The parts' NeXus files hold the local run's kept frames, each once, pixel for pixel.
fn same_frames(f: &Forwarded, out: &Path) {
    let Some(python) = common::h5py_python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/same_frames.py");
    let masters: Vec<PathBuf> = parts(out).iter().map(|p| p.join("run_master.h5")).filter(|m| m.exists()).collect();
    let o = Command::new(python).arg(script).arg(f.local.join("nexus/run_master.h5")).args(&masters).output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains(&format!("same {} frames", f.kept)), "{said}");
}

#[test]
fn a_consumer_elsewhere_writes_what_the_node_wrote_from_chunks_cut_to_the_server_s_limit() {
    let _turn = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let Some(f) = forwarded(dir.path(), 40, 901) else { return common::no_nats() };
    let local_records = std::fs::read_to_string(f.local.join("features.jsonl")).unwrap();

    let out = dir.path().join("consumed");
    let said = run_to_end(consume(&f, &out, "writer", 7));
    let kept = f.kept;
    assert!(said.contains(&format!("{} frames, {kept} chunks written", f.frames)), "{said}");
    assert!(said.contains("0 chunks missing, 0 parts dropped, 0 messages malformed; 1 run ends"), "{said}");
    assert_eq!(parts(&out).len(), f.frames.div_ceil(7) as usize);
    assert_eq!(records(&out), local_records, "every record, byte for byte, in order");
    same_frames(&f, &out);

    // Another consumer replays the stream from its start, whatever the first has acknowledged.
    let again = dir.path().join("replayed");
    let said = run_to_end(consume(&f, &again, "analysis", 1000));
    assert!(said.contains(&format!("1 parts, {} frames", f.frames)), "{said}");
    assert_eq!(records(&again), local_records);
}

#[test]
fn a_consumer_killed_mid_stream_resumes_and_writes_every_frame_exactly_once() {
    let _turn = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let Some(f) = forwarded(dir.path(), 60, 902) else { return common::no_nats() };
    let local_records = std::fs::read_to_string(f.local.join("features.jsonl")).unwrap();
    let out = dir.path().join("consumed");

    // Killed once its third part is whole: it has acknowledged some, and is writing the next.
    let mut first = consume(&f, &out, "writer", 2).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("part-000003").exists() {
        assert!(Instant::now() < deadline, "the consumer wrote no third part");
        std::thread::sleep(Duration::from_millis(1));
    }
    first.kill().unwrap();
    let _ = first.wait();
    let before = parts(&out).len();
    assert!(before < 30, "killed before the end ({before} parts of 30)");

    let said = run_to_end(consume(&f, &out, "writer", 2));
    assert!(said.contains("1 run ends"), "{said}");
    assert!(
        !std::fs::read_dir(&out).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".partial"))
    );
    assert_eq!(parts(&out).len(), 30, "{said}");
    assert_eq!(records(&out), local_records, "each record once, none lost: {said}");
    same_frames(&f, &out);
}

#[test]
fn consume_needs_a_forward_in_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(&dir.path().join("sim"), &SimConfig { frames: 2, ..SimConfig::default() });
    let o = hitgate()
        .arg("consume")
        .arg("--config")
        .arg(&sim.replay_config)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no [[sink]] kind = \"jetstream\""));
}
