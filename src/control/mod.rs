//! The control plane: one thread running a single-threaded tokio runtime (the hot path never awaits)
//! that serves, on a loopback address unless configured otherwise,
//!
//! - `GET /metrics` — Prometheus text format, from the `metrics` recorder;
//! - `GET /status` — the run as JSON: detector, frames, pool, trigger;
//! - `POST /retune?min_spots=N` or `?threshold=X` — fixes the trigger's cut for every frame decided
//!   from then on; `?target_rate=R` holds the accept rate at R instead; `?audit_every=N` keeps 1 in N
//!   rejected frames for the audit stream (0: none);
//!
//! every request carrying `Authorization: Bearer TOKEN` when `control.token_file` is set (required
//! off loopback), and applies SIGHUP: the config file is read again and what can change live (the trigger's cut, its
//! target rate, the audit stream) is applied; anything else that changed is named as needing a restart.

mod http;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Config;
use crate::pipeline::{Plan, Progress};
use crate::telemetry;

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

/// What the control plane reads and tunes.
pub struct ControlState<'a> {
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    /// The config file, for SIGHUP reloads.
    pub config_path: Option<PathBuf>,
    /// Set by SIGHUP.
    pub reload: Arc<AtomicBool>,
    pub started: Instant,
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
pub fn serve(listener: TcpListener, state: &ControlState<'_>, done: &AtomicBool) -> Result<(), ControlError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(ControlError::Runtime)?;
    let handle = prometheus();
    if let Some(n) = state.plan.trigger().min_spots() {
        metrics::gauge!(telemetry::TRIGGER_MIN_SPOTS).set(f64::from(n));
    }
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ControlError::Runtime)?;
        let mut upkeep = Instant::now();
        while !done.load(Ordering::Relaxed) {
            if state.reload.swap(false, Ordering::Relaxed) {
                reload(state);
            }
            if upkeep.elapsed() > Duration::from_secs(5) {
                handle.run_upkeep();
                upkeep = Instant::now();
            }
            // Requests are tiny and rare: one at a time, with a short wait so flags are seen.
            if let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await {
                let _ = tokio::time::timeout(Duration::from_secs(5), http::handle(stream, state, &handle)).await;
            }
        }
        Ok(())
    })
}

/// The run as JSON.
fn status(state: &ControlState<'_>) -> serde_json::Value {
    let p = state.progress;
    let g = &state.plan.geometry;
    let pool = state.plan.pool();
    serde_json::json!({
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "detector": { "model": g.model.name, "modules": g.modules, "udp_ports": g.udp_ports },
        "input_bytes": p.input_bytes_read.load(Ordering::Relaxed),
        "frames_done": p.frames_done.load(Ordering::Relaxed),
        "frames_accepted": p.frames_accepted.load(Ordering::Relaxed),
        "frames_dropped": p.frames_dropped.load(Ordering::Relaxed),
        "pool": { "slots": pool.capacity(), "free": pool.free_slots() },
        "trigger": trigger_status(state.plan.trigger()),
    })
}

/// The trigger's cut and rate settings as JSON.
pub(crate) fn trigger_status(trigger: &crate::trigger::Trigger) -> serde_json::Value {
    let rate = trigger.rate();
    serde_json::json!({
        "min_spots": trigger.min_spots(),
        "threshold": trigger.has_cut().then(|| rate.threshold()),
        "target_accept_rate": rate.target_rate(),
        "audit_every": rate.audit_every(),
    })
}

