//! What a trigger backend is. A backend is one file: its config section (`[trigger.<name>]`, a
//! [`BackendSection`]), the prepared backend shared by every worker (a [`Backend`], built once at
//! start: models loaded, cards opened) and one [`Scorer`] per worker thread (run state, batch room).
//! `trigger::kinds` lists the backends; the rate control and the retune API are the same for all.

use std::any::Any;
use std::fmt;
use std::path::Path;

use super::{RetuneError, TriggerError};
use crate::section::Problems;

/// How a backend's cut is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutUnit {
    /// Spots a frame needs: a whole number (`min_spots`), so scores tie and the rate control spreads
    /// them.
    Spots,
    /// A score, such as a hit probability (`threshold`).
    Score,
}

impl CutUnit {
    /// The config value that puts the cut at `threshold`: spot counts are whole numbers, so the cut
    /// is the smallest count at or above it.
    pub fn setting(self, threshold: f32) -> toml::Value {
        match self {
            CutUnit::Spots => (threshold.ceil().max(1.0) as i64).into(),
            CutUnit::Score => f64::from(threshold).into(),
        }
    }

    /// How far tied scores are spread (see `trigger::rate`).
    pub fn tie_spread(self) -> f32 {
        match self {
            CutUnit::Spots => 1.0,
            CutUnit::Score => 0.0,
        }
    }
}

/// A cut as a backend's section configures it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfiguredCut {
    /// The key under the backend's section (`min_spots`, `threshold`).
    pub key: &'static str,
    pub value: f32,
    pub unit: CutUnit,
}

/// A backend's config section.
pub trait BackendSection {
    /// Every problem of the section, with its key path under `path` (`trigger.<name>`).
    fn validate(&self, path: &str, problems: &mut Problems);

    /// Paths relative to the config file are taken from its folder.
    fn resolve_paths(&mut self, _base: &Path) {}

    /// The backend, prepared: models loaded, checked and optimised, cards opened.
    ///
    /// # Errors
    /// What the backend cannot be prepared without (a model, a manifest).
    fn prepare(&self) -> Result<Box<dyn Backend>, TriggerError>;

    /// The cut as configured; `None` for a backend that keeps every frame.
    fn cut(&self) -> Option<ConfiguredCut>;

    /// Whether its backend reads the frame's summary (`features::summary`), and so the rings
    /// around the beam centre.
    fn reads_summary(&self) -> bool {
        false
    }
}

/// A prepared backend, shared by the workers.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A worker's own scorer.
    ///
    /// # Errors
    /// The backend's runtime cannot make one.
    fn scorer(&self) -> Result<Box<dyn Scorer>, TriggerError>;

    /// How its cut is counted; `None` when it keeps every frame (no cut).
    fn cut_unit(&self) -> Option<CutUnit>;

    /// Whether it reads the frame's summary (`features::summary`).
    fn reads_summary(&self) -> bool {
        false
    }

    /// The range its training inputs held, when it knows it (a learned model with its ranges).
    fn input_ranges(&self) -> Option<std::sync::Arc<super::familiar::InputRanges>> {
        None
    }

    /// The most frames a worker should stage before judging them together.
    fn batch_frames(&self) -> usize {
        1
    }

    /// Refuses a cut it cannot take (more spots than its upper limit, say).
    ///
    /// # Errors
    /// The cut accepts everything or nothing.
    fn check_cut(&self, _cut: f32) -> Result<(), RetuneError> {
        Ok(())
    }

    /// The backend as itself, for what only one kind has (the FPGA card's statistics).
    fn as_any(&self) -> &dyn Any;
}

/// What a scorer is given of a frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameFacts<'a> {
    pub spots_found: u32,
    /// The frame's summary; empty when the backend does not read one.
    pub summary: &'a [f32],
}

/// A backend's judgement of one frame, before the rate control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Score {
    /// Accepted when it reaches the cut.
    Value(f32),
    /// Never accepted, whatever the cut (more spots than a crystal gives).
    Vetoed(f32),
    /// Accepted whatever the cut (a backend without one).
    Kept(f32),
    /// The backend could not judge the frame: it is kept, so no hit is lost, and counted.
    Failed,
}

/// One worker's scorer. Frames may be judged one at a time ([`Scorer::score`] with no staged index),
/// or staged, judged together in one call and then scored by their index in the stage.
pub trait Scorer: Send {
    /// Stages a frame's summary for the next [`Scorer::judge_staged`]. At most
    /// [`Backend::batch_frames`] frames are staged between two judgements.
    fn stage(&mut self, _summary: &[f32]) {}

    /// Judges the staged frames together.
    fn judge_staged(&mut self) {}

    /// The score of a frame: the `index`th of those staged before the last judgement, or judged
    /// alone now when `staged` is `None` (or the frame did not fit in the stage).
    fn score(&mut self, frame: FrameFacts<'_>, staged: Option<usize>) -> Score;
}
