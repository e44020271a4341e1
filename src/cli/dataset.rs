//! `hitgate dataset`: training data for the learned models from simulated frames (NumPy files).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::out::say;
use hitgate::features::SpotFinderParams;
use hitgate::features::summary::SUMMARY_LEN;
use hitgate::sim::SimConfig;
use hitgate::sim::dataset::{frame_dataset, peak_dataset};
use hitgate::trigger::InputRanges;

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Spot patches (11 × 11 photons, cut as the reducer cuts them) with their true centres: the
    /// localiser's training data.
    Peaks {
        #[arg(long, default_value = "out/dataset/peaks")]
        out: PathBuf,
        #[arg(long, default_value_t = 400)]
        frames: u64,
        #[arg(long, default_value_t = 1.0)]
        hit_rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A found spot is an example when a reflection lies within this distance.
        #[arg(long, default_value_t = 2.0)]
        match_radius_px: f32,
    },
    /// Frame summaries (what the learned trigger reads) with the truth: hit, strength, spots.
    Frames {
        #[arg(long, default_value = "out/dataset/frames")]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        frames: u64,
        #[arg(long, default_value_t = 0.5)]
        hit_rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulate the detector this config describes (model, modules, placement, beam centre,
        /// distance, energy, calibration files) instead of the built-in one.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(command: DatasetCommand) -> Result<()> {
    // The threshold finder with its default parameters: what the datasets are made with.
    let finder = SpotFinderParams::default();
    match command {
        DatasetCommand::Frames { out, frames, hit_rate, seed, config } => {
            let cfg = SimConfig { frames, hit_rate, seed, ..super::simulate::detector_of(config.as_deref())? };
            let data = frame_dataset(&cfg, finder, &|_| {}).context("simulating frames for the frame dataset")?;
            data.save(&out).with_context(|| format!("writing {}", out.display()))?;
            // The range these inputs hold: a model trained on them carries it (NAME.inputs.json beside
            // NAME.onnx) so that a run can tell when its frames are unlike them.
            let source = format!("hitgate dataset frames: {frames} simulated frames, hit rate {hit_rate}, seed {seed}");
            let ranges = InputRanges::from_summaries(&data.summaries, SUMMARY_LEN, [0.001, 0.999], &source);
            let path = out.join("inputs.json");
            std::fs::write(&path, serde_json::to_string_pretty(&ranges)?)
                .with_context(|| format!("writing {}", path.display()))?;
            let hits = data.hit.iter().filter(|&&h| h == 1.0).count();
            say!("{} frame summaries ({hits} hits) from seed {seed} in {}", data.len(), out.display());
        }
        DatasetCommand::Peaks { out, frames, hit_rate, seed, match_radius_px } => {
            let cfg = SimConfig { frames, hit_rate, seed, ..SimConfig::default() };
            let data = peak_dataset(&cfg, finder, match_radius_px, &|_| {})
                .context("simulating frames for the peak dataset")?;
            data.save(&out).with_context(|| format!("writing {}", out.display()))?;
            say!("{} spot patches from {frames} frames (seed {seed}) in {}", data.len(), out.display());
        }
    }
    Ok(())
}
