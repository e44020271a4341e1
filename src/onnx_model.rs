//! The project's ONNX models, loaded and run by tract: read from bytes compiled into hitgate or from a
//! file, the input shape fixed, optimised and checked once at startup, then shared; each worker runs
//! its own [`OnnxState`].
//!
//! Loading is reading outside input: a model whose shapes do not fit what is asked of it can make
//! tract's analysis panic instead of returning an error, so the whole load runs under `catch_unwind`
//! and such a panic becomes an error that names it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

/// Where a model's bytes are.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot load {model}: {reason}")]
    Load { model: String, reason: String },
    #[error("{model} does not fit: {reason}")]
    Shape { model: String, reason: String },
    #[error("model run failed: {0}")]
    Run(String),
}

/// A loaded, optimised model with one `f32` input of a fixed shape and one `f32` output.
#[derive(Debug)]
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    output_len: usize,
}

impl OnnxModel {
    /// Loads the model `name` (for messages), fixes its input to `input_shape`, optimises it, and checks
    /// that it has one input, one output of `output_len` values, both `f32`.
    ///
    /// # Errors
    /// The bytes cannot be read or parsed, the model does not have that shape, or tract's analysis
    /// fails (or panics) on it.
    pub fn load(
        name: &str,
        origin: Origin<'_>,
        input_shape: &[usize],
        output_len: usize,
    ) -> Result<OnnxModel, OnnxError> {
        let guarded = catch_unwind(AssertUnwindSafe(|| Self::load_unguarded(name, origin, input_shape, output_len)));
        guarded.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(OnnxError::Load { model: name.into(), reason: format!("the model could not be analysed ({message})") })
        })
    }

    fn load_unguarded(
        name: &str,
        origin: Origin<'_>,
        input_shape: &[usize],
        output_len: usize,
    ) -> Result<OnnxModel, OnnxError> {
        let load = |e: TractError| OnnxError::Load { model: name.into(), reason: format!("{e:#}") };
        let shape = |reason: String| OnnxError::Shape { model: name.into(), reason };
        let onnx = tract_onnx::onnx();
        let model = match origin {
            Origin::Bytes(bytes) => onnx.model_for_read(&mut &bytes[..]),
            Origin::File(path) => onnx.model_for_path(path),
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
            .with_input_fact(0, f32::fact(input_shape).into())
            .and_then(|m| m.into_optimized())
            .map_err(|e| shape(format!("input {input_shape:?} f32: {e:#}")))?;
        let out = typed.output_fact(0).map_err(load)?;
        let dims: Vec<usize> = out.shape.as_concrete().map(|s| s.to_vec()).unwrap_or_default();
        if out.datum_type != f32::datum_type() || dims.is_empty() || dims.iter().product::<usize>() != output_len {
            return Err(shape(format!("output is {out:?}, expected {output_len} f32 values")));
        }
        Ok(OnnxModel { plan: typed.into_runnable().map_err(load)?, input_shape: input_shape.to_vec(), output_len })
    }

    /// A worker's own run state, with its input tensor allocated now.
    ///
    /// # Errors
    /// The runtime cannot make the state.
    pub fn state(&self) -> Result<OnnxState, OnnxError> {
        let run = |e: TractError| OnnxError::Run(format!("{e:#}"));
        Ok(OnnxState {
            state: self.plan.spawn().map_err(run)?,
            input: Tensor::zero::<f32>(&self.input_shape).map_err(run)?,
            output_len: self.output_len,
        })
    }
}

/// One worker's run state and input.
pub struct OnnxState {
    state: TypedSimpleState,
    input: Tensor,
    output_len: usize,
}

impl std::fmt::Debug for OnnxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnnxState")
    }
}

impl OnnxState {
    /// Runs the model: `fill` writes the whole input (in the fixed shape's order), the output's values
    /// go to the start of `output`.
    ///
    /// # Errors
    /// `output` is shorter than the model's output, or the model fails.
    pub fn run(&mut self, fill: impl FnOnce(&mut [f32]), output: &mut [f32]) -> Result<(), OnnxError> {
        let err = |e: TractError| OnnxError::Run(format!("{e:#}"));
        if output.len() < self.output_len {
            return Err(OnnxError::Run(format!(
                "room for {} outputs, the model gives {}",
                output.len(),
                self.output_len
            )));
        }
        {
            let mut view = self.input.try_as_plain_ram_mut().map_err(err)?;
            fill(view.as_slice_mut::<f32>().map_err(err)?);
        }
        // The runtime takes its inputs by value; the copy is one input tensor.
        let outputs = self.state.run(tvec!(self.input.clone().into_tvalue())).map_err(err)?;
        let out = outputs.first().ok_or_else(|| OnnxError::Run("no output".into()))?;
        let view = out.try_as_plain_ram().map_err(err)?;
        let values = view.as_slice::<f32>().map_err(err)?;
        let n = self.output_len.min(values.len());
        output[..n].copy_from_slice(&values[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_ill_fitting_models_are_errors_not_panics() {
        let err = OnnxModel::load("garbage", Origin::Bytes(b"not a model"), &[1, 4], 1).unwrap_err();
        assert!(matches!(err, OnnxError::Load { .. }), "{err}");
        // A peak localiser asked to read a frame summary: tract's analysis panics on it.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/peak_localiser.onnx");
        let err = OnnxModel::load("peaks", Origin::File(&path), &[1, 42], 1).unwrap_err();
        assert!(err.to_string().contains("peaks"), "{err}");
        let err = OnnxModel::load("peaks", Origin::File(&path), &[2, 1, 11, 11], 3).unwrap_err();
        assert!(matches!(err, OnnxError::Shape { .. }), "{err}");
    }

    #[test]
    fn a_run_fills_the_input_and_reads_the_output() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/peak_localiser.onnx");
        let model = OnnxModel::load("peaks", Origin::File(&path), &[2, 1, 11, 11], 4).unwrap();
        let mut state = model.state().unwrap();
        let mut out = [f32::NAN; 4];
        state.run(|x| x.fill(0.0), &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{out:?}");
        assert!(state.run(|x| x.fill(0.0), &mut [0.0; 3]).is_err());
    }
}
