//! The running pipeline as the control plane sees it: what `/status` shows, the trigger `/retune`
//! tunes, and what a SIGHUP reload may change while frames flow (the trigger's cut, its target rate,
//! the audit stream); anything else that changed is named as needing a restart.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Plan, Progress};
use crate::config::Config;
use crate::control::{ControlTarget, trigger_status};
use crate::trigger::{CutUnit, RetuneError, Trigger};

/// A live run, served by the control plane.
pub struct RunControl<'a> {
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    /// The config file, for SIGHUP reloads.
    pub config_path: Option<PathBuf>,
    pub started: Instant,
}

impl ControlTarget for RunControl<'_> {
    fn status(&self) -> serde_json::Value {
        let p = self.progress;
        let g = &self.plan.geometry;
        let pool = self.plan.pool();
        serde_json::json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "detector": { "model": g.model.name, "modules": g.modules, "udp_ports": g.udp_ports },
            "input_bytes": p.input_bytes_read.load(Ordering::Relaxed),
            "frames_done": p.frames_done.load(Ordering::Relaxed),
            "frames_accepted": p.frames_accepted.load(Ordering::Relaxed),
            "frames_dropped": p.frames_dropped.load(Ordering::Relaxed),
            "pool": { "slots": pool.capacity(), "free": pool.free_slots() },
            "trigger": trigger_status(self.plan.trigger()),
        })
    }

    fn trigger(&self) -> &Trigger {
        self.plan.trigger()
    }

    fn tick(&self) {
        if let Some(monitor) = self.plan.monitor() {
            monitor.tick(self.plan.photons());
        }
    }

    fn monitor(&self) -> Option<serde_json::Value> {
        self.plan.monitor().map(|m| m.view())
    }

    fn last_hit_png(&self) -> Option<std::sync::Arc<Vec<u8>>> {
        self.plan.monitor()?.last_hit_png()
    }

    fn reload(&self) {
        let Some(path) = &self.config_path else { return };
        match Config::load(path) {
            Ok(new) => {
                let report = apply_reload(&self.plan.config, &new, self.plan.trigger());
                eprintln!("hitgate: reloaded {}: {report}", path.display());
            }
            Err(e) => eprintln!("hitgate: reload refused, the running config stays: {e}"),
        }
    }
}

/// What a reload did: the settings applied, those refused (with why), and the sections that changed
/// but need a restart.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadReport {
    pub applied: Vec<String>,
    pub refused: Vec<String>,
    pub needs_restart: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "applied [{}]", self.applied.join(", "))?;
        if !self.refused.is_empty() {
            write!(f, "; refused [{}]", self.refused.join(", "))?;
        }
        if !self.needs_restart.is_empty() {
            write!(f, "; changed but needs a restart: [{}]", self.needs_restart.join(", "))?;
        }
        Ok(())
    }
}

/// Applies to the running `trigger` what changed from `old` to `new` that can change live.
pub fn apply_reload(old: &Config, new: &Config, trigger: &Trigger) -> ReloadReport {
    let mut report = ReloadReport::default();
    let mut apply = |setting: String, result: Result<(), RetuneError>| match result {
        Ok(()) => report.applied.push(setting),
        Err(e) => report.refused.push(format!("{setting}: {e}")),
    };
    let kind = trigger.kind();
    let (was, now) = (&old.trigger, &new.trigger);
    // The running backend's cut, as the new file puts it (a change of backend needs a restart).
    let cut = (now.kind == kind).then(|| now.section_of(kind).cut()).flatten();
    let set_cut = |value: f32, unit: CutUnit| match unit {
        CutUnit::Spots => trigger.set_min_spots(value.ceil().max(0.0) as u32),
        CutUnit::Score => trigger.set_threshold(value),
    };
    if let (Some(c), Some(before)) = (cut, was.section_of(kind).cut())
        && c.value != before.value
    {
        apply(format!("trigger.{}.{} = {}", kind.name(), c.key, c.value), set_cut(c.value, c.unit));
    }
    if now.rate.target_accept_rate != was.rate.target_accept_rate {
        match (now.rate.target_accept_rate, cut) {
            (Some(r), _) => apply(format!("trigger.rate.target_accept_rate = {r}"), trigger.set_target_rate(r)),
            // No target any more: the cut goes back to the configured one.
            (None, Some(c)) => apply("trigger.rate.target_accept_rate = none".into(), set_cut(c.value, c.unit)),
            (None, None) => {}
        }
    }
    if now.rate.audit_every != was.rate.audit_every {
        trigger.rate().set_audit_every(now.rate.audit_every);
        report.applied.push(format!("trigger.rate.audit_every = {}", now.rate.audit_every));
    }
    // Everything else is compared section by section, without what was applied live.
    let live_keys = |c: &Config| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        if let Some(t) = v.get_mut("trigger") {
            if let Some(r) = t.get_mut("rate").and_then(|r| r.as_object_mut()) {
                r.remove("target_accept_rate");
                r.remove("audit_every");
            }
            if let (Some(c), Some(section)) = (cut, t.get_mut(kind.name()).and_then(|s| s.as_object_mut())) {
                section.remove(c.key);
            }
        }
        v
    };
    let (a, b) = (live_keys(old), live_keys(new));
    report.needs_restart = a
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| b.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::TriggerKind;

    fn config(text: &str) -> Config {
        let base = "[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"null\"\n";
        Config::parse(&format!("{base}{text}")).unwrap().validated().unwrap()
    }

    #[test]
    fn the_running_backends_cut_is_applied_live_and_nothing_else_of_the_trigger_needs_a_restart() {
        let old = config("[trigger]\nkind = \"fpga\"\n");
        let trigger = Trigger::from_config(&old.trigger).unwrap();
        let new =
            config("[trigger]\nkind = \"fpga\"\n[trigger.fpga]\nthreshold = 0.75\n[trigger.rate]\naudit_every = 7\n");
        let report = apply_reload(&old, &new, &trigger);
        assert_eq!(report.applied, vec!["trigger.fpga.threshold = 0.75", "trigger.rate.audit_every = 7"]);
        assert!(report.refused.is_empty() && report.needs_restart.is_empty(), "{report}");
        assert_eq!((trigger.rate().threshold(), trigger.rate().audit_every()), (0.75, 7));
    }

    #[test]
    fn another_backend_or_another_section_is_named_as_needing_a_restart() {
        let old = config("[trigger]\nkind = \"spots\"\n");
        let trigger = Trigger::from_config(&old.trigger).unwrap();
        assert_eq!(trigger.kind(), TriggerKind::Spots);
        let new = config("[trigger]\nkind = \"tract\"\n[assembler]\nframe_timeout_us = 20000\n");
        let report = apply_reload(&old, &new, &trigger);
        assert!(report.applied.is_empty(), "{report}");
        assert_eq!(report.needs_restart, vec!["assembler", "trigger"]);
        let same_kind = config("[trigger.spots]\nmin_spots = 12\n[trigger.rate]\ntarget_accept_rate = 0.1\n");
        let report = apply_reload(&old, &same_kind, &trigger);
        assert_eq!(report.applied, vec!["trigger.spots.min_spots = 12", "trigger.rate.target_accept_rate = 0.1"]);
        assert_eq!((trigger.min_spots(), trigger.rate().target_rate()), (Some(12), Some(0.1)));
        assert!(report.needs_restart.is_empty(), "{report}");
    }
}
