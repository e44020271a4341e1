//! Turning scores into verdicts at a controlled rate.
//!
//! A frame is accepted when its score reaches the cut. The cut is either fixed (the configured
//! threshold, moved only by an operator), or held at a **target accept rate**: a [`RateTracker`] keeps
//! the scores of the last `window_frames` frames and, every `update_every_frames`, sets the cut to the
//! score that the target fraction of that window reached — a streaming quantile that follows a changing
//! hit rate with the window's lag. Workers read the cut with one atomic load per frame; the tracker
//! runs on the single thread that sees every frame in order (the sink thread), so nothing locks.
//!
//! Scores that tie (a spot count is a whole number) would make some rates unreachable: a backend with
//! integer scores declares a `tie_spread` of 1 and each frame's score is spread within it by a fixed
//! hash of its sequence number, so a cut between two whole numbers passes a fraction of the frames at
//! the lower one — reproducibly, and the same fraction of each kind of frame.
//!
//! A target that cannot be held is said, not hidden: when the scores tie (every frame scoring the same,
//! as a model does on inputs unlike any it was trained on) or the cut sits at the end of their range,
//! the share of frames the cut lets through strays from the target, and [`RateHeld`] says by how much.
//!
//! The **audit stream** keeps 1 in `audit_every` rejected frames, flagged, so a trigger's efficiency
//! can be measured on real data: what it rejects is sampled without bias.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::section::{Problems, key};

/// `[trigger.rate]`: how scores become verdicts beyond the backend's own cut: a target accept rate,
/// the audit stream.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateSection {
    /// Hold the fraction of frames accepted at this value (0 < rate ≤ 1) by moving the cut; absent:
    /// the cut stays where the backend's config (or an operator) puts it.
    pub target_accept_rate: Option<f64>,
    /// Frames whose scores the target rate is measured on.
    pub window_frames: usize,
    /// Frames between two moves of the cut.
    pub update_every_frames: u64,
    /// Keep 1 in this many rejected frames, flagged as audit frames, to measure efficiency on real
    /// data; 0 for none.
    pub audit_every: u64,
}

impl Default for RateSection {
    fn default() -> Self {
        RateSection { target_accept_rate: None, window_frames: 1000, update_every_frames: 50, audit_every: 0 }
    }
}

impl RateSection {
    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if let Some(rate) = self.target_accept_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            problems.bad(k("target_accept_rate"), format!("{rate} is outside (0, 1]"));
        }
        problems.outside(k("window_frames"), self.window_frames, (20, 1_000_000));
        if self.update_every_frames == 0 || self.update_every_frames as usize > self.window_frames {
            problems.bad(
                k("update_every_frames"),
                format!(
                    "{} must be at least 1 and at most window_frames ({})",
                    self.update_every_frames, self.window_frames
                ),
            );
        }
    }
}

/// A rate-control setting that cannot be taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RateError {
    #[error("target accept rate {0} is outside (0, 1]")]
    Rate(f64),
    #[error("threshold {0} is not a number")]
    Threshold(f32),
}

/// How well the cut holds the target rate over the tracker's window, as last measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateHeld {
    pub target: f64,
    /// Share of the window's frames whose score reaches the cut.
    pub reached: f64,
    pub cut: f32,
    /// The window's lowest and highest (effective) scores.
    pub lowest: f32,
    pub highest: f32,
    pub frames: usize,
}

impl RateHeld {
    /// Whether the cut gives the target within reason: no more than 1.5 × it and no less than half
    /// (a frame either way for small windows).
    pub fn is_held(&self) -> bool {
        let slack = 1.0 / self.frames.max(1) as f64;
        self.reached <= 1.5 * self.target + slack && self.reached + slack >= 0.5 * self.target
    }
}

impl std::fmt::Display for RateHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (target, reached) = (100.0 * self.target, 100.0 * self.reached);
        if self.is_held() {
            return write!(f, "target rate {target:.1}% held: {reached:.1}% of the last {} frames", self.frames);
        }
        write!(
            f,
            "target rate {target:.1}% cannot be held: the cut {} lets {reached:.1}% of the last {} frames through",
            self.cut, self.frames
        )?;
        if self.lowest == self.highest {
            write!(
                f,
                "; every frame scores {} (the scores cannot tell frames apart: inputs unlike the model's training?)",
                self.highest
            )
        } else if self.cut == self.highest || self.cut == self.lowest {
            write!(f, "; the cut sits at the end of the scores' range ({} to {})", self.lowest, self.highest)
        } else {
            write!(f, "; too many frames tie at the cut")
        }
    }
}

