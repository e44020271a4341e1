//! The learned trigger: the committed hit classifiers (float32 and int8) run by tract against
//! onnxruntime's outputs on the same inputs, and the trigger on a held-out simulated run.

mod common;

use hitgate::features::summary::SUMMARY_LEN;
use hitgate::sim::{PacketFaults, SimConfig, TriggerScore};
use hitgate::trigger::{ClassifierSource, TractTrigger};

use common::golden;

fn check(source: ClassifierSource, name: &str) {
    let g = golden(name);
    assert_eq!(g.input_shape[1], SUMMARY_LEN, "{name}: the model reads summaries of another length");
    let trigger = TractTrigger::load(&source).expect("classifier loads");
    let mut state = trigger.state().unwrap();
    let mut worst = 0f32;
    for (summary, want) in g.inputs.chunks(SUMMARY_LEN).zip(&g.outputs) {
        let got = state.hit_probability(summary).unwrap();
        worst = worst.max((got - want).abs());
    }
    assert!(
        worst <= g.tolerance,
        "{name}: tract differs from onnxruntime by up to {worst} (tolerance {})",
        g.tolerance
    );
}

#[test]
fn float_classifier_matches_onnxruntime_on_the_golden_vectors() {
    check(ClassifierSource::Builtin, "hit_classifier");
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/hit_classifier.onnx");
    check(ClassifierSource::File(file), "hit_classifier");
}

#[test]
fn int8_classifier_matches_onnxruntime_on_the_golden_vectors() {
    check(ClassifierSource::BuiltinInt8, "hit_classifier.int8");
}

/// A held-out run as a beamline sees it: 5% hits, many of them weak (crystal strength log-uniform
/// from 2 photons), solvent ring, hot pixels, a few percent of partial frames.
fn held_out(dir: &std::path::Path) -> hitgate::sim::SimOutputs {
    common::simulated(
        dir,
        &SimConfig {
            frames: 1000,
            hit_rate: 0.05,
            seed: 5150,
            faults: PacketFaults { loss: 0.0003, reorder: 0.0, duplicate: 0.0 },
            ..SimConfig::default()
        },
    )
}

#[test]
fn the_learned_trigger_keeps_the_hits_the_spots_trigger_loses() {
    let dir = tempfile::tempdir().unwrap();
    let out = held_out(dir.path());
    let partial = out.truth_summary.packets_lost;
    assert!(partial >= 20, "a few percent of frames partial: {partial} packets lost");
    let features = dir.path().join("replay/features.jsonl");
    let score = |kind: hitgate::config::TriggerKind, target: f64| {
        let mut config = common::replay_config(&out);
        config.trigger.kind = kind;
        config.trigger.rate.target_accept_rate = Some(target);
        config.trigger.rate.window_frames = 200;
        config.trigger.rate.update_every_frames = 10;
        config.features.localiser.model = None;
        let summary = common::replay(config, &out.capture);
        let verdicts = hitgate::sink::features::read_verdicts(&features).unwrap();
        (summary, TriggerScore::new(&out.truth_summary, &verdicts, 16))
    };
    // The same reduction for both: 10% of frames kept, 90% rejected.
    let (learned_run, learned) = score(hitgate::config::TriggerKind::Tract, 0.10);
    let (_, spots) = score(hitgate::config::TriggerKind::Spots, 0.10);
    println!("learned\n{learned}\nspots\n{spots}");
    let kept = learned_run.frames_accepted as f64 / learned_run.frames_out() as f64;
    assert!(kept <= 0.12, "the learned trigger kept {kept} of the frames");
    assert!(learned.efficiency() >= 0.99, "learned trigger: {learned}");
    assert!(learned.efficiency() > spots.efficiency(), "learned {learned}\nspots {spots}");
    assert_eq!(learned_run.trigger_failures, 0);
    // Frames like the training frames raise no alarm, and the target rate is held.
    assert!(learned_run.unfamiliar.is_none() && learned_run.rate_not_held.is_none(), "{learned_run}");
}

/// The records' count of blocks each frame's summary left out as persistent, by frame number.
fn persistent_ignored(features: &std::path::Path) -> std::collections::HashMap<u64, u32> {
    std::fs::read_to_string(features)
        .unwrap()
        .lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let ignored = r.get("persistent_blocks_ignored").and_then(serde_json::Value::as_u64).unwrap_or(0);
            (r["frame_number"].as_u64().unwrap(), ignored as u32)
        })
        .collect()
}

#[test]
fn an_unmasked_hot_pixel_is_not_read_as_a_reflection_once_it_persists() {
    // The default scene (five hot pixels a module) replayed without its mask, one reducer worker so
    // that one counter sees every frame in order.
    let dir = tempfile::tempdir().unwrap();
    let out =
        common::simulated(dir.path(), &SimConfig { frames: 120, hit_rate: 0.3, seed: 47, ..SimConfig::default() });
    let features = dir.path().join("replay/features.jsonl");
    let run = |ignore: bool| {
        let mut config = common::replay_config(&out);
        config.trigger.kind = hitgate::config::TriggerKind::Tract;
        config.trigger.inputs.ignore_persistent_excess = ignore;
        config.calibration.mask_file = None;
        config.reducer.workers = 1;
        config.features.localiser.model = None;
        let summary = common::replay(config, &out.capture);
        let verdicts = hitgate::sink::features::read_verdicts(&features).unwrap();
        (summary, verdicts, persistent_ignored(&features))
    };
    let truth: std::collections::HashMap<u64, bool> =
        out.truth_summary.frames.iter().map(|f| (f.frame_number, f.hit)).collect();
    let misses_kept = |verdicts: &std::collections::HashMap<u64, bool>, from: u64| {
        verdicts.iter().filter(|&(n, &kept)| *n >= from && kept && !truth[n]).count()
    };
    let first_left_out = u64::from(hitgate::features::persistent::PERSISTENT_SCORE);

    // Kept in: the hot pixels read as reflections in every frame, and most misses are kept.
    let (summary, verdicts, ignored) = run(false);
    let misses = truth.values().filter(|h| !**h).count();
    assert!(misses >= 70, "{misses} misses");
    let kept_in = misses_kept(&verdicts, 1);
    assert!(kept_in * 2 > misses, "{summary}");
    assert!(ignored.values().all(|&n| n == 0) && summary.persistent_ignored_max == 0);

    // Left out once persistent: from the eighth frame on no miss is kept, every hit still is, and the
    // records and the summary say what was left out.
    let (summary, verdicts, ignored) = run(true);
    println!(
        "misses rejected: {} of {misses} with persistent excess left out, {} with it kept in",
        misses - misses_kept(&verdicts, 1),
        misses - kept_in
    );
    assert_eq!(misses_kept(&verdicts, first_left_out), 0, "{summary}");
    assert!(verdicts.iter().all(|(n, &kept)| kept || !truth[n]), "a hit was lost:\n{summary}");
    assert!(
        ignored.iter().all(|(&n, &i)| if n < first_left_out { i == 0 } else { (5..=6).contains(&i) }),
        "{ignored:?}"
    );
    assert_eq!(summary.persistent_ignored_max, ignored.values().copied().max().unwrap());
    assert!(summary.to_string().contains("blocks a frame left out of the learned trigger's inputs"), "{summary}");
}
