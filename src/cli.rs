//! The operator's command line. Exit codes scripts can rely on: 0 done; 1 failed; 2 bad command
//! line; 3 invalid config; 4 the input was damaged (everything before the damage was processed and
//! stored).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use hitgate::config::{Config, ConfigError, SinkSection};
use hitgate::ingest::Capture;
use hitgate::ingest::inventory::inventory;
use hitgate::pipeline::{Pace, Plan, Progress, ReplayOptions, RunSummary};
use hitgate::sim::{CaptureFileFormat, LinkFraming, PacketFaults, RunTruth, SimConfig, TriggerScore, simulate};

#[derive(Parser)]
#[command(name = "hitgate", version, about = "Detector edge node: assemble, trigger and store X-ray detector frames")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Simulate a JUNGFRAU run with hits and replay it through the whole pipeline (the built-in default).
    Demo {
        /// Folder for the simulated run and the results.
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 400)]
        frames: u64,
    },
    /// Write a simulated run: capture, truth, calibration maps and a config that replays it.
    Simulate(SimulateArgs),
    /// Replay a capture through assembly, trigger and sinks.
    Replay {
        capture: PathBuf,
        #[arg(long)]
        config: PathBuf,
        /// Replay at the recorded pace times this factor instead of as fast as possible.
        #[arg(long)]
        speed: Option<f64>,
        /// A simulator truth file: report the trigger's efficiency and rejection against it.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// Judge with this trigger instead of the config's (spots, tract, accept-all).
        #[arg(long, value_enum)]
        trigger: Option<TriggerArg>,
        /// Hold this fraction of frames accepted instead of the config's cut.
        #[arg(long)]
        target_rate: Option<f64>,
        /// Run as this node of the config's `[cluster]`: only its modules, verdicts from the builder.
        #[arg(long)]
        node: Option<String>,
    },
    /// Receive the detector live over UDP through the whole pipeline until SIGINT/SIGTERM (or
    /// --duration-s), then drain every queue, close every sink and print the summary.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Stop by itself after this many seconds.
        #[arg(long)]
        duration_s: Option<f64>,
        /// Run as this node of the config's `[cluster]`: only its modules, verdicts from the builder.
        #[arg(long)]
        node: Option<String>,
    },
    /// Run a trigger event builder for the config's `[cluster]`: combine the nodes' contributions
    /// into one verdict per frame, until every node has ended or SIGINT/SIGTERM. Run several for
    /// failover: each frame keeps the first verdict stored.
    Builder {
        #[arg(long)]
        config: PathBuf,
        /// This builder's name, in its verdicts.
        #[arg(long, default_value = "builder")]
        name: String,
    },
    /// Read one source of the config's `jetstream` forward through a durable consumer and write it
    /// as the node's storage would (features records, NeXus/HDF5 files), in parts of
    /// --frames-per-part frames, acknowledging each part once it is whole on disk. Started again
    /// under the same --durable name, it resumes where the last whole part ended.
    Consume {
        #[arg(long)]
        config: PathBuf,
        /// Folder for the parts (`part-000001/`, …).
        #[arg(long)]
        out: PathBuf,
        /// Read this cluster node's messages (its modules, its `{node}`), else the single node's.
        #[arg(long)]
        node: Option<String>,
        /// The durable consumer's name; default `consume-<source>`.
        #[arg(long)]
        durable: Option<String>,
        #[arg(long, default_value_t = 1000)]
        frames_per_part: u64,
        /// Stop once the source's run has ended and all of it is written.
        #[arg(long)]
        exit_at_end: bool,
    },
    /// Send a capture's detector packets over UDP (sendmmsg), paced, looped, optionally damaged.
    Send(SendArgs),
    /// Show what a capture holds (detectors, ports, frames, losses), or what a NeXus master written
    /// by hitgate links (files, frames, compression).
    Inspect {
        capture: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a config; list every problem with its key path.
    Validate { config: PathBuf },
    /// Score every frame of a capture and choose the trigger's cut for a target accept rate: a table
    /// of cut → accept rate (efficiency and purity against a truth file), the curve as SVG, and a copy
    /// of the config with the chosen cut.
    Tune {
        capture: PathBuf,
        #[arg(long)]
        config: PathBuf,
        /// Fraction of frames to accept (0 < R <= 1).
        #[arg(long)]
        target_rate: f64,
        /// A simulator truth file: add efficiency and purity.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// Where to draw the curve.
        #[arg(long, default_value = "out/tune.svg")]
        svg: PathBuf,
        /// Where to write the config with the chosen cut (default: beside the config, NAME.tuned.toml,
        /// so its relative paths still hold).
        #[arg(long)]
        write_config: Option<PathBuf>,
    },
    /// Write training data for the learned models from simulated frames (NumPy .npy files).
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Write the FPGA kernel's weight header and its C-simulation test data from the int8 hit
    /// classifier (generated files under hls/: never edit them, run this).
    FpgaExport {
        /// The hls/ folder.
        #[arg(long, default_value = "hls")]
        out: PathBuf,
        /// The bitstreams/ folder (the emulated card's manifest goes to emulated/manifest.toml).
        #[arg(long, default_value = "bitstreams")]
        bitstreams: PathBuf,
        /// "builtin-int8" or an int8 (QDQ) ONNX file of the same shape.
        #[arg(long, default_value = "builtin-int8")]
        model: String,
    },
}

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Spot patches (11 × 11 photons, cut as the reducer cuts them) with their true centres.
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
    },
}

