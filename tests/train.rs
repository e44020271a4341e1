//! Retraining the learned trigger on site, from the command line: a recorded run summarised and
//! labelled (`hitgate dataset frames --capture`), the classifier trained from the installed binary
//! (`hitgate train classifier`), and its config taken by `hitgate tune` at once.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn hitgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hitgate")).args(args).output().expect("hitgate runs")
}

fn ok(o: Output) -> String {
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{said}");
    said
}

/// A simulated run of `frames` frames in `dir` (of the detector `like` describes, when given: its
/// pedestals and gains), summarised into `dir/frames` labelled by peakfinder8.
fn labelled_run(dir: &Path, frames: &str, seed: &str, like: Option<&Path>) {
    let d = dir.to_str().unwrap();
    let mut args = vec!["simulate", "--out", d, "--frames", frames, "--hit-rate", "0.4", "--seed", seed];
    if let Some(config) = like {
        args.extend(["--config", config.to_str().unwrap()]);
    }
    ok(hitgate(&args));
    let said = ok(hitgate(&[
        "dataset",
        "frames",
        "--capture",
        &format!("{d}/run.pcap"),
        "--config",
        &format!("{d}/replay.toml"),
        "--label-by",
        "peakfinder8",
        "--hit-min-spots",
        "8",
        "--miss-max-spots",
        "1",
        "--out",
        &format!("{d}/frames"),
    ]));
    assert!(said.contains("frame summaries of"), "{said}");
}

#[test]
fn a_recorded_run_retrains_the_classifier_and_tune_takes_the_result() {
    let Some(python) = common::python_with("jax, optax, onnx, onnxruntime") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (train, held_out) = (dir.path().join("train"), dir.path().join("held-out"));
    labelled_run(&train, "160", "41", None);
    // Another run of the same detector (its own calibration): the one the model is for.
    labelled_run(&held_out, "80", "42", Some(&train.join("replay.toml")));
    let models = dir.path().join("models");
    let said = ok(hitgate(&[
        "train",
        "classifier",
        "--data",
        train.join("frames").to_str().unwrap(),
        "--test",
        held_out.join("frames").to_str().unwrap(),
        "--out",
        models.to_str().unwrap(),
        "--epochs",
        "30",
        "--config",
        train.join("replay.toml").to_str().unwrap(),
        "--python",
        python.to_str().unwrap(),
    ]));
    for file in ["hit_classifier.onnx", "hit_classifier.int8.onnx", "hit_classifier.inputs.json"] {
        assert!(models.join(file).is_file(), "{file} missing:\n{said}");
    }
    let trained = train.join("replay.trained.toml");
    let text = std::fs::read_to_string(&trained).unwrap();
    assert!(text.contains("kind = \"tract\"") && text.contains("hit_classifier.onnx"), "{text}");
    // The held-out run tuned with the new model at once, and its hits separated from its misses.
    let said = ok(hitgate(&[
        "tune",
        held_out.join("run.pcap").to_str().unwrap(),
        "--config",
        trained.to_str().unwrap(),
        "--target-rate",
        "0.4",
        "--truth",
        held_out.join("truth.json").to_str().unwrap(),
        "--svg",
        dir.path().join("tune.svg").to_str().unwrap(),
    ]));
    println!("{said}");
    let chosen = said.lines().find(|l| l.starts_with("chosen")).unwrap_or_else(|| panic!("{said}"));
    let kept: f64 = chosen.split("% of hits kept").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    // Labels from spot counts cannot teach the weakest hits (fewer than 8 spots): most, not all.
    assert!(kept >= 75.0, "{chosen}");
    // Its own kind of frames are familiar to it.
    assert!(!said.contains("unfamiliar inputs"), "{said}");
    // Without the training wheels it refuses with the command that installs them.
    let o = hitgate(&[
        "train",
        "classifier",
        "--data",
        "a",
        "--test",
        "b",
        "--out",
        "c",
        "--python",
        "/nonexistent/python",
    ]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && said.contains("pip install jax=="), "{said}");
}

/// `frames` (a recording's labelled frames) of numbers in `range`, as a training folder.
fn subset(frames: &hitgate::pipeline::LabelledFrames, range: std::ops::RangeInclusive<u64>, out: &Path) {
    let len = hitgate::features::summary::SUMMARY_LEN;
    let mut data = hitgate::sim::dataset::FrameDataset::default();
    for (i, _) in frames.frame_numbers.iter().enumerate().filter(|(_, n)| range.contains(n)) {
        data.summaries.extend_from_slice(&frames.summaries[i * len..(i + 1) * len]);
        data.hit.push(f32::from(u8::from(frames.hit[i])));
        data.strength.push(f32::NAN);
        data.visible_spots.push(f32::NAN);
        data.detectable_spots.push(f32::NAN);
        data.spots_found.push(frames.label_spots[i] as f32);
    }
    data.save(out).unwrap();
}

