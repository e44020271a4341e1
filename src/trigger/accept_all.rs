//! The trigger that keeps every frame (commissioning, calibration runs): no cut, nothing to tune; a
//! frame's score is its spot count, for the record. `[trigger.accept_all]` takes no keys.

use std::any::Any;

use serde::{Deserialize, Serialize};

use super::TriggerError;
use super::backend::{Backend, BackendSection, ConfiguredCut, CutUnit, FrameFacts, Score, Scorer};
use crate::section::Problems;

/// `[trigger.accept_all]`: nothing to set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcceptAllSection {}

impl BackendSection for AcceptAllSection {
    fn validate(&self, _path: &str, _problems: &mut Problems) {}

    fn prepare(&self) -> Result<Box<dyn Backend>, TriggerError> {
        Ok(Box::new(AcceptAll))
    }

    fn cut(&self) -> Option<ConfiguredCut> {
        None
    }
}

/// The backend.
#[derive(Clone, Copy, Debug)]
pub struct AcceptAll;

impl Backend for AcceptAll {
    fn scorer(&self) -> Result<Box<dyn Scorer>, TriggerError> {
        Ok(Box::new(AcceptAll))
    }

    fn cut_unit(&self) -> Option<CutUnit> {
        None
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Scorer for AcceptAll {
    fn score(&mut self, frame: FrameFacts<'_>, _staged: Option<usize>) -> Score {
        Score::Kept(frame.spots_found as f32)
    }
}