/// A trigger backend named on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TriggerArg {
    Spots,
    Tract,
    AcceptAll,
    /// The int8 classifier on the FPGA card (`trigger.fpga.card`, "emulated" by default).
    Fpga,
}

impl From<TriggerArg> for hitgate::config::TriggerKind {
    fn from(t: TriggerArg) -> Self {
        match t {
            TriggerArg::Spots => hitgate::config::TriggerKind::Spots,
            TriggerArg::Tract => hitgate::config::TriggerKind::Tract,
            TriggerArg::AcceptAll => hitgate::config::TriggerKind::AcceptAll,
            TriggerArg::Fpga => hitgate::config::TriggerKind::Fpga,
        }
    }
}

#[derive(Args)]
pub struct SimulateArgs {
    #[arg(long, default_value = "out/sim")]
    out: PathBuf,
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
    loss: f64,
    /// Fraction of packets arriving a few places late.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Fraction of packets arriving twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
}

#[derive(Args)]
pub struct SendArgs {
    capture: PathBuf,
    /// HOST, or HOST:PORT[,PORT…] — one port per destination port of the capture, in ascending
    /// order; or dma:PATH to write into a DMA ring as the card would.
    #[arg(long)]
    to: String,
    /// With dma:PATH, drop (and count) a payload when the host holds every buffer, as a card does,
    /// instead of waiting.
    #[arg(long)]
    dma_drop_when_full: bool,
    /// Send at the recorded pace times this factor (the default pace is the recorded one).
    #[arg(long, conflicts_with_all = ["frame_rate_hz", "packet_rate", "fast"])]
    speed: Option<f64>,
    /// Send whole frames at this rate.
    #[arg(long, conflicts_with_all = ["packet_rate", "fast"])]
    frame_rate_hz: Option<f64>,
    /// Send packets at this rate (per second).
    #[arg(long, conflicts_with = "fast")]
    packet_rate: Option<f64>,
    /// As fast as the socket takes them.
    #[arg(long)]
    fast: bool,
    /// Times through the capture; frame numbers carry on rising.
    #[arg(long, default_value_t = 1)]
    loops: u32,
    #[command(flatten)]
    faults: FaultArgs,
    /// Fraction of packets with a corrupted header.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
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
        Command::Demo { out, frames } => demo(&out, frames),
        Command::Simulate(args) => {
            let cfg = sim_config(&args);
            let outputs = simulate_with_progress(&cfg, &args.out)?;
            print_sim(&outputs);
            Ok(())
        }
        Command::Replay { capture, config: path, speed, truth, trigger, target_rate, node } => {
            let mut config = as_node(load_config(&path)?, node.as_deref(), &path)?;
            if let Some(t) = trigger {
                config.trigger.kind = t.into();
            }
            if target_rate.is_some() {
                config.trigger.rate.target_accept_rate = target_rate;
            }
            let config = config
                .validated()
                .map_err(|e| Exit { code: 3, message: format!("{}: {}", path.display(), describe(&e)) })?;
            let pace = match speed {
                Some(s) if s > 0.0 && s.is_finite() => Pace::Recorded { speed: s },
                Some(s) => anyhow::bail!("--speed {s}: must be a positive factor"),
                None => Pace::AsFastAsPossible,
            };
            let summary = replay(config.clone(), &capture, pace)?;
            print!("{summary}");
            if let Some(truth) = truth {
                report_truth(&config, &truth)?;
            }
            damaged_input(&summary)
        }
        Command::Run { config: path, duration_s, node } => {
            let config = as_node(load_config(&path)?, node.as_deref(), &path)?;
            let summary = run_live(config, &path, duration_s)?;
            print!("{summary}");
            Ok(())
        }
        Command::Builder { config: path, name } => {
            let config = load_config(&path)?;
            if !config.cluster.enabled() {
                return Err(Exit { code: 3, message: format!("{}: no [cluster] nats servers", path.display()) }.into());
            }
            let stop = stop_on_signals()?;
            eprintln!(
                "builder {name}: run {:?}, {} nodes, rule {:?}",
                config.cluster.run,
                config.cluster.nodes.len(),
                config.cluster.rule
            );
            let stats = hitgate::cluster::run_builder(&config.cluster, &name, &stop)
                .context("running the trigger event builder")?;
            println!(
                "builder {name}: {} frames decided, {} kept, {} without every node, {} late contributions, nodes taken as down {} times",
                stats.decided, stats.kept, stats.incomplete, stats.late, stats.nodes_down
            );
            Ok(())
        }
        Command::Consume { config: path, out, node, durable, frames_per_part, exit_at_end } => {
            let config = as_node(load_config(&path)?, node.as_deref(), &path)?;
            let Some(section) = config.sinks.iter().find_map(|s| match s {
                hitgate::config::SinkSection::Jetstream(f) => Some(f.clone()),
                _ => None,
            }) else {
                return Err(
                    Exit { code: 3, message: format!("{}: no [[sink]] kind = \"jetstream\"", path.display()) }.into()
                );
            };
            if frames_per_part == 0 {
                return Err(Exit { code: 2, message: "--frames-per-part must be at least 1".into() }.into());
            }
            let source = section.source_name().to_string();
            let options = hitgate::forward::consume::ConsumeOptions {
                out,
                durable: durable.unwrap_or_else(|| format!("consume-{source}")),
                source,
                frames_per_part,
                exit_at_end,
                idle: std::time::Duration::from_secs(1),
            };
            let stop = stop_on_signals()?;
            eprintln!("consume: {} source {} as {}", section.stream, options.source, options.durable);
            let report = hitgate::forward::consume::consume(&config, &section, &options, &stop)
                .with_context(|| format!("consuming {} into {}", section.stream, options.out.display()))?;
            let r = &report.reassembly;
            println!(
                "consume: {} parts, {} frames, {} chunks written; {} messages already written skipped; {} chunks missing, {} parts dropped, {} messages malformed; {} run ends",
                report.parts,
                report.frames,
                report.chunks,
                report.messages_skipped,
                r.chunks_missing,
                r.parts_dropped,
                r.messages_malformed,
                report.ends
            );
            Ok(())
        }
        Command::Send(args) => {
            let summary = send(&args)?;
            print!("{summary}");
            Ok(())
        }
        #[cfg(feature = "hdf5")]
        Command::Inspect { capture, json } if hitgate::sink::hdf5::inspect::is_hdf5(&capture) => {
            let summary = hitgate::sink::hdf5::inspect::summarize(&capture)
                .map_err(|e| Exit { code: 4, message: format!("{}: {e}", capture.display()) })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_master(&capture, &summary);
            }
            Ok(())
        }
        Command::Inspect { capture, json } => {
            let cap = Capture::open(&capture).map_err(|e| Exit { code: 4, message: describe(&e) })?;
            let inv = inventory(&cap);
            if json {
                println!("{}", serde_json::to_string_pretty(&inv)?);
            } else {
                print_inventory(&capture, &inv);
            }
            match inv.error {
                Some(e) => Err(Exit { code: 4, message: format!("{}: {e}", capture.display()) }.into()),
                None => Ok(()),
            }
        }
        Command::Dataset(DatasetCommand::Frames { out, frames, hit_rate, seed }) => {
            let cfg = SimConfig { frames, hit_rate, seed, ..SimConfig::default() };
            let data = hitgate::sim::dataset::frame_dataset(&cfg, default_finder(), &|_| {})
                .context("simulating frames for the frame dataset")?;
            data.save(&out).with_context(|| format!("writing {}", out.display()))?;
            let hits = data.hit.iter().filter(|&&h| h == 1.0).count();
            println!("{} frame summaries ({hits} hits) from seed {seed} in {}", data.len(), out.display());
            Ok(())
        }
        Command::Dataset(DatasetCommand::Peaks { out, frames, hit_rate, seed, match_radius_px }) => {
            let cfg = SimConfig { frames, hit_rate, seed, ..SimConfig::default() };
            let finder = default_finder();
            let data = hitgate::sim::dataset::peak_dataset(&cfg, finder, match_radius_px, &|_| {})
                .context("simulating frames for the peak dataset")?;
            data.save(&out).with_context(|| format!("writing {}", out.display()))?;
            println!("{} spot patches from {frames} frames (seed {seed}) in {}", data.len(), out.display());
            Ok(())
        }
        Command::Tune { capture, config, target_rate, truth, svg, write_config } => {
            tune(&capture, &config, target_rate, truth.as_deref(), &svg, write_config)
        }
        Command::FpgaExport { out, bitstreams, model } => {
            let (bytes, name) = match model.as_str() {
                "builtin-int8" => (
                    hitgate::trigger::tract::BUILTIN_INT8_MODEL.to_vec(),
                    "models/hit_classifier.int8.onnx".to_string(),
                ),
                path => (std::fs::read(path).with_context(|| format!("reading {path}"))?, path.to_string()),
            };
            for path in hitgate::trigger::fpga::weights::export(&bytes, &name, &out, &bitstreams)? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Validate { config } => {
            let c = load_config(&config)?;
            let g = c.geometry()?;
            println!(
                "{}: ok — {} × {} on UDP ports {:?}, {} packets of {} bytes per frame, pool {} × {} MiB, trigger {:?}, {} sink(s)",
                config.display(),
                g.modules,
                g.model.name,
                g.udp_ports,
                g.packets_per_frame(),
                g.model.packet_bytes(),
                c.assembler.pool_frames,
                g.frame_bytes() >> 20,
                c.trigger.kind,
                c.sinks.len()
            );
            Ok(())
        }
    }
}

