//! `hitgate run`: the detector received live through the whole pipeline, with the control plane,
//! until SIGINT/SIGTERM (or `--duration-s`); SIGHUP reloads the config.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use hitgate::pipeline::{LiveOptions, Plan, Progress};

use super::out::show;
use super::progress::{live_line, while_running};
use super::{as_node, load_config, stop_on_signals};

#[derive(Args)]
pub struct RunArgs {
    #[arg(long)]
    config: PathBuf,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Run as this node of the config's `[cluster]`: only its modules, verdicts from the builder.
    #[arg(long)]
    node: Option<String>,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let path = &args.config;
    let config = as_node(load_config(path)?, args.node.as_deref(), path)?;
    // Installed before any stage starts: metrics recorded earlier would be lost.
    let _ = hitgate::control::prometheus();
    let plan = Plan::new(config).context("preparing the pipeline")?;
    let source = plan.open_live_source().context("opening the detector's source")?;
    for warning in source.warnings() {
        eprintln!("hitgate: warning: {warning}");
    }
    let control = &plan.config.control;
    if !control.enabled && hitgate::control::notify::watchdog_every().is_some() {
        eprintln!(
            "hitgate: warning: the service manager keeps a watchdog, but only the control plane feeds it (control.enabled = false)"
        );
    }
    let listener = if control.enabled { Some(hitgate::control::bind(control.listen_address)?) } else { None };
    if let Some(l) = &listener {
        eprintln!(
            "control plane on http://{} (the live monitor at /; /metrics, /status, POST /retune?min_spots=N)",
            l.local_addr()?
        );
    }
    eprintln!(
        "receiving {} × {} {} — Ctrl-C to stop",
        plan.geometry.modules,
        plan.geometry.model.name,
        source.describe(&plan)
    );
    let stop = stop_on_signals()?;
    // The plan is built and every socket bound: a service manager may start what depends on the run.
    if let Err(e) = hitgate::control::notify::notify("READY=1") {
        eprintln!("hitgate: warning: cannot tell the service manager the run is ready: {e}");
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing the SIGHUP handler")?;
    let progress = Progress::default();
    let options = LiveOptions {
        stop,
        reload,
        control: listener,
        config_path: Some(path.clone()),
        duration: args.duration_s.map(|s| Duration::from_secs_f64(s.max(0.0))),
        progress: &progress,
    };
    let summary =
        while_running(|| live_line(&progress), || plan.serve_live(source, options)).context("running live")?;
    show!("{summary}");
    Ok(())
}
