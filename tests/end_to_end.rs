//! Whole paths: simulate a run with known hits, replay it through assembly, calibration, spot finding,
//! trigger and sinks, and hold the results against the truth.

mod common;

use std::collections::HashMap;

use hitgate::frame::PacketDrop;
use hitgate::sim::{CaptureFileFormat, LinkFraming, PacketFaults, SimConfig, TriggerScore};
use hitgate::sink::features::read_verdicts;
use hitgate::sink::raw::{FLAG_PARTIAL, read_index};

#[test]
fn the_spots_trigger_keeps_clear_hits_and_rejects_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig { frames: 160, hit_rate: 0.3, seed: 11, ..SimConfig::default() };
    let out = common::simulated(dir.path(), &cfg);
    let config = common::replay_config(&out);
    let min_spots = config.trigger.spots.min_spots;
    let summary = common::replay(config, &out.capture);
    assert_eq!(summary.frames_out(), 160);
    assert_eq!(summary.assembly.frames_complete, 160);
    assert_eq!(summary.assembly.packets_placed, 160 * 128);

    let verdicts = read_verdicts(&dir.path().join("replay/features.jsonl")).unwrap();
    let score = TriggerScore::new(&out.truth_summary, &verdicts, 2 * min_spots);
    println!("{score}");
    assert_eq!(score.frames_without_verdict, 0);
    assert!(score.hits >= 30 && score.clear_hits >= 15, "the run must hold enough hits to judge: {score:?}");
    assert!(score.clear_hit_efficiency() >= 0.95, "{score}");
    assert!(score.rejection() >= 0.98, "{score}");
    // Weak hits exist in the simulation, so the overall efficiency is lower but not collapsed.
    assert!(score.efficiency() >= 0.5, "{score}");

    // The raw sink holds exactly the accepted frames, in order, with their index.
    let index = read_index(&dir.path().join("replay/raw/frames.idx")).unwrap();
    let accepted: Vec<u64> = {
        let mut v: Vec<u64> = verdicts.iter().filter(|(_, a)| **a).map(|(f, _)| *f).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(index.iter().map(|r| r.frame_number.get()).collect::<Vec<_>>(), accepted);
    let raw = std::fs::metadata(dir.path().join("replay/raw/frames.raw")).unwrap().len();
    assert_eq!(raw, accepted.len() as u64 * (1 << 20));
}

#[test]
fn raw_frames_are_the_packets_the_detector_sent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig { frames: 12, hit_rate: 1.0, seed: 5, model: "jungfrau-2if".into(), ..SimConfig::default() };
    let out = common::simulated(dir.path(), &cfg);
    let mut config = common::replay_config(&out);
    config.trigger.kind = hitgate::config::TriggerKind::AcceptAll;
    common::replay(config, &out.capture);
    // Rebuild every frame from the capture independently: payloads placed by port and packet number.
    let cap = hitgate::ingest::Capture::open(&out.capture).unwrap();
    let mut frames: HashMap<u64, Vec<u8>> = HashMap::new();
    for r in cap.records() {
        let r = r.unwrap();
        let udp = r.udp().unwrap();
        let frame = u64::from_le_bytes(udp.payload[0..8].try_into().unwrap());
        let packet = u32::from_le_bytes(udp.payload[12..16].try_into().unwrap()) as usize;
        let port = usize::from(udp.dst_port - 50001);
        let image = frames.entry(frame).or_insert_with(|| vec![0; 1 << 20]);
        let at = (port * 64 + packet) * 8192;
        image[at..at + 8192].copy_from_slice(&udp.payload[48..]);
    }
    let raw = std::fs::read(dir.path().join("replay/raw/frames.raw")).unwrap();
    let index = read_index(&dir.path().join("replay/raw/frames.idx")).unwrap();
    assert_eq!(index.len(), 12);
    for rec in index {
        let at = rec.offset.get() as usize;
        assert!(raw[at..at + (1 << 20)] == frames[&rec.frame_number.get()][..], "frame {}", rec.frame_number.get());
    }
}

