//! Scale-out on a real NATS JetStream server on 127.0.0.1: a simulated JUNGFRAU 4M (8 modules)
//! replayed by three hitgate node processes that own 3, 3 and 2 modules, with a trigger event
//! builder process between them. Every node applies the same verdict to every frame, and what they
//! keep is what one node with the whole detector keeps.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hitgate::config::{ClusterMember, ClusterSection, Config, SinkSection, TriggerKind, VerdictRule};
use hitgate::sim::SimConfig;
use hitgate::sink::features::read_spots;
use hitgate::sink::raw::read_index;

const NODES: [(&str, &[usize]); 3] = [("a", &[0, 1, 2]), ("b", &[3, 4, 5]), ("c", &[6, 7])];

fn hitgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hitgate"))
}

/// Starts a node process replaying `capture` as `node` of `config`, at `speed` × the recorded pace
/// (as fast as possible without one).
fn start_node(capture: &Path, config: &Path, node: &str, speed: Option<&str>) -> Child {
    let mut command = hitgate();
    command.arg("replay").arg(capture).arg("--config").arg(config).args(["--node", node]);
    if let Some(speed) = speed {
        command.args(["--speed", speed]);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits for a child, killing it past `limit`.
fn wait(child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(100));
        }
        // The child is this test's own; it may have ended already.
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
    });
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < limit, "{what} did not finish within {limit:?}");
    drop(watchdog);
    out
}

/// Each frame's verdict as a features file holds it.
fn verdicts(path: &Path) -> BTreeMap<u64, bool> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (r["frame_number"].as_u64().unwrap(), r["accepted"].as_bool().unwrap())
        })
        .collect()
}

fn base_config(sim: &hitgate::sim::SimOutputs) -> Config {
    let mut config = common::replay_config(sim);
    config.trigger.kind = TriggerKind::Spots;
    config.trigger.spots.min_spots = 12;
    config.trigger.rate.audit_every = 0;
    config.features.localiser.model = None;
    config
}

fn cluster_config(base: &Config, nats: &[String], out: &Path, builder_wait_ms: u64) -> PathBuf {
    let mut config = base.clone();
    config.cluster = ClusterSection {
        nats: nats.to_vec(),
        run: "scaleout".into(),
        nodes: NODES.iter().map(|(n, m)| ClusterMember { name: n.to_string(), modules: m.to_vec() }).collect(),
        rule: VerdictRule::SumSpots,
        min_spots: base.trigger.spots.min_spots,
        builder_wait_ms,
        // A node waits for a verdict longer than the builder waits for a node's contribution.
        verdict_timeout_ms: 30_000.max(builder_wait_ms + 15_000),
        ..ClusterSection::default()
    };
    config.sinks = vec![
        SinkSection::Features(hitgate::config::FeaturesSinkSection { path: out.join("{node}/features.jsonl") }),
        SinkSection::Raw(hitgate::config::RawSection { dir: out.join("{node}/raw") }),
    ];
    let path = out.join("cluster.toml");
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

#[test]
fn a_4m_run_over_three_node_processes_keeps_what_one_node_keeps() {
    // Four processes each: two such runs at once would starve each other's deadlines.
    let _turn = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = common::NatsServer::start(&dir.path().join("nats")) else { return common::no_nats() };
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 24, hit_rate: 0.5, seed: 808, modules: 8, modules_per_row: 2, ..SimConfig::default() },
    );
    let base = base_config(&sim);

    // One node with the whole detector.
    let mut single = base.clone();
    let single_out = dir.path().join("single");
    single.sinks = vec![
        SinkSection::Features(hitgate::config::FeaturesSinkSection { path: single_out.join("features.jsonl") }),
        SinkSection::Raw(hitgate::config::RawSection { dir: single_out.join("raw") }),
    ];
    let single_run = common::replay(single, &sim.capture);
    let expected = verdicts(&single_out.join("features.jsonl"));
    let kept = expected.values().filter(|k| **k).count();
    assert!(kept > 3 && kept < 24, "a test that can tell keep from drop: {single_run}");

    let out = dir.path().join("cluster");
    let config = cluster_config(&base, std::slice::from_ref(&server.url), &out, 3_000);
    let builder = hitgate()
        .args(["builder", "--config"])
        .arg(&config)
        .args(["--name", "b1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let nodes: Vec<(&str, Child)> =
        NODES.iter().map(|(name, _)| (*name, start_node(&sim.capture, &config, name, None))).collect();
    for (name, child) in nodes {
        let o = wait(child, Duration::from_secs(120), name);
        let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "node {name}:\n{stdout}\n{stderr}");
        assert!(common::words(&stdout).contains(&format!("cluster node {name}: 24 contributions sent")), "{stdout}");
        assert!(stdout.contains("; 0 without a verdict in time"), "{stdout}");
    }
    let b = wait(builder, Duration::from_secs(60), "the builder");
    let report = String::from_utf8_lossy(&b.stdout);
    assert!(b.status.success(), "{report}\n{}", String::from_utf8_lossy(&b.stderr));
    assert!(report.contains("24 frames decided"), "{report}");
    assert!(report.contains(&format!("{kept} kept")), "{report}");

    // Every node applied the same verdict to every frame, the single node's; each stored its part
    // of exactly those frames.
    let expected_kept: Vec<u64> = expected.iter().filter(|(_, k)| **k).map(|(f, _)| *f).collect();
    for (name, modules) in NODES {
        let got = verdicts(&out.join(name).join("features.jsonl"));
        assert_eq!(got, expected, "node {name}'s verdicts");
        let index = read_index(&out.join(name).join("raw/frames.idx")).unwrap();
        let stored: Vec<u64> = index.iter().map(|r| r.frame_number.get()).collect();
        assert_eq!(stored, expected_kept, "node {name}'s stored frames");
        let frame_bytes = std::fs::metadata(out.join(name).join("raw/frames.raw")).unwrap().len();
        assert_eq!(frame_bytes, (kept * modules.len() * 512 * 1024 * 2) as u64, "node {name}: its modules only");
    }

    // The nodes' spots together are the single node's, at the same places in the whole image.
    let places = |spots: &[hitgate::sink::features::RecordedSpot]| -> Vec<(i64, i64)> {
        spots.iter().map(|s| ((s.row * 100.0).round() as i64, (s.col * 100.0).round() as i64)).collect()
    };
    let single_spots = read_spots(&single_out.join("features.jsonl")).unwrap();
    let node_spots: Vec<_> =
        NODES.iter().map(|(n, _)| read_spots(&out.join(n).join("features.jsonl")).unwrap()).collect();
    let most = base.features.max_spots_recorded;
    let mut compared = 0;
    for (frame, spots) in &single_spots {
        // A frame with more spots than are recorded keeps a different first few on each node.
        if spots.len() >= most || node_spots.iter().any(|s| s[frame].len() >= most) {
            continue;
        }
        compared += 1;
        let mut expected = places(spots);
        let mut got: Vec<(i64, i64)> = node_spots.iter().flat_map(|s| places(&s[frame])).collect();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected, "frame {frame}'s spots");
    }
    assert!(compared > 12, "{compared} frames' spots compared");
}