/// The threshold finder with the default parameters: what the datasets are made with.
fn default_finder() -> hitgate::features::SpotFinderParams {
    (&hitgate::config::SpotsTriggerSection::default()).into()
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

fn load_config(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| {
        let code = if matches!(e, ConfigError::Read { .. }) { 1 } else { 3 };
        Exit { code, message: describe(&e) }.into()
    })
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

fn damaged_input(summary: &RunSummary) -> Result<()> {
    match &summary.input_error {
        Some(e) => Err(Exit { code: 4, message: format!("input damaged: {e}") }.into()),
        None => Ok(()),
    }
}

fn sim_config(a: &SimulateArgs) -> SimConfig {
    SimConfig {
        model: a.model.clone(),
        modules: a.modules,
        modules_per_row: if a.modules >= 2 { 2 } else { 1 },
        first_udp_port: a.first_udp_port,
        frames: a.frames,
        hit_rate: a.hit_rate,
        seed: a.seed,
        frame_rate_hz: a.frame_rate_hz,
        photon_energy_kev: a.photon_energy_kev,
        distance_mm: a.distance_mm,
        dark_frames: a.dark_frames,
        faults: PacketFaults { loss: a.faults.loss, reorder: a.faults.reorder, duplicate: a.faults.duplicate },
        format: a.format,
        framing: a.link,
        ..SimConfig::default()
    }
}

fn simulate_with_progress(cfg: &SimConfig, out: &Path) -> Result<hitgate::sim::SimOutputs> {
    let tty = std::io::stderr().is_terminal();
    let mut last = std::time::Instant::now();
    let outputs = simulate(cfg, out, &mut |frame| {
        if tty && last.elapsed() > Duration::from_millis(200) {
            last = std::time::Instant::now();
            eprint!("\r{} simulating frame {frame}/{}", bar(frame as f64 / cfg.frames as f64), cfg.frames);
        }
    })
    .with_context(|| format!("simulating into {}", out.display()))?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    Ok(outputs)
}

fn print_sim(o: &hitgate::sim::SimOutputs) {
    let t = &o.truth_summary;
    let hits = t.frames.iter().filter(|f| f.hit).count();
    println!("simulated    {} frames ({} hits) of {} × {}", t.frames.len(), hits, t.config.modules, t.config.model);
    println!(
        "packets      {} sent, {} lost, {} reordered, {} duplicated",
        t.packets_sent, t.packets_lost, t.packets_reordered, t.packets_duplicated
    );
    println!("capture      {}", o.capture.display());
    println!("truth        {}", o.truth.display());
    println!("calibration  {}", o.calibration.display());
    println!(
        "replay with  hitgate replay {} --config {} --truth {}",
        o.capture.display(),
        o.replay_config.display(),
        o.truth.display()
    );
}

fn bar(fraction: f64) -> String {
    let n = (fraction.clamp(0.0, 1.0) * 30.0) as usize;
    format!("[{}{}] {:>3.0}%", "#".repeat(n), ".".repeat(30 - n), fraction * 100.0)
}

fn replay(config: Config, capture: &Path, pace: Pace) -> Result<RunSummary> {
    let cap = Capture::open(capture).map_err(|e| Exit { code: 4, message: describe(&e) })?;
    let plan = Plan::new(config).context("preparing the pipeline")?;
    let progress = Progress::default();
    let tty = std::io::stderr().is_terminal();
    let done = std::sync::atomic::AtomicBool::new(false);
    let summary = std::thread::scope(|s| {
        if tty {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    eprint!(
                        "\r{} {} frames, {} accepted",
                        bar(progress.fraction()),
                        progress.frames_done.load(Ordering::Relaxed),
                        progress.frames_accepted.load(Ordering::Relaxed)
                    );
                }
                eprint!("\r\x1b[2K");
            });
        }
        let r = plan.replay(&cap, ReplayOptions { pace }, &progress);
        done.store(true, Ordering::Relaxed);
        r
    });
    summary.with_context(|| format!("replaying {}", capture.display()))
}