#[test]
fn damaged_streams_are_accounted_packet_by_packet() {
    let dir = tempfile::tempdir().unwrap();
    let faults = PacketFaults { loss: 0.01, reorder: 0.02, duplicate: 0.01 };
    let cfg = SimConfig {
        frames: 60,
        hit_rate: 0.3,
        seed: 3,
        faults,
        format: CaptureFileFormat::Pcapng,
        framing: LinkFraming::Sll2,
        ..SimConfig::default()
    };
    let out = common::simulated(dir.path(), &cfg);
    let truth = &out.truth_summary;
    assert!(truth.packets_lost > 20 && truth.packets_duplicated > 20 && truth.packets_reordered > 50, "{truth:?}");
    let summary = common::replay(common::replay_config(&out), &out.capture);
    let a = &summary.assembly;
    // Every packet the wire lost is counted as lost, every duplicate as a duplicate, nothing else.
    assert_eq!(a.packets_lost, truth.packets_lost);
    assert_eq!(a.dropped(PacketDrop::Duplicate), truth.packets_duplicated);
    assert_eq!(a.packets_placed, truth.packets_sent - truth.packets_lost);
    assert_eq!(a.packets_offered(), a.packets_placed + truth.packets_duplicated);
    assert_eq!(summary.frames_out(), 60, "partial frames are kept, flagged");
    assert!(a.frames_partial > 0);
    let verdicts = read_verdicts(&dir.path().join("replay/features.jsonl")).unwrap();
    assert_eq!(verdicts.len(), 60);
    let index = read_index(&dir.path().join("replay/raw/frames.idx")).unwrap();
    for rec in &index {
        let partial = rec.packets_received.get() < rec.packets_expected.get();
        assert_eq!(rec.flags.get() & FLAG_PARTIAL != 0, partial);
    }
}

#[test]
fn a_4m_detector_is_eight_modules_of_one_table_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig { frames: 10, hit_rate: 0.5, seed: 21, modules: 8, modules_per_row: 2, ..SimConfig::default() };
    let out = common::simulated(dir.path(), &cfg);
    let mut config = common::replay_config(&out);
    config.reducer.workers = 2;
    config.assembler.pool_frames = 16;
    // A 4M hit holds more spots than the default cap on those recorded per frame.
    config.features.max_spots_recorded = 8192;
    let summary = common::replay(config, &out.capture);
    assert_eq!((summary.frames_out(), summary.assembly.frames_complete), (10, 10));
    assert_eq!(summary.assembly.packets_placed, 10 * 8 * 128);
    let verdicts = read_verdicts(&dir.path().join("replay/features.jsonl")).unwrap();
    let score = TriggerScore::new(&out.truth_summary, &verdicts, 40);
    assert_eq!(score.misses_accepted, 0, "{score}");
    assert_eq!(score.clear_hits, score.clear_hits_accepted, "{score}");
    // Spots in assembled-image coordinates land on the reflections across all eight modules and
    // their gaps: the module layout, the panel origins and the records agree with the simulation.
    let in_image = hitgate::sink::features::read_spots(&dir.path().join("replay/features.jsonl")).unwrap();
    let quality = hitgate::sim::SpotScore::new(&out.truth_summary, &in_image, 2.0);
    let (n, hit) = quality.recall[2];
    assert!(n > 100 && hit as f64 >= 0.9 * n as f64, "{quality}");
    assert!(quality.precision() >= 0.95, "{quality}");
}

#[test]
fn the_summary_says_when_frames_found_more_spots_than_they_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::simulated(dir.path(), &SimConfig { frames: 20, hit_rate: 0.5, seed: 23, ..SimConfig::default() });
    let mut config = common::replay_config(&out);
    config.features.max_spots_recorded = 3;
    let summary = common::replay(config, &out.capture);
    let text = std::fs::read_to_string(dir.path().join("replay/features.jsonl")).unwrap();
    let (mut capped, mut found) = (0u64, 0u64);
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let (n, listed) = (record["spots_found"].as_u64().unwrap(), record["spots"].as_array().unwrap().len());
        assert!(listed <= 3, "{line}");
        found += n;
        capped += u64::from(n > listed as u64);
    }
    assert!(capped > 0, "no hit frame found more than 3 spots");
    assert_eq!((summary.spots_found, summary.frames_spots_capped), (found, capped));
    let said = summary.to_string();
    assert!(said.contains(&format!("{capped} frames found more than features.max_spots_recorded = 3")), "{said}");
}

#[test]
fn drop_policy_removes_partial_frames_but_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        frames: 40,
        seed: 8,
        faults: PacketFaults { loss: 0.02, ..Default::default() },
        ..SimConfig::default()
    };
    let out = common::simulated(dir.path(), &cfg);
    let mut config = common::replay_config(&out);
    config.assembler.partial_frames = hitgate::frame::PartialPolicy::Drop;
    let summary = common::replay(config, &out.capture);
    let a = &summary.assembly;
    assert!(a.frames_partial_dropped > 0);
    assert_eq!(a.frames_partial, 0);
    assert_eq!(a.frames_complete + a.frames_partial_dropped, 40);
    assert_eq!(summary.frames_out(), a.frames_complete);
    assert_eq!(a.packets_lost, out.truth_summary.packets_lost);
}