/// The cut, shared by the workers (read) and the tracker or the operator (written).
#[derive(Debug)]
pub struct RateControl {
    threshold_bits: AtomicU32,
    /// Target accept rate as `f64` bits; 0 when the cut is fixed.
    target_bits: AtomicU64,
    audit_every: AtomicU64,
    tie_spread: f32,
    /// What the tracker last measured of the target: the share reached (`f64` bits, NaN before any),
    /// the window's lowest and highest scores (two `f32`s' bits) and its frames.
    reached_bits: AtomicU64,
    range_bits: AtomicU64,
    window_frames: AtomicU64,
}

impl RateControl {
    /// A control starting at `threshold`, with a target rate (`None`: the cut stays where it is put).
    ///
    /// # Errors
    /// The threshold is NaN or the rate is outside (0, 1].
    pub fn new(
        threshold: f32,
        target_rate: Option<f64>,
        audit_every: u64,
        tie_spread: f32,
    ) -> Result<RateControl, RateError> {
        let rc = RateControl {
            threshold_bits: AtomicU32::new(0),
            target_bits: AtomicU64::new(0),
            audit_every: AtomicU64::new(audit_every),
            tie_spread,
            reached_bits: AtomicU64::new(f64::NAN.to_bits()),
            range_bits: AtomicU64::new(0),
            window_frames: AtomicU64::new(0),
        };
        rc.set_threshold(threshold)?;
        rc.set_target_rate(target_rate)?;
        Ok(rc)
    }

    /// The score a frame is judged on: its score spread within `tie_spread` by its sequence number.
    pub fn effective_score(&self, score: f32, sequence: u64) -> f32 {
        if self.tie_spread == 0.0 { score } else { score + self.tie_spread * unit_hash(sequence) }
    }

    /// Whether a frame with this score passes the current cut.
    pub fn passes(&self, score: f32, sequence: u64) -> bool {
        self.effective_score(score, sequence) >= self.threshold()
    }

    pub fn threshold(&self) -> f32 {
        f32::from_bits(self.threshold_bits.load(Ordering::Relaxed))
    }

