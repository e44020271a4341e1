//! The learned trigger on one JUNGFRAU module frame, one core: the frame summary it reads, and the
//! classifier step in tract (float32 and int8), per frame as median and p99 — beside onnxruntime
//! running the same models on the same summaries with one thread in the same run (through
//! `bench/ort_trigger.py` in the training environment; set `HITGATE_TRAIN_VENV`, default
//! `/var/tmp/hitgate-train/venv`, or it is left out and said so).
//!
//! `cargo bench --bench trigger`

#[path = "common.rs"]
mod common;

use std::hint::black_box;

use common::{percentiles, simulated, us};
use hitgate::features::summary::{SUMMARY_LEN, SummaryCounter, SummaryPlan};
use hitgate::sim::SimConfig;
use hitgate::trigger::{ClassifierSource, TractTrigger};

fn main() {
    let frames = 60;
    let (_dir, out) = simulated(&SimConfig { frames, hit_rate: 0.3, seed: 23, ..SimConfig::default() });
    let config = hitgate::config::Config::load(&out.replay_config).unwrap();
    let geometry = config.geometry().unwrap();
    let frames = common::assembled(&out.capture, &geometry, frames as usize, 512);
    let maps = hitgate::calib::CalibrationMaps::load(&out.calibration, 512 * 1024).unwrap();
    let conv = hitgate::calib::PhotonConverter::new(&maps, 12.4);
    let plan = SummaryPlan::new(&[(0, 0)], 512, 1024, config.beam_center_px());
    let mut counter = SummaryCounter::new(&plan);
    let mut photons = vec![0f32; 512 * 1024];
    let mut summaries = Vec::new();
    let mut times = Vec::new();
    for round in 0..10 {
        for f in &frames {
            conv.jungfrau_photons(f.pixels_u16(), 0, &mut photons);
            let (_, t) = common::time(|| {
                counter.clear();
                counter.add_panel(&plan, 0, black_box(&photons));
            });
            times.push(t);
            if round == 0 {
                let mut s = vec![0f32; SUMMARY_LEN];
                counter.finish(&plan, f.features().spots_found, &[], &mut s);
                summaries.push(s);
            }
        }
    }
    let (s50, s99) = percentiles(times);
    println!("learned trigger, one JUNGFRAU module frame, {} frames", frames.len());
    println!("frame summary (2x2 blocks by photons, 8 rings)  median {:7.1} µs  p99 {:7.1} µs", us(s50), us(s99));

    let inputs = tempfile::NamedTempFile::new().unwrap();
    let flat: Vec<f32> = summaries.iter().flatten().copied().collect();
    hitgate::sim::npy::write_f32(inputs.path(), &[summaries.len(), SUMMARY_LEN], &flat).unwrap();
    let rounds = 50;
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for (name, source, file) in [
        ("float32", ClassifierSource::Builtin, "hit_classifier.onnx"),
        ("int8", ClassifierSource::BuiltinInt8, "hit_classifier.int8.onnx"),
    ] {
        let trigger = TractTrigger::load(&source).unwrap();
        let mut state = trigger.state().unwrap();
        for s in &summaries {
            black_box(state.hit_probability(s).unwrap());
        }
        let mut samples = Vec::new();
        for _ in 0..rounds {
            for s in &summaries {
                samples.push(common::time(|| black_box(state.hit_probability(s).unwrap())).1);
            }
        }
        let (t50, t99) = percentiles(samples);
        let ort = onnxruntime(&models.join(file), inputs.path(), rounds);
        match ort {
            Some((o50, o99, version)) => println!(
                "classifier {name:<8} tract median {:6.2} µs  p99 {:6.2} µs  ({:.0} frames/s) | {version} median {o50:6.2} µs  p99 {o99:6.2} µs | tract / onnxruntime: median {:.2}, p99 {:.2}  budget p99 100 µs",
                us(t50),
                us(t99),
                1e6 / us(t50),
                us(t50) / o50,
                us(t99) / o99
            ),
            None => println!(
                "classifier {name:<8} tract median {:6.2} µs  p99 {:6.2} µs  ({:.0} frames/s) | onnxruntime not measured (no training environment)",
                us(t50),
                us(t99),
                1e6 / us(t50)
            ),
        }
    }
}

/// onnxruntime's median and p99 (µs) on the same inputs, from the training environment's Python.
fn onnxruntime(model: &std::path::Path, inputs: &std::path::Path, rounds: usize) -> Option<(f64, f64, String)> {
    let venv = std::env::var("HITGATE_TRAIN_VENV").unwrap_or_else(|_| "/var/tmp/hitgate-train/venv".into());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/ort_trigger.py");
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(script)
        .arg(model)
        .arg(inputs)
        .arg(rounds.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let (p50, p99) = (words.next()?.parse().ok()?, words.next()?.parse().ok()?);
    Some((p50, p99, words.collect::<Vec<_>>().join(" ")))
}
