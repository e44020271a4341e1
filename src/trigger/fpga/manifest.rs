//! A bitstream's manifest (`bitstreams/<board>/manifest.toml`): what it was built from — the hashes of
//! the kernel sources, of the register-map header (the host ↔ card ABI) and of the generated weights,
//! the model it implements, the tool — and what synthesis said of it. hitgate refuses a bitstream whose
//! manifest does not match the register map it was compiled with or the model it is configured with:
//! a card answering with a different ABI or other weights would judge frames wrongly, silently.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The register map and kernel sources this hitgate was compiled with.
pub const REGISTER_MAP: &[u8] = include_bytes!("../../../hls/include/hitgate_trigger_regs.h");
pub const KERNEL_SOURCES: &[(&str, &[u8])] = &[
    ("kernels/hit_classifier.h", include_bytes!("../../../hls/kernels/hit_classifier.h")),
    ("kernels/hitgate_trigger.cpp", include_bytes!("../../../hls/kernels/hitgate_trigger.cpp")),
    ("kernels/hitgate_trigger.h", include_bytes!("../../../hls/kernels/hitgate_trigger.h")),
];
pub const WEIGHTS: &[u8] = include_bytes!("../../../hls/weights/hit_classifier_weights.h");

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The board's platform (or `emulated`).
    pub board: String,
    pub version: u32,
    pub kernel: String,
    /// The ONNX model the weights were generated from, and its hash.
    pub model: String,
    pub model_fnv1a64: String,
    pub register_map_fnv1a64: String,
    pub kernel_sources_fnv1a64: String,
    pub weights_fnv1a64: String,
    pub abi_version: u32,
    /// What built it (`Vitis HLS 2023.2`, or the host compiler for the emulated card).
    pub tool: String,
    /// The bitstream file beside the manifest, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xclbin: Option<String>,
    pub expected: Expected,
}

/// What synthesis reported (or, without a report, an estimate, said so).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// `synthesis report` or `estimate`.
    pub source: String,
    pub latency_cycles_per_frame: u32,
    pub clock_mhz: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lut: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ff: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsp: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bram_18k: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read bitstream manifest {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bitstream manifest {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "bitstream manifest {path}: its {what} ({found}) is not this hitgate's ({expected}); the bitstream was built from other sources: rebuild it (hls/README.md) or use a matching hitgate"
    )]
    Mismatch { path: PathBuf, what: &'static str, found: String, expected: String },
}

/// FNV-1a, 64 bits: names a model or a source by its bytes (identity, not security).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

/// One hash over the kernel sources, by name then contents.
pub fn kernel_sources_hash() -> u64 {
    let mut all = Vec::new();
    for (name, bytes) in KERNEL_SOURCES {
        all.extend_from_slice(name.as_bytes());
        all.push(0);
        all.extend_from_slice(bytes);
    }
    fnv1a64(&all)
}

impl Manifest {
    /// The manifest of a bitstream built from this hitgate's sources and `model`.
    pub fn for_sources(
        board: &str,
        model_name: &str,
        model: &[u8],
        weights: &[u8],
        tool: &str,
        expected: Expected,
    ) -> Manifest {
        Manifest {
            board: board.into(),
            version: 1,
            kernel: "hitgate_trigger".into(),
            model: model_name.into(),
            model_fnv1a64: hex(fnv1a64(model)),
            register_map_fnv1a64: hex(fnv1a64(REGISTER_MAP)),
            kernel_sources_fnv1a64: hex(kernel_sources_hash()),
            weights_fnv1a64: hex(fnv1a64(weights)),
            abi_version: super::regs::ABI_VERSION_VALUE,
            tool: tool.into(),
            xclbin: None,
            expected,
        }
    }

    /// Reads a manifest.
    ///
    /// # Errors
    /// The file cannot be read or is not a manifest.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ManifestError::Parse { path: path.into(), reason: e.message().to_string() })
    }

    /// Checks the bitstream against the register map compiled into hitgate and the configured model.
    ///
    /// # Errors
    /// The register map, ABI version or model differ.
    pub fn check(&self, path: &Path, model: &[u8]) -> Result<(), ManifestError> {
        let mismatch = |what, found: String, expected: String| {
            Err(ManifestError::Mismatch { path: path.into(), what, found, expected })
        };
        if self.register_map_fnv1a64 != hex(fnv1a64(REGISTER_MAP)) {
            return mismatch("register map", self.register_map_fnv1a64.clone(), hex(fnv1a64(REGISTER_MAP)));
        }
        if self.abi_version != super::regs::ABI_VERSION_VALUE {
            return mismatch("ABI version", self.abi_version.to_string(), super::regs::ABI_VERSION_VALUE.to_string());
        }
        if self.model_fnv1a64 != hex(fnv1a64(model)) {
            return mismatch("model", self.model_fnv1a64.clone(), hex(fnv1a64(model)));
        }
        Ok(())
    }
}

/// The emulated card's manifest for `model` and the weight header generated from it: what
/// `hitgate fpga-export` writes to `bitstreams/emulated/manifest.toml`.
pub fn emulated(model_name: &str, model: &[u8], weights: &[u8]) -> Manifest {
    Manifest::for_sources(
        "emulated",
        model_name,
        model,
        weights,
        "host C++ compiler through build.rs (cc), the same kernel source",
        Expected {
            source: "estimate (loop trip counts of the pipelined layers plus pipeline depth; no synthesis here)".into(),
            latency_cycles_per_frame: 170,
            clock_mhz: 300.0,
            lut: None,
            ff: None,
            dsp: None,
            bram_18k: None,
        },
    )
}

/// The committed emulated card's manifest, compiled in: what `card = "emulated"` checks by default.
pub const EMULATED_MANIFEST: &str = include_str!("../../../bitstreams/emulated/manifest.toml");
