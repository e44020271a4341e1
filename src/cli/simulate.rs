//! `hitgate simulate`: a simulated run written to disk, with a config that replays it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use clap::Args;

use hitgate::sim::{CaptureFileFormat, LinkFraming, PacketFaults, SimConfig, SimOutputs, simulate};

use super::print;
use super::progress::{bar, while_running};

#[derive(Args)]
pub struct SimulateArgs {
    #[arg(long, default_value = "out/sim")]
    out: PathBuf,
    /// Simulate the detector this config describes: its model, modules and their placement, ports,
    /// beam centre, distance and energy, and its pedestals and gains when it names calibration files.
    #[arg(long, conflicts_with_all = ["model", "modules", "first_udp_port", "photon_energy_kev", "distance_mm"])]
    config: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    frames: u64,
    #[arg(long, default_value_t = 0.25)]
    hit_rate: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// jungfrau-1if or jungfrau-2if.
    #[arg(long, default_value = "jungfrau-1if")]
    model: String,
    /// Modules (8 makes a 4M, two modules across).
    #[arg(long, default_value_t = 1)]
    modules: usize,
    #[arg(long, default_value_t = 50001)]
    first_udp_port: u16,
    #[arg(long, default_value_t = 1000.0)]
    frame_rate_hz: f64,
    /// Frames without beam at the start, for measuring pedestals (replay.toml then measures them).
    #[arg(long, default_value_t = 0)]
    dark_frames: u64,
    #[arg(long, default_value_t = 12.4)]
    photon_energy_kev: f64,
    /// Sample-to-detector distance.
    #[arg(long, default_value_t = 100.0)]
    distance_mm: f64,
    /// A beamline drawn from the built-in model's training distribution (the seed picks it):
    /// distance, energy, beam centre, background, ice, crystals and spot shapes.
    #[arg(long, conflicts_with = "held_out")]
    randomize: bool,
    /// Run N (1-9) of the held-out matrix the built-in model is judged on: settings its training
    /// never draws (beam off the detector, 60 and 280 mm, 7 and 20 keV, a bright water ring,
    /// spotty-ice misses, weak hits, four modules). Its own seed and hit rate; `--frames` sets its
    /// length.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=9))]
    held_out: Option<u8>,
    #[command(flatten)]
    faults: FaultArgs,
    #[arg(long, value_enum, default_value = "pcap")]
    format: CaptureFileFormat,
    #[arg(long, value_enum, default_value = "ethernet")]
    link: LinkFraming,
}

/// Damage to the packet stream, as fractions of packets.
#[derive(Args)]
pub struct FaultArgs {
    /// Fraction of packets lost on the way.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Fraction of packets arriving a few places late.
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Fraction of packets arriving twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate: f64,
}

/// The simulated detector: the one `config` describes, else `SimConfig`'s default.
pub fn detector_of(config: Option<&Path>) -> Result<SimConfig> {
    let Some(path) = config else { return Ok(SimConfig::default()) };
    let config = super::load_config(path)?;
    SimConfig::for_detector(&config.detector, &config.calibration)
        .with_context(|| format!("simulating the detector of {}", path.display()))
}

pub fn run(args: &SimulateArgs) -> Result<()> {
    let a = args;
    // The detector: the config's, else the one the command line describes.
    let detector = match &a.config {
        Some(_) => detector_of(a.config.as_deref())?,
        None => SimConfig {
            model: a.model.clone(),
            modules: a.modules,
            modules_per_row: if a.modules >= 2 { 2 } else { 1 },
            first_udp_port: a.first_udp_port,
            photon_energy_kev: a.photon_energy_kev,
            distance_mm: a.distance_mm,
            ..SimConfig::default()
        },
    };
    let detector = if let Some(n) = a.held_out {
        let run = hitgate::sim::randomize::held_out_matrix(a.frames).swap_remove(usize::from(n) - 1);
        super::out::say!("held-out run {n}: {}", run.name);
        SimConfig { frames: a.frames, ..run.config }
    } else if a.randomize {
        let drawn = hitgate::sim::randomize::training_episode(&detector, a.seed, 0);
        SimConfig { hit_rate: a.hit_rate, seed: a.seed, ..drawn }
    } else {
        SimConfig { hit_rate: a.hit_rate, seed: a.seed, ..detector }
    };
    let cfg = SimConfig {
        frames: a.frames,
        frame_rate_hz: a.frame_rate_hz,
        dark_frames: a.dark_frames,
        faults: PacketFaults { loss: a.faults.loss, reorder: a.faults.reorder, duplicate: a.faults.duplicate },
        format: a.format,
        framing: a.link,
        ..detector
    };
    let outputs = with_progress(&cfg, &a.out)?;
    print::simulation(&outputs);
    Ok(())
}

/// Simulates `cfg` into `out`, showing how far it is.
pub fn with_progress(cfg: &SimConfig, out: &Path) -> Result<SimOutputs> {
    let frame = AtomicU64::new(0);
    let line = || {
        let n = frame.load(Ordering::Relaxed);
        format!("{} simulating frame {n}/{}", bar(n as f64 / cfg.frames.max(1) as f64), cfg.frames)
    };
    while_running(line, || simulate(cfg, out, &mut |n| frame.store(n, Ordering::Relaxed)))
        .with_context(|| format!("simulating into {}", out.display()))
}
