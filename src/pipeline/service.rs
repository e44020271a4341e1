//! A live run as a node runs it: the detector's source (its UDP ports, or a DMA ring), the control
//! plane serving beside the pipeline, and an optional stop after a given time, until the caller's
//! stop flag (SIGINT, SIGTERM) is set; then every queue drains and every sink closes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::run_control::RunControl;
use super::{PipelineError, Plan, Progress, RunSummary, UdpSources};
use crate::control::{ControlPlane, serve};
use crate::ingest::dma::DmaRing;

/// Where a live run's packets come from.
pub enum LiveSource {
    Udp(UdpSources),
    Dma(DmaRing),
}

impl Plan {
    /// Opens the live source the config names: the DMA ring when `dma.device` is set, else the
    /// detector's UDP ports.
    ///
    /// # Errors
    /// The ring cannot be opened, or a port cannot be bound.
    pub fn open_live_source(&self) -> Result<LiveSource, PipelineError> {
        Ok(match self.config.dma.device {
            Some(_) => LiveSource::Dma(self.open_dma()?),
            None => LiveSource::Udp(self.bind_udp()?),
        })
    }
}

impl LiveSource {
    /// What the source is, for the operator.
    pub fn describe(&self, plan: &Plan) -> String {
        match self {
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
                plan.config.dma.device.as_deref().map_or_else(|| "?".into(), |d| d.display().to_string()),
                ring.buffer_count(),
                ring.buffer_bytes()
            ),
        }
    }

    /// What the operator should know before data flows: receive buffers smaller than asked for.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            LiveSource::Udp(sources) => sources
                .reports
                .iter()
                .filter(|(_, r)| r.is_short())
                .map(|(port, r)| format!("UDP port {port}: {}", r.advice()))
                .collect(),
            LiveSource::Dma(_) => Vec::new(),
        }
    }
}

/// What runs beside a live pipeline, and what ends it.
pub struct LiveOptions<'a> {
    /// Set to stop (by SIGINT, SIGTERM, or the run's own duration): the run then drains and returns.
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP: the control plane reloads the config file.
    pub reload: Arc<AtomicBool>,
    /// The control plane's listener, bound by the caller; `None` runs without one.
    pub control: Option<TcpListener>,
    /// The config file, for reloads.
    pub config_path: Option<PathBuf>,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    pub progress: &'a Progress,
}

impl Plan {
    /// Runs the pipeline on `source` with the control plane beside it until `options.stop` is set.
    ///
    /// # Errors
    /// The control plane's token cannot be read, threads cannot start, or a stage fails.
    pub fn serve_live(&self, source: LiveSource, options: LiveOptions<'_>) -> Result<RunSummary, PipelineError> {
        let token = self.config.control.token()?;
        let LiveOptions { stop, reload, control, config_path, duration, progress } = options;
        let target = RunControl { plan: self, progress, config_path, started: Instant::now() };
        let plane = ControlPlane { target: &target, reload, token };
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            if let Some(listener) = control {
                let (plane, done) = (&plane, &done);
                let started = std::thread::Builder::new().name("hg-control".into()).spawn_scoped(s, move || {
                    if let Err(e) = serve(listener, plane, done) {
                        eprintln!("hitgate: control plane stopped: {e}");
                    }
                });
                if let Err(e) = started {
                    eprintln!("hitgate: warning: running without a control plane: {e}");
                }
            }
            if let Some(duration) = duration {
                let (stop, done) = (Arc::clone(&stop), &done);
                s.spawn(move || {
                    let until = Instant::now() + duration;
                    while Instant::now() < until && !done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    stop.store(true, Ordering::Relaxed);
                });
            }
            let summary = match source {
                LiveSource::Udp(sources) => self.run_live(sources, &stop, progress),
                LiveSource::Dma(ring) => self.run_dma(ring, &stop, progress),
            };
            done.store(true, Ordering::Relaxed);
            summary
        })
    }
}