#[test]
fn paced_replay_takes_at_least_the_recorded_time_over_the_speed() {
    let dir = tempfile::tempdir().unwrap();
    // 30 frames at 200 Hz: 145 ms between the first and the last packet.
    let cfg = SimConfig { frames: 30, frame_rate_hz: 200.0, seed: 6, ..SimConfig::default() };
    let out = common::simulated(dir.path(), &cfg);
    let plan = hitgate::pipeline::Plan::new(common::replay_config(&out)).unwrap();
    let cap = hitgate::ingest::Capture::open(&out.capture).unwrap();
    for speed in [1.0, 4.0] {
        let options = hitgate::pipeline::ReplayOptions { pace: hitgate::pipeline::Pace::Recorded { speed } };
        let summary = plan.replay(&cap, options, &hitgate::pipeline::Progress::default()).unwrap();
        let recorded = 29.0 / 200.0;
        // Only a lower bound: a busy machine may be slower, never faster than the pace.
        assert!(summary.elapsed.as_secs_f64() >= 0.95 * recorded / speed, "speed {speed}: {:?}", summary.elapsed);
        assert_eq!(summary.frames_out(), 30);
    }
}

#[test]
fn peakfinder8_keeps_clear_hits_and_rejects_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig { frames: 160, hit_rate: 0.3, seed: 11, ..SimConfig::default() };
    let out = common::simulated(dir.path(), &cfg);
    let mut config = common::replay_config(&out);
    config.features.finder = hitgate::config::FinderKind::Peakfinder8;
    let min_spots = config.trigger.spots.min_spots;
    let summary = common::replay(config, &out.capture);
    assert_eq!(summary.frames_out(), 160);
    let verdicts = read_verdicts(&dir.path().join("replay/features.jsonl")).unwrap();
    let score = TriggerScore::new(&out.truth_summary, &verdicts, 2 * min_spots);
    println!("{score}");
    assert!(score.clear_hit_efficiency() >= 0.95, "{score}");
    assert!(score.rejection() >= 0.98, "{score}");
    assert!(score.efficiency() >= 0.5, "{score}");
    // Every recorded spot carries its SNR, at or above the configured minimum.
    let text = std::fs::read_to_string(dir.path().join("replay/features.jsonl")).unwrap();
    let mut spots = 0;
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        for spot in record["spots"].as_array().unwrap() {
            assert!(spot["snr"].as_f64().unwrap() >= 7.0, "{spot}");
            spots += 1;
        }
    }
    assert!(spots > 100, "{spots} spots recorded");

    // Spot by spot against the simulated reflections: strong ones found, found ones real, centres close.
    let in_image = hitgate::sink::features::read_spots(&dir.path().join("replay/features.jsonl")).unwrap();
    let quality = hitgate::sim::SpotScore::new(&out.truth_summary, &in_image, 2.0);
    println!("{quality}");
    let (n, hit) = quality.recall[2];
    assert!(n > 500 && hit as f64 >= 0.95 * n as f64, "reflections of 25–100 photons: {hit} of {n}");
    assert!(quality.precision() >= 0.95, "{quality}");
    assert!(quality.error_px(0.5).unwrap() < 0.3, "{quality}");
}

#[test]
fn masked_pixels_never_make_spots_with_either_finder() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::simulated(dir.path(), &SimConfig { frames: 30, hit_rate: 1.0, seed: 13, ..SimConfig::default() });
    // The simulator's own mask (its hot and dead pixels), with the top 192 rows of the module added
    // (a mask of more than half the detector is refused as looking inverted).
    let pixels = 512 * 1024;
    let mut mask = hitgate::calib::PixelMask::load(&dir.path().join("mask.bin"), pixels).unwrap();
    assert_eq!(mask.masked_count(), 10, "5 hot + 5 dead pixels");
    for p in 0..192 * 1024 {
        mask.set(p, hitgate::calib::mask::USER);
    }
    let masked = dir.path().join("top.bin");
    mask.save(&masked).unwrap();
    for finder in [hitgate::config::FinderKind::Threshold, hitgate::config::FinderKind::Peakfinder8] {
        let mut config = common::replay_config(&out);
        config.features.finder = finder;
        config.calibration.mask_file = Some(masked.clone());
        common::replay(config, &out.capture);
        let spots = hitgate::sink::features::read_spots(&dir.path().join("replay/features.jsonl")).unwrap();
        let all: Vec<f32> = spots.values().flatten().map(|s| s.row).collect();
        assert!(all.len() > 200, "{finder:?}: {} spots", all.len());
        assert!(all.iter().all(|&row| row >= 191.5), "{finder:?}: a spot in the masked rows");
    }
}