#[test]
fn a_node_killed_mid_run_is_counted_and_the_others_lose_nothing_they_kept() {
    let _turn = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = common::NatsServer::start(&dir.path().join("nats")) else { return common::no_nats() };
    let frames = 40;
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames, hit_rate: 0.5, seed: 809, modules: 8, modules_per_row: 2, ..SimConfig::default() },
    );
    let mut base = base_config(&sim);
    base.trigger.spots.min_spots = 8;
    let out = dir.path().join("cluster");
    // The builder gives a silent node three seconds, then stops waiting for it: long enough that
    // four processes sharing two cores do not take a merely slow node as down at every frame.
    let config = cluster_config(&base, std::slice::from_ref(&server.url), &out, 3_000);
    let builder = hitgate().args(["builder", "--config"]).arg(&config).stdout(Stdio::piped()).spawn().unwrap();
    // Paced at 10 frames a second: four seconds of run.
    let start = |name: &str| start_node(&sim.capture, &config, name, Some("0.01"));
    let (a, b, mut c) = (start("a"), start("b"), start("c"));
    // Killed two seconds after its pipeline started (its sinks' files appear then): it has taken
    // part in some frames, and many are still to come.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("c/features.jsonl").exists() {
        assert!(Instant::now() < deadline, "node c never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(2000));
    c.kill().unwrap();
    let _ = c.wait();
    let mut kept_by = Vec::new();
    for (name, child) in [("a", a), ("b", b)] {
        let o = wait(child, Duration::from_secs(120), name);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "node {name}:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
        // Every frame got its verdict: after c went silent the builder decided without it.
        assert!(stdout.contains("; 0 without a verdict in time"), "{stdout}");
        let got = verdicts(&out.join(name).join("features.jsonl"));
        assert_eq!(got.len() as u64, frames, "node {name} judged every frame");
        let index = read_index(&out.join(name).join("raw/frames.idx")).unwrap();
        let stored: Vec<u64> = index.iter().map(|r| r.frame_number.get()).collect();
        let kept: Vec<u64> = got.iter().filter(|(_, k)| **k).map(|(f, _)| *f).collect();
        assert_eq!(stored, kept, "node {name} stored every frame it kept");
        kept_by.push(got);
    }
    assert_eq!(kept_by[0], kept_by[1], "the survivors applied the same verdicts");
    let report = wait(builder, Duration::from_secs(60), "the builder");
    let report = String::from_utf8_lossy(&report.stdout).into_owned();
    assert!(report.contains(&format!("{frames} frames decided")), "{report}");
    // The frames after the kill were decided without c, and counted so.
    let incomplete: u64 =
        report.split(" without every node").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(incomplete > 0 && incomplete < frames, "{report}");
    // c at least (on a busy machine a slow survivor may have been waited out once too).
    let down: u64 = report.rsplit("nodes taken as down ").next().unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(down >= 1, "{report}");
}

