//! `hitgate calibrate dark`: pedestal files measured on a dark run, as PSI's tools write them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use hitgate::detector::DetectorGeometry;
use hitgate::frame::AssemblerConfig;
use hitgate::ingest::Recording;
use hitgate::pipeline::measure_dark;

use super::out::say;
use super::{Exit, describe, load_config};

#[derive(Subcommand)]
pub enum CalibrateCommand {
    /// Measure pedestals (and G0 noise) on a dark run, every pixel in the gain stage it sits in, and
    /// write `pedestal_g0.bin`, `pedestal_g1.bin`, `pedestal_g2.bin` (f32 a pixel, the modules in frame
    /// order) and `pedestal_g0_rms.bin`, which `[calibration] pedestal_files` reads. A normal dark run
    /// (no forced gain) also gives `mask.bin`, for `[calibration] mask_file`: hot pixels (in G1 or G2
    /// without beam, or noise over 5 × the median pixel's) and dead ones (stuck, or never a valid gain
    /// stage).
    Dark(DarkArgs),
}

#[derive(Args)]
pub struct DarkArgs {
    /// The dark run: a packet capture, or an slsReceiver run by its master file (`…_master_0.json`).
    #[arg(long)]
    capture: PathBuf,
    /// The detector's config (its model and ports); an slsReceiver run says its own detector.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder for the pedestal files.
    #[arg(long, default_value = "out/dark")]
    out: PathBuf,
}

pub fn run(command: CalibrateCommand) -> Result<()> {
    let CalibrateCommand::Dark(args) = command;
    let recording = Recording::open(&args.capture).map_err(|e| Exit { code: 4, message: describe(&e) })?;
    let (geometry, assembler) = match (&args.config, &recording) {
        (Some(path), _) => {
            let config = load_config(path)?;
            (config.geometry()?, config.assembler_config())
        }
        (None, Recording::Raw(run)) => {
            let modules = run.ports() / run.model().ports_per_module;
            (DetectorGeometry::with_consecutive_ports(run.model().name, modules, 50001)?, AssemblerConfig::default())
        }
        (None, Recording::Capture(_)) => {
            return Err(
                Exit { code: 2, message: "--config: a capture does not say which detector sent it".into() }.into()
            );
        }
    };
    let report = measure_dark(&geometry, assembler, &recording).context("measuring the dark run")?;
    let m = &report.measurement;
    let files = m.write(&args.out).with_context(|| format!("writing into {}", args.out.display()))?;
    let pixels = m.pedestal_adu[0].len();
    say!(
        "dark run     {} whole frames of {} × {}, {} left out with packets missing",
        m.frames,
        geometry.modules,
        geometry.model.name,
        report.frames_partial
    );
    for (stage, seen) in m.pixels_seen.iter().enumerate() {
        let mean = mean_of_seen(&m.pedestal_adu[stage]);
        say!("G{stage}           {seen} of {pixels} pixels seen, mean pedestal {mean:.1} ADU");
    }
    let mut noise = m.noise_adu[0].clone();
    noise.sort_by(f32::total_cmp);
    say!("G0 noise     median {:.1} ADU", noise.get(noise.len() / 2).copied().unwrap_or(0.0));
    if m.pixels_seen[1] == 0 || m.pixels_seen[2] == 0 {
        say!("             (G1 and G2 pedestals come from dark runs with the gain forced; 0 where never seen)");
    }
    let listed: Vec<String> = files.iter().map(|f| format!("{:?}", f.display().to_string())).collect();
    say!("written      [calibration] pedestal_files = [{}]", listed.join(", "));
    match m.bad_pixels() {
        Some(bad) => {
            let path = args.out.join("mask.bin");
            bad.mask.save(&path).with_context(|| format!("writing {}", path.display()))?;
            say!(
                "mask         {} of {pixels} pixels: {} hot by noise (over {} × the median {:.1} ADU), {} hot in G1 \
                 or G2 without beam, {} dead (stuck, or never a valid gain stage)",
                bad.mask.masked_count(),
                bad.noisy,
                hitgate::calib::dark::NOISY_TIMES_MEDIAN,
                bad.median_noise_adu,
                bad.switched,
                bad.dead
            );
            say!("written      [calibration] mask_file = {:?}", path.display().to_string());
        }
        None => {
            say!("mask         none: a run with its gain forced, or of one frame, cannot say which pixels misbehave")
        }
    }
    match report.input_error {
        Some(e) => Err(Exit { code: 4, message: format!("input damaged: {e}") }.into()),
        None => Ok(()),
    }
}

fn mean_of_seen(values: &[f32]) -> f64 {
    let seen: Vec<f64> = values.iter().filter(|&&v| v != 0.0).map(|&v| f64::from(v)).collect();
    if seen.is_empty() { 0.0 } else { seen.iter().sum::<f64>() / seen.len() as f64 }
}
