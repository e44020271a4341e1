//! `hitgate geometry`: the detector's geometry as hitgate places it, for other programs, and the beam
//! centre estimated from a run's own data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use hitgate::config::TriggerKind;
use hitgate::features::beam_centre::BackgroundRings;
use hitgate::ingest::Recording;
use hitgate::pipeline::each_whole_frame;
use hitgate::reduce::ReducerPlan;

use super::out::say;
use super::{Exit, describe, load_config};

#[derive(Args)]
pub struct GeometryArgs {
    /// Estimate the beam centre from a run's own background rings: a packet capture, or an
    /// slsReceiver run by its master file, of the config's detector.
    #[arg(long, value_name = "CAPTURE", required_unless_present = "crystfel")]
    estimate: Option<PathBuf>,
    /// Write a CrystFEL geometry (`.geom`) of the detector as hitgate places it, for its NeXus files
    /// in photons: one panel a module in the assembled image (the default), or one panel a chip with
    /// the gaps of its double-size border pixels where the config keeps the raw image.
    #[arg(long, value_name = "FILE")]
    crystfel: Option<PathBuf>,
    /// The detector's config: its model, ports, calibration and module placement.
    #[arg(long)]
    config: PathBuf,
    /// Use at most this many whole frames.
    #[arg(long, default_value_t = 1000)]
    frames: u64,
}

pub fn run(args: &GeometryArgs) -> Result<()> {
    let config = load_config(&args.config)?;
    if let Some(out) = &args.crystfel {
        crystfel(&config, out)?;
    }
    match &args.estimate {
        Some(recording) => estimate(config, recording, args.frames),
        None => Ok(()),
    }
}

fn crystfel(config: &hitgate::config::Config, out: &std::path::Path) -> Result<()> {
    use hitgate::detector::chips::{CrystfelBeam, crystfel_geometry, placed_panels};
    let geometry = config.geometry()?;
    let origins = config.panel_origins(&geometry);
    let beam = CrystfelBeam {
        beam_center_px: config.beam_center_px(),
        distance_mm: config.detector.distance_mm(),
        photon_energy_kev: config.detector.photon_energy_kev(),
        flagged_value: Some(hitgate::codec::FLAGGED_U32),
    };
    let image = config.panel_image(&geometry);
    let text = crystfel_geometry(&geometry, &image, &origins, &beam);
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    let panels = if image.is_split() { origins.len() } else { placed_panels(&geometry, &origins).len() };
    say!(
        "written      {}: {panels} panels, {} × {}{}",
        out.display(),
        geometry.modules,
        geometry.model.name,
        if image.is_split() { " assembled (514 × 1030 a module)" } else { "" }
    );
    Ok(())
}

fn estimate(mut config: hitgate::config::Config, path: &std::path::Path, most: u64) -> Result<()> {
    let recording = Recording::open(path).map_err(|e| Exit { code: 4, message: describe(&e) })?;
    let geometry = config.geometry()?;
    // The conversion to photons is all that is needed of the reduction: no model is loaded.
    config.trigger.kind = TriggerKind::AcceptAll;
    config.features.localiser.model = None;
    let plan = ReducerPlan::new(&config.reducer_settings(&geometry)).context("preparing the conversion to photons")?;
    let (panels, rows, cols) = geometry.panels();
    let origins = config.panel_origins(&geometry);
    // In the assembled image each double pixel counts at its size and place; in the raw image (as
    // configured) every pixel is one.
    let mut rings = if config.detector.splits_chip_borders() {
        BackgroundRings::on_chips(&hitgate::detector::chips::placed_panels(&geometry, &origins), cols)
    } else {
        BackgroundRings::new(&origins, rows, cols)
    };
    let mut photons = vec![0f32; panels * rows * cols];
    let converter = plan.photons().converter().map(|c| c.current());
    let read = each_whole_frame(&geometry, config.assembler_config(), &recording, |frame| {
        if rings.frames() < most {
            plan.photons().convert(converter.as_deref(), frame.pixels_u16(), 0, &mut photons);
            rings.add(&photons);
        }
    })
    .context("reading the run")?;
    let Some(e) = rings.estimate() else {
        return Err(Exit { code: 4, message: format!("{}: no whole frame to measure", path.display()) }.into());
    };
    say!("frames       {} whole frames, {} left out with packets missing", e.frames, read.frames_partial);
    let sigma = |s: f64| if s.is_finite() { format!(" ± {s:.1}") } else { " (uncertainty needs 4 frames)".into() };
    say!(
        "beam centre  row {:.1}{}, column {:.1}{} pixels of the detector's image ({})",
        e.row,
        sigma(e.sigma_row),
        e.col,
        sigma(e.sigma_col),
        if config.detector.splits_chip_borders() { "modules assembled, chip-border pixels split" } else { "raw" }
    );
    say!(
        "             (± is statistical: the scatter of four interleaved quarters of the frames);\n             a radial profile about it explains {:.0}% of the mean background's variance",
        100.0 * e.explained
    );
    if e.explained < 0.5 {
        say!("             (little ring structure: the estimate is weak; measure the centre another way)");
    }
    say!("[detector]   beam_center_row_px = {:.1}\n             beam_center_col_px = {:.1}", e.row, e.col);
    match read.input_error {
        Some(err) => Err(Exit { code: 4, message: format!("input damaged: {err}") }.into()),
        None => Ok(()),
    }
}
