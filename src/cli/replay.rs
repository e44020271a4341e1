//! `hitgate replay`: a capture through assembly, trigger and sinks, at its recorded pace or as fast as
//! possible, with the trigger's efficiency against a simulator's truth when one is given.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use hitgate::config::{Config, SinkSection, TriggerKind};
use hitgate::ingest::Recording;
use hitgate::pipeline::{Pace, Plan, Progress, ReplayOptions, RunSummary};
use hitgate::sim::{RunTruth, SpotScore, TriggerScore};

use super::out::{say, show};
use super::progress::{replay_line, while_running};
use super::{Exit, as_node, damaged_input, describe, load_config};

#[derive(Args)]
pub struct ReplayArgs {
    /// A packet capture (pcap, pcapng), or an slsReceiver run by its master file (`…_master_0.json`).
    capture: PathBuf,
    #[arg(long)]
    config: PathBuf,
    /// Replay at the recorded pace times this factor instead of as fast as possible.
    #[arg(long)]
    speed: Option<f64>,
    /// A simulator truth file: report the trigger's efficiency and rejection against it.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Judge with this trigger instead of the config's.
    #[arg(long, value_enum)]
    trigger: Option<TriggerKind>,
    /// Hold this fraction of frames accepted instead of the config's cut.
    #[arg(long)]
    target_rate: Option<f64>,
    /// Run as this node of the config's `[cluster]`: only its modules, verdicts from the builder.
    #[arg(long)]
    node: Option<String>,
}

pub fn run(args: ReplayArgs) -> Result<()> {
    let path = &args.config;
    let mut config = as_node(load_config(path)?, args.node.as_deref(), path)?;
    if let Some(kind) = args.trigger {
        config.trigger.kind = kind;
    }
    if args.target_rate.is_some() {
        config.trigger.rate.target_accept_rate = args.target_rate;
    }
    let config =
        config.validated().map_err(|e| Exit { code: 3, message: format!("{}: {}", path.display(), describe(&e)) })?;
    // A truth file that cannot be read is said before the replay, not after it.
    let truth = args.truth.as_deref().map(load_truth).transpose()?;
    let pace = match args.speed {
        Some(s) if s > 0.0 && s.is_finite() => Pace::Recorded { speed: s },
        Some(s) => anyhow::bail!("--speed {s}: must be a positive factor"),
        None => Pace::AsFastAsPossible,
    };
    let summary = replay(config.clone(), &args.capture, pace)?;
    show!("{summary}");
    if let Some(truth) = &truth {
        report_truth(&config, truth)?;
    }
    damaged_input(&summary)
}

/// Replays `recording` (a capture, an slsReceiver run, or a NeXus run hitgate stored) with
/// `config`, showing how far it is.
pub fn replay(config: Config, recording: &Path, pace: Pace) -> Result<RunSummary> {
    #[cfg(feature = "hdf5")]
    if hitgate::sink::hdf5::inspect::is_hdf5(recording) {
        use hitgate::sink::hdf5::recorded::RecordedRun;
        let run = RecordedRun::open(recording).map_err(|e| Exit { code: 4, message: describe(&e) })?;
        let plan = Plan::new(config).context("preparing the pipeline")?;
        let progress = Progress::default();
        return while_running(
            || replay_line(&progress),
            || plan.replay_stored(&run, ReplayOptions { pace }, &progress),
        )
        .with_context(|| format!("replaying {}", recording.display()));
    }
    let rec = Recording::open(recording).map_err(|e| Exit { code: 4, message: describe(&e) })?;
    let plan = Plan::new(config).context("preparing the pipeline")?;
    let progress = Progress::default();
    while_running(|| replay_line(&progress), || plan.replay_recording(&rec, ReplayOptions { pace }, &progress))
        .with_context(|| format!("replaying {}", recording.display()))
}

/// A simulator's truth file.
pub fn load_truth(path: &Path) -> Result<RunTruth> {
    RunTruth::load(path).map_err(|e| Exit { code: 2, message: format!("--truth: {}", describe(&e)) }.into())
}

/// The trigger's and the spot finder's scores against a simulator's truth, read from the run's
/// features sink.
pub fn report_truth(config: &Config, truth: &RunTruth) -> Result<()> {
    let features = config.sinks.iter().find_map(|s| match s {
        SinkSection::Features(f) => Some(f.path.clone()),
        _ => None,
    });
    let Some(features) = features else {
        anyhow::bail!("--truth needs a features sink in the config to read the verdicts from");
    };
    let verdicts =
        hitgate::sink::features::read_verdicts(&features).with_context(|| format!("reading {}", features.display()))?;
    let clear = 2 * config.trigger.spots.min_spots;
    say!("{}", TriggerScore::new(truth, &verdicts, clear));
    say!(
        "             (clear hit: at least {clear} spots of ≥ {} photons on the detector)",
        hitgate::sim::run::VISIBLE_SPOT_PHOTONS
    );
    if truth.frames.iter().any(|f| !f.reflections.is_empty()) {
        let in_image = hitgate::sink::features::read_spots(&features)
            .with_context(|| format!("reading {}", features.display()))?;
        say!("{}", SpotScore::new(truth, &in_image, 2.0));
        say!(
            "             (at most features.max_spots_recorded = {} spots are recorded per frame)",
            config.features.max_spots_recorded
        );
    }
    Ok(())
}
