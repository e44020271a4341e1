//! The FPGA trigger path on the emulated card, beside tract running the same int8 model, one frame's
//! summary at a time and in batches: latency per call (median, p99) and frames/s, with the driver's
//! share (DMA, registers, handshake) separated from the kernel's compute (timed inside the emulated
//! card). The kernel here is the HLS C++ compiled for this CPU, so its compute time says nothing of
//! the FPGA's; the cycle estimate and the published FPGA figures are in bench/RESULTS.md. Then the
//! whole pipeline: a simulated capture replayed with the card judging one frame a call and with the
//! workers' batches, beside tract, as frames/s and frames per card call.
//!
//! `cargo bench --bench fpga`

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{percentiles, us};
use hitgate::features::SpotFinderParams;
use hitgate::sim::SimConfig;
use hitgate::trigger::fpga::driver::{CardLayout, FpgaCard};
use hitgate::trigger::fpga::emulator::{EmulatedCard, Faults, INPUT_ADDRESS, OUTPUT_ADDRESS};
use hitgate::trigger::fpga::manifest::fnv1a64;
use hitgate::trigger::fpga::quant::{INPUTS, QuantClassifier};
use hitgate::trigger::tract::{BUILTIN_INT8_MODEL, ClassifierSource, TractTrigger};

fn main() {
    let finder = SpotFinderParams::default();
    let run = SimConfig { frames: 64, hit_rate: 0.3, seed: 91, ..SimConfig::default() };
    let data = hitgate::sim::dataset::frame_dataset(&run, finder, &|_| {}).unwrap();
    let summaries: Vec<&[f32]> = data.summaries.chunks_exact(INPUTS).collect();
    let q = QuantClassifier::from_onnx(BUILTIN_INT8_MODEL).unwrap();
    let quantized: Vec<[i8; INPUTS]> = summaries
        .iter()
        .map(|s| {
            let mut x = [0i8; INPUTS];
            q.quantize_input(s, &mut x);
            x
        })
        .collect();
    let rounds = 200;
    println!(
        "{} simulated frame summaries, {rounds} rounds; one core for the host, one for the emulated card",
        summaries.len()
    );
    println!("{:<44} {:>10} {:>10} {:>12}", "path", "p50 µs", "p99 µs", "frames/s");
    let row = |name: &str, per_call: Vec<Duration>, frames_per_call: usize| {
        let total: Duration = per_call.iter().sum();
        let calls = per_call.len();
        let (p50, p99) = percentiles(per_call);
        println!(
            "{name:<44} {:>10.2} {:>10.2} {:>12.0}",
            us(p50),
            us(p99),
            (calls * frames_per_call) as f64 / total.as_secs_f64()
        );
    };

    let mut tract = TractTrigger::load(&ClassifierSource::BuiltinInt8).unwrap().state().unwrap();
    let mut times = Vec::new();
    for _ in 0..rounds {
        for s in &summaries {
            times.push(common::time(|| black_box(tract.hit_probability(black_box(s)).unwrap())).1);
        }
    }
    row("tract int8, one frame a call", times, 1);

    let mut times = Vec::new();
    for _ in 0..rounds {
        for s in &summaries {
            times.push(common::time(|| black_box(q.score(black_box(s)))).1);
        }
    }
    row("Rust model of the kernel, one frame", times, 1);

    let dir = tempfile::tempdir().unwrap();
    let card = EmulatedCard::start(dir.path(), Faults::default()).unwrap();
    let layout = CardLayout { input_address: INPUT_ADDRESS, output_address: OUTPUT_ADDRESS };
    let mut fpga = FpgaCard::open(card.paths(), layout, fnv1a64(BUILTIN_INT8_MODEL), Duration::from_secs(1)).unwrap();
    for batch in [1usize, 16, 64] {
        let mut logits = vec![0i64; batch];
        let mut x = [0i8; INPUTS];
        let (calls0, kernel0) = card.calls();
        let mut times = Vec::new();
        for _ in 0..rounds {
            for (k, chunk) in summaries.chunks(batch).enumerate() {
                // The host's part counts: quantizing the summaries goes with every call.
                let t = common::time(|| {
                    let inputs: Vec<[i8; INPUTS]> = chunk
                        .iter()
                        .map(|s| {
                            q.quantize_input(s, &mut x);
                            x
                        })
                        .collect();
                    fpga.judge(&inputs, &mut logits[..chunk.len()]).unwrap();
                })
                .1;
                times.push(t);
                if k == 0 {
                    assert_eq!(logits[0], q.logit_accumulator(&quantized[0]), "bit for bit");
                }
            }
        }
        let (calls1, kernel1) = card.calls();
        let kernel_per_call = (kernel1 - kernel0) / (calls1 - calls0) as u32;
        let (p50, _) = percentiles(times.clone());
        row(&format!("emulated card, batches of {batch}"), times, batch);
        println!(
            "{:<44} kernel {:.2} µs a call; host quantizing, DMA, registers, handshake {:.2} µs (median call)",
            "",
            us(kernel_per_call),
            us(p50.saturating_sub(kernel_per_call))
        );
    }
    pipeline();
}

/// Replays a simulated capture through the whole pipeline (two reducer workers, features sink) with
/// each trigger path; three rounds each, the median.
fn pipeline() {
    use hitgate::config::{Config, SinkSection, TriggerKind};
    use hitgate::ingest::Capture;
    use hitgate::pipeline::{Pace, Plan, Progress, ReplayOptions};

    let frames = 300;
    let (dir, sim) = common::simulated(&SimConfig { frames, hit_rate: 0.3, seed: 92, ..SimConfig::default() });
    let capture = Capture::open(&sim.capture).unwrap();
    println!();
    println!("pipeline replay of {frames} JUNGFRAU module frames, 2 reducer workers, features sink (median of 3)");
    println!("{:<44} {:>10} {:>12} {:>14}", "trigger", "frames/s", "card calls", "frames a call");
    for (name, kind, batch) in [
        ("tract int8", TriggerKind::Tract, 1),
        ("emulated card, one frame a call", TriggerKind::Fpga, 1),
        ("emulated card, batches up to 64", TriggerKind::Fpga, 64),
    ] {
        let mut rates = Vec::new();
        let mut calls = (0, 0);
        for round in 0..3 {
            let mut config = Config::load(&sim.replay_config).unwrap();
            config.trigger.kind = kind;
            config.trigger.tract.model = "builtin-int8".into();
            config.trigger.fpga.batch_frames = batch;
            config.reducer.workers = 2;
            config.sinks = vec![SinkSection::Features(hitgate::config::FeaturesSinkSection {
                path: dir.path().join(format!("features-{round}.jsonl")),
            })];
            let plan = Plan::new(config).unwrap();
            let (summary, t) = common::time(|| {
                plan.replay(&capture, ReplayOptions { pace: Pace::AsFastAsPossible }, &Progress::default()).unwrap()
            });
            assert_eq!(summary.frames_out(), frames);
            rates.push(frames as f64 / t.as_secs_f64());
            if let Some(f) = summary.fpga {
                calls = (f.calls, f.on_card);
            }
        }
        rates.sort_by(f64::total_cmp);
        let per_call = if calls.0 > 0 { format!("{:.1}", calls.1 as f64 / calls.0 as f64) } else { "-".into() };
        let calls = if calls.0 > 0 { calls.0.to_string() } else { "-".into() };
        println!("{name:<44} {:>10.0} {calls:>12} {per_call:>14}", rates[1]);
    }
}