fn report_truth(config: &Config, truth: &Path) -> Result<()> {
    let truth = RunTruth::load(truth)?;
    let features = config.sinks.iter().find_map(|s| match s {
        SinkSection::Features { path } => Some(path.clone()),
        _ => None,
    });
    let Some(features) = features else {
        anyhow::bail!("--truth needs a features sink in the config to read the verdicts from");
    };
    let verdicts =
        hitgate::sink::features::read_verdicts(&features).with_context(|| format!("reading {}", features.display()))?;
    let clear = 2 * config.trigger.spots.min_spots;
    println!("{}", TriggerScore::new(&truth, &verdicts, clear));
    println!(
        "             (clear hit: at least {clear} spots of ≥ {} photons on the detector)",
        hitgate::sim::run::VISIBLE_SPOT_PHOTONS
    );
    if truth.frames.iter().any(|f| !f.reflections.is_empty()) {
        let in_image = hitgate::sink::features::read_spots(&features)
            .with_context(|| format!("reading {}", features.display()))?;
        println!("{}", hitgate::sim::SpotScore::new(&truth, &in_image, 2.0));
        println!(
            "             (at most trigger.spots.max_spots_recorded = {} spots are recorded per frame)",
            config.trigger.spots.max_spots_recorded
        );
    }
    Ok(())
}