/// Applies `POST /retune?KEY=VALUE`: `min_spots` or `threshold` fix the cut, `target_rate` holds an
/// accept rate, `audit_every` sets the audit stream. Returns what was applied, or an HTTP code and why.
pub(crate) fn retune(trigger: &crate::trigger::Trigger, query: &str) -> Result<String, (u16, String)> {
    let usage = "expected ?min_spots=N, ?threshold=X, ?target_rate=R (0 < R <= 1) or ?audit_every=N";
    let (key, value) = query.split('&').find_map(|kv| kv.split_once('=')).ok_or((400, usage.to_string()))?;
    let bad = || (400, format!("{key}={value}: not a number; {usage}"));
    let refused = |e: crate::trigger::RetuneError| (409, e.to_string());
    match key {
        "min_spots" => trigger.set_min_spots(value.parse().map_err(|_| bad())?).map_err(refused)?,
        "threshold" => trigger.set_threshold(value.parse().map_err(|_| bad())?).map_err(refused)?,
        "target_rate" => trigger.set_target_rate(value.parse().map_err(|_| bad())?).map_err(refused)?,
        "audit_every" => trigger.rate().set_audit_every(value.parse().map_err(|_| bad())?),
        _ => return Err((400, format!("{key}: unknown; {usage}"))),
    }
    Ok(format!("{key} = {value}"))
}

/// Applies a SIGHUP: re-reads the config, takes what can change live, names what cannot.
fn reload(state: &ControlState<'_>) {
    let Some(path) = &state.config_path else { return };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hitgate: reload refused, the running config stays: {e}");
            return;
        }
    };
    let old = &state.plan.config;
    let mut applied = Vec::new();
    let trigger = state.plan.trigger();
    let (was, now) = (&old.trigger, &new.trigger);
    let mut apply = |key: &str, result: Result<(), crate::trigger::RetuneError>| match result {
        Ok(()) => applied.push(key.to_string()),
        Err(e) => eprintln!("hitgate: reload: {key}: {e}"),
    };
    if now.spots.min_spots != was.spots.min_spots {
        apply(
            &format!("trigger.spots.min_spots = {}", now.spots.min_spots),
            trigger.set_min_spots(now.spots.min_spots),
        );
    }
    if now.tract.threshold != was.tract.threshold && now.kind == crate::config::TriggerKind::Tract {
        apply(
            &format!("trigger.tract.threshold = {}", now.tract.threshold),
            trigger.set_threshold(now.tract.threshold),
        );
    }
    if now.fpga.threshold != was.fpga.threshold && now.kind == crate::config::TriggerKind::Fpga {
        apply(&format!("trigger.fpga.threshold = {}", now.fpga.threshold), trigger.set_threshold(now.fpga.threshold));
    }
    if now.rate.target_accept_rate != was.rate.target_accept_rate {
        match now.rate.target_accept_rate {
            Some(r) => apply(&format!("trigger.rate.target_accept_rate = {r}"), trigger.set_target_rate(r)),
            // No target any more: the cut goes back to the configured one.
            None => apply(
                "trigger.rate.target_accept_rate = none",
                match now.kind {
                    crate::config::TriggerKind::Tract => trigger.set_threshold(now.tract.threshold),
                    crate::config::TriggerKind::Fpga => trigger.set_threshold(now.fpga.threshold),
                    _ => trigger.set_min_spots(now.spots.min_spots),
                },
            ),
        }
    }
    if now.rate.audit_every != was.rate.audit_every {
        trigger.rate().set_audit_every(now.rate.audit_every);
        applied.push(format!("trigger.rate.audit_every = {}", now.rate.audit_every));
    }
    let mut comparable = new.clone();
    comparable.trigger.spots.min_spots = old.trigger.spots.min_spots;
    comparable.trigger.rate.target_accept_rate = old.trigger.rate.target_accept_rate;
    comparable.trigger.rate.audit_every = old.trigger.rate.audit_every;
    comparable.trigger.tract.threshold = old.trigger.tract.threshold;
    let sections = |c: &Config| serde_json::to_value(c).unwrap_or_default();
    let (a, b) = (sections(old), sections(&comparable));
    let restart: Vec<String> = a
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| b.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    eprintln!(
        "hitgate: reloaded {}: applied [{}]{}",
        path.display(),
        applied.join(", "),
        if restart.is_empty() {
            String::new()
        } else {
            format!("; changed but needs a restart: [{}]", restart.join(", "))
        }
    );
}