#[test]
fn retrained_on_half_a_held_out_capture_it_holds_on_the_other_half() {
    use hitgate::ingest::Recording;
    use hitgate::pipeline::{LabelRule, label_recording};
    let Some(python) = common::python_with("jax, optax, onnx, onnxruntime") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // The matrix's 60 mm run, 600 frames: its first half is the site's own labelled data.
    ok(hitgate(&["simulate", "--held-out", "2", "--frames", "600", "--out", d]));
    let config = hitgate::config::Config::load(&dir.path().join("replay.toml")).unwrap();
    let recording = Recording::open(&dir.path().join("run.pcap")).unwrap();
    let conservative = LabelRule { hit_min_spots: 8, miss_max_spots: 1 };
    let labelled = label_recording(&config, &recording, conservative).unwrap();
    let (train, test) = (dir.path().join("train"), dir.path().join("test"));
    subset(&labelled, 1..=300, &train);
    subset(&labelled, 301..=600, &test);
    let models = dir.path().join("models");
    let (t, h, m) = (train.to_str().unwrap(), test.to_str().unwrap(), models.to_str().unwrap());
    ok(hitgate(&["train", "classifier", "--data", t, "--test", h, "--out", m, "--python", python.to_str().unwrap()]));
    // Judged against the truth on the other half: every frame, usable hits against misses.
    let every = LabelRule { hit_min_spots: 1, miss_max_spots: 0 };
    let all = label_recording(&config, &recording, every).unwrap();
    let source = hitgate::trigger::ClassifierSource::File(models.join("hit_classifier.onnx"));
    let mut state = hitgate::trigger::TractTrigger::load(&source).unwrap().state().unwrap();
    let truth = hitgate::sim::RunTruth::load(&dir.path().join("truth.json")).unwrap();
    let usable = hitgate::sim::run::USABLE_HIT_SPOTS;
    let len = hitgate::features::summary::SUMMARY_LEN;
    let (mut scores, mut hits) = (Vec::new(), Vec::new());
    for (i, n) in all.frame_numbers.iter().enumerate().filter(|(_, n)| **n > 300) {
        let f = &truth.frames[(*n - 1) as usize];
        if f.hit && f.detectable_spots < usable {
            continue;
        }
        scores.push(f64::from(state.hit_probability(&all.summaries[i * len..(i + 1) * len]).unwrap()));
        hits.push(f.hit);
    }
    let (kept, rejected, share) = common::at_rejection(&scores, &hits, 0.97);
    let n_hits = hits.iter().filter(|h| **h).count();
    println!(
        "retrained on frames 1-300 (labelled by peakfinder8), judged on 301-600: {:.1}% of {n_hits} usable hits kept, \
         {:.1}% of misses rejected, {:.1}% of frames kept",
        100.0 * kept,
        100.0 * rejected,
        100.0 * share
    );
    assert!(n_hits >= 40 && kept >= 0.95, "{kept} of {n_hits} usable hits");
}

#[test]
fn a_runs_audit_frames_become_negatives_where_the_rule_would_leave_them_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hitgate::sim::SimConfig { frames: 120, hit_rate: 0.4, seed: 43, ..hitgate::sim::SimConfig::default() };
    let out = common::simulated(dir.path(), &cfg);
    // The run as it was judged: the spots trigger, every second rejected frame kept for the audit.
    let mut config = common::replay_config(&out);
    config.features.localiser.model = None;
    config.trigger.rate.audit_every = 2;
    common::replay(config, &out.capture);
    let records = dir.path().join("replay/features.jsonl");
    let audit = hitgate::sink::features::read_audit_frames(&records).unwrap();
    assert!(audit.len() >= 20, "{} audit frames", audit.len());
    let label = |with_audit: bool| {
        let (capture, replay) = (out.capture.to_str().unwrap(), out.replay_config.to_str().unwrap());
        let folder = dir.path().join(if with_audit { "with" } else { "without" });
        let mut args = vec!["dataset", "frames", "--capture", capture, "--config", replay, "--label-by", "peakfinder8"];
        // A wide gap between the limits: many rejected frames fall in it.
        args.extend(["--hit-min-spots", "60", "--miss-max-spots", "0", "--out", folder.to_str().unwrap()]);
        if with_audit {
            args.extend(["--audit-records", records.to_str().unwrap()]);
        }
        let said = ok(hitgate(&args));
        let number = |before: &str| -> u64 {
            let at = said.find(before).unwrap_or_else(|| panic!("{said}"));
            said[..at].split_whitespace().last().unwrap().trim_start_matches('(').parse().unwrap()
        };
        (number(" misses"), number(" left out between"), said)
    };
    let (misses, left_out, _) = label(false);
    let (misses_audit, left_out_audit, said) = label(true);
    println!("{said}");
    let gained = misses_audit - misses;
    assert!(gained > 0 && gained == left_out - left_out_audit, "{said}");
    assert!(said.contains(&format!("audit frames below the hit limit: {gained})")), "{said}");
}