#[test]
fn pedestals_measured_on_dark_frames_replace_wrong_constants() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig { frames: 140, dark_frames: 20, hit_rate: 0.3, seed: 17, ..SimConfig::default() };
    let out = common::simulated(dir.path(), &cfg);
    assert!(out.truth_summary.frames[..20].iter().all(|f| !f.hit));
    let run = |dark_frames: usize| {
        let mut config = common::replay_config(&out);
        // No pedestal file, and constants 500 ADU (a photon) too low: without dark frames every pixel
        // reads a photon more than it holds.
        config.calibration.file = None;
        config.calibration.pedestal_adu[0] = 2500.0;
        config.calibration.dark_frames = dark_frames;
        // The learned trigger judges by each shell's excess over the frame's own background: a photon
        // too many in every pixel raises the background it measures and hides weak hits' spots in
        // its noise (the spot finders subtract each tile's or ring's background too).
        config.trigger.kind = hitgate::config::TriggerKind::Tract;
        let min_spots = config.trigger.spots.min_spots;
        common::replay(config, &out.capture);
        let verdicts = read_verdicts(&dir.path().join("replay/features.jsonl")).unwrap();
        TriggerScore::new(&out.truth_summary, &verdicts, 2 * min_spots)
    };
    let measured = run(20);
    println!("with dark frames: {measured}");
    assert!(measured.clear_hit_efficiency() >= 0.95 && measured.rejection() >= 0.98, "{measured}");
    let text = std::fs::read_to_string(dir.path().join("replay/features.jsonl")).unwrap();
    let dark: Vec<bool> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["dark"].as_bool().unwrap())
        .collect();
    assert!(dark[..20].iter().all(|&d| d) && dark[20..].iter().all(|&d| !d), "the first 20 frames are dark");
    let constants = run(0);
    println!("with the wrong constants: {constants}");
    // The same wrong constants without dark frames must do clearly worse, or this test shows nothing:
    // weak hits are lost.
    assert!(constants.efficiency() < measured.efficiency() - 0.1, "dark frames: {measured}\nconstants: {constants}");
}

#[test]
fn tracking_follows_a_drifting_pedestal_that_the_calibration_file_does_not() {
    let dir = tempfile::tempdir().unwrap();
    // 2.5 ADU a frame over 600 frames: by the end every pixel sits ~3 photons above the file's
    // pedestal. Reducers run up to a queue ahead of the sink thread that tracks, so the queue is short.
    let cfg = SimConfig {
        frames: 600,
        dark_frames: 20,
        pedestal_drift_adu_per_frame: 2.5,
        hit_rate: 0.3,
        seed: 19,
        ..SimConfig::default()
    };
    let out = common::simulated(dir.path(), &cfg);
    let run = |dark_frames: usize| {
        let mut config = common::replay_config(&out);
        config.calibration.dark_frames = dark_frames;
        config.calibration.pedestal_window_frames = 10;
        config.calibration.pedestal_track_every = 1;
        config.reducer.queue_frames = 8;
        // A pedestal drifting up reads as a background rising in every shell, which hides weak hits.
        config.trigger.kind = hitgate::config::TriggerKind::Tract;
        let min_spots = config.trigger.spots.min_spots;
        common::replay(config, &out.capture);
        let verdicts = read_verdicts(&dir.path().join("replay/features.jsonl")).unwrap();
        TriggerScore::new(&out.truth_summary, &verdicts, 2 * min_spots)
    };
    let tracked = run(20);
    let file_only = run(0);
    println!("tracked: {tracked}\nfile only: {file_only}");
    assert!(tracked.clear_hit_efficiency() >= 0.95 && tracked.rejection() >= 0.98, "{tracked}");
    assert!(
        file_only.efficiency() < tracked.efficiency() - 0.1,
        "the drift must hurt without tracking:\ntracked: {tracked}\nfile only: {file_only}"
    );
}

