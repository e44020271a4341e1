//! The localiser (`[features.localiser]`): a learned peak localiser, a BraggNN-style network that turns
//! the 11 × 11 photon patch around a spot into the peak's sub-pixel centre (the spot's `refined`
//! centre), run by tract on batches of patches.
//!
//! The model's contract (what `models/train/` exports): one input of shape `[batch, 1, 11, 11]`, `f32`
//! photons as the reducer computes them (the network normalises them itself); one output of shape
//! `[batch, 2]`, the centre's (row, column) offset in pixels from the patch's central pixel. The batch
//! is fixed when the model is prepared: a [`Localiser`] is loaded, shape-checked, optimised and run
//! once at startup, never on the first frame, and shared by every worker; each worker holds its own
//! [`LocaliserState`]. A short batch is padded with empty patches.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::patch::{PATCH_PIXELS, PATCH_SIDE};
use crate::onnx_model::{OnnxError, OnnxModel, OnnxState, Origin};
use crate::section::{Problems, key, resolve_model};

/// The localiser trained on simulated JUNGFRAU spots, compiled into the binary.
pub const BUILTIN_MODEL: &[u8] = include_bytes!("../../models/peak_localiser.onnx");
/// The name a config uses for [`BUILTIN_MODEL`].
pub const BUILTIN_MODEL_NAME: &str = "builtin";

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum LocaliserSource {
    Builtin,
    File(PathBuf),
}

impl std::fmt::Display for LocaliserSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocaliserSource::Builtin => write!(f, "the built-in localiser"),
            LocaliserSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `[features.localiser]`: refines the centre of each recorded spot from its 11 × 11 patch.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocaliserSection {
    /// `"builtin"` (the model compiled into hitgate), the path of an ONNX model that follows the same
    /// contract, or absent for no refinement.
    pub model: Option<String>,
    /// Patches per model run: a frame's spots go in batches of this size, the last one padded.
    pub batch_patches: usize,
    /// Which frames' spots are refined.
    pub frames: LocaliseFrames,
}

impl Default for LocaliserSection {
    fn default() -> Self {
        LocaliserSection { model: None, batch_patches: 16, frames: LocaliseFrames::Accepted }
    }
}

/// Which frames' spots the localiser refines.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LocaliseFrames {
    /// Frames the trigger keeps: what is stored gets the best centres.
    #[default]
    Accepted,
    /// Every judged frame, for a live monitor or to measure the localiser on everything.
    All,
}

