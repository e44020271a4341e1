//! Storage slower than the accept rate, through the whole pipeline: a sink that takes 20 ms a frame
//! behind a 4-frame queue, fed as fast as the reducers go. The run never waits on it; every frame it
//! should have taken is either written or counted as dropped; with `raise_threshold` the trigger's cut
//! rises so that fewer frames are accepted and fewer are dropped.

mod common;

use hitgate::config::{OnFull, SinkSection, TriggerKind};
use hitgate::pipeline::RunSummary;
use hitgate::sim::SimConfig;

fn run(dir: &std::path::Path, sim: &hitgate::sim::SimOutputs, on_full: OnFull) -> RunSummary {
    let mut config = common::replay_config(sim);
    config.sinks = vec![
        SinkSection::Null(hitgate::config::NullSection { write_delay_us: 20_000 }),
        SinkSection::Features(hitgate::config::FeaturesSinkSection { path: dir.join(format!("{on_full:?}.jsonl")) }),
    ];
    config.trigger.kind = TriggerKind::Spots;
    config.trigger.spots.min_spots = 1;
    config.trigger.rate.window_frames = 100;
    config.trigger.rate.update_every_frames = 10;
    config.trigger.rate.audit_every = 10;
    config.storage.queue_frames = 4;
    config.storage.on_full = on_full;
    common::replay(config, &sim.capture)
}

fn sink<'a>(summary: &'a RunSummary, name: &str) -> &'a hitgate::sink::SinkReport {
    summary.sinks.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn a_slow_sink_drops_only_counted_frames_and_backpressure_raises_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 200, hit_rate: 0.6, seed: 81, ..SimConfig::default() },
    );

    let dropping = run(dir.path(), &sim, OnFull::DropNewest);
    let slow = sink(&dropping, "null");
    let kept = dropping.frames_accepted + dropping.frames_audited;
    assert!(dropping.frames_accepted >= 80, "{dropping}");
    assert!(slow.frames_dropped_queue_full > 0, "a 20 ms sink cannot keep up: {dropping}");
    assert_eq!(slow.frames_written + slow.frames_dropped_queue_full, kept, "nothing lost silently");
    let features = sink(&dropping, "features");
    assert_eq!(features.frames_written + features.frames_dropped_queue_full, dropping.frames_out());
    assert_eq!(dropping.frames_dropped_storage, slow.frames_dropped_queue_full + features.frames_dropped_queue_full);
    assert!(dropping.storage_ceiling_min.is_none(), "drop_newest leaves the trigger alone");
    assert!(dropping.to_string().contains("frames not written: storage was behind"), "{dropping}");
    // Each frame's verdict was still written (the features say which frames were not stored).
    assert_eq!(dropping.frames_out(), 200);

    let holding = run(dir.path(), &sim, OnFull::RaiseThreshold);
    let slow = sink(&holding, "null");
    let kept = holding.frames_accepted + holding.frames_audited;
    assert_eq!(slow.frames_written + slow.frames_dropped_queue_full, kept, "nothing lost silently");
    let ceiling = holding.storage_ceiling_min.expect("storage held the accept rate down");
    assert!(ceiling < 0.5, "ceiling {ceiling}");
    assert!(
        holding.frames_accepted * 10 < dropping.frames_accepted * 8,
        "the cut rose: {} accepted against {}",
        holding.frames_accepted,
        dropping.frames_accepted
    );
    assert!(slow.frames_dropped_queue_full < sink(&dropping, "null").frames_dropped_queue_full);
    assert_eq!(holding.frames_out(), 200);
}
