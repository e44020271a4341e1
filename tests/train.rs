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
