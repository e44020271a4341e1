//! Learned peak localisation: a BraggNN-style network turns the 11 × 11 photon patch around a spot
//! into the peak's sub-pixel centre, run by tract on batches of patches.
//!
//! The model's contract (what `models/train/` exports): one input of shape `[batch, 1, 11, 11]`, `f32`
//! photons as the reducer computes them (the network normalises them itself); one output of shape
//! `[batch, 2]`, the centre's (row, column) offset in pixels from the patch's central pixel. The batch
//! is fixed when the model is prepared: a [`PeakModel`] is loaded, shape-checked, optimised and run
//! once at startup, never on the first frame, and shared by every worker; each worker holds its own
//! [`PeakLocaliser`] state. A short batch is padded with empty patches.

use std::path::PathBuf;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::patch::{PATCH_PIXELS, PATCH_SIDE};

/// The peak localiser trained on simulated JUNGFRAU spots, compiled into the binary.
pub const BUILTIN_MODEL: &[u8] = include_bytes!("../../models/peak_localiser.onnx");
/// The name a config uses for [`BUILTIN_MODEL`].
pub const BUILTIN_MODEL_NAME: &str = "builtin";

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    Builtin,
    File(PathBuf),
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Builtin => write!(f, "the built-in peak localiser"),
            ModelSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeakModelError {
    #[error("cannot load peak model {source_name}: {reason}")]
    Load { source_name: String, reason: String },
    #[error("peak model {source_name} does not fit: {reason}")]
    Shape { source_name: String, reason: String },
    #[error("peak model failed on a batch of {batch}: {reason}")]
    Run { batch: usize, reason: String },
    #[error("batch of {0} patches: must be 1 to 1024")]
    Batch(usize),
}

/// A loaded, optimised peak model with its batch fixed; shared by the workers.
pub struct PeakModel {
    plan: Arc<TypedRunnableModel>,
    batch: usize,
}

impl PeakModel {
    /// Loads, fixes the batch, optimises and runs the model once on empty patches.
    ///
    /// # Errors
    /// The file cannot be read or parsed, its input or output does not follow the contract, or the
    /// trial run fails or gives non-finite centres.
    pub fn load(source: &ModelSource, batch: usize) -> Result<PeakModel, PeakModelError> {
        if !(1..=1024).contains(&batch) {
            return Err(PeakModelError::Batch(batch));
        }
        crate::onnx_guard::without_panics(|| Self::load_unguarded(source, batch).map_err(|e| e.to_string()))
            .map_err(|reason| PeakModelError::Load { source_name: source.to_string(), reason })
    }

