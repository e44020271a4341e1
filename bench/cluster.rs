//! The sharded run against the single-node run on the same capture: a simulated JUNGFRAU 4M replayed
//! as fast as possible by one process with every module, then by three node processes (3 + 3 + 2
//! modules) and a trigger event builder over a JetStream server on 127.0.0.1 — frames/s of the run
//! and the time each node's frames waited for their verdicts (median, p99). Everything shares this
//! machine's two cores, so the sharded figure is what the protocol costs, not what three hosts gain.
//!
//! `cargo bench --bench cluster` (needs `nats-server`, installed by `scripts/setup`)

#[path = "common.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use hitgate::config::{ClusterMember, ClusterSection, SinkSection, TriggerKind, VerdictRule};
use hitgate::ingest::Capture;
use hitgate::pipeline::{Pace, Plan, Progress, ReplayOptions};
use hitgate::sim::SimConfig;

const NODES: [(&str, &[usize]); 3] = [("a", &[0, 1, 2]), ("b", &[3, 4, 5]), ("c", &[6, 7])];

fn main() {
    let Some(server) = common::nats_server() else {
        println!("no nats-server: nothing measured (scripts/setup installs it)");
        return;
    };
    let frames = 120;
    let (dir, sim) = common::simulated(&SimConfig {
        frames,
        hit_rate: 0.3,
        seed: 811,
        modules: 8,
        modules_per_row: 2,
        ..SimConfig::default()
    });
    let mut base = hitgate::config::Config::load(&sim.replay_config).unwrap();
    base.trigger.kind = TriggerKind::Spots;
    base.trigger.spots.min_spots = 12;
    base.trigger.rate.audit_every = 0;
    base.features.localiser.model = None;
    let capture = Capture::open(&sim.capture).unwrap();
    println!("JUNGFRAU 4M, {frames} simulated frames, replayed as fast as possible; 3 rounds each, the median");
    println!("{:<52} {:>10} {:>16} {:>16}", "run", "frames/s", "verdict p50 ms", "verdict p99 ms");

    let mut single = Vec::new();
    for round in 0..3 {
        let mut config = base.clone();
        config.sinks = vec![SinkSection::Features(hitgate::config::FeaturesSinkSection {
            path: dir.path().join(format!("single-{round}.jsonl")),
        })];
        let plan = Plan::new(config).unwrap();
        let (summary, t) = common::time(|| {
            plan.replay(&capture, ReplayOptions { pace: Pace::AsFastAsPossible }, &Progress::default()).unwrap()
        });
        assert_eq!(summary.frames_out(), frames);
        single.push(frames as f64 / t.as_secs_f64());
    }
    single.sort_by(f64::total_cmp);
    println!("{:<52} {:>10.1} {:>16} {:>16}", "one node, all 8 modules", single[1], "-", "-");

    for (label, speed) in
        [("three node processes + builder + nats-server", None), ("the same, paced at 50 frames/s", Some("0.05"))]
    {
        sharded_run(server, &dir, &sim, &base, frames, label, speed, single[1]);
    }
}

/// Three rounds of the sharded run (as fast as possible, or paced at `speed` × the recorded rate).
#[allow(clippy::too_many_arguments)]
fn sharded_run(
    server: &str,
    dir: &tempfile::TempDir,
    sim: &hitgate::sim::SimOutputs,
    base: &hitgate::config::Config,
    frames: u64,
    label: &str,
    speed: Option<&str>,
    single: f64,
) {
    let mut sharded = Vec::new();
    let tag = if speed.is_some() { "paced" } else { "fast" };
    for round in 0..3 {
        let (mut nats, port) = common::start_nats(server, &dir.path().join(format!("nats-{tag}-{round}")));
        let mut config = base.clone();
        let out = dir.path().join(format!("cluster-{tag}-{round}"));
        config.cluster = ClusterSection {
            nats: vec![format!("nats://127.0.0.1:{port}")],
            run: format!("bench-{tag}-{round}"),
            nodes: NODES.iter().map(|(n, m)| ClusterMember { name: n.to_string(), modules: m.to_vec() }).collect(),
            rule: VerdictRule::SumSpots,
            min_spots: 12,
            builder_wait_ms: 5_000,
            verdict_timeout_ms: 60_000,
            ..ClusterSection::default()
        };
        config.sinks = vec![SinkSection::Features(hitgate::config::FeaturesSinkSection {
            path: out.join("{node}/features.jsonl"),
        })];
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join("cluster.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let hitgate = env!("CARGO_BIN_EXE_hitgate");
        let builder =
            Command::new(hitgate).args(["builder", "--config"]).arg(&path).stdout(Stdio::null()).spawn().unwrap();
        let t0 = Instant::now();
        let nodes: Vec<_> = NODES
            .iter()
            .map(|(name, _)| {
                Command::new(hitgate)
                    .arg("replay")
                    .arg(&sim.capture)
                    .arg("--config")
                    .arg(&path)
                    .args(["--node", name])
                    .args(speed.map(|s| vec!["--speed", s]).unwrap_or_default())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<String> = nodes
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n.wait_with_output().unwrap().stdout).into_owned())
            .collect();
        let elapsed = t0.elapsed();
        let _ = builder.wait_with_output();
        let _ = nats.kill();
        let _ = nats.wait();
        // "verdict wait P50 µs median, P99 µs p99", worst node.
        let waits: Vec<(f64, f64)> = outputs
            .iter()
            .filter_map(|o| {
                let line = o.lines().find(|l| l.contains("verdict wait"))?;
                let numbers: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
                Some((numbers.first()? / 1000.0, numbers.get(1)? / 1000.0))
            })
            .collect();
        assert_eq!(waits.len(), 3, "every node reports its verdict wait:\n{}", outputs.join("\n"));
        // The worst node waits also for the others to catch up (processes start at different
        // moments); the best one is the last to send, so its wait is the protocol's own.
        let worst = (waits.iter().map(|w| w.0).fold(0.0, f64::max), waits.iter().map(|w| w.1).fold(0.0, f64::max));
        let best = waits.iter().copied().fold((f64::MAX, f64::MAX), |a, w| if w.0 < a.0 { w } else { a });
        sharded.push((frames as f64 / elapsed.as_secs_f64(), worst, best));
    }
    sharded.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rate, (p50, p99), (b50, b99)) = sharded[1];
    println!("{label:<52} {rate:>10.1} {p50:>16.1} {p99:>16.1}");
    println!("{:<52} {:>10} {b50:>16.1} {b99:>16.1}", "  the node whose contribution completes a frame", "");
    if speed.is_none() {
        println!("{:<52} {:>10.2}", "  ratio to one node", rate / single);
    }
}
