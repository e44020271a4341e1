//! The learned trigger: a hit classifier run by tract on each frame's summary
//! (`features::summary`), its output — the probability that the frame is a hit — as the score.
//!
//! The model's contract (what `models/train/classifier.py` exports): one input `[batch, SUMMARY_LEN]`
//! f32, the summary as the reducer computes it; one output `[batch, 1]` f32. A [`TractTrigger`] is
//! loaded, shape-checked, optimised and run once at startup with the batch fixed at 1 (one frame per
//! run: the model is a few microseconds and frames come one at a time to each worker), then shared;
//! each worker owns a [`TractState`]. `[trigger.tract]` is [`TractTriggerSection`].

use std::any::Any;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TriggerError;
use super::backend::{Backend, BackendSection, ConfiguredCut, CutUnit, FrameFacts, Score, Scorer};
use super::familiar::{InputRanges, InputRangesError};
use crate::features::summary::SUMMARY_LEN;
use crate::onnx_model::{OnnxError, OnnxModel, OnnxState, Origin};
use crate::section::{Problems, key, resolve_model};

/// The learned trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TractTriggerSection {
    /// `"builtin"` or `"builtin-int8"` (the classifier compiled into hitgate, float32 or int8), or the
    /// path of an ONNX model that follows the same contract.
    pub model: String,
    /// The cut on the hit probability (moved by the rate control when a target rate is set).
    pub threshold: f32,
}

impl Default for TractTriggerSection {
    fn default() -> Self {
        TractTriggerSection { model: "builtin".into(), threshold: 0.5 }
    }
}

impl BackendSection for TractTriggerSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if !self.threshold.is_finite() {
            problems.bad(key(path, "threshold"), format!("{} is not a number", self.threshold));
        }
        if let ClassifierSource::File(file) = ClassifierSource::parse(&self.model)
            && !file.is_file()
        {
            problems.bad(
                key(path, "model"),
                format!("{} is not a readable file (or \"builtin\", \"builtin-int8\")", file.display()),
            );
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        resolve_model(&mut self.model, &["builtin", "builtin-int8"], base);
    }

    fn prepare(&self) -> Result<Box<dyn Backend>, TriggerError> {
        let source = ClassifierSource::parse(&self.model);
        let mut trigger = TractTrigger::load(&source)?;
        trigger.ranges = source.input_ranges()?.map(std::sync::Arc::new);
        Ok(Box::new(trigger))
    }

    fn reads_summary(&self) -> bool {
        true
    }

    fn cut(&self) -> Option<ConfiguredCut> {
        Some(ConfiguredCut { key: "threshold", value: self.threshold, unit: CutUnit::Score })
    }
}

/// The hit classifier trained on simulated JUNGFRAU runs, float32 and int8, compiled into the binary.
pub const BUILTIN_MODEL: &[u8] = include_bytes!("../../models/hit_classifier.onnx");
pub const BUILTIN_INT8_MODEL: &[u8] = include_bytes!("../../models/hit_classifier.int8.onnx");
/// The range the built-in classifier's training inputs held (both forms were trained on the same).
pub const BUILTIN_INPUT_RANGES: &str = include_str!("../../models/hit_classifier.inputs.json");

/// Where a classifier comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassifierSource {
    Builtin,
    BuiltinInt8,
    File(PathBuf),
}

impl ClassifierSource {
    /// `"builtin"`, `"builtin-int8"`, or a path.
    pub fn parse(name: &str) -> ClassifierSource {
        match name {
            "builtin" => ClassifierSource::Builtin,
            "builtin-int8" => ClassifierSource::BuiltinInt8,
            path => ClassifierSource::File(PathBuf::from(path)),
        }
    }
}

impl ClassifierSource {
    /// The range the model's training inputs held: the built-in's, or a file's from the
    /// `NAME.inputs.json` beside `NAME.onnx` when there is one (for `NAME.int8.onnx`, its own or
    /// the float model's `NAME.inputs.json`: both were trained on the same frames).
    ///
    /// # Errors
    /// The ranges are there but cannot be read.
    pub fn input_ranges(&self) -> Result<Option<InputRanges>, InputRangesError> {
        match self {
            ClassifierSource::Builtin | ClassifierSource::BuiltinInt8 => {
                InputRanges::parse(BUILTIN_INPUT_RANGES, "the built-in classifier's input ranges").map(Some)
            }
            ClassifierSource::File(path) => {
                let own = path.with_extension("inputs.json");
                let float = path.with_extension("").with_extension("inputs.json");
                let int8 = path.file_stem().is_some_and(|s| s.to_string_lossy().ends_with(".int8"));
                let beside = [Some(own), int8.then_some(float)].into_iter().flatten().find(|p| p.is_file());
                beside.map(|p| InputRanges::load(&p)).transpose()
            }
        }
    }
}

impl std::fmt::Display for ClassifierSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassifierSource::Builtin => write!(f, "the built-in hit classifier"),
            ClassifierSource::BuiltinInt8 => write!(f, "the built-in int8 hit classifier"),
            ClassifierSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a classifier cannot be loaded or run.