    fn load_unguarded(source: &ModelSource, batch: usize) -> Result<PeakModel, PeakModelError> {
        let name = source.to_string();
        let load = |e: TractError| PeakModelError::Load { source_name: name.clone(), reason: format!("{e:#}") };
        let onnx = tract_onnx::onnx();
        let model = match source {
            ModelSource::Builtin => onnx.model_for_read(&mut &BUILTIN_MODEL[..]),
            ModelSource::File(path) => onnx.model_for_path(path),
        }
        .map_err(load)?;
        let shape = |reason: String| PeakModelError::Shape { source_name: name.clone(), reason };
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(shape(format!(
                "{} inputs and {} outputs, expected 1 and 1",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let plan = model
            .with_input_fact(0, f32::fact([batch, 1, PATCH_SIDE, PATCH_SIDE]).into())
            .and_then(|m| m.into_optimized())
            .map_err(|e| shape(format!("input [{batch}, 1, {PATCH_SIDE}, {PATCH_SIDE}] f32: {e:#}")))?;
        let out_fact = plan.output_fact(0).map_err(load)?;
        let out_shape: Vec<_> = out_fact.shape.as_concrete().map(|s| s.to_vec()).unwrap_or_default();
        if out_fact.datum_type != f32::datum_type() || out_shape != [batch, 2] {
            return Err(shape(format!("output is {out_fact:?}, expected [{batch}, 2] f32")));
        }
        let plan = plan.into_runnable().map_err(load)?;
        let model = PeakModel { plan, batch };
        let mut trial = model.localiser()?;
        let mut centres = vec![[0f32; 2]; batch];
        trial.locate(&vec![0f32; batch * PATCH_PIXELS], &mut centres)?;
        if centres.iter().flatten().any(|v| !v.is_finite()) {
            return Err(shape("gives non-finite centres on empty patches".into()));
        }
        Ok(model)
    }

    /// Patches per model run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// A worker's own state for running the model.
    ///
    /// # Errors
    /// The runtime cannot allocate the state.
    pub fn localiser(&self) -> Result<PeakLocaliser, PeakModelError> {
        let state = self.plan.spawn().map_err(|e| PeakModelError::Run { batch: 0, reason: format!("{e:#}") })?;
        let input = Tensor::zero::<f32>(&[self.batch, 1, PATCH_SIDE, PATCH_SIDE])
            .map_err(|e| PeakModelError::Run { batch: 0, reason: format!("{e:#}") })?;
        Ok(PeakLocaliser { state, input, batch: self.batch })
    }
}

/// One worker's state: the model's run state and its input batch.
pub struct PeakLocaliser {
    state: TypedSimpleState,
    input: Tensor,
    batch: usize,
}

impl PeakLocaliser {
    /// Patches per model run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Centres (row, column offsets from each patch's central pixel) of the patches in `patches`
    /// (row-major, [`PATCH_PIXELS`] each, at most one batch), written to the start of `centres`.
    ///
    /// # Errors
    /// More patches than a batch, or the model fails.
    pub fn locate(&mut self, patches: &[f32], centres: &mut [[f32; 2]]) -> Result<(), PeakModelError> {
        let n = patches.len() / PATCH_PIXELS;
        let run_error = |reason: String| PeakModelError::Run { batch: n, reason };
        if n > self.batch || centres.len() < n {
            return Err(run_error(format!("{n} patches for a batch of {} and {} centres", self.batch, centres.len())));
        }
        {
            let mut view = self.input.try_as_plain_ram_mut().map_err(|e| run_error(format!("{e:#}")))?;
            let input = view.as_slice_mut::<f32>().map_err(|e| run_error(format!("{e:#}")))?;
            input[..n * PATCH_PIXELS].copy_from_slice(&patches[..n * PATCH_PIXELS]);
            input[n * PATCH_PIXELS..].fill(0.0);
        }
        // The runtime takes its inputs by value; the copy is one batch of patches.
        let outputs =
            self.state.run(tvec!(self.input.clone().into_tvalue())).map_err(|e| run_error(format!("{e:#}")))?;
        let out = outputs.first().ok_or_else(|| run_error("no output".into()))?;
        let view = out.try_as_plain_ram().map_err(|e| run_error(format!("{e:#}")))?;
        let values = view.as_slice::<f32>().map_err(|e| run_error(format!("{e:#}")))?;
        for (c, v) in centres.iter_mut().zip(values.chunks_exact(2)).take(n) {
            *c = [v[0], v[1]];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A patch holding one Gaussian spot centred at (`dr`, `dc`) from its middle.
    fn spot_patch(dr: f32, dc: f32, photons: f32) -> Vec<f32> {
        let mut p = vec![0f32; PATCH_PIXELS];
        let mut norm = 0.0;
        for r in 0..PATCH_SIDE {
            for c in 0..PATCH_SIDE {
                let (y, x) = (r as f32 - 5.0 - dr, c as f32 - 5.0 - dc);
                let w = (-0.5 * (y * y + x * x) / 0.36).exp();
                p[r * PATCH_SIDE + c] = w;
                norm += w;
            }
        }
        p.iter_mut().for_each(|v| *v *= photons / norm);
        p
    }

    #[test]
    fn builtin_model_loads_and_finds_a_bright_spots_centre() {
        let model = PeakModel::load(&ModelSource::Builtin, 4).expect("builtin model");
        let mut loc = model.localiser().unwrap();
        let offsets = [(0.3f32, -0.2f32), (-0.4, 0.1), (0.0, 0.45)];
        let patches: Vec<f32> = offsets.iter().flat_map(|&(r, c)| spot_patch(r, c, 500.0)).collect();
        let mut centres = [[0f32; 2]; 4];
        loc.locate(&patches, &mut centres).unwrap();
        for (&(r, c), got) in offsets.iter().zip(&centres) {
            assert!((got[0] - r).abs() < 0.15 && (got[1] - c).abs() < 0.15, "spot at ({r}, {c}), model says {got:?}");
        }
    }

    #[test]
    fn more_patches_than_a_batch_is_an_error_not_a_panic() {
        let model = PeakModel::load(&ModelSource::Builtin, 2).unwrap();
        let mut loc = model.localiser().unwrap();
        let mut centres = [[0f32; 2]; 3];
        let err = loc.locate(&vec![0f32; 3 * PATCH_PIXELS], &mut centres).unwrap_err();
        assert!(matches!(err, PeakModelError::Run { batch: 3, .. }), "{err}");
    }

    #[test]
    fn missing_or_garbage_model_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = PeakModel::load(&ModelSource::File(dir.path().join("none.onnx")), 8).err().unwrap();
        assert!(matches!(missing, PeakModelError::Load { .. }), "{missing}");
        let garbage = dir.path().join("garbage.onnx");
        std::fs::write(&garbage, b"this is not an onnx model").unwrap();
        let err = PeakModel::load(&ModelSource::File(garbage), 8).err().unwrap();
        assert!(err.to_string().contains("garbage.onnx"), "{err}");
        assert!(matches!(PeakModel::load(&ModelSource::Builtin, 0), Err(PeakModelError::Batch(0))));
    }
}