/// GETs a NATS server's monitoring page.
fn monitoring(port: u16, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// The server that leads a JetStream stream, as the cluster's servers report it.
fn stream_leader(monitor_ports: &[u16], stream: &str) -> Option<String> {
    monitor_ports.iter().find_map(|&port| {
        let jsz = monitoring(port, "/jsz?streams=true")?;
        jsz["account_details"].as_array()?.iter().find_map(|account| {
            account["stream_detail"].as_array()?.iter().find_map(|s| {
                (s["name"] == stream).then(|| s["cluster"]["leader"].as_str().map(str::to_string)).flatten()
            })
        })
    })
}

#[test]
fn the_server_leading_the_contributions_killed_mid_run_changes_no_verdict() {
    let _turn = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let client_ports: Vec<u16> = (0..3).map(|_| common::free_tcp_port()).collect();
    let route_ports: Vec<u16> = (0..3).map(|_| common::free_tcp_port()).collect();
    let monitor_ports: Vec<u16> = (0..3).map(|_| common::free_tcp_port()).collect();
    let routes = route_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut servers = Vec::new();
    for i in 0..3 {
        let (name, cluster, monitor) =
            (format!("s{i}"), format!("nats://127.0.0.1:{}", route_ports[i]), monitor_ports[i].to_string());
        let extra =
            ["-n", &name, "--cluster_name", "hitgate", "--cluster", &cluster, "--routes", &routes, "-m", &monitor];
        let Some(server) = common::NatsServer::start_with(&dir.path().join(&name), client_ports[i], &extra) else {
            return common::no_nats();
        };
        servers.push(server);
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let frames = 40;
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames, hit_rate: 0.5, seed: 810, modules: 8, modules_per_row: 2, ..SimConfig::default() },
    );
    let mut base = base_config(&sim);
    base.trigger.spots.min_spots = 8;

    let mut single = base.clone();
    let single_out = dir.path().join("single");
    single.sinks =
        vec![SinkSection::Features(hitgate::config::FeaturesSinkSection { path: single_out.join("features.jsonl") })];
    common::replay(single, &sim.capture);
    let expected = verdicts(&single_out.join("features.jsonl"));

    // The builder waits for every node through the leader election (a few seconds; once, with both
    // cores busy, past 20 s, when the builder gave up on a node's contributions to two frames): the
    // failover may slow verdicts, never change them.
    let out = dir.path().join("cluster");
    let config = cluster_config(&base, &urls, &out, 45_000);
    let text = std::fs::read_to_string(&config).unwrap().replace("replicas = 1", "replicas = 3");
    assert!(text.contains("replicas = 3"), "every stream on all three servers");
    std::fs::write(&config, text).unwrap();

    let builder = hitgate().args(["builder", "--config"]).arg(&config).stdout(Stdio::piped()).spawn().unwrap();
    let nodes: Vec<(&str, Child)> =
        NODES.iter().map(|(name, _)| (*name, start_node(&sim.capture, &config, name, Some("0.02")))).collect();
    // Once every node's pipeline runs, the server leading the contributions' stream goes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !NODES.iter().all(|(name, _)| out.join(name).join("features.jsonl").exists()) {
        assert!(Instant::now() < deadline, "the nodes never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let leader = stream_leader(&monitor_ports, "HITGATE_SCALEOUT_CONTRIB").expect("the stream has a leader");
    let index: usize = leader.trim_start_matches('s').parse().expect("a server's name");
    servers[index].kill();

    for (name, child) in nodes {
        let o = wait(child, Duration::from_secs(120), name);
        let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "node {name}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("; 0 without a verdict in time"), "node {name}, {leader} killed:\n{stdout}");
        let waits: Vec<&str> = stdout.lines().filter(|l| l.contains("verdict wait")).collect();
        println!("{leader} killed; node {name}: {}", waits.join(" ").trim());
        let got = verdicts(&out.join(name).join("features.jsonl"));
        assert_eq!(got, expected, "node {name}'s verdicts, {leader} killed");
        let index = read_index(&out.join(name).join("raw/frames.idx")).unwrap();
        let stored: Vec<u64> = index.iter().map(|r| r.frame_number.get()).collect();
        let kept: Vec<u64> = expected.iter().filter(|(_, k)| **k).map(|(f, _)| *f).collect();
        assert_eq!(stored, kept, "node {name} stored every frame it kept");
    }
    let b = wait(builder, Duration::from_secs(60), "the builder");
    let report = String::from_utf8_lossy(&b.stdout);
    assert!(b.status.success(), "{report}");
    assert!(report.contains(&format!("{frames} frames decided")), "{report}");
    assert!(report.contains(" 0 without every node"), "{leader} killed: {report}");
}