#[test]
fn learned_peak_centres_beat_the_centre_of_mass_on_accepted_frames() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::simulated(dir.path(), &SimConfig { frames: 60, hit_rate: 0.5, seed: 23, ..SimConfig::default() });
    let features = dir.path().join("replay/features.jsonl");
    let records = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&features).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };

    // The simulator's config refines the spots of accepted frames with the built-in model.
    let config = common::replay_config(&out);
    assert_eq!(config.features.localiser.model.as_deref(), Some("builtin"));
    let summary = common::replay(config.clone(), &out.capture);
    let (mut refined_in_accepted, mut refined_in_rejected) = (0u64, 0u64);
    for r in records() {
        let refined = r["spots"].as_array().unwrap().iter().filter(|s| !s["refined"].is_null()).count() as u64;
        if r["accepted"].as_bool().unwrap() {
            assert_eq!(refined, r["spots"].as_array().unwrap().len() as u64, "every spot of an accepted frame");
            refined_in_accepted += refined;
        } else {
            refined_in_rejected += refined;
        }
    }
    assert!(refined_in_accepted > 500, "{refined_in_accepted} spots refined");
    assert_eq!(refined_in_rejected, 0);
    assert_eq!(summary.spots_localised, refined_in_accepted);
    assert_eq!(summary.localiser_batches_failed, 0);

    // Against the truth, on the same spots: the learned centre is closer than the centre of mass for
    // weak and medium reflections, where the centre of mass is noisy, and no worse for strong ones.
    let quality =
        hitgate::sim::SpotScore::new(&out.truth_summary, &hitgate::sink::features::read_spots(&features).unwrap(), 2.0);
    println!("{quality}");
    let median = |v: &[f32]| hitgate::sim::score::quantile(v, 0.5).unwrap();
    for bin in [1, 2] {
        let l = &quality.localisation[bin];
        assert!(l.learned.len() > 100, "bin {bin}: {} spots", l.learned.len());
        assert!(median(&l.learned) < 0.95 * median(&l.centre_of_mass), "bin {bin}\n{quality}");
    }
    let strong = &quality.localisation[3];
    assert!(median(&strong.learned) <= 1.1 * median(&strong.centre_of_mass) + 0.005, "{quality}");

    // Asked to, the localiser refines every judged frame's spots.
    let mut config = config;
    config.features.localiser.frames = hitgate::config::LocaliseFrames::All;
    common::replay(config, &out.capture);
    let rejected_with_refined = records()
        .iter()
        .filter(|r| !r["accepted"].as_bool().unwrap())
        .flat_map(|r| r["spots"].as_array().unwrap().clone())
        .filter(|s| !s["refined"].is_null())
        .count();
    assert!(rejected_with_refined > 0, "rejected frames' spots are refined too");
}

#[test]
fn a_target_accept_rate_is_held_and_the_audit_stream_samples_rejected_frames() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        common::simulated(dir.path(), &SimConfig { frames: 1200, hit_rate: 0.05, seed: 29, ..SimConfig::default() });
    let mut config = common::replay_config(&out);
    config.features.localiser.model = None;
    config.trigger.rate.target_accept_rate = Some(0.10);
    config.trigger.rate.window_frames = 200;
    config.trigger.rate.update_every_frames = 10;
    config.trigger.rate.audit_every = 20;
    config.reducer.workers = 2;
    let summary = common::replay(config, &out.capture);

    // Frames in the order they were judged; after the first window the rate is the target's.
    let text = std::fs::read_to_string(dir.path().join("replay/features.jsonl")).unwrap();
    let mut records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    records.sort_by_key(|r| r["sequence"].as_u64().unwrap());
    let settled = &records[300..];
    let rate = settled.iter().filter(|r| r["accepted"].as_bool().unwrap()).count() as f64 / settled.len() as f64;
    assert!((rate - 0.10).abs() <= 0.01, "accept rate {rate} after settling, target 0.10");
    // With 5% hits and a 10% rate, every clear hit is among the accepted.
    let verdicts = read_verdicts(&dir.path().join("replay/features.jsonl")).unwrap();
    let score = TriggerScore::new(&out.truth_summary, &verdicts, 16);
    assert_eq!(score.clear_hit_efficiency(), 1.0, "{score}");

    // 1 in 20 rejected frames is kept, flagged, in the features and in the raw index.
    let rejected = records.iter().filter(|r| !r["accepted"].as_bool().unwrap()).count() as u64;
    let audited: Vec<u64> =
        records.iter().filter(|r| r["audit"].as_bool().unwrap()).map(|r| r["frame_number"].as_u64().unwrap()).collect();
    assert_eq!(audited.len() as u64, rejected / 20);
    assert_eq!(summary.frames_audited, audited.len() as u64);
    let index = read_index(&dir.path().join("replay/raw/frames.idx")).unwrap();
    let flagged: Vec<u64> = index
        .iter()
        .filter(|r| r.flags.get() & hitgate::sink::raw::FLAG_AUDIT != 0)
        .map(|r| r.frame_number.get())
        .collect();
    assert_eq!(flagged, audited);
    assert_eq!(index.len() as u64, summary.frames_accepted + summary.frames_audited);
}