pub type ClassifierError = OnnxError;

/// A loaded, optimised classifier; shared by the workers.
#[derive(Debug)]
pub struct TractTrigger {
    model: OnnxModel,
    /// The range its training inputs held, when known.
    ranges: Option<std::sync::Arc<InputRanges>>,
}

impl TractTrigger {
    /// Loads, fixes the input to one frame's summary, optimises, and runs the model once.
    ///
    /// # Errors
    /// The model cannot be read or parsed, does not follow the contract, or its trial run fails or
    /// gives a score that is not a number.
    pub fn load(source: &ClassifierSource) -> Result<TractTrigger, ClassifierError> {
        let name = source.to_string();
        let origin = match source {
            ClassifierSource::Builtin => Origin::Bytes(BUILTIN_MODEL),
            ClassifierSource::BuiltinInt8 => Origin::Bytes(BUILTIN_INT8_MODEL),
            ClassifierSource::File(path) => Origin::File(path),
        };
        let trigger = TractTrigger { model: OnnxModel::load(&name, origin, &[1, SUMMARY_LEN], 1)?, ranges: None };
        let score = trigger.state()?.hit_probability(&[0.0; SUMMARY_LEN])?;
        if !score.is_finite() {
            return Err(OnnxError::Shape { model: name, reason: format!("scores an empty frame {score}") });
        }
        Ok(trigger)
    }

    /// A worker's own state.
    ///
    /// # Errors
    /// The runtime cannot make the state.
    pub fn state(&self) -> Result<TractState, ClassifierError> {
        Ok(TractState { state: self.model.state()? })
    }
}

impl Backend for TractTrigger {
    fn scorer(&self) -> Result<Box<dyn Scorer>, TriggerError> {
        Ok(Box::new(self.state()?))
    }

    fn cut_unit(&self) -> Option<CutUnit> {
        Some(CutUnit::Score)
    }

    fn reads_summary(&self) -> bool {
        true
    }

    fn input_ranges(&self) -> Option<std::sync::Arc<InputRanges>> {
        self.ranges.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One worker's run state.
#[derive(Debug)]
pub struct TractState {
    state: OnnxState,
}

impl TractState {
    /// The model's score for one frame's summary.
    ///
    /// # Errors
    /// The summary is not [`SUMMARY_LEN`] values, or the model fails.
    pub fn hit_probability(&mut self, summary: &[f32]) -> Result<f32, ClassifierError> {
        if summary.len() != SUMMARY_LEN {
            return Err(OnnxError::Run(format!("summary of {} values, expected {SUMMARY_LEN}", summary.len())));
        }
        let mut score = [0f32];
        self.state.run(|input| input.copy_from_slice(summary), &mut score)?;
        Ok(score[0])
    }
}

impl Scorer for TractState {
    fn score(&mut self, frame: FrameFacts<'_>, _staged: Option<usize>) -> Score {
        match self.hit_probability(frame.summary) {
            Ok(score) if !score.is_nan() => Score::Value(score),
            // Fail open: a frame the model could not judge is kept, and counted.
            _ => Score::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_classifiers_know_the_range_of_their_training_inputs() {
        for source in [ClassifierSource::Builtin, ClassifierSource::BuiltinInt8] {
            let ranges = source.input_ranges().unwrap().unwrap();
            assert_eq!((ranges.low.len(), ranges.high.len()), (SUMMARY_LEN, SUMMARY_LEN));
            assert!(ranges.frames >= 1000 && ranges.low.iter().zip(&ranges.high).all(|(l, h)| l <= h), "{ranges:?}");
        }
        // A model file without ranges beside it has none; broken ones are refused.
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        assert_eq!(ClassifierSource::File(model.clone()).input_ranges().unwrap(), None);
        std::fs::write(dir.path().join("m.inputs.json"), "not json").unwrap();
        assert!(ClassifierSource::File(model).input_ranges().is_err());
    }

    #[test]
    fn builtin_classifiers_load_and_score_in_range() {
        for source in [ClassifierSource::Builtin, ClassifierSource::BuiltinInt8] {
            let t = TractTrigger::load(&source).unwrap();
            let mut state = t.state().unwrap();
            let empty = state.hit_probability(&[0.0; SUMMARY_LEN]).unwrap();
            assert!((0.0..=1.0).contains(&empty), "{source}: {empty}");
            assert!(state.hit_probability(&[0.0; 3]).is_err());
        }
    }

    #[test]
    fn a_peak_model_is_no_classifier() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/peak_localiser.onnx");
        // tract's analysis panics on this one; the load says so instead.
        let err = TractTrigger::load(&ClassifierSource::File(path)).unwrap_err();
        assert!(err.to_string().contains("peak_localiser.onnx"), "{err}");
        let missing = TractTrigger::load(&ClassifierSource::File("/nonexistent.onnx".into())).unwrap_err();
        assert!(matches!(missing, ClassifierError::Load { .. }), "{missing}");
    }
}
