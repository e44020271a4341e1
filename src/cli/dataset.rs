//! `hitgate dataset`: training data for the learned models from simulated frames (NumPy files).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::out::say;
use hitgate::features::summary::SUMMARY_LEN;
use hitgate::features::{SpotFinderParams, ThresholdParams};
use hitgate::ingest::Recording;
use hitgate::pipeline::{LabelRule, label_recording_with_audit};
use hitgate::sim::SimConfig;
use hitgate::sim::dataset::{
    FrameDataset, PeakFinder, frame_dataset, peak_dataset, randomized_frame_dataset, randomized_peak_dataset,
};

use super::{Exit, describe};
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
        /// Draw a new beamline every 25 frames from the built-in training distribution: spots of its
        /// shapes (pseudo-Voigt, streaked) on its backgrounds.
        #[arg(long)]
        randomize: bool,
    },
    /// Frame summaries (what the learned trigger reads) with the truth: hit, strength, spots. Of
    /// simulated frames, or with `--capture` of a recorded run labelled by a conservative rule.
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
        /// Draw a new beamline every 25 frames from the built-in model's training distribution
        /// (distance, energy, beam centre, background, ice, crystals and spot shapes; the held-out
        /// matrix's settings left out), on the built-in detector or `--config`'s.
        #[arg(long, conflicts_with = "capture")]
        randomize: bool,
        /// Summarise this recording instead (a packet capture or an slsReceiver run's master file),
        /// reduced as `--config` says; needs `--config` and `--label-by`.
        #[arg(long, requires_all = ["config", "label_by"])]
        capture: Option<PathBuf>,
        /// How a recorded frame is labelled: by peakfinder8's spot count.
        #[arg(long, value_enum, requires = "capture")]
        label_by: Option<LabelBy>,
        /// A recorded frame with at least this many peakfinder8 spots is a hit.
        #[arg(long, default_value_t = 30)]
        hit_min_spots: u32,
        /// A recorded frame with at most this many is a miss; frames in between are left out.
        #[arg(long, default_value_t = 3)]
        miss_max_spots: u32,
        /// The run's own features records (a features sink's file): the frames it kept for its audit
        /// stream, sampled evenly among the trigger's rejections, are misses below the hit limit
        /// (unbiased negatives, kept where the rule would leave them out).
        #[arg(long, requires = "capture")]
        audit_records: Option<PathBuf>,
    },
}

/// How recorded frames are labelled.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LabelBy {
    Peakfinder8,
}

/// Writes a frame dataset and the range its inputs hold: a model trained on it carries that range
/// (NAME.inputs.json beside NAME.onnx) so that a run can tell when its frames are unlike them.
fn save_frames(data: &FrameDataset, out: &std::path::Path, source: &str) -> Result<()> {
    data.save(out).with_context(|| format!("writing {}", out.display()))?;
    let ranges = InputRanges::from_summaries(&data.summaries, SUMMARY_LEN, [0.001, 0.999], source);
    let path = out.join("inputs.json");
    std::fs::write(&path, serde_json::to_string_pretty(&ranges)?).with_context(|| format!("writing {}", path.display()))
}

pub fn run(command: DatasetCommand) -> Result<()> {
    // The threshold finder with its default parameters: what the datasets are made with.
    let finder = SpotFinderParams::default();
    match command {
        DatasetCommand::Frames {
            out,
            config,
            capture: Some(capture),
            hit_min_spots,
            miss_max_spots,
            audit_records,
            ..
        } => {
            let path = config.context("--capture needs --config")?;
            let config = super::load_config(&path)?;
            let recording = Recording::open(&capture).map_err(|e| Exit { code: 4, message: describe(&e) })?;
            let rule = LabelRule { hit_min_spots, miss_max_spots };
            let audit = match &audit_records {
                Some(path) => hitgate::sink::features::read_audit_frames(path)
                    .with_context(|| format!("reading the audit frames of {}", path.display()))?,
                None => std::collections::HashSet::new(),
            };
            let labelled = label_recording_with_audit(&config, &recording, rule, &audit)
                .with_context(|| format!("summarising {}", capture.display()))?;
            let data = FrameDataset {
                summaries: labelled.summaries,
                hit: labelled.hit.iter().map(|&h| f32::from(u8::from(h))).collect(),
                // Not known of a recorded frame.
                strength: vec![f32::NAN; labelled.hit.len()],
                visible_spots: vec![f32::NAN; labelled.hit.len()],
                detectable_spots: vec![f32::NAN; labelled.hit.len()],
                spots_found: labelled.label_spots.iter().map(|&n| n as f32).collect(),
            };
            let source = format!(
                "hitgate dataset frames --capture {} --config {}: labelled by peakfinder8 (hit ≥ {hit_min_spots} spots, \
                 miss ≤ {miss_max_spots})",
                capture.display(),
                path.display()
            );
            save_frames(&data, &out, &source)?;
            let hits = labelled.hit.iter().filter(|&&h| h).count();
            say!(
                "{} frame summaries of {}: {hits} hits (≥ {hit_min_spots} peakfinder8 spots), {} misses (≤ {miss_max_spots}, \
                 or audit frames below the hit limit: {}), {} left out between, {} partial frames skipped, in {}",
                data.len(),
                capture.display(),
                data.len() - hits,
                labelled.audit_negatives,
                labelled.left_out,
                labelled.frames_partial,
                out.display()
            );
            if let Some(e) = labelled.input_error {
                return Err(Exit { code: 4, message: format!("input damaged: {e}") }.into());
            }
        }
        DatasetCommand::Frames { out, frames, hit_rate, seed, config, randomize, .. } => {
            let cfg = SimConfig { frames, hit_rate, seed, ..super::simulate::detector_of(config.as_deref())? };
            let data = if randomize {
                randomized_frame_dataset(&cfg, seed, frames, finder, &|_| {})
            } else {
                frame_dataset(&cfg, finder, &|_| {})
            };
            let data = data.context("simulating frames for the frame dataset")?;
            let drawn = if randomize { ", beamlines drawn from the training distribution" } else { "" };
            let source =
                format!("hitgate dataset frames: {frames} simulated frames, hit rate {hit_rate}, seed {seed}{drawn}");
            save_frames(&data, &out, &source)?;
            let hits = data.hit.iter().filter(|&&h| h == 1.0).count();
            say!("{} frame summaries ({hits} hits) from seed {seed} in {}", data.len(), out.display());
        }
        DatasetCommand::Peaks { out, frames, hit_rate, seed, match_radius_px, randomize: true } => {
            let cfg = SimConfig { hit_rate, ..SimConfig::default() };
            let data = randomized_peak_dataset(&cfg, seed, frames, ThresholdParams::default(), match_radius_px)
                .context("simulating frames for the peak dataset")?;
            data.save(&out).with_context(|| format!("writing {}", out.display()))?;
            say!(
                "{} spot patches from {frames} frames of drawn beamlines (seed {seed}) in {}",
                data.len(),
                out.display()
            );
        }
        DatasetCommand::Peaks { out, frames, hit_rate, seed, match_radius_px, randomize: false } => {
            let cfg = SimConfig { frames, hit_rate, seed, ..SimConfig::default() };
            let data = peak_dataset(&cfg, PeakFinder::Fixed(finder), match_radius_px, &|_| {})
                .context("simulating frames for the peak dataset")?;
            data.save(&out).with_context(|| format!("writing {}", out.display()))?;
            say!("{} spot patches from {frames} frames (seed {seed}) in {}", data.len(), out.display());
        }
    }
    Ok(())
}
