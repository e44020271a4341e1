//! `hitgate fpga-export`: the FPGA kernel's weight header and test bench data, and the emulated
//! card's manifest, written from the int8 hit classifier.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::out::say;
use hitgate::trigger::fpga::backend::BUILTIN_INT8;
use hitgate::trigger::tract::BUILTIN_INT8_MODEL;

#[derive(Args)]
pub struct FpgaExportArgs {
    /// The hls/ folder.
    #[arg(long, default_value = "hls")]
    out: PathBuf,
    /// The bitstreams/ folder (the emulated card's manifest goes to emulated/manifest.toml).
    #[arg(long, default_value = "bitstreams")]
    bitstreams: PathBuf,
    /// "builtin-int8" or an int8 (QDQ) ONNX file of the same shape.
    #[arg(long, default_value = "builtin-int8")]
    model: String,
}

pub fn run(args: &FpgaExportArgs) -> Result<()> {
    let (bytes, name) = match args.model.as_str() {
        BUILTIN_INT8 => (BUILTIN_INT8_MODEL.to_vec(), "models/hit_classifier.int8.onnx".to_string()),
        path => (std::fs::read(path).with_context(|| format!("reading {path}"))?, path.to_string()),
    };
    for path in hitgate::fpga_export::export(&bytes, &name, &args.out, &args.bitstreams)? {
        say!("wrote {}", path.display());
    }
    Ok(())
}