fn tune(
    capture: &Path,
    config_path: &Path,
    target_rate: f64,
    truth: Option<&Path>,
    svg: &Path,
    write_config: Option<PathBuf>,
) -> Result<()> {
    if !(target_rate > 0.0 && target_rate <= 1.0) {
        return Err(Exit { code: 2, message: format!("--target-rate {target_rate}: must be in (0, 1]") }.into());
    }
    let config = load_config(config_path)?;
    if !config.trigger_has_cut() {
        anyhow::bail!("trigger.kind = {:?} has no cut to tune", config.trigger.kind);
    }
    // Score every frame: the configured trigger, its scores written to a scratch features file.
    let scratch = tempfile_dir()?;
    let features = scratch.join("features.jsonl");
    let mut scoring = config.clone();
    scoring.sinks = vec![SinkSection::Features { path: features.clone() }];
    scoring.features.localiser.model = None;
    scoring.trigger.rate = hitgate::config::RateSection::default();
    let summary = replay(scoring, capture, Pace::AsFastAsPossible)?;
    let scores =
        hitgate::sink::features::read_scores(&features).with_context(|| format!("reading {}", features.display()));
    let _ = std::fs::remove_dir_all(&scratch);
    let scores = scores?;
    let truth = truth
        .map(|t| RunTruth::load(t).map(|t| t.frames.iter().map(|f| (f.frame_number, f.hit)).collect()))
        .transpose()?;
    let curve = hitgate::tune::TuneCurve::new(&scores, truth.as_ref());
    let chosen = curve.cut_for_rate(target_rate);
    println!("scored       {} frames of {} ({:?} trigger)", curve.frames, capture.display(), config.trigger.kind);
    if let Some(hits) = curve.hits {
        println!("truth        {hits} hits");
    }
    print!("{}", curve.table(12, chosen));
    if let Some(parent) = svg.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let title = format!("{}: accept rate by cut, target {:.1}%", capture.display(), 100.0 * target_rate);
    std::fs::write(svg, curve.svg(&title, chosen)).with_context(|| format!("writing {}", svg.display()))?;
    println!("curve        {}", svg.display());
    let Some(chosen) = chosen else {
        anyhow::bail!(
            "no cut holds {:.2}% on this capture: the frames at the highest score alone are more",
            100.0 * target_rate
        );
    };
    let out = write_config.unwrap_or_else(|| {
        let stem = config_path.file_stem().and_then(|s| s.to_str()).unwrap_or("config");
        config_path.with_file_name(format!("{stem}.tuned.toml"))
    });
    let key = write_cut(config_path, &out, config.trigger.kind, chosen.threshold)?;
    println!(
        "chosen       {key} → {:.2}% of frames accepted{}",
        100.0 * chosen.accept_rate,
        chosen.efficiency.map(|e| format!(", {:.2}% of hits kept", 100.0 * e)).unwrap_or_default()
    );
    println!("config       {}", out.display());
    damaged_input(&summary)
}

