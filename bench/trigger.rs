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
use hitgate::features::summary::{Diffraction, SUMMARY_LEN, SummaryCounter, SummaryPlan};
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
    let image = hitgate::detector::PanelImage::for_geometry(&geometry, true);
    let (rows, cols) = image.shape();
    let diffraction = Diffraction {
        beam_px: config.beam_center_px(),
        distance_mm: config.detector.distance_mm(),
        pixel_mm: 0.075,
        photon_energy_kev: config.detector.photon_energy_kev(),
    };
    // As the reducer makes it by default: blocks that stand out in most frames left out.
    let plan = SummaryPlan::new(&[(0, 0)], rows, cols, &diffraction).ignoring_persistent(true);
    let mut counter = SummaryCounter::new(&plan);
    let mut raw_photons = vec![0f32; 512 * 1024];
    let assembled: Vec<Vec<f32>> = frames
        .iter()
        .map(|f| {
            conv.jungfrau_photons(f.pixels_u16(), 0, &mut raw_photons);
            let mut out = vec![0f32; image.pixels()];
            image.assemble(&raw_photons, &mut out);
            out
        })
        .collect();
    // The same frames under a real module's background (3 photons a pixel more, Poisson): the
    // histogram's bins spread, which is where its cost could grow.
    let mut rng = hitgate::rng::Rng::new(9, 9);
    let bright: Vec<Vec<f32>> =
        assembled.iter().map(|f| f.iter().map(|&p| p + rng.poisson(3.0) as f32).collect()).collect();
    let mut summaries = Vec::new();
    println!("learned trigger, one JUNGFRAU module frame (assembled, 514 x 1030), {} frames", frames.len());
    // The reducer summarises a frame it has just converted into its working image, so each frame is
    // first copied into one such image (as the conversion would leave it in the cache).
    let mut working = vec![0f32; image.pixels()];
    for (name, set) in [("simulated background", &assembled), ("3 photons a pixel more", &bright)] {
        let (mut times, mut limit) = (Vec::new(), Vec::new());
        for round in 0..10 {
            for f in set {
                working.copy_from_slice(f);
                // The limit: one pass reading the image (its bits summed as integers, which vectorises:
                // the same loads, no work).
                let read = || black_box(&working).iter().fold(0u32, |a, v| a.wrapping_add(v.to_bits()));
                let (_, t) = common::time(|| black_box(read()));
                limit.push(t);
                let (_, t) = common::time(|| {
                    counter.clear();
                    counter.add_panel(&plan, 0, black_box(&working));
                    let mut s = [0f32; SUMMARY_LEN];
                    counter.finish(&plan, &mut s);
                    black_box(s);
                });
                times.push(t);
                if round == 0 && summaries.len() < frames.len() {
                    let mut s = vec![0f32; SUMMARY_LEN];
                    counter.finish(&plan, &mut s);
                    summaries.push(s);
                }
            }
        }
        let ((s50, s99), (l50, _)) = (percentiles(times), percentiles(limit));
        println!(
            "frame summary (resolution shells, {name:<24})  median {:7.1} µs  p99 {:7.1} µs  | limit pass (read the image) \
             {:6.1} µs: ratio {:.2}",
            us(s50),
            us(s99),
            us(l50),
            s50.as_secs_f64() / l50.as_secs_f64()
        );
    }

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
