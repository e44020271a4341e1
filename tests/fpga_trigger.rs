//! The `fpga` trigger through the whole pipeline: a simulated run replayed with the emulated card
//! judges every frame on the card, as tract's int8 model does within the quantization's error; with no
//! card (an absent XDMA device) or a card that stops answering mid-run, every frame is judged in
//! software with exactly the card's scores, and the summary says so.

mod common;

use std::collections::HashMap;
use std::path::Path;

use hitgate::config::{Config, SinkSection, TriggerKind, TriggerSection};
use hitgate::features::SpotFinderParams;
use hitgate::features::summary::SUMMARY_LEN;
use hitgate::ingest::Capture;
use hitgate::pipeline::{Pace, Plan, Progress, ReplayOptions, RunSummary};
use hitgate::sim::SimConfig;
use hitgate::sink::features::read_scores;
use hitgate::trigger::fpga::backend::FpgaTrigger;
use hitgate::trigger::{Decision, FrameFacts, Trigger};

fn config(sim: &hitgate::sim::SimOutputs, out: &Path, kind: TriggerKind, card: &str) -> Config {
    let mut config = common::replay_config(sim);
    config.trigger.kind = kind;
    config.trigger.tract.model = "builtin-int8".into();
    config.trigger.fpga.card = card.into();
    config.trigger.fpga.timeout_us = 20_000;
    // The absent XDMA card needs a manifest to be tried at all; the emulated one is as good as any.
    config.trigger.fpga.manifest =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("bitstreams/emulated/manifest.toml"));
    config.sinks = vec![SinkSection::Features(hitgate::config::FeaturesSinkSection { path: out.to_path_buf() })];
    config
}

fn scores(summary: &RunSummary, path: &Path) -> HashMap<u64, f32> {
    let s = read_scores(path).unwrap();
    assert_eq!(s.len() as u64, summary.frames_out());
    s
}

#[test]
fn the_fpga_trigger_judges_like_tract_and_falls_back_to_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 120, hit_rate: 0.3, seed: 97, ..SimConfig::default() },
    );
    let on_card = dir.path().join("card.jsonl");
    let card_run = common::replay(config(&sim, &on_card, TriggerKind::Fpga, "emulated"), &sim.capture);
    let stats = card_run.fpga.clone().unwrap();
    assert_eq!((stats.on_card, stats.in_software, stats.down.as_deref()), (120, 0, None), "{card_run}");
    assert!(card_run.to_string().contains("fpga         120 frames judged on the card, 0 in software"));
    // Replayed as fast as possible, frames queue behind the reducer and share card calls.
    assert!(stats.calls < stats.on_card, "{card_run}");

    // One frame a call: as many calls as frames, the very same scores.
    let single = dir.path().join("single.jsonl");
    let mut one_a_call = config(&sim, &single, TriggerKind::Fpga, "emulated");
    one_a_call.trigger.fpga.batch_frames = 1;
    let single_run = common::replay(one_a_call, &sim.capture);
    let stats = single_run.fpga.clone().unwrap();
    assert_eq!((stats.on_card, stats.calls), (120, 120), "{single_run}");
    assert_eq!(scores(&single_run, &single), scores(&card_run, &on_card), "batched = one a call, bit for bit");

    let tract_path = dir.path().join("tract.jsonl");
    let tract_run = common::replay(config(&sim, &tract_path, TriggerKind::Tract, "emulated"), &sim.capture);
    let (card, tract) = (scores(&card_run, &on_card), scores(&tract_run, &tract_path));
    // The card leaves out the QDQ model's requantization after each layer and quantizes the last
    // layer (`trigger::fpga::quant`): its scores sit nearer the float model's than tract's int8 ones
    // do, and differ from the latter by up to 0.09 on these frames (most by under 0.01).
    let worst = card.iter().map(|(f, s)| (s - tract[f]).abs()).fold(0f32, f32::max);
    assert!(worst <= 0.12, "card against tract int8: {worst}");
    let mut gaps: Vec<f32> = card.iter().map(|(f, s)| (s - tract[f]).abs()).collect();
    gaps.sort_by(f32::total_cmp);
    assert!(gaps[gaps.len() / 2] <= 0.01, "card against tract int8, median: {}", gaps[gaps.len() / 2]);
    assert_eq!(card_run.frames_accepted, tract_run.frames_accepted);

    // No card at all: every frame in software, the very same scores.
    let absent = dir.path().join("absent.jsonl");
    let absent_run = common::replay(config(&sim, &absent, TriggerKind::Fpga, "xdma9"), &sim.capture);
    let stats = absent_run.fpga.clone().unwrap();
    assert_eq!((stats.on_card, stats.in_software), (0, 120));
    assert!(stats.down.as_deref().unwrap_or_default().contains("/dev/xdma9_user"), "{stats:?}");
    assert_eq!(scores(&absent_run, &absent), card, "software fallback = card, bit for bit");

    // A card that stops raising done after it opened: given up after three calls, same scores.
    let stuck = dir.path().join("stuck.jsonl");
    let plan = Plan::new(config(&sim, &stuck, TriggerKind::Fpga, "emulated")).unwrap();
    plan.trigger().backend_as::<FpgaTrigger>().unwrap().emulated_card().unwrap().set_stuck_done(true);
    let capture = Capture::open(&sim.capture).unwrap();
    let stuck_run =
        plan.replay(&capture, ReplayOptions { pace: Pace::AsFastAsPossible }, &Progress::default()).unwrap();
    let stats = stuck_run.fpga.clone().unwrap();
    assert_eq!((stats.on_card, stats.in_software), (0, 120), "{stuck_run}");
    assert!(stats.down.as_deref().unwrap_or_default().contains("done never rose"), "{stats:?}");
    assert!(stuck_run.to_string().contains("card down:"), "{stuck_run}");
    assert_eq!(scores(&stuck_run, &stuck), card);
}

