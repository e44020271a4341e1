//! The control plane: one thread running a single-threaded tokio runtime (the hot path never awaits)
//! that serves, on a loopback address unless configured otherwise,
//!
//! - `GET /` — the live monitor, one page compiled into the binary (`monitor.html`), which draws
//!   from `GET /monitor` (JSON), `GET /monitor/last-hit.png`, `/status` and `/metrics`;
//! - `GET /metrics` — Prometheus text format, from the `metrics` recorder;
//! - `GET /status` — the run as JSON: detector, frames, pool, trigger;
//! - `POST /retune?min_spots=N` or `?threshold=X` — fixes the trigger's cut for every frame decided
//!   from then on; `?target_rate=R` holds the accept rate at R instead; `?audit_every=N` keeps 1 in N
//!   rejected frames for the audit stream (0: none);
//!
//! feeding the service manager's watchdog when it keeps one ([`notify`]), every request carrying
//! `Authorization: Bearer TOKEN` when `control.token_file` is set (required
//! off loopback), and passes SIGHUP on to the run, which reads its config file again and applies what
//! can change live. What the status holds and what a reload changes are the run's to say: the control
//! plane serves a [`ControlTarget`]. `[control]` is [`ControlSection`].

mod http;
pub mod notify;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

use crate::section::{Claim, Problems, Resource, key, resolve};
use crate::telemetry;
use crate::trigger::Trigger;

/// `[control]`: the control plane of a live run: metrics, status, retune.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub enabled: bool,
    /// Where `/metrics`, `/status` and `/retune` are served; loopback unless you mean otherwise.
    pub listen_address: SocketAddr,
    /// A file holding the bearer token every request must carry (`Authorization: Bearer …`);
    /// required when `listen_address` is not a loopback address. Readable by its owner only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection { enabled: true, listen_address: SocketAddr::from(([127, 0, 0, 1], 9464)), token_file: None }
    }
}

/// Why a token file cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path} is readable by others than its owner (chmod 600 it)")]
    Shared { path: PathBuf },
    #[error("{path} must hold one token of at least 16 characters")]
    Short { path: PathBuf },
}

impl ControlSection {
    /// The token in `token_file`, without surrounding white space.
    ///
    /// # Errors
    /// Why the file cannot serve as one: unreadable, readable by others than its owner, or holding
    /// fewer than 16 characters.
    pub fn token(&self) -> Result<Option<String>, TokenError> {
        let Some(path) = &self.token_file else { return Ok(None) };
        let unreadable = |source| TokenError::Unreadable { path: path.clone(), source };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(TokenError::Shared { path: path.clone() });
            }
        }
        let _ = meta;
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        let token = text.trim();
        if token.chars().count() < 16 || token.chars().any(char::is_whitespace) {
            return Err(TokenError::Short { path: path.clone() });
        }
        Ok(Some(token.to_string()))
    }

    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if !self.enabled {
            return;
        }
        if let Err(reason) = self.token() {
            problems.bad(key(path, "token_file"), reason.to_string());
        } else if self.token_file.is_none() && !self.listen_address.ip().is_loopback() {
            problems.bad(
                key(path, "listen_address"),
                format!(
                    "{} is not a loopback address: set control.token_file so that requests must carry its token",
                    self.listen_address
                ),
            );
        }
    }

    /// The address it listens on.
    pub fn claims(&self, path: &str) -> Vec<Claim> {
        let a = self.listen_address;
        let listens = Resource::Tcp { host: a.ip().to_string(), port: a.port() };
        if self.enabled { vec![Claim::new(key(path, "listen_address"), listens)] } else { Vec::new() }
    }

    /// Relative paths are taken from the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(token) = self.token_file.as_mut() {
            resolve(token, base);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on {addr} for the control plane")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the control plane's runtime")]
    Runtime(#[source] std::io::Error),
}

/// The process's Prometheus recorder, installed on first use. Metrics recorded before it is
/// installed are lost, so a live run installs it before it starts.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets =
                [50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 200e-3, 500e-3, 1.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may own the process already (a library user's): then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            telemetry::describe();
            handle
        })
        .clone()
}

/// The run behind the control plane: what `/status` shows, the trigger `/retune` tunes, what a
/// SIGHUP reloads.
pub trait ControlTarget: Sync {
    /// The run as JSON.
    fn status(&self) -> serde_json::Value;

    /// The trigger every worker consults.
    fn trigger(&self) -> &Trigger;

    /// Reads the config file again and applies what can change live.
    fn reload(&self);

    /// The live monitor's share of the control plane's time, a few times a second.
    fn tick(&self) {}

    /// What the live monitor draws, as JSON, when the run has a monitor.
    fn monitor(&self) -> Option<serde_json::Value> {
        None
    }

    /// The last kept frame's picture, as PNG.
    fn last_hit_png(&self) -> Option<Arc<Vec<u8>>> {
        None
    }
}

/// A control plane about to serve: its target, the flag SIGHUP sets, the token requests must carry.
pub struct ControlPlane<'a> {
    pub target: &'a dyn ControlTarget,
    /// Set by SIGHUP; the plane reloads its target and clears it.
    pub reload: Arc<AtomicBool>,
    /// The bearer token every request must carry, when one is configured.
    pub token: Option<String>,
}

/// Binds the control plane's address (so a clash is an error at start, before any data flows).
///
/// # Errors
/// The address cannot be bound.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ControlError> {
    let listener = TcpListener::bind(addr).map_err(|source| ControlError::Listen { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| ControlError::Listen { addr, source })?;
    Ok(listener)
}