impl LocaliserSection {
    /// Where the model comes from, if one is configured.
    pub fn source(&self) -> Option<LocaliserSource> {
        self.model.as_ref().map(|m| match m.as_str() {
            BUILTIN_MODEL_NAME => LocaliserSource::Builtin,
            path => LocaliserSource::File(PathBuf::from(path)),
        })
    }

    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        problems.outside(key(path, "batch_patches"), self.batch_patches, (1, 1024));
        if let Some(LocaliserSource::File(file)) = self.source()
            && !file.is_file()
        {
            problems.bad(
                key(path, "model"),
                format!("{} is not a readable file (or \"builtin\" for the built-in model)", file.display()),
            );
        }
    }

    /// A model file named relative to the config is taken from the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(model) = self.model.as_mut() {
            resolve_model(model, &[BUILTIN_MODEL_NAME], base);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocaliserError {
    #[error("localiser: {0}")]
    Model(#[from] OnnxError),
    #[error("localiser failed on a batch of {batch}: {reason}")]
    Run { batch: usize, reason: String },
    #[error("batch of {0} patches: must be 1 to 1024")]
    Batch(usize),
}

/// A loaded, optimised localiser model with its batch fixed; shared by the workers.
pub struct Localiser {
    model: OnnxModel,
    batch: usize,
}

impl Localiser {
    /// Loads, fixes the batch, optimises and runs the model once on empty patches.
    ///
    /// # Errors
    /// The file cannot be read or parsed, its input or output does not follow the contract, or the
    /// trial run fails or gives non-finite centres.
    pub fn load(source: &LocaliserSource, batch: usize) -> Result<Localiser, LocaliserError> {
        if !(1..=1024).contains(&batch) {
            return Err(LocaliserError::Batch(batch));
        }
        let name = source.to_string();
        let origin = match source {
            LocaliserSource::Builtin => Origin::Bytes(BUILTIN_MODEL),
            LocaliserSource::File(path) => Origin::File(path),
        };
        let model = OnnxModel::load(&name, origin, &[batch, 1, PATCH_SIDE, PATCH_SIDE], batch * 2)?;
        let model = Localiser { model, batch };
        let mut centres = vec![[0f32; 2]; batch];
        model.state()?.locate(&vec![0f32; batch * PATCH_PIXELS], &mut centres)?;
        if centres.iter().flatten().any(|v| !v.is_finite()) {
            let reason = "gives non-finite centres on empty patches".into();
            return Err(OnnxError::Shape { model: name, reason }.into());
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
    pub fn state(&self) -> Result<LocaliserState, LocaliserError> {
        Ok(LocaliserState { state: self.model.state()?, output: vec![0.0; self.batch * 2], batch: self.batch })
    }
}

/// One worker's state: the model's run state and room for a batch's centres.
pub struct LocaliserState {
    state: OnnxState,
    output: Vec<f32>,
    batch: usize,
}

impl LocaliserState {
    /// Patches per model run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Centres (row, column offsets from each patch's central pixel) of the patches in `patches`
    /// (row-major, [`PATCH_PIXELS`] each, at most one batch), written to the start of `centres`.
    ///
    /// # Errors
    /// More patches than a batch, or the model fails.
    pub fn locate(&mut self, patches: &[f32], centres: &mut [[f32; 2]]) -> Result<(), LocaliserError> {
        let n = patches.len() / PATCH_PIXELS;
        if n > self.batch || centres.len() < n {
            let reason = format!("{n} patches for a batch of {} and {} centres", self.batch, centres.len());
            return Err(LocaliserError::Run { batch: n, reason });
        }
        let fill = |input: &mut [f32]| {
            input[..n * PATCH_PIXELS].copy_from_slice(&patches[..n * PATCH_PIXELS]);
            input[n * PATCH_PIXELS..].fill(0.0);
        };
        self.state.run(fill, &mut self.output).map_err(|e| LocaliserError::Run { batch: n, reason: e.to_string() })?;
        for (c, v) in centres.iter_mut().zip(self.output.chunks_exact(2)).take(n) {
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
        let model = Localiser::load(&LocaliserSource::Builtin, 4).expect("builtin model");
        let mut loc = model.state().unwrap();
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
        let model = Localiser::load(&LocaliserSource::Builtin, 2).unwrap();
        let mut loc = model.state().unwrap();
        let mut centres = [[0f32; 2]; 3];
        let err = loc.locate(&vec![0f32; 3 * PATCH_PIXELS], &mut centres).unwrap_err();
        assert!(matches!(err, LocaliserError::Run { batch: 3, .. }), "{err}");
    }

    #[test]
    fn missing_or_garbage_model_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Localiser::load(&LocaliserSource::File(dir.path().join("none.onnx")), 8).err().unwrap();
        assert!(matches!(missing, LocaliserError::Model(OnnxError::Load { .. })), "{missing}");
        let garbage = dir.path().join("garbage.onnx");
        std::fs::write(&garbage, b"this is not an onnx model").unwrap();
        let err = Localiser::load(&LocaliserSource::File(garbage), 8).err().unwrap();
        assert!(err.to_string().contains("garbage.onnx"), "{err}");
        assert!(matches!(Localiser::load(&LocaliserSource::Builtin, 0), Err(LocaliserError::Batch(0))));
    }
}
