//! Captures written by Wireshark's own capture engine (dumpcap) of real loopback traffic: the
//! simulator's packets are sent through ordinary UDP sockets to 127.0.0.1 while dumpcap records them on
//! `lo` (Ethernet framing, pcapng and classic pcap) and on `any` (Linux cooked v1 and v2). Each file must
//! assemble into exactly the frames the simulator wrote. Needs dumpcap and the right to capture (root);
//! without them the test fails in CI and says it is skipped elsewhere (`common::missing`).

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hitgate::ingest::Capture;
use hitgate::sim::SimConfig;

const FRAMES: u64 = 3;

fn can_capture() -> bool {
    let listed = Command::new("dumpcap").arg("-D").output();
    matches!(listed, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("lo"))
}

/// Records `packets` sent to 127.0.0.1 while dumpcap runs with `args`; false if dumpcap could not start
/// capturing (no right to capture here).
fn capture_while_sending(out: &Path, args: &[&str], packets: &[(u16, Vec<u8>)], dst_base: u16) -> bool {
    let filter = format!("udp and dst portrange {}-{}", dst_base, dst_base + 1);
    let mut dumpcap = Command::new("dumpcap")
        .args(args)
        .args(["-f", &filter, "-c", &packets.len().to_string(), "-a", "duration:10", "-B", "64", "-w"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dumpcap starts");
    // dumpcap says "Capturing on ..." once the capture is live; give it up to 10 s.
    let started = Instant::now();
    let mut stderr = dumpcap.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Capturing on") {
        use std::io::Read;
        let n = stderr.read(&mut buf).unwrap_or(0);
        assert!(
            n > 0 && started.elapsed() < Duration::from_secs(10),
            "dumpcap did not start: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    // The message comes a moment before packets are really delivered to the capture.
    std::thread::sleep(Duration::from_millis(500));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, (port, payload)) in packets.iter().enumerate() {
        socket.send_to(payload, ("127.0.0.1", *port)).unwrap();
        if i % 16 == 15 {
            // Paced so the capture buffer keeps up on a loaded machine.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let status = dumpcap.wait().unwrap();
    assert!(status.success(), "dumpcap failed");
    true
}

#[test]
fn dumpcap_recordings_of_loopback_traffic_assemble_exactly() {
    if !can_capture() {
        common::missing("dumpcap, allowed to capture on loopback (needs root; scripts/setup installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dst_base = 52_311;
    let cfg = SimConfig {
        frames: FRAMES,
        hit_rate: 1.0,
        seed: 31,
        model: "jungfrau-2if".into(),
        first_udp_port: dst_base,
        ..SimConfig::default()
    };
    let out = common::simulated(&dir.path().join("sim"), &cfg);
    let packets: Vec<(u16, Vec<u8>)> = {
        let cap = Capture::open(&out.capture).unwrap();
        cap.records().map(|r| r.unwrap()).map(|r| r.udp().map(|u| (u.dst_port, u.payload.to_vec())).unwrap()).collect()
    };
    let reference = common::replay(common::replay_config(&out), &out.capture);
    let reference_raw = std::fs::read(dir.path().join("sim/replay/raw/frames.raw")).unwrap();
    for (name, args) in [
        ("lo.pcapng", vec!["-i", "lo"]),
        ("lo.pcap", vec!["-i", "lo", "-P"]),
        ("any-sll.pcapng", vec!["-i", "any", "-y", "LINUX_SLL"]),
        ("any-sll2.pcapng", vec!["-i", "any", "-y", "LINUX_SLL2"]),
    ] {
        let file = dir.path().join(name);
        // A capture can miss packets when the machine is loaded (the kernel drops, not hitgate):
        // such a recording is taken again, up to three times; what hitgate made of it is asserted.
        for attempt in 1..=3 {
            if !capture_while_sending(&file, &args, &packets, dst_base) {
                common::missing(&format!("dumpcap capturing {name} here"));
                return;
            }
            let recorded = Capture::open(&file).unwrap().records().count();
            if recorded == packets.len() {
                break;
            }
            eprintln!("{name}: attempt {attempt} recorded {recorded} of {} packets", packets.len());
        }
        let mut config = common::replay_config(&out);
        // This sender is paced far below line rate: a frame spans milliseconds of capture time.
        config.assembler.frame_timeout_us = 5_000_000;
        config.sinks = vec![hitgate::config::SinkSection::Raw(hitgate::config::RawSection {
            dir: dir.path().join(format!("{name}.raw")),
        })];
        let summary = common::replay(config, &file);
        assert_eq!(summary.input_error, None, "{name}");
        assert_eq!(summary.assembly.frames_complete, FRAMES, "{name}: {summary}");
        assert_eq!(summary.assembly.packets_placed, reference.assembly.packets_placed, "{name}");
        assert_eq!(summary.frames_accepted, reference.frames_accepted, "{name}");
        let raw = std::fs::read(dir.path().join(format!("{name}.raw/frames.raw"))).unwrap();
        assert!(raw == reference_raw, "{name}: stored frames differ from the simulator's own replay");
    }
}
