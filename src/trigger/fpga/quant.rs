//! The hit classifier as the FPGA kernel computes it: integers only, every rounding defined, so the
//! HLS C++ in `hls/kernels/`, the emulated card and this Rust model agree bit for bit.
//!
//! The int8 model (`models/hit_classifier.int8.onnx`, QDQ form) is taken apart into:
//! - **host side** (float, per frame, before the summary goes to the card): `log(summary + offset)`,
//!   standardised, quantized to int8 with the model's input scale and zero point (ONNX rounding: half
//!   to even) — one logarithm an input, which an FPGA would spend a lookup table on for no gain;
//! - **layer 1** (card): `acc = Σ (x − zx)·w1 + b1` in 32 bits (weights symmetric int8, bias in the
//!   accumulator's scale), requantized to the ReLU's int8 scale by a fixed-point multiplier
//!   (`m · 2^−(31+shift)`, rounding half up) and clamped at its zero point (the ReLU);
//! - **layer 2** (card): `acc = Σ (h − zh)·w2 + b2` in 32 bits, ReLU;
//! - **layer 3** (card): `logit = Σ relu·w3 + b3` in 64 bits (48 would do; w3 quantized here,
//!   symmetric, per tensor). The card returns the logit accumulator; the host scales it and compares
//!   with the cut (the sigmoid is monotone, so the threshold can be applied to the logit directly).
//!
//! The float model's intermediate requantization after each MatMul (a QDQ artefact) is not
//! reproduced: the kernel's scores differ from tract's by the quantization's own error, measured by
//! the tests (`tests/fpga_kernel.rs`).

use tract_onnx::pb::TensorProto;
use tract_onnx::prelude::*;

use crate::features::summary::SUMMARY_LEN;

pub const INPUTS: usize = SUMMARY_LEN;
pub const HIDDEN1: usize = 64;
pub const HIDDEN2: usize = 32;

/// A real multiplier `m · 2^−(31 + shift)` with `m` in `[2^30, 2^31)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requant {
    pub multiplier: i32,
    pub shift: i32,
}

impl Requant {
    /// The fixed-point form of `real` (0 < real < 1).
    pub fn of(real: f64) -> Requant {
        let mut shift = 0;
        let mut r = real;
        while r < 0.5 {
            r *= 2.0;
            shift += 1;
        }
        while r >= 1.0 {
            r /= 2.0;
            shift -= 1;
        }
        let mut multiplier = (r * f64::from(1u32 << 31)).round() as i64;
        if multiplier == 1 << 31 {
            multiplier /= 2;
            shift -= 1;
        }
        Requant { multiplier: multiplier as i32, shift }
    }

    /// `round(value · m · 2^−(31+shift))`, halves rounded up, as the kernel computes it.
    pub fn apply(self, value: i32) -> i32 {
        let total = 31 + self.shift;
        let product = i64::from(value) * i64::from(self.multiplier);
        ((product + (1i64 << (total - 1))) >> total) as i32
    }
}

/// The integer classifier and the host's float preprocessing.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantClassifier {
    pub offsets: Vec<f32>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub input_scale: f32,
    pub input_zero: i8,
    /// `[INPUTS][HIDDEN1]`, row-major.
    pub w1: Vec<i8>,
    pub b1: Vec<i32>,
    pub requant1: Requant,
    /// The ReLU output's zero point (its lower clamp).
    pub hidden_zero: i8,
    /// `[HIDDEN1][HIDDEN2]`, row-major.
    pub w2: Vec<i8>,
    pub b2: Vec<i32>,
    pub w3: Vec<i8>,
    pub b3: i64,
    /// The logit accumulator's scale: logit = accumulator × this.
    pub logit_scale: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("cannot read the ONNX model: {0}")]
    Read(String),
    #[error("the model has no tensor {0:?} (is it the int8 hit classifier?)")]
    Missing(String),
    #[error("tensor {name:?} has {got} values, expected {expected}")]
    Shape { name: String, got: usize, expected: usize },
    #[error("scale {name:?} = {value} cannot be turned into a fixed-point multiplier")]
    Scale { name: String, value: f64 },
}

/// The model's initializers by name, as f32 or i8.
struct Initializers(Vec<(String, Tensor)>);

