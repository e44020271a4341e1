//! The operator's command line: one file per subcommand, each parsing its arguments, calling the
//! library and printing. Exit codes scripts can rely on: 0 done; 1 failed; 2 bad command line; 3
//! invalid config; 4 the input was damaged (everything before the damage was processed and stored).

mod builder;
mod calibrate;
mod consume;
mod dataset;
mod demo;
mod doctor;
mod fpga_export;
mod geometry;
mod inspect;
mod out;
mod print;
mod progress;
mod replay;
mod run;
mod send;
mod simulate;
mod train;
mod tune;
mod validate;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use hitgate::config::{Config, ConfigError};
use hitgate::pipeline::RunSummary;

#[derive(Parser)]
#[command(name = "hitgate", version, about = "Detector edge node: assemble, trigger and store X-ray detector frames")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Simulate a JUNGFRAU run with hits and replay it through the whole pipeline (the built-in default).
    Demo(demo::DemoArgs),
    /// Write a simulated run: capture, truth, calibration maps and a config that replays it.
    Simulate(simulate::SimulateArgs),
    /// Replay a capture through assembly, trigger and sinks.
    Replay(replay::ReplayArgs),
    /// Receive the detector live over UDP through the whole pipeline until SIGINT/SIGTERM (or
    /// --duration-s), then drain every queue, close every sink and print the summary.
    Run(run::RunArgs),
    /// Run a trigger event builder for the config's `[cluster]`: combine the nodes' contributions
    /// into one verdict per frame, until every node has ended or SIGINT/SIGTERM. Run several for
    /// failover: each frame keeps the first verdict stored.
    Builder(builder::BuilderArgs),
    /// Read one source of the config's `jetstream` forward through a durable consumer and write it
    /// as the node's storage would (features records, NeXus/HDF5 files), in parts of
    /// --frames-per-part frames, acknowledging each part once it is whole on disk. Started again
    /// under the same --durable name, it resumes where the last whole part ended.
    Consume(consume::ConsumeArgs),
    /// Send a capture's detector packets over UDP (sendmmsg), paced, looped, optionally damaged.
    Send(send::SendArgs),
    /// Show what a capture holds (detectors, ports, frames, losses), or what a NeXus master written
    /// by hitgate links (files, frames, compression).
    Inspect(inspect::InspectArgs),
    /// Check a config; list every problem with its key path.
    Validate(validate::ValidateArgs),
    /// Check this host against a config: receive buffers, MTU, NIC rings, pinned cores' clock and
    /// isolation, memory for the pool, disk for the sinks, clock sync; each shortfall with its fix.
    Doctor(doctor::DoctorArgs),
    /// Score every frame of a capture and choose the trigger's cut for a target accept rate: a table
    /// of cut → accept rate (efficiency and purity against a truth file), the curve as SVG, and a copy
    /// of the config with the chosen cut.
    Tune(tune::TuneArgs),
    /// Estimate the beam centre from a run's own background rings, with its uncertainty.
    Geometry(geometry::GeometryArgs),
    /// Calibration measured on the detector's own data.
    #[command(subcommand)]
    Calibrate(calibrate::CalibrateCommand),
    /// Write training data for the learned models from simulated frames (NumPy .npy files).
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Train a learned model on training data (`hitgate dataset`), from wherever hitgate is installed.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Write the FPGA kernel's weight header and its C-simulation test data from the int8 hit
    /// classifier (generated files under hls/: never edit them, run this).
    FpgaExport(fpga_export::FpgaExportArgs),
}

/// An error with the exit code it stands for.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Replay(args) => replay::run(args),
        Command::Run(args) => run::run(&args),
        Command::Builder(args) => builder::run(&args),
        Command::Consume(args) => consume::run(args),
        Command::Send(args) => send::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Tune(args) => tune::run(args),
        Command::Geometry(args) => geometry::run(&args),
        Command::Calibrate(command) => calibrate::run(command),
        Command::Dataset(command) => dataset::run(command),
        Command::Train(command) => train::run(command),
        Command::FpgaExport(args) => fpga_export::run(&args),
    }
}

/// The config as `node` of its cluster runs it (unchanged without `--node`).
fn as_node(config: Config, node: Option<&str>, path: &Path) -> Result<Config> {
    let Some(node) = node else { return Ok(config) };
    if !config.cluster.enabled() {
        return Err(Exit {
            code: 3,
            message: format!("{}: --node {node}, but no [cluster] nats servers", path.display()),
        }
        .into());
    }
    let names: Vec<&str> = config.cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    config.for_node(node).ok_or_else(|| {
        Exit {
            code: 3,
            message: format!("{}: --node {node}: not one of cluster.nodes ({})", path.display(), names.join(", ")),
        }
        .into()
    })
}

/// The config at `path`, loaded and checked; each default it leaves the run to assume (the beam
/// centre, the distance, the photon energy, no pixel mask under the learned trigger) is said on
/// standard error, as a default that changes results is never silent.
fn load_config(path: &Path) -> Result<Config> {
    let config = Config::load(path).map_err(|e| {
        let code = if matches!(e, ConfigError::Read { .. }) { 1 } else { 3 };
        Exit { code, message: describe(&e) }
    })?;
    for assumed in config.defaults_assumed() {
        eprintln!("hitgate: {}: {assumed}", path.display());
    }
    Ok(config)
}

/// An error and every cause under it, as one line.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Exit code 4 when the input was damaged (everything before the damage was processed).
fn damaged_input(summary: &RunSummary) -> Result<()> {
    match &summary.input_error {
        Some(e) => Err(Exit { code: 4, message: format!("input damaged: {e}") }.into()),
        None => Ok(()),
    }
}

/// A flag set by SIGINT or SIGTERM.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// A capture opened, or exit code 4 with why it cannot be.
fn open_capture(path: &Path) -> Result<hitgate::ingest::Capture> {
    hitgate::ingest::Capture::open(path).map_err(|e| Exit { code: 4, message: describe(&e) }.into())
}