/// What a scorer is given of a frame that is its summary alone.
fn facts(summary: &[f32]) -> FrameFacts<'_> {
    FrameFacts { spots_found: 0, summary }
}

/// The summaries of a simulated run's frames, hits and misses.
fn summaries(n: u64, seed: u64) -> Vec<Vec<f32>> {
    let finder = SpotFinderParams::default();
    let run = SimConfig { frames: n, hit_rate: 0.5, seed, ..SimConfig::default() };
    let data = hitgate::sim::dataset::frame_dataset(&run, finder, &|_| {}).unwrap();
    data.summaries.chunks_exact(SUMMARY_LEN).map(<[f32]>::to_vec).collect()
}

#[test]
fn frames_staged_together_share_one_card_call_and_keep_their_own_scores() {
    let mut section = TriggerSection { kind: TriggerKind::Fpga, ..TriggerSection::default() };
    section.fpga.batch_frames = 8;
    // Generous: on a busy machine a call given up on would be judged in software, not on the card.
    section.fpga.timeout_us = 2_000_000;
    let trigger = Trigger::from_config(&section).unwrap();
    assert_eq!(trigger.batch_frames(), 8);
    let fpga = trigger.backend_as::<FpgaTrigger>().unwrap();
    let card = fpga.emulated_card().unwrap();
    let frames = summaries(9, 5);
    let one_by_one: Vec<Decision> = frames
        .iter()
        .enumerate()
        .map(|(i, s)| trigger.decide(trigger.scorer().unwrap().as_mut(), facts(s), i as u64))
        .collect();
    let (calls_before, _) = card.calls();

    let mut scorer = trigger.scorer().unwrap();
    for s in &frames {
        scorer.stage(s);
    }
    scorer.judge_staged();
    // Eight fit the batch, one call; the ninth was past it and is judged alone, in a call of its own.
    let batched: Vec<Decision> =
        frames.iter().enumerate().map(|(i, s)| trigger.decide_staged(scorer.as_mut(), i, facts(s), i as u64)).collect();
    assert_eq!(card.calls().0 - calls_before, 2);
    assert_eq!(batched, one_by_one);
    assert!(one_by_one.iter().any(|d| d.score != one_by_one[0].score), "distinct frames, distinct scores");
    let stats = fpga.stats();
    assert_eq!((stats.on_card, stats.calls, stats.in_software), (18, 11, 0));
}