impl Initializers {
    fn tensor(&self, name: &str) -> Result<&Tensor, QuantError> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| QuantError::Missing(name.into()))
    }

    fn values<T: Datum + Copy>(&self, name: &str, len: usize) -> Result<Vec<T>, QuantError> {
        let t = self.tensor(name)?;
        let view = t.to_plain_array_view::<T>().map_err(|e| QuantError::Read(format!("{name}: {e}")))?;
        let v: Vec<T> = view.iter().copied().collect();
        if v.len() != len {
            return Err(QuantError::Shape { name: name.into(), got: v.len(), expected: len });
        }
        Ok(v)
    }

    fn f32s(&self, name: &str, len: usize) -> Result<Vec<f32>, QuantError> {
        self.values(name, len)
    }

    fn i8s(&self, name: &str, len: usize) -> Result<Vec<i8>, QuantError> {
        self.values(name, len)
    }

    fn scalar_f32(&self, name: &str) -> Result<f32, QuantError> {
        Ok(self.f32s(name, 1)?[0])
    }

    fn scalar_i8(&self, name: &str) -> Result<i8, QuantError> {
        Ok(self.i8s(name, 1)?[0])
    }
}

fn initializers(onnx: &[u8]) -> Result<Initializers, QuantError> {
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &onnx[..]).map_err(|e| QuantError::Read(e.to_string()))?;
    let graph = proto.graph.ok_or_else(|| QuantError::Read("no graph".into()))?;
    let resolver = tract_onnx::data_resolver::FopenDataResolver;
    let load = |t: &TensorProto| {
        tract_onnx::tensor::load_tensor(&resolver, t, None).map_err(|e| QuantError::Read(format!("{}: {e}", t.name)))
    };
    Ok(Initializers(graph.initializer.iter().map(|t| Ok((t.name.clone(), load(t)?))).collect::<Result<_, _>>()?))
}

