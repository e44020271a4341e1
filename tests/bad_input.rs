//! Bad input of every kind gets a counted drop or a clear error, never a panic, and what was
//! accepted before it is kept.

mod common;

use hitgate::frame::PacketDrop;
use hitgate::ingest::{Capture, SkipReason};
use hitgate::sim::{CaptureFileFormat, CaptureWriter, LinkFraming, SimConfig};

#[test]
fn foreign_truncated_and_oversized_packets_are_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::simulated(dir.path(), &SimConfig { frames: 6, seed: 2, ..SimConfig::default() });
    // Copy the run, interleaving bad traffic among the good packets.
    let cap = Capture::open(&out.capture).unwrap();
    let damaged = dir.path().join("damaged.pcap");
    let mut w =
        CaptureWriter::new(std::fs::File::create(&damaged).unwrap(), CaptureFileFormat::Pcap, LinkFraming::Vlan)
            .unwrap();
    let (mut foreign, mut truncated, mut oversized) = (0, 0, 0);
    for (i, r) in cap.records().enumerate() {
        let r = r.unwrap();
        let udp = r.udp().unwrap();
        let ts = r.timestamp_ns;
        if i % 50 == 0 {
            w.write_udp(ts, 9, 5353, b"mdns chatter").unwrap();
            foreign += 1;
        }
        if i % 70 == 1 {
            w.write_udp(ts, 9, udp.dst_port, &udp.payload[..1000]).unwrap();
            truncated += 1;
        }
        if i % 90 == 2 {
            let mut big = udp.payload.to_vec();
            big.extend_from_slice(&[0; 16]);
            w.write_udp(ts, 9, udp.dst_port, &big).unwrap();
            oversized += 1;
        }
        w.write_udp(ts, udp.src_port, udp.dst_port, udp.payload).unwrap();
    }
    w.finish().unwrap();
    let summary = common::replay(common::replay_config(&out), &damaged);
    let a = &summary.assembly;
    assert_eq!(a.dropped(PacketDrop::Foreign), foreign);
    assert_eq!(a.dropped(PacketDrop::Truncated), truncated);
    assert_eq!(a.dropped(PacketDrop::Oversized), oversized);
    assert_eq!((a.frames_complete, a.packets_placed), (6, 6 * 128), "good packets all placed");
}

#[test]
fn a_truncated_capture_keeps_everything_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::simulated(dir.path(), &SimConfig { frames: 10, seed: 4, ..SimConfig::default() });
    let bytes = std::fs::read(&out.capture).unwrap();
    let cut = dir.path().join("cut.pcap");
    // Cut in the middle of frame 6's packets.
    std::fs::write(&cut, &bytes[..bytes.len() * 11 / 20 + 1234]).unwrap();
    let summary = common::replay(common::replay_config(&out), &cut);
    let err = summary.input_error.clone().expect("the damage is reported");
    assert!(err.contains("truncated at byte"), "{err}");
    assert_eq!(summary.assembly.frames_complete, 5);
    assert_eq!(summary.assembly.frames_partial, 1, "the cut frame leaves partial, flagged");
    assert_eq!(summary.frames_out(), 6);
}

#[test]
fn garbage_files_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in
        [("empty", vec![]), ("text", b"frame,packet\n1,2\n".to_vec()), ("short", vec![0xd4, 0xc3, 0xb2])]
    {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = Capture::open(&path).err().expect(name).to_string();
        assert!(err.contains("not a pcap or pcapng file"), "{name}: {err}");
    }
    // A valid header followed by noise: every record read is either skipped with a reason or an error.
    let mut noise = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    noise.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0]);
    let mut x = 12345u32;
    for _ in 0..20_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        noise.push((x >> 16) as u8);
    }
    let cap = Capture::from_vec(noise).unwrap();
    let mut outcomes = 0;
    for r in cap.records() {
        match r {
            Ok(rec) => {
                let _ = rec.udp().map_err(|reason| assert!(SkipReason::ALL.contains(&reason)));
            }
            Err(e) => assert!(e.to_string().contains("at byte"), "{e}"),
        }
        outcomes += 1;
    }
    assert!(outcomes >= 1);
}

#[test]
fn pcapng_damage_is_an_error_after_the_good_blocks() {
    let mut w = CaptureWriter::new(Vec::new(), CaptureFileFormat::Pcapng, LinkFraming::Ethernet).unwrap();
    for i in 0..3 {
        w.write_udp(1_000 + i, 1, 50001, &[i as u8; 100]).unwrap();
    }
    let mut bytes = w.finish().unwrap();
    let good = Capture::from_vec(bytes.clone()).unwrap().records().filter(|r| r.is_ok()).count();
    assert_eq!(good, 3);
    // Corrupt the last block's length.
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&7u32.to_le_bytes());
    let last_block_len_at = n - (12 + 20 + 144);
    bytes[last_block_len_at + 4..last_block_len_at + 8].copy_from_slice(&13u32.to_le_bytes());
    let cap = Capture::from_vec(bytes).unwrap();
    let records: Vec<_> = cap.records().collect();
    assert_eq!(records.iter().filter(|r| r.is_ok()).count(), 2);
    assert!(records.last().unwrap().as_ref().is_err_and(|e| e.to_string().contains("block length 13")));
}

#[test]
fn a_full_disk_ends_the_run_with_a_clear_error_not_a_hang() {
    if !std::path::Path::new("/dev/full").exists() {
        common::missing("/dev/full");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = common::simulated(dir.path(), &SimConfig { frames: 20, hit_rate: 1.0, seed: 12, ..SimConfig::default() });
    let mut config = common::replay_config(&out);
    // The second features sink writes to a device that is always full: its writes fail at the latest
    // when it flushes on closing, after every frame went through the first one.
    config.trigger.kind = hitgate::config::TriggerKind::AcceptAll;
    config.sinks = vec![
        hitgate::config::SinkSection::Features(hitgate::config::FeaturesSinkSection {
            path: dir.path().join("features.jsonl"),
        }),
        hitgate::config::SinkSection::Features(hitgate::config::FeaturesSinkSection { path: "/dev/full".into() }),
    ];
    let plan = hitgate::pipeline::Plan::new(config).unwrap();
    let cap = Capture::open(&out.capture).unwrap();
    let err = plan
        .replay(
            &cap,
            hitgate::pipeline::ReplayOptions { pace: hitgate::pipeline::Pace::AsFastAsPossible },
            &Default::default(),
        )
        .expect_err("the sink's failure is the run's error");
    let err = chain(&err);
    assert!(err.contains("/dev/full") && err.contains("No space left"), "{err}");
}

/// An error with its causes, as the command line shows it.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

#[test]
fn a_garbage_hdf5_file_or_capture_is_refused_by_replay_and_geometry_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("run_master.h5");
    let mut bytes = b"\x89HDF\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&[0x5a; 512]);
    std::fs::write(&bad, bytes).unwrap();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/jungfrau-module.toml");
    for args in [
        vec!["replay", bad.to_str().unwrap(), "--config", config.to_str().unwrap()],
        vec!["geometry", "--estimate", bad.to_str().unwrap(), "--config", config.to_str().unwrap()],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hitgate")).args(&args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {said}");
        assert!(said.contains("run_master.h5") && !said.contains("panicked"), "{args:?}: {said}");
    }
}