/// A scratch folder of this process.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hitgate-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Copies the config with the trigger's cut set to `threshold`; returns the key it set and its value.
fn write_cut(from: &Path, to: &Path, kind: hitgate::config::TriggerKind, threshold: f32) -> Result<String> {
    let text = std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    let mut doc: toml::Table = text.parse().with_context(|| format!("parsing {}", from.display()))?;
    let (section, key, value): (&str, &str, toml::Value) = match kind {
        // Spot counts are whole numbers: the cut is the smallest count at or above the threshold.
        hitgate::config::TriggerKind::Spots => ("spots", "min_spots", (threshold.ceil().max(1.0) as i64).into()),
        _ => ("tract", "threshold", f64::from(threshold).into()),
    };
    let shown = format!("trigger.{section}.{key} = {value}");
    let trigger = doc.entry("trigger").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let table = trigger
        .as_table_mut()
        .context("trigger is not a table")?
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    table.as_table_mut().with_context(|| format!("trigger.{section} is not a table"))?.insert(key.into(), value);
    let header = format!("# {} with the trigger's cut chosen by `hitgate tune` ({shown}).\n", from.display());
    std::fs::write(to, header + &toml::to_string(&doc)?).with_context(|| format!("writing {}", to.display()))?;
    Ok(shown)
}

fn demo(out: &Path, frames: u64) -> Result<()> {
    let cfg = SimConfig {
        frames,
        faults: PacketFaults { loss: 0.0005, reorder: 0.001, duplicate: 0.0005 },
        ..SimConfig::default()
    };
    println!("== simulating a JUNGFRAU run ({frames} frames, 25% hits, light packet damage) into {}", out.display());
    let outputs = simulate_with_progress(&cfg, out)?;
    print_sim(&outputs);
    println!(
        "\n== replaying it through assembly → calibration → spot finding → learned trigger → peak localiser → sinks"
    );
    let mut config = load_config(&outputs.replay_config)?;
    // The built-in default is the learned trigger; the simulator's replay.toml keeps the classical one.
    config.trigger.kind = hitgate::config::TriggerKind::Tract;
    if cfg!(feature = "hdf5") {
        // Kept frames also go where the X-ray world reads them: NeXus NXmx with bitshuffle-LZ4.
        let mut nexus = hitgate::config::Hdf5Section::in_dir(out.join("replay/nexus"));
        nexus.frames_per_file = 50;
        config.sinks.push(hitgate::config::SinkSection::Hdf5(nexus));
    }
    let summary = replay(config.clone(), &outputs.capture, Pace::AsFastAsPossible)?;
    print!("{summary}");
    report_truth(&config, &outputs.truth)?;
    damaged_input(&summary)
}

#[cfg(feature = "hdf5")]
fn print_master(path: &Path, m: &hitgate::sink::hdf5::inspect::MasterSummary) {
    let state = if m.run_complete { "complete" } else { "not closed (running, or stopped without closing)" };
    println!("{}: {} master, run {state}", path.display(), m.definition);
    println!("started {}{}", m.start_time, m.end_time.as_ref().map(|e| format!(", ended {e}")).unwrap_or_default());
    println!(
        "{}: {} module(s), frames {} × {} of {} ({}-byte pixels)",
        m.detector, m.modules, m.frame_shape.0, m.frame_shape.1, m.pixel_content, m.element_bytes
    );
    println!(
        "beam {:.4} Å, detector at {:.1} mm, beam centre (row, col) {:.1}, {:.1} px",
        m.wavelength_angstrom,
        m.distance_m * 1e3,
        m.beam_center_px.0,
        m.beam_center_px.1
    );
    println!("{:<14} {:<28} {:>7} {:>6} {:>10}", "link", "file", "frames", "audit", "MB");
    for f in &m.files {
        let name = f.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "{:<14} {:<28} {:>7} {:>6} {:>10.1}",
            f.link,
            name,
            f.frames,
            f.audit_frames,
            f.bytes_on_disk as f64 / 1e6
        );
    }
    println!("{} frames in {} files, compression {:.2}:1 on disk", m.frames(), m.files.len(), m.compression_ratio());
    for p in &m.partial_files {
        println!("open or cut short: {}", p.display());
    }
}

