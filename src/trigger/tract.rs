//! The learned trigger: a hit classifier run by tract on each frame's summary
//! (`features::summary`), its output — the probability that the frame is a hit — as the score.
//!
//! The model's contract (what `models/train/classifier.py` exports): one input `[batch, SUMMARY_LEN]`
//! f32, the summary as the reducer computes it; one output `[batch, 1]` f32. A [`TractTrigger`] is
//! loaded, shape-checked, optimised and run once at startup with the batch fixed at 1 (one frame per
//! run: the model is a few microseconds and frames come one at a time to each worker), then shared;
//! each worker owns a [`TractState`].

use std::path::PathBuf;
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::features::summary::SUMMARY_LEN;

/// The hit classifier trained on simulated JUNGFRAU runs, float32 and int8, compiled into the binary.
pub const BUILTIN_MODEL: &[u8] = include_bytes!("../../models/hit_classifier.onnx");
pub const BUILTIN_INT8_MODEL: &[u8] = include_bytes!("../../models/hit_classifier.int8.onnx");

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

impl std::fmt::Display for ClassifierSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassifierSource::Builtin => write!(f, "the built-in hit classifier"),
            ClassifierSource::BuiltinInt8 => write!(f, "the built-in int8 hit classifier"),
            ClassifierSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("cannot load hit classifier {source_name}: {reason}")]
    Load { source_name: String, reason: String },
    #[error("hit classifier {source_name} does not fit: {reason}")]
    Shape { source_name: String, reason: String },
    #[error("hit classifier failed: {0}")]
    Run(String),
}

/// A loaded, optimised classifier; shared by the workers.
#[derive(Debug)]
pub struct TractTrigger {
    plan: Arc<TypedRunnableModel>,
}

impl TractTrigger {
    /// Loads, fixes the input to one frame's summary, optimises, and runs the model once.
    ///
    /// # Errors
    /// The model cannot be read or parsed, does not follow the contract, or its trial run fails or
    /// gives a score that is not a number.
    pub fn load(source: &ClassifierSource) -> Result<TractTrigger, ClassifierError> {
        crate::onnx_guard::without_panics(|| Self::load_unguarded(source).map_err(|e| e.to_string()))
            .map_err(|reason| ClassifierError::Load { source_name: source.to_string(), reason })
    }

    fn load_unguarded(source: &ClassifierSource) -> Result<TractTrigger, ClassifierError> {
        let name = source.to_string();
        let load = |e: TractError| ClassifierError::Load { source_name: name.clone(), reason: format!("{e:#}") };
        let shape = |reason: String| ClassifierError::Shape { source_name: name.clone(), reason };
        let onnx = tract_onnx::onnx();
        let model = match source {
            ClassifierSource::Builtin => onnx.model_for_read(&mut &BUILTIN_MODEL[..]),
            ClassifierSource::BuiltinInt8 => onnx.model_for_read(&mut &BUILTIN_INT8_MODEL[..]),
            ClassifierSource::File(path) => onnx.model_for_path(path),
        }
        .map_err(load)?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(shape(format!(
                "{} inputs and {} outputs, expected 1 and 1",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let typed = model
            .with_input_fact(0, f32::fact([1, SUMMARY_LEN]).into())
            .and_then(|m| m.into_optimized())
            .map_err(|e| shape(format!("input [1, {SUMMARY_LEN}] f32: {e:#}")))?;
        let out = typed.output_fact(0).map_err(load)?;
        let dims: Vec<usize> = out.shape.as_concrete().map(|s| s.to_vec()).unwrap_or_default();
        if out.datum_type != f32::datum_type() || dims.iter().product::<usize>() != 1 {
            return Err(shape(format!("output is {out:?}, expected one f32 per frame")));
        }
        let trigger = TractTrigger { plan: typed.into_runnable().map_err(load)? };
        let score = trigger.state()?.score(&[0.0; SUMMARY_LEN])?;
        if !score.is_finite() {
            return Err(shape(format!("scores an empty frame {score}")));
        }
        Ok(trigger)
    }

    /// A worker's own state.
    ///
    /// # Errors
    /// The runtime cannot make the state.
    pub fn state(&self) -> Result<TractState, ClassifierError> {
        let state = self.plan.spawn().map_err(|e| ClassifierError::Run(format!("{e:#}")))?;
        let input = Tensor::zero::<f32>(&[1, SUMMARY_LEN]).map_err(|e| ClassifierError::Run(format!("{e:#}")))?;
        Ok(TractState { state, input })
    }
}

/// One worker's run state and input.
pub struct TractState {
    state: TypedSimpleState,
    input: Tensor,
}

impl std::fmt::Debug for TractState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TractState")
    }
}

impl TractState {
    /// The model's score for one frame's summary.
    ///
    /// # Errors
    /// The summary is not [`SUMMARY_LEN`] values, or the model fails.
    pub fn score(&mut self, summary: &[f32]) -> Result<f32, ClassifierError> {
        let run = |e: TractError| ClassifierError::Run(format!("{e:#}"));
        if summary.len() != SUMMARY_LEN {
            return Err(ClassifierError::Run(format!("summary of {} values, expected {SUMMARY_LEN}", summary.len())));
        }
        {
            let mut view = self.input.try_as_plain_ram_mut().map_err(run)?;
            view.as_slice_mut::<f32>().map_err(run)?.copy_from_slice(summary);
        }
        let outputs = self.state.run(tvec!(self.input.clone().into_tvalue())).map_err(run)?;
        let out = outputs.first().ok_or_else(|| ClassifierError::Run("no output".into()))?;
        let view = out.try_as_plain_ram().map_err(run)?;
        view.as_slice::<f32>().map_err(run)?.first().copied().ok_or_else(|| ClassifierError::Run("empty output".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_classifiers_load_and_score_in_range() {
        for source in [ClassifierSource::Builtin, ClassifierSource::BuiltinInt8] {
            let t = TractTrigger::load(&source).unwrap();
            let mut state = t.state().unwrap();
            let empty = state.score(&[0.0; SUMMARY_LEN]).unwrap();
            assert!((0.0..=1.0).contains(&empty), "{source}: {empty}");
            assert!(state.score(&[0.0; 3]).is_err());
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
