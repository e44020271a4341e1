//! A node's frames waiting for their verdicts, in order. A frame leaves when the builder's verdict
//! for it has come (its part is kept or dropped as the verdict says, with the verdict's score), or
//! when it has waited `timeout` (kept, flagged as not judged, counted): the documented default, so
//! that no frame is lost to a silent builder. Frames leave in the order they came, so the sinks
//! still see them in order; the wait holds the frame's pool slot, nothing is copied.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::messages::Verdict;
use crate::frame::FrameHandle;
use crate::telemetry::latency::LatencyHistogram;

/// What the gate did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    pub kept: u64,
    pub dropped: u64,
    /// Frames whose verdict did not come in time: kept, flagged.
    pub timed_out: u64,
    /// Verdicts for frames this node no longer held (or never had).
    pub unmatched: u64,
}

pub struct VerdictGate {
    held: VecDeque<(FrameHandle, Instant)>,
    verdicts: HashMap<u64, Verdict>,
    timeout: Duration,
    stats: GateStats,
    /// From a frame held to its verdict applied.
    waits: LatencyHistogram,
}

impl VerdictGate {
    pub fn new(timeout: Duration, capacity: usize) -> VerdictGate {
        VerdictGate {
            held: VecDeque::with_capacity(capacity),
            verdicts: HashMap::with_capacity(capacity * 2),
            timeout,
            stats: GateStats::default(),
            waits: LatencyHistogram::default(),
        }
    }

    /// A quantile of the time frames waited for their verdicts.
    pub fn wait_quantile_us(&self, q: f64) -> Option<u64> {
        self.waits.quantile_us(q)
    }

    pub fn stats(&self) -> &GateStats {
        &self.stats
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Holds a frame whose contribution has been sent.
    pub fn hold(&mut self, frame: FrameHandle, now: Instant) {
        self.held.push_back((frame, now + self.timeout));
    }

    /// Takes a verdict (it may come before its frame is held: the builder can be quicker than this
    /// node's own ordering).
    pub fn verdict(&mut self, verdict: Verdict) {
        self.verdicts.insert(verdict.frame_number, verdict);
        // Verdicts for frames this node will never hold (it lost them) must not pile up.
        if self.verdicts.len() > 4 * self.held.capacity().max(64) {
            let oldest = self.held.front().map_or(u64::MAX, |(f, _)| f.meta().frame_number);
            let before = self.verdicts.len();
            self.verdicts.retain(|&frame, _| frame >= oldest);
            self.stats.unmatched += (before - self.verdicts.len()) as u64;
        }
    }

    /// Hands on, in order, every frame at the head whose verdict is in or whose wait is over.
    pub fn release(&mut self, now: Instant, mut out: impl FnMut(FrameHandle)) {
        while let Some((frame, deadline)) = self.held.front() {
            let number = frame.meta().frame_number;
            let verdict = self.verdicts.remove(&number);
            if verdict.is_none() && *deadline > now {
                break;
            }
            let Some((mut frame, deadline)) = self.held.pop_front() else { break };
            let features = frame.pixels_and_features().1;
            match verdict {
                Some(v) => {
                    let held_at = deadline.checked_sub(self.timeout).unwrap_or(now);
                    self.waits.record_ns(now.saturating_duration_since(held_at).as_nanos() as u64);
                    features.accepted = v.keep;
                    features.score = v.score;
                    features.trigger_failed = false;
                    if v.keep {
                        self.stats.kept += 1;
                    } else {
                        self.stats.dropped += 1;
                    }
                }
                None => {
                    features.accepted = true;
                    features.trigger_failed = true;
                    self.stats.timed_out += 1;
                }
            }
            features.audit = false;
            out(frame);
        }
    }

    /// The earliest moment a held frame's wait ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|(_, d)| *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FramePool;

    fn verdict(frame_number: u64, keep: bool) -> Verdict {
        Verdict { frame_number, keep, score: 3.0, nodes: 2, complete: true, builder: "b".into() }
    }

    #[test]
    fn frames_leave_in_order_as_their_verdicts_come_or_their_wait_ends() {
        let pool = FramePool::new(64, 1, 4, 0).unwrap();
        let mut gate = VerdictGate::new(Duration::from_millis(100), 8);
        let t = Instant::now();
        for n in 1..=3 {
            let mut f = pool.try_acquire().unwrap();
            f.meta_mut().frame_number = n;
            gate.hold(f, t);
        }
        let mut out = Vec::new();
        // Frame 2's verdict first: nothing leaves while frame 1 waits.
        gate.verdict(verdict(2, false));
        gate.release(t, |f| out.push((f.meta().frame_number, f.features().accepted)));
        assert!(out.is_empty());
        gate.verdict(verdict(1, true));
        gate.release(t, |f| out.push((f.meta().frame_number, f.features().accepted)));
        assert_eq!(out, [(1, true), (2, false)]);
        // Frame 3 never gets one: kept, flagged, once its wait is over.
        gate.release(t + Duration::from_millis(99), |f| out.push((f.meta().frame_number, f.features().accepted)));
        assert_eq!(out.len(), 2);
        let mut flagged = false;
        gate.release(t + Duration::from_millis(100), |f| {
            flagged = f.features().trigger_failed;
            out.push((f.meta().frame_number, f.features().accepted));
        });
        assert_eq!(out[2], (3, true));
        assert!(flagged && gate.is_empty());
        assert_eq!(gate.stats(), &GateStats { kept: 1, dropped: 1, timed_out: 1, unmatched: 0 });
    }
}
