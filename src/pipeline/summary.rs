//! What a run did, for people (the summary printed at the end) and for scripts and tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::frame::{AssemblyCounters, PacketDrop};
use crate::ingest::SkipReason;
use crate::sink::SinkReport;

/// Live progress, updated per batch by the running threads and read by whoever shows it.
#[derive(Default)]
pub struct Progress {
    pub input_bytes_read: AtomicU64,
    pub input_bytes_total: AtomicU64,
    pub frames_done: AtomicU64,
    pub frames_accepted: AtomicU64,
    /// Frames that left assembly but were dropped (no slot, full queue, partial by policy).
    pub frames_dropped: AtomicU64,
}

impl Progress {
    pub fn fraction(&self) -> f64 {
        let total = self.input_bytes_total.load(Ordering::Relaxed);
        if total == 0 { 0.0 } else { self.input_bytes_read.load(Ordering::Relaxed) as f64 / total as f64 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub input_bytes: u64,
    pub records: u64,
    /// Captured frames without a usable UDP datagram, by reason.
    pub skipped: Vec<(SkipReason, u64)>,
    pub assembly: AssemblyCounters,
    /// Frames assembled but dropped because the reducers' queue was full (live sources only).
    pub frames_dropped_queue_full: u64,
    pub frames_accepted: u64,
    pub frames_rejected: u64,
    /// Accepted frames that were partial.
    pub frames_accepted_partial: u64,
    /// Rejected frames kept, flagged, for the audit stream.
    pub frames_audited: u64,
    /// Frames the trigger's backend failed on (accepted so that no hit is lost).
    pub trigger_failures: u64,
    /// Frames the spots trigger judged while the learned one's inputs were unfamiliar
    /// (`trigger.on_unfamiliar = "fallback"`).
    pub fallback_frames: u64,
    pub reduce_time: Duration,
    /// Spots the learned localiser refined, and batches of patches it failed on.
    pub spots_localised: u64,
    pub localiser_batches_failed: u64,
    /// Spots the finder found over the run, and the frames that found more than they list.
    pub spots_found: u64,
    pub frames_spots_capped: u64,
    /// The most blocks one frame's summary left out of its excess because they stand out in most
    /// frames (`trigger.inputs.ignore_persistent_excess`).
    pub persistent_ignored_max: u32,
    /// How many spots a frame lists at most (`features.max_spots_recorded`).
    pub max_spots_recorded: usize,
    pub sinks: Vec<SinkReport>,
    /// Frames sinks should have taken that found their queue full (storage behind), over all sinks.
    pub frames_dropped_storage: u64,
    /// What the FPGA trigger did: frames on the card, in software, and why the card is down.
    pub fpga: Option<crate::trigger::fpga::backend::FpgaStats>,
    /// The lowest accept rate storage held the trigger to (`storage.on_full = "raise_threshold"`).
    pub storage_ceiling_min: Option<f64>,
    /// The target accept rate as measured when the cut could not hold it (the last time), if ever.
    pub rate_not_held: Option<crate::trigger::RateHeld>,
    /// The highest share of frames with unfamiliar inputs while the alarm was raised, if it was.
    pub unfamiliar: Option<crate::trigger::Familiarity>,
    pub elapsed: Duration,
    /// The input ended in damage after what was processed (e.g. a truncated capture).
    pub input_error: Option<String>,
    /// CPU time the source thread (receive or read, assemble) used.
    pub source_cpu_seconds: f64,
    /// From a frame's first packet received to its verdict written (live runs).
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    /// What this node of a cluster sent and what the builder's verdicts did to its frames.
    pub cluster: Option<crate::scaleout::cluster::NodeReport>,
}

impl RunSummary {
    pub fn frames_out(&self) -> u64 {
        self.frames_accepted + self.frames_rejected
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let a = &self.assembly;
        writeln!(
            f,
            "input        {:.3} GB in {:.3} s: {:.2} GB/s, {} records",
            self.input_bytes as f64 / 1e9,
            secs,
            self.input_bytes as f64 / 1e9 / secs,
            self.records
        )?;
        writeln!(
            f,
            "frames in    {} ({:.0} frames/s): {} complete, {} partial kept, {} partial dropped, {} dropped for want of a free slot",
            self.frames_out(),
            self.frames_out() as f64 / secs,
            a.frames_complete,
            a.frames_partial,
            a.frames_partial_dropped,
            a.frames_no_slot
        )?;
        if self.frames_dropped_queue_full > 0 {
            writeln!(
                f,
                "             {} frames dropped: the reducers' queue was full",
                self.frames_dropped_queue_full
            )?;
        }
        let out = self.frames_out().max(1) as f64;
        writeln!(
            f,
            "trigger      {} accepted ({:.1}%, {} of them partial), {} rejected",
            self.frames_accepted,
            100.0 * self.frames_accepted as f64 / out,
            self.frames_accepted_partial,
            self.frames_rejected
        )?;
        if self.trigger_failures > 0 {
            writeln!(f, "             the trigger failed on {} frames; they were kept", self.trigger_failures)?;
        }
        if self.fallback_frames > 0 {
            writeln!(
                f,
                "             {} frames judged by the spots trigger while the model's inputs were unfamiliar",
                self.fallback_frames
            )?;
        }
        if let Some(fpga) = &self.fpga {
            write!(f, "fpga         {} frames judged on the card, {} in software", fpga.on_card, fpga.in_software)?;
            if fpga.calls > 0 {
                let per_call = fpga.on_card as f64 / fpga.calls as f64;
                write!(f, "; {} card calls, {per_call:.1} frames a call", fpga.calls)?;
            }
            match &fpga.down {
                Some(why) => writeln!(f, " (card down: {why})")?,
                None => writeln!(f)?,
            }
        }
        if let Some(c) = &self.cluster {
            let g = &c.gate;
            writeln!(
                f,
                "cluster      node {}: {} contributions sent; verdicts kept {}, dropped {}; {} without a verdict in time (kept, flagged)",
                c.node, c.link.contributions, g.kept, g.dropped, g.timed_out
            )?;
            if let (Some(p50), Some(p99)) = (c.verdict_p50_us, c.verdict_p99_us) {
                writeln!(f, "             verdict wait {p50} µs median, {p99} µs p99")?;
            }
        }
        if self.frames_audited > 0 {
            writeln!(f, "audit        {} rejected frames kept, flagged, for the audit stream", self.frames_audited)?;
        }
        let per_frame = self.reduce_time.as_secs_f64() * 1e6 / out;
        writeln!(f, "reducer      {per_frame:.0} µs per frame")?;
        write!(f, "spots        {} found, {:.1} a frame", self.spots_found, self.spots_found as f64 / out)?;
        if self.frames_spots_capped > 0 {
            write!(
                f,
                "; {} frames found more than features.max_spots_recorded = {}: those beyond it are counted, not listed",
                self.frames_spots_capped, self.max_spots_recorded
            )?;
        }
        writeln!(f)?;
        if self.persistent_ignored_max > 0 {
            writeln!(
                f,
                "summary      up to {} blocks a frame left out of the learned trigger's inputs: they stand out in \
                 most frames (hot pixels a mask should name, fixed structure; trigger.inputs.ignore_persistent_excess)",
                self.persistent_ignored_max
            )?;
        }
        if self.spots_localised > 0 || self.localiser_batches_failed > 0 {
            write!(f, "localiser    {} spot centres refined", self.spots_localised)?;
            if self.localiser_batches_failed > 0 {
                write!(f, "; it failed on {} batches (centre of mass kept)", self.localiser_batches_failed)?;
            }
            writeln!(f)?;
        }
        if let (Some(p50), Some(p99)) = (self.latency_p50_us, self.latency_p99_us) {
            writeln!(f, "latency      first packet to verdict: p50 ≤ {p50} µs, p99 ≤ {p99} µs")?;
        }
        write!(f, "packets      {} placed, {} lost", a.packets_placed, a.packets_lost)?;
        if a.packets_misplaced > 0 {
            write!(f, " ({} of the placed copied in, not received straight into their slot)", a.packets_misplaced)?;
        }
        for reason in PacketDrop::ALL {
            let n = a.dropped(reason);
            if n > 0 {
                write!(f, ", {n} {}", reason.label())?;
            }
        }
        writeln!(f)?;
        let skipped: Vec<String> =
            self.skipped.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{n} {}", r.label())).collect();
        if !skipped.is_empty() {
            writeln!(f, "not detector {}", skipped.join(", "))?;
        }
        for s in &self.sinks {
            let at = s.location.as_ref().map(|p| format!(" → {}", p.display())).unwrap_or_default();
            writeln!(f, "sink {:<9} {} frames, {:.1} MB{at}", s.name, s.frames_written, s.bytes_written as f64 / 1e6)?;
            if s.frames_dropped_queue_full > 0 {
                writeln!(
                    f,
                    "             {} frames not written: storage was behind and the {} sink's queue full",
                    s.frames_dropped_queue_full, s.name
                )?;
            }
            if s.frames_not_sent > 0 {
                writeln!(f, "             {} frames not sent: no consumer took them in time", s.frames_not_sent)?;
            }
        }
        if let Some(c) = self.storage_ceiling_min {
            writeln!(f, "storage      held the trigger's accept rate down to {:.2}% to keep up", 100.0 * c)?;
        }
        if let Some(held) = &self.rate_not_held {
            writeln!(f, "WARNING      {held}")?;
        }
        if let Some(unfamiliar) = &self.unfamiliar {
            writeln!(f, "WARNING      {unfamiliar}")?;
        }
        if let Some(e) = &self.input_error {
            writeln!(f, "input damaged: {e} (everything before it was processed)")?;
        }
        Ok(())
    }
}

pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