fn print_inventory(path: &Path, inv: &hitgate::ingest::inventory::CaptureInventory) {
    let secs = (inv.last_timestamp_ns.saturating_sub(inv.first_timestamp_ns)) as f64 / 1e9;
    println!(
        "{}: {}, {:.1} MB, {} records over {:.3} s",
        path.display(),
        inv.format,
        inv.bytes as f64 / 1e6,
        inv.records,
        secs
    );
    let skipped: Vec<String> = inv.skipped.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{n} {r}")).collect();
    if !skipped.is_empty() {
        println!("not UDP/usable: {}", skipped.join(", "));
    }
    println!(
        "{:>6} {:>9} {:>7} {:>5} {:<18} {:^16} {:>7} {:>8} {:>8} {:>6}",
        "port", "datagrams", "size", "type", "model", "frames", "whole", "missing", "dup", "bad"
    );
    for p in &inv.ports {
        let models = if p.models.is_empty() { "?".to_string() } else { p.models.join("|") };
        println!(
            "{:>6} {:>9} {:>7} {:>5} {:<18} {:>7}..{:<7} {:>7} {:>8} {:>8} {:>6}",
            p.udp_port,
            p.datagrams,
            p.payload_bytes,
            p.det_type,
            models,
            p.first_frame,
            p.last_frame,
            format!("{}/{}", p.frames_complete, p.frames),
            p.packets_missing(),
            p.packets_duplicate,
            p.datagrams_malformed
        );
    }
    if let Some(e) = &inv.error {
        println!("damaged: {e}");
    }
}

/// Where a live run's packets come from.
enum LiveSource {
    Udp(hitgate::pipeline::UdpSources),
    Dma(hitgate::ingest::dma::DmaRing),
}

/// A flag set by SIGINT or SIGTERM.
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop)).context("installing signal handlers")?;
    }
    Ok(stop)
}