fn round_to_i32(v: f64) -> i32 {
    v.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

impl QuantClassifier {
    /// Takes the int8 (QDQ) hit classifier apart into the kernel's integers.
    ///
    /// # Errors
    /// The bytes are not that model.
    pub fn from_onnx(onnx: &[u8]) -> Result<QuantClassifier, QuantError> {
        let init = initializers(onnx)?;
        let input_scale = init.scalar_f32("standardised_scale")?;
        let input_zero = init.scalar_i8("standardised_zero_point")?;
        let w1_scale = init.scalar_f32("dense1.weight_scale")?;
        let hidden_scale = init.scalar_f32("dense1.relu_scale")?;
        let hidden_zero = init.scalar_i8("dense1.relu_zero_point")?;
        let w2_scale = init.scalar_f32("dense2.weight_scale")?;
        let acc1_scale = f64::from(input_scale) * f64::from(w1_scale);
        let acc2_scale = f64::from(hidden_scale) * f64::from(w2_scale);
        let real1 = acc1_scale / f64::from(hidden_scale);
        if !(real1 > 0.0 && real1 < 1.0) {
            return Err(QuantError::Scale { name: "dense1 requantization".into(), value: real1 });
        }
        let w3f = init.f32s("dense3.weight", HIDDEN2)?;
        let w3_max = w3f.iter().fold(0f32, |m, w| m.max(w.abs())).max(f32::MIN_POSITIVE);
        let w3_scale = f64::from(w3_max) / 127.0;
        let logit_scale = acc2_scale * w3_scale;
        let b3 = init.f32s("dense3.bias", 1)?[0];
        Ok(QuantClassifier {
            offsets: init.f32s("offsets", INPUTS)?,
            mean: init.f32s("mean", INPUTS)?,
            std: init.f32s("std", INPUTS)?,
            input_scale,
            input_zero,
            w1: init.i8s("dense1.weight_quantized", INPUTS * HIDDEN1)?,
            b1: init.f32s("dense1.bias", HIDDEN1)?.iter().map(|&b| round_to_i32(f64::from(b) / acc1_scale)).collect(),
            requant1: Requant::of(real1),
            hidden_zero,
            w2: init.i8s("dense2.weight_quantized", HIDDEN1 * HIDDEN2)?,
            b2: init.f32s("dense2.bias", HIDDEN2)?.iter().map(|&b| round_to_i32(f64::from(b) / acc2_scale)).collect(),
            w3: w3f.iter().map(|&w| (f64::from(w) / w3_scale).round().clamp(-127.0, 127.0) as i8).collect(),
            b3: (f64::from(b3) / logit_scale).round() as i64,
            logit_scale,
        })
    }

    /// The host's part: a frame's summary as the int8 vector the card takes.
    pub fn quantize_input(&self, summary: &[f32], out: &mut [i8; INPUTS]) {
        for (i, q) in out.iter_mut().enumerate() {
            let x = summary.get(i).copied().unwrap_or(0.0);
            let standardised = ((x + self.offsets[i]).ln() - self.mean[i]) / self.std[i];
            let v = (standardised / self.input_scale).round_ties_even() + f32::from(self.input_zero);
            // NaN (a negative summary value) saturates like the ONNX cast: to the zero point's side.
            *q = if v.is_nan() { self.input_zero } else { v.clamp(-128.0, 127.0) as i8 };
        }
    }

    /// The card's part: the logit accumulator for one quantized input.
    pub fn logit_accumulator(&self, x: &[i8; INPUTS]) -> i64 {
        let zx = i32::from(self.input_zero);
        let mut hidden = [0i32; HIDDEN1];
        for (j, h) in hidden.iter_mut().enumerate() {
            let mut acc = self.b1[j];
            for (i, &xi) in x.iter().enumerate() {
                acc = acc.wrapping_add((i32::from(xi) - zx) * i32::from(self.w1[i * HIDDEN1 + j]));
            }
            let q = self.requant1.apply(acc) + i32::from(self.hidden_zero);
            // Clamped at the zero point below: the ReLU.
            *h = q.clamp(i32::from(self.hidden_zero), 127) - i32::from(self.hidden_zero);
        }
        let mut logit = self.b3;
        for k in 0..HIDDEN2 {
            let mut acc = self.b2[k];
            for (j, &h) in hidden.iter().enumerate() {
                acc = acc.wrapping_add(h * i32::from(self.w2[j * HIDDEN2 + k]));
            }
            logit += i64::from(acc.max(0)) * i64::from(self.w3[k]);
        }
        logit
    }

    /// The hit probability the card's logit stands for.
    pub fn probability(&self, logit_accumulator: i64) -> f32 {
        let logit = logit_accumulator as f64 * self.logit_scale;
        (1.0 / (1.0 + (-logit).exp())) as f32
    }

    /// Host preprocessing, card, probability: the whole path on the CPU.
    pub fn score(&self, summary: &[f32]) -> f32 {
        let mut x = [0i8; INPUTS];
        self.quantize_input(summary, &mut x);
        self.probability(self.logit_accumulator(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantization_matches_the_real_product_to_half_a_unit() {
        for real in [0.000_731, 0.011_8, 0.25, 0.5, 0.999_999] {
            let r = Requant::of(real);
            assert!((1 << 30..=i32::MAX).contains(&r.multiplier), "{real}: {r:?}");
            for v in [-1_000_000, -12_345, -1, 0, 1, 7, 99_999, 2_000_000_000] {
                let exact = f64::from(v) * real;
                assert!((f64::from(r.apply(v)) - exact).abs() <= 0.5 + 1e-6 * exact.abs(), "{v} × {real}");
            }
        }
    }

    #[test]
    fn the_builtin_int8_model_comes_apart_into_the_kernels_integers() {
        let q = QuantClassifier::from_onnx(crate::trigger::tract::BUILTIN_INT8_MODEL).unwrap();
        assert_eq!(q.w1.len(), INPUTS * HIDDEN1);
        assert_eq!(q.w2.len(), HIDDEN1 * HIDDEN2);
        assert_eq!(q.hidden_zero, -128, "the ReLU's scale starts at zero");
        assert!(q.w3.iter().any(|&w| w.unsigned_abs() == 127), "w3 uses its full range");
        let err = QuantClassifier::from_onnx(crate::trigger::tract::BUILTIN_MODEL).unwrap_err();
        assert!(matches!(err, QuantError::Missing(_)), "{err}");
    }
}