    /// Moves the cut. With a target rate set, the tracker moves it again at its next update.
    ///
    /// # Errors
    /// The threshold is NaN.
    pub fn set_threshold(&self, threshold: f32) -> Result<(), RateError> {
        if threshold.is_nan() {
            return Err(RateError::Threshold(threshold));
        }
        self.threshold_bits.store(threshold.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    pub fn target_rate(&self) -> Option<f64> {
        let r = f64::from_bits(self.target_bits.load(Ordering::Relaxed));
        (r > 0.0).then_some(r)
    }

    /// Holds the accept rate at `rate` from now on, or (with `None`) leaves the cut where it is.
    ///
    /// # Errors
    /// The rate is outside (0, 1].
    pub fn set_target_rate(&self, rate: Option<f64>) -> Result<(), RateError> {
        match rate {
            Some(r) if !(r > 0.0 && r <= 1.0) => Err(RateError::Rate(r)),
            _ => {
                self.target_bits.store(rate.unwrap_or(0.0).to_bits(), Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// How the cut holds the target rate, as the tracker last measured it; `None` without a target
    /// or before the window holds enough frames.
    pub fn held(&self) -> Option<RateHeld> {
        let target = self.target_rate()?;
        let reached = f64::from_bits(self.reached_bits.load(Ordering::Relaxed));
        if reached.is_nan() {
            return None;
        }
        let range = self.range_bits.load(Ordering::Relaxed);
        Some(RateHeld {
            target,
            reached,
            cut: self.threshold(),
            lowest: f32::from_bits((range >> 32) as u32),
            highest: f32::from_bits(range as u32),
            frames: self.window_frames.load(Ordering::Relaxed) as usize,
        })
    }

    fn record_held(&self, reached: f64, lowest: f32, highest: f32, frames: usize) {
        let range = (u64::from(lowest.to_bits()) << 32) | u64::from(highest.to_bits());
        self.range_bits.store(range, Ordering::Relaxed);
        self.window_frames.store(frames as u64, Ordering::Relaxed);
        self.reached_bits.store(reached.to_bits(), Ordering::Relaxed);
    }

    /// Rejected frames per audited one; 0 for no audit stream.
    pub fn audit_every(&self) -> u64 {
        self.audit_every.load(Ordering::Relaxed)
    }

    pub fn set_audit_every(&self, n: u64) {
        self.audit_every.store(n, Ordering::Relaxed);
    }
}

/// A number in [0, 1) fixed by `sequence` (SplitMix64's finaliser): the same frame always gets the
/// same, neighbours get unrelated ones.
fn unit_hash(sequence: u64) -> f32 {
    let mut z = sequence.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// The target-rate controller and the audit sampler, owned by the thread that sees every frame in
/// order. Its buffers are allocated once.
#[derive(Debug)]
pub struct RateTracker {
    window: Vec<f32>,
    scratch: Vec<f32>,
    next: usize,
    filled: bool,
    update_every: u64,
    seen: u64,
    rejected: u64,
    /// The highest accept rate storage keeps up with, while it is behind.
    ceiling: Option<f64>,
    /// The fixed cut from before a ceiling applied, which the cut never goes below and comes back to.
    base_threshold: Option<f32>,
    /// Whether the target was held at the last measurement, and whether that changed since it was
    /// last asked ([`RateTracker::held_changed`]).
    was_held: bool,
    held_changed: bool,
}

impl RateTracker {
    /// A tracker over the last `window_frames` scores, updating the cut every `update_every_frames`.
    pub fn new(window_frames: usize, update_every_frames: u64) -> RateTracker {
        let window_frames = window_frames.max(1);
        RateTracker {
            window: vec![0.0; window_frames],
            scratch: vec![0.0; window_frames],
            next: 0,
            filled: false,
            update_every: update_every_frames.max(1),
            seen: 0,
            rejected: 0,
            ceiling: None,
            base_threshold: None,
            was_held: true,
            held_changed: false,
        }
    }

    /// The measurement of the target rate, once each time the target goes from held to not held or
    /// back (for a log line; [`RateControl::held`] says it at any time).
    pub fn held_changed(&mut self, control: &RateControl) -> Option<RateHeld> {
        if !std::mem::take(&mut self.held_changed) {
            return None;
        }
        control.held()
    }

    /// Measures how the cut now in place holds `rate` over the window.
    fn measure(&mut self, control: &RateControl, rate: f64) {
        let n = if self.filled { self.window.len() } else { self.next };
        let cut = control.threshold();
        let (mut lowest, mut highest, mut through) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
        for &s in &self.window[..n] {
            lowest = lowest.min(s);
            highest = highest.max(s);
            through += usize::from(s >= cut);
        }
        let reached = through as f64 / n.max(1) as f64;
        control.record_held(reached, lowest, highest, n);
        let held = control.held().is_none_or(|h| h.is_held()) || control.target_rate() != Some(rate);
        if held != self.was_held {
            self.was_held = held;
            self.held_changed = true;
        }
    }

    /// Holds the accept rate at most at `ceiling` (storage's pace), or lifts that limit. Under a
    /// fixed cut the cut only rises above the operator's, and returns to it when lifted.
    pub fn set_ceiling(&mut self, control: &RateControl, ceiling: Option<f64>) {
        match ceiling {
            Some(_) if self.base_threshold.is_none() && control.target_rate().is_none() => {
                self.base_threshold = Some(control.threshold());
            }
            None => {
                if let Some(base) = self.base_threshold.take() {
                    let _ = control.set_threshold(base);
                }
            }
            Some(_) => {}
        }
        self.ceiling = ceiling;
    }

    pub fn ceiling(&self) -> Option<f64> {
        self.ceiling
    }

    /// Takes one judged frame's effective score and verdict, moves the cut when a target rate is set
    /// and an update is due, and says whether this frame, if rejected, is kept for the audit stream.
    pub fn observe(&mut self, control: &RateControl, effective_score: f32, accepted: bool) -> bool {
        self.window[self.next] = effective_score;
        self.next += 1;
        if self.next == self.window.len() {
            self.next = 0;
            self.filled = true;
        }
        self.seen += 1;
        let target = match (control.target_rate(), self.ceiling) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, c) => t.or(c),
        };
        if let Some(rate) = target
            && self.seen.is_multiple_of(self.update_every)
            && let Some(cut) = self.cut_for(rate)
        {
            let floor = self.base_threshold.filter(|_| control.target_rate().is_none());
            let _ = control.set_threshold(floor.map_or(cut, |b| cut.max(b)));
            self.measure(control, rate);
        }
        if accepted {
            return false;
        }
        self.rejected += 1;
        let every = control.audit_every();
        every > 0 && self.rejected.is_multiple_of(every)
    }

    /// The score that a fraction `rate` of the scores in the window reach, or `None` before the window
    /// holds enough frames to say (a tenth of it, and at least 20).
    pub fn cut_for(&mut self, rate: f64) -> Option<f32> {
        let n = if self.filled { self.window.len() } else { self.next };
        if n < (self.window.len() / 10).max(20).min(self.window.len()) {
            return None;
        }
        let scores = &mut self.scratch[..n];
        scores.copy_from_slice(&self.window[..n]);
        // `k` frames of the window must reach the cut: the k-th largest score is it.
        let k = ((rate * n as f64).round() as usize).clamp(1, n);
        let (_, kth, _) = scores.select_nth_unstable_by(n - k, f32::total_cmp);
        Some(*kth)
    }

    /// Frames observed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Scores of a simulated stream: misses near 0, hits near 1, spread.
    fn score(sequence: u64, hit_rate: f64) -> (f32, bool) {
        let u = f64::from(unit_hash(sequence ^ 0xabcd));
        let v = unit_hash(sequence.wrapping_mul(31) ^ 0x1234);
        if u < hit_rate { (0.6 + 0.4 * v, true) } else { (0.5 * v * v, false) }
    }

    /// Runs a stream through a control and tracker; returns the accept fraction of frames `from..to`.
    fn run(rc: &RateControl, tracker: &mut RateTracker, from: u64, to: u64, hit_rate: f64) -> f64 {
        let mut accepted = 0;
        for seq in from..to {
            let (s, _) = score(seq, hit_rate);
            let ok = rc.passes(s, seq);
            accepted += u64::from(ok);
            tracker.observe(rc, rc.effective_score(s, seq), ok);
        }
        accepted as f64 / (to - from) as f64
    }

    #[test]
    fn a_target_that_ties_cannot_hold_is_said_and_so_is_its_return() {
        let rc = RateControl::new(0.5, Some(0.1), 0, 0.0).unwrap();
        let mut tracker = RateTracker::new(200, 10);
        // Every frame scores the same, as a model does on inputs it never saw.
        for seq in 0..400 {
            tracker.observe(&rc, 0.999_999_5, rc.passes(0.999_999_5, seq));
        }
        let held = rc.held().unwrap();
        assert!(!held.is_held() && held.reached == 1.0, "{held:?}");
        let said = held.to_string();
        assert!(said.contains("cannot be held") && said.contains("every frame scores 0.9999995"), "{said}");
        assert_eq!(tracker.held_changed(&rc).map(|h| h.is_held()), Some(false));
        assert_eq!(tracker.held_changed(&rc), None, "said once");
        // Scores that spread again: the target holds, and that is said once too.
        run(&rc, &mut tracker, 400, 1000, 0.05);
        assert!(rc.held().unwrap().is_held(), "{}", rc.held().unwrap());
        assert_eq!(tracker.held_changed(&rc).map(|h| h.is_held()), Some(true));
    }

    #[test]
    fn a_ceiling_raises_a_fixed_cut_and_lifting_it_restores_the_cut() {
        let rc = RateControl::new(0.3, None, 0, 0.0).unwrap();
        let mut t = RateTracker::new(1000, 50);
        let before = run(&rc, &mut t, 0, 2000, 0.2);
        t.set_ceiling(&rc, Some(0.05));
        run(&rc, &mut t, 2000, 4000, 0.2);
        let held = run(&rc, &mut t, 4000, 14_000, 0.2);
        assert!(before > 0.15, "accept rate before {before}");
        assert!((held - 0.05).abs() <= 0.01, "accept rate under the ceiling {held}");
        assert!(rc.threshold() > 0.3);
        t.set_ceiling(&rc, None);
        assert_eq!(rc.threshold(), 0.3);
        // A ceiling above what the cut passes leaves the operator's cut alone.
        t.set_ceiling(&rc, Some(0.9));
        run(&rc, &mut t, 14_000, 16_000, 0.2);
        assert_eq!(rc.threshold(), 0.3);
    }

    #[test]
    fn a_ceiling_below_the_target_rate_wins() {
        let rc = RateControl::new(0.0, Some(0.2), 0, 0.0).unwrap();
        let mut t = RateTracker::new(1000, 50);
        t.set_ceiling(&rc, Some(0.05));
        run(&rc, &mut t, 0, 2000, 0.1);
        let held = run(&rc, &mut t, 2000, 12_000, 0.1);
        assert!((held - 0.05).abs() <= 0.01, "accept rate {held}");
    }

    #[test]
    fn a_fixed_threshold_stays_put() {
        let rc = RateControl::new(0.55, None, 0, 0.0).unwrap();
        let mut t = RateTracker::new(1000, 50);
        run(&rc, &mut t, 0, 5000, 0.05);
        assert_eq!(rc.threshold(), 0.55);
    }

    #[test]
    fn target_rate_is_held_after_settling_and_follows_a_change_of_hit_rate() {
        let rc = RateControl::new(0.0, Some(0.10), 0, 0.0).unwrap();
        let mut t = RateTracker::new(1000, 50);
        run(&rc, &mut t, 0, 2000, 0.05);
        let steady = run(&rc, &mut t, 2000, 12_000, 0.05);
        assert!((steady - 0.10).abs() <= 0.01, "accept rate {steady}");
        // The hit rate quadruples: after one window the rate is held again.
        run(&rc, &mut t, 12_000, 13_000, 0.20);
        let after = run(&rc, &mut t, 13_000, 23_000, 0.20);
        assert!((after - 0.10).abs() <= 0.01, "accept rate {after}");
    }

    #[test]
    fn integer_scores_reach_rates_between_their_values() {
        // 95% of frames score 0, 5% score 3: a 10% rate needs part of the zeros.
        let rc = RateControl::new(1.0, Some(0.10), 0, 1.0).unwrap();
        let mut t = RateTracker::new(2000, 50);
        let mut accepted = (0u64, 0u64);
        for seq in 0..40_000u64 {
            let s = if unit_hash(seq ^ 0x77) < 0.05 { 3.0 } else { 0.0 };
            let ok = rc.passes(s, seq);
            if seq >= 4000 {
                accepted.0 += u64::from(ok);
                accepted.1 += 1;
            }
            t.observe(&rc, rc.effective_score(s, seq), ok);
        }
        let rate = accepted.0 as f64 / accepted.1 as f64;
        assert!((rate - 0.10).abs() <= 0.01, "accept rate {rate}");
        assert!(rc.threshold() > 0.0 && rc.threshold() < 1.0, "cut {}", rc.threshold());
    }

    #[test]
    fn the_audit_stream_keeps_one_in_n_rejected_frames() {
        let rc = RateControl::new(0.5, None, 0, 0.0).unwrap();
        rc.set_audit_every(10);
        let mut t = RateTracker::new(100, 10);
        let (mut rejected, mut audited) = (0, 0);
        for seq in 0..10_000u64 {
            let (s, _) = score(seq, 0.05);
            let ok = rc.passes(s, seq);
            rejected += u64::from(!ok);
            let audit = t.observe(&rc, s, ok);
            assert!(!(audit && ok), "an accepted frame is never an audit frame");
            audited += u64::from(audit);
        }
        assert_eq!(audited, rejected / 10);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(matches!(RateControl::new(f32::NAN, None, 0, 0.0), Err(RateError::Threshold(t)) if t.is_nan()));
        let rc = RateControl::new(1.0, None, 0, 0.0).unwrap();
        assert_eq!(rc.set_target_rate(Some(0.0)), Err(RateError::Rate(0.0)));
        assert_eq!(rc.set_target_rate(Some(1.5)), Err(RateError::Rate(1.5)));
        assert!(rc.set_target_rate(Some(1.0)).is_ok());
        assert!(rc.set_threshold(f32::NAN).is_err());
    }

    #[test]
    fn tie_spread_is_in_range_and_reproducible() {
        for seq in 0..1000 {
            let u = unit_hash(seq);
            assert!((0.0..1.0).contains(&u));
            assert_eq!(u, unit_hash(seq));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the hit rate and target, once settled the accept rate is within ±10% of target.
        #[test]
        fn the_rate_is_held_for_any_hit_rate_and_target(hit_rate in 0.0f64..0.5, target in 0.02f64..0.5) {
            let rc = RateControl::new(0.0, Some(target), 0, 0.0).unwrap();
            let mut t = RateTracker::new(1000, 25);
            run(&rc, &mut t, 0, 2000, hit_rate);
            let rate = run(&rc, &mut t, 2000, 12_000, hit_rate);
            prop_assert!((rate - target).abs() <= 0.1 * target, "target {} got {}", target, rate);
        }
    }
}