fn run_live(config: Config, config_path: &Path, duration_s: Option<f64>) -> Result<RunSummary> {
    // Installed before any stage starts: metrics recorded earlier would be lost.
    let _ = hitgate::control::prometheus();
    let plan = Plan::new(config).context("preparing the pipeline")?;
    let source = if plan.config.dma.device.is_some() {
        LiveSource::Dma(plan.open_dma().context("opening the DMA ring")?)
    } else {
        let sources = plan.bind_udp().context("binding the detector's UDP ports")?;
        for (port, report) in &sources.reports {
            if report.is_short() {
                eprintln!("hitgate: warning: UDP port {port}: {}", report.advice());
            }
        }
        LiveSource::Udp(sources)
    };
    let control = &plan.config.control;
    let listener = if control.enabled { Some(hitgate::control::bind(control.listen_address)?) } else { None };
    if let Some(l) = &listener {
        eprintln!("control plane on http://{} (/metrics, /status, POST /retune?min_spots=N)", l.local_addr()?);
    }
    let from = match &source {
        LiveSource::Udp(sources) => {
            let ports: Vec<String> = sources.reports.iter().map(|(p, _)| p.to_string()).collect();
            let receivers = match plan.config.udp.receiver_threads {
                0 => "receiving on the assembling thread".to_string(),
                n => format!("with {} receiver thread(s)", n.min(ports.len())),
            };
            format!("on {} port(s) {} {receivers}", plan.config.udp.bind_address, ports.join(","))
        }
        LiveSource::Dma(ring) => format!(
            "from DMA ring {} ({} buffers of {} bytes)",
            plan.config.dma.device.as_deref().unwrap_or(Path::new("?")).display(),
            ring.buffer_count(),
            ring.buffer_bytes()
        ),
    };
    eprintln!("receiving {} × {} {from} — Ctrl-C to stop", plan.geometry.modules, plan.geometry.model.name);
    let stop = stop_on_signals()?;
    let reload = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, std::sync::Arc::clone(&reload))
        .context("installing the SIGHUP handler")?;
    let progress = Progress::default();
    let tty = std::io::stderr().is_terminal();
    let done = std::sync::atomic::AtomicBool::new(false);
    let state = hitgate::control::ControlState {
        plan: &plan,
        progress: &progress,
        config_path: Some(config_path.to_path_buf()),
        reload,
        started: std::time::Instant::now(),
        token: plan.config.control.token().map_err(|reason| anyhow::anyhow!("control.token_file: {reason}"))?,
    };
    std::thread::scope(|s| {
        if let Some(listener) = listener {
            let (state, done) = (&state, &done);
            let started = std::thread::Builder::new().name("hg-control".into()).spawn_scoped(s, move || {
                if let Err(e) = hitgate::control::serve(listener, state, done) {
                    eprintln!("hitgate: control plane stopped: {}", describe(&e));
                }
            });
            if let Err(e) = started {
                eprintln!("hitgate: warning: running without a control plane: {e}");
            }
        }
        if let Some(seconds) = duration_s {
            let stop = std::sync::Arc::clone(&stop);
            let done = &done;
            s.spawn(move || {
                let until = std::time::Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
                while std::time::Instant::now() < until && !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
        if tty {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    eprint!(
                        "\r{:.3} GB received, {} frames, {} accepted",
                        progress.input_bytes_read.load(Ordering::Relaxed) as f64 / 1e9,
                        progress.frames_done.load(Ordering::Relaxed),
                        progress.frames_accepted.load(Ordering::Relaxed)
                    );
                }
                eprint!("\r\x1b[2K");
            });
        }
        let r = match source {
            LiveSource::Udp(sources) => plan.run_live(sources, &stop, &progress),
            LiveSource::Dma(ring) => plan.run_dma(ring, &stop, &progress),
        };
        done.store(true, Ordering::Relaxed);
        r.context("running live")
    })
}

fn send(a: &SendArgs) -> Result<hitgate::send::SendSummary> {
    use hitgate::send::{SendFaults, SendOptions, SendPace};
    let (target, ports) = match a.to.strip_prefix("dma:") {
        Some(path) => {
            (hitgate::send::SendTarget::Dma { path: path.into(), drop_when_full: a.dma_drop_when_full }, Vec::new())
        }
        None => {
            let (host, ports) = parse_destination(&a.to)?;
            (hitgate::send::SendTarget::Udp(host), ports)
        }
    };
    let pace = match (a.speed, a.frame_rate_hz, a.packet_rate, a.fast) {
        (_, _, _, true) => SendPace::AsFastAsPossible,
        (_, _, Some(per_second), _) => SendPace::PacketRate { per_second },
        (_, Some(hz), _, _) => SendPace::FrameRate { hz },
        (speed, _, _, _) => SendPace::Recorded { speed: speed.unwrap_or(1.0) },
    };
    let options = SendOptions {
        target,
        ports,
        pace,
        loops: a.loops,
        faults: SendFaults {
            loss: a.faults.loss,
            reorder: a.faults.reorder,
            duplicate: a.faults.duplicate,
            corrupt: a.corrupt,
            seed: a.seed,
        },
        batch: a.batch,
        send_buffer_bytes: 4 << 20,
    };
    let cap = Capture::open(&a.capture).map_err(|e| Exit { code: 4, message: describe(&e) })?;
    let stop = stop_on_signals()?;
    let summary = hitgate::send::send(&cap, &options, &stop).map_err(|e| match e {
        hitgate::send::SendError::Option(_) | hitgate::send::SendError::PortCount { .. } => {
            Exit { code: 2, message: describe(&e) }.into()
        }
        other => anyhow::Error::new(other).context(format!("sending {}", a.capture.display())),
    })?;
    Ok(summary)
}

/// `HOST` or `HOST:PORT[,PORT…]`, the host an address or a name (IPv6 in brackets).
fn parse_destination(to: &str) -> Result<(std::net::IpAddr, Vec<u16>)> {
    let (host, ports) = match to.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (h.starts_with('[') || !h.contains(':')) => (h, Some(p)),
        _ => (to, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, 0))
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| Exit { code: 2, message: format!("--to {to}: cannot resolve {host:?}") })?,
    };
    let ports = match ports {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| Exit { code: 2, message: format!("--to {to}: {p:?} is not a UDP port") })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok((addr, ports))
}
