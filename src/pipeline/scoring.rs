//! Every frame of a capture scored by a config's trigger, for choosing its cut offline (`hitgate
//! tune`): the capture replayed as fast as possible into one features sink in a scratch folder, the
//! rate control at the configured cut, the localiser off (it changes no score).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Pace, PipelineError, Plan, Progress, ReplayOptions, RunSummary};
use crate::config::{Config, FeaturesSinkSection, RateSection, SinkSection};
use crate::ingest::Capture;

/// A capture's frames and their scores.
pub struct ScoredRun {
    pub summary: RunSummary,
    /// Frame number → score, for every judged (not dark) frame.
    pub scores: HashMap<u64, f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("scratch folder {path}")]
    Scratch { path: PathBuf, source: std::io::Error },
    #[error("reading the scores back from {path}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Scores every frame of `capture` with `config`'s trigger.
///
/// # Errors
/// The pipeline cannot be prepared or fails, or the scratch folder cannot be used.
pub fn score_capture(config: &Config, capture: &Capture, progress: &Progress) -> Result<ScoredRun, ScoringError> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let scratch = std::env::temp_dir().join(format!(
        "hitgate-scores-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&scratch).map_err(|source| ScoringError::Scratch { path: scratch.clone(), source })?;
    let features = scratch.join("features.jsonl");
    let mut scoring = config.clone();
    scoring.sinks = vec![SinkSection::Features(FeaturesSinkSection { path: features.clone() })];
    scoring.features.localiser.model = None;
    scoring.trigger.rate = RateSection::default();
    let scored = Plan::new(scoring)
        .and_then(|plan| plan.replay(capture, ReplayOptions { pace: Pace::AsFastAsPossible }, progress))
        .map_err(ScoringError::from)
        .and_then(|summary| {
            let scores = crate::sink::features::read_scores(&features)
                .map_err(|source| ScoringError::Read { path: features.clone(), source })?;
            Ok(ScoredRun { summary, scores })
        });
    // The scratch folder goes whatever happened; failing to remove it loses nothing.
    let _ = std::fs::remove_dir_all(&scratch);
    scored
}