/// Serves until `done` is set.
///
/// # Errors
/// The runtime cannot start or the listener cannot be handed to it.
pub fn serve(listener: TcpListener, plane: &ControlPlane<'_>, done: &AtomicBool) -> Result<(), ControlError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(ControlError::Runtime)?;
    yield_to_the_frames();
    let handle = prometheus();
    if let Some(n) = plane.target.trigger().min_spots() {
        metrics::gauge!(telemetry::TRIGGER_MIN_SPOTS).set(f64::from(n));
    }
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ControlError::Runtime)?;
        let mut upkeep = Instant::now();
        let watchdog = notify::watchdog_every();
        let mut fed: Option<Instant> = None;
        while !done.load(Ordering::Relaxed) {
            // The service manager restarts a run whose control plane stops answering.
            if let Some(every) = watchdog
                && fed.is_none_or(|at| at.elapsed() >= every)
            {
                if let Err(e) = notify::notify("WATCHDOG=1") {
                    eprintln!("hitgate: warning: cannot feed the service manager's watchdog: {e}");
                }
                fed = Some(Instant::now());
            }
            if plane.reload.swap(false, Ordering::Relaxed) {
                plane.target.reload();
            }
            if upkeep.elapsed() > Duration::from_secs(5) {
                handle.run_upkeep();
                upkeep = Instant::now();
            }
            plane.target.tick();
            // Requests are small and rare: one at a time, with a short wait so flags are seen.
            if let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await {
                let _ = tokio::time::timeout(Duration::from_secs(5), http::handle(stream, plane, &handle)).await;
            }
        }
        Ok(())
    })
}

/// Lowers this thread to the lowest priority (nice 19): the control plane's own work, drawing the
/// monitor's pictures above all, must never keep the receiving thread from a core. On a two-core node a
/// 4M's picture drawn at normal priority let packets go late. Done by `renice` on the thread's id,
/// which needs no privilege to lower a priority; where it cannot be done, the run says so.
fn yield_to_the_frames() {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name().and_then(|t| t.to_str()).map(str::to_string));
    let lowered = tid.is_some_and(|tid| {
        std::process::Command::new("renice").args(["-n", "19", "-p", &tid]).output().is_ok_and(|o| o.status.success())
    });
    if !lowered {
        eprintln!("hitgate: warning: the control plane runs at normal priority (renice -n 19 failed)");
    }
}

/// The trigger's cut and rate settings as JSON.
pub fn trigger_status(trigger: &Trigger) -> serde_json::Value {
    let rate = trigger.rate();
    serde_json::json!({
        "min_spots": trigger.min_spots(),
        "threshold": trigger.has_cut().then(|| rate.threshold()),
        "target_accept_rate": rate.target_rate(),
        // Whether the cut gives the target over the recent frames, and what was measured (null
        // without a target or before enough frames).
        "target_rate_held": rate.held().map(|h| h.is_held()),
        "target_rate_measured": rate.held().map(|h| serde_json::json!({
            "reached": h.reached, "frames": h.frames, "lowest_score": h.lowest, "highest_score": h.highest,
            "said": h.to_string(),
        })),
        "audit_every": rate.audit_every(),
        // Share of the recent frames whose inputs lie outside the model's training ranges, and whether
        // that raised the alarm (null when the trigger knows no ranges).
        "inputs_unfamiliar_share": trigger.familiarity().map(|(share, _)| share),
        "inputs_unfamiliar_alarm": trigger.familiarity().map(|(_, alarm)| alarm),
        // Whether the spots trigger judges in its place now (`on_unfamiliar = "fallback"`).
        "fallback": trigger.falling_back(),
    })
}

/// A retune refused, with the HTTP status it is answered with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RetuneRefused {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The trigger cannot take the setting (409).
    #[error(transparent)]
    Conflict(#[from] crate::trigger::RetuneError),
}

impl RetuneRefused {
    pub fn http_status(&self) -> u16 {
        match self {
            RetuneRefused::BadRequest(_) => 400,
            RetuneRefused::Conflict(_) => 409,
        }
    }
}

/// Applies `POST /retune?KEY=VALUE`: `min_spots` or `threshold` fix the cut, `target_rate` holds an
/// accept rate, `audit_every` sets the audit stream. Returns what was applied.
///
/// # Errors
/// The query is not one of those, or the trigger refuses the value.
pub fn retune(trigger: &Trigger, query: &str) -> Result<String, RetuneRefused> {
    let usage = "expected ?min_spots=N, ?threshold=X, ?target_rate=R (0 < R <= 1) or ?audit_every=N";
    let (name, value) = query
        .split('&')
        .find_map(|kv| kv.split_once('='))
        .ok_or_else(|| RetuneRefused::BadRequest(usage.to_string()))?;
    let bad = || RetuneRefused::BadRequest(format!("{name}={value}: not a number; {usage}"));
    match name {
        "min_spots" => trigger.set_min_spots(value.parse().map_err(|_| bad())?)?,
        "threshold" => trigger.set_threshold(value.parse().map_err(|_| bad())?)?,
        "target_rate" => trigger.set_target_rate(value.parse().map_err(|_| bad())?)?,
        "audit_every" => trigger.rate().set_audit_every(value.parse().map_err(|_| bad())?),
        _ => return Err(RetuneRefused::BadRequest(format!("{name}: unknown; {usage}"))),
    }
    Ok(format!("{name} = {value}"))
}
