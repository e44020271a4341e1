//! Trigger backends turn a frame's features into a score; the rate control turns scores into verdicts
//! (a fixed cut or a target accept rate, plus the audit stream). The classical `spots` backend is the
//! baseline every later trigger is measured against.
//!
//! A backend is one file with its section, its prepared form and its per-worker scorer
//! ([`backend`]); [`kinds`] lists them. [`Trigger`] is the configured one with its rate control,
//! prepared once and shared by every reducer worker, each of which owns a [`Scorer`]. [`tune`] chooses
//! a cut offline from scored frames.

pub mod accept_all;
pub mod backend;
pub mod familiar;
pub mod fpga;
pub mod kinds;
pub mod rate;
pub mod spots;
pub mod tract;
pub mod tune;

pub use backend::{Backend, BackendSection, ConfiguredCut, CutUnit, FrameFacts, Score, Scorer};
pub use familiar::{Familiarity, FamiliarityWatch, InputRanges, InputsSection, OnUnfamiliar};
pub use kinds::{TriggerKind, TriggerSection};
pub use rate::{RateControl, RateError, RateHeld, RateSection, RateTracker};
pub use spots::{SpotsTrigger, SpotsTriggerSection};
pub use tract::{ClassifierError, ClassifierSource, TractState, TractTrigger, TractTriggerSection};

use crate::section::{Problems, key};

/// Why a trigger cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Rate(#[from] RateError),
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Fpga(#[from] fpga::backend::FpgaBackendError),
    #[error(transparent)]
    InputRanges(#[from] familiar::InputRangesError),
    #[error(
        "trigger.on_unfamiliar = \"fallback\": the {0} trigger knows no range of training inputs to tell \
         unfamiliar frames by (a learned model with NAME.inputs.json beside it does)"
    )]
    FallbackWithoutRanges(&'static str),
}

/// The spots trigger a learned one falls back to while its inputs are unfamiliar
/// (`on_unfamiliar = "fallback"`), with a rate control of its own in spots.
#[derive(Debug)]
struct Fallback {
    rate: RateControl,
    /// The spots backend itself (stateless, so each frame scores on a copy).
    spots: SpotsTrigger,
    active: std::sync::atomic::AtomicBool,
}

/// The configured trigger, prepared once and shared by every reducer worker.
#[derive(Debug)]
pub struct Trigger {
    kind: TriggerKind,
    backend: Box<dyn Backend>,
    rate: RateControl,
    inputs: InputsSection,
    /// The share of recent frames with unfamiliar inputs (`f64` bits; NaN until measured), and
    /// whether that raised the alarm: written by the thread that watches, read by the control plane.
    unfamiliar_bits: std::sync::atomic::AtomicU64,
    unfamiliar_alarm: std::sync::atomic::AtomicBool,
    fallback: Option<Fallback>,
}

/// A trigger's decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub score: f32,
    pub accepted: bool,
    /// The backend failed on this frame; it was accepted so that no hit is lost to the failure.
    pub failed: bool,
    /// Judged by the spots trigger the learned one falls back to (the score is a spot count).
    pub fallback: bool,
}

/// A retune the trigger cannot take.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RetuneError {
    #[error("the {0} trigger has no threshold to tune")]
    NoThreshold(&'static str),
    #[error("the {0} trigger's cut is a score, not a number of spots: use threshold=")]
    NotSpots(&'static str),
    #[error("min_spots must be at least 1 (use trigger.kind = \"accept_all\" to keep everything)")]
    ZeroSpots,
    #[error("min_spots {0} is above max_spots {1}: no frame could pass")]
    AboveMax(u32, u32),
    #[error(transparent)]
    Rate(#[from] RateError),
}

impl TriggerSection {
    /// Every problem of the section, with its key path under `path`: every backend's section (a
    /// backend not chosen now may be chosen by a reload or the command line) and the rate control's.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        for kind in TriggerKind::ALL {
            self.section_of(*kind).validate(&key(path, kind.name()), problems);
        }
        self.rate.validate(&key(path, "rate"), problems);
        self.inputs.validate(&key(path, "inputs"), problems);
    }

    /// Paths relative to the config file are taken from its folder.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        for (_, section) in self.sections_mut() {
            section.resolve_paths(base);
        }
    }

    /// Whether the configured trigger has a cut to tune (`accept_all` has none).
    pub fn has_cut(&self) -> bool {
        self.backend().cut().is_some()
    }

    /// The config key and value that put the configured trigger's cut at `threshold` (what `hitgate
    /// tune` writes); `None` for a trigger without a cut.
    pub fn cut_setting(&self, threshold: f32) -> Option<(String, toml::Value)> {
        let cut = self.backend().cut()?;
        Some((format!("trigger.{}.{}", self.kind.name(), cut.key), cut.unit.setting(threshold)))
    }
}

impl Trigger {
    /// The trigger a validated config describes; a learned backend's model is loaded, checked and
    /// optimised here.
    ///
    /// # Errors
    /// A rate setting out of range (validation reports the same with its key), or a model that cannot
    /// be loaded or does not fit.
    pub fn from_config(section: &TriggerSection) -> Result<Trigger, TriggerError> {
        let backend = section.backend().prepare()?;
        let cut = section.backend().cut();
        let threshold = cut.map_or(0.0, |c| c.value);
        let tie_spread = cut.map_or(0.0, |c| c.unit.tie_spread());
        let r = &section.rate;
        let rate = RateControl::new(threshold, r.target_accept_rate, r.audit_every, tie_spread)?;
        let fallback = match section.on_unfamiliar {
            OnUnfamiliar::Fallback if backend.input_ranges().is_none() => {
                return Err(TriggerError::FallbackWithoutRanges(section.kind.name()));
            }
            OnUnfamiliar::Fallback => {
                let spots = &section.spots;
                let tie_spread = CutUnit::Spots.tie_spread();
                Some(Fallback {
                    rate: RateControl::new(spots.min_spots as f32, r.target_accept_rate, r.audit_every, tie_spread)?,
                    spots: SpotsTrigger::new(spots.max_spots),
                    active: std::sync::atomic::AtomicBool::new(false),
                })
            }
            OnUnfamiliar::Warn => None,
        };
        Ok(Trigger {
            kind: section.kind,
            backend,
            rate,
            inputs: section.inputs.clone(),
            unfamiliar_bits: std::sync::atomic::AtomicU64::new(f64::NAN.to_bits()),
            unfamiliar_alarm: std::sync::atomic::AtomicBool::new(false),
            fallback,
        })
    }

    /// A worker's own scorer for this trigger.
    ///
    /// # Errors
    /// The backend's runtime cannot make one.
    pub fn scorer(&self) -> Result<Box<dyn Scorer>, TriggerError> {
        self.backend.scorer()
    }

    /// The most frames a worker should judge together: the FPGA card's batch; one for backends that
    /// gain nothing from batches.
    pub fn batch_frames(&self) -> usize {
        self.backend.batch_frames()
    }

    /// A watch over the recent frames' inputs, when the backend knows the range of its training
    /// inputs (a learned model with its ranges).
    pub fn familiarity_watch(&self) -> Option<familiar::FamiliarityWatch> {
        Some(familiar::FamiliarityWatch::new(self.backend.input_ranges()?, &self.inputs))
    }

    /// Publishes what the watch measured, for the control plane; with `on_unfamiliar = "fallback"`,
    /// the spots trigger judges from now on while the alarm is raised.
    pub fn set_familiarity(&self, state: familiar::Familiarity, alarmed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.unfamiliar_bits.store(state.share.to_bits(), Relaxed);
        self.unfamiliar_alarm.store(alarmed, Relaxed);
        if let Some(fallback) = &self.fallback {
            fallback.active.store(alarmed, Relaxed);
        }
    }

    /// Whether the spots trigger judges now in place of the learned one.
    pub fn falling_back(&self) -> bool {
        self.fallback.as_ref().is_some_and(|f| f.active.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The rate control of the spots trigger the learned one falls back to, when configured.
    pub fn fallback_rate(&self) -> Option<&RateControl> {
        self.fallback.as_ref().map(|f| &f.rate)
    }

    /// The share of recent frames with unfamiliar inputs and whether it raised the alarm; `None`
    /// when nothing watches (no ranges) or before the first frame.
    pub fn familiarity(&self) -> Option<(f64, bool)> {
        use std::sync::atomic::Ordering::Relaxed;
        let share = f64::from_bits(self.unfamiliar_bits.load(Relaxed));
        (!share.is_nan()).then(|| (share, self.unfamiliar_alarm.load(Relaxed)))
    }

    /// Whether the backend reads the frame's summary (`features::summary`).
    pub fn needs_summary(&self) -> bool {
        self.backend.reads_summary()
    }

    /// The backend as its own type, for what only one kind has (the FPGA card's statistics).
    pub fn backend_as<T: 'static>(&self) -> Option<&T> {
        self.backend.as_any().downcast_ref()
    }

    /// Which backend judges.
    pub fn kind(&self) -> TriggerKind {
        self.kind
    }

    /// Judges a frame alone; `sequence` is its place in the run.
    pub fn decide(&self, scorer: &mut dyn Scorer, frame: FrameFacts<'_>, sequence: u64) -> Decision {
        self.judge(scorer, frame, None, sequence)
    }

    /// The decision on the `index`th frame staged before the scorer's last judgement.
    pub fn decide_staged(
        &self,
        scorer: &mut dyn Scorer,
        index: usize,
        frame: FrameFacts<'_>,
        sequence: u64,
    ) -> Decision {
        self.judge(scorer, frame, Some(index), sequence)
    }

    /// The backend's score under its cut; while the learned backend falls back, the spots trigger's
    /// score under its own cut instead (the model is not run).
    fn judge(&self, scorer: &mut dyn Scorer, frame: FrameFacts<'_>, staged: Option<usize>, sequence: u64) -> Decision {
        let falling_back = self.fallback.as_ref().filter(|f| f.active.load(std::sync::atomic::Ordering::Relaxed));
        let (score, rate) = match falling_back {
            Some(fallback) => {
                let mut spots = fallback.spots;
                (spots.score(frame, None), &fallback.rate)
            }
            None => (scorer.score(frame, staged), &self.rate),
        };
        let (score, accepted, failed) = match score {
            Score::Value(score) => (score, rate.passes(score, sequence), false),
            Score::Vetoed(score) => (score, false, false),
            Score::Kept(score) => (score, true, false),
            Score::Failed => (f32::INFINITY, true, true),
        };
        Decision { score, accepted, failed, fallback: falling_back.is_some() }
    }

    /// The cut and its target rate, for the thread that tracks the rate and for operators.
    pub fn rate(&self) -> &RateControl {
        &self.rate
    }

    /// Whether the trigger judges at all (`accept_all` keeps everything and has no cut).
    pub fn has_cut(&self) -> bool {
        self.backend.cut_unit().is_some()
    }

    /// The current cut in spots, where the trigger counts spots.
    pub fn min_spots(&self) -> Option<u32> {
        (self.backend.cut_unit() == Some(CutUnit::Spots)).then(|| self.rate.threshold().ceil().max(0.0) as u32)
    }

    /// Fixes the cut at `min_spots` (a target rate, if one was held, is let go).
    ///
    /// # Errors
    /// The trigger does not count spots, or the value would accept everything or nothing.
    pub fn set_min_spots(&self, min_spots: u32) -> Result<(), RetuneError> {
        match self.backend.cut_unit() {
            None => Err(RetuneError::NoThreshold(self.kind.name())),
            Some(CutUnit::Score) => Err(RetuneError::NotSpots(self.kind.name())),
            Some(CutUnit::Spots) => {
                self.set_threshold(min_spots as f32)?;
                metrics::gauge!(crate::telemetry::TRIGGER_MIN_SPOTS).set(f64::from(min_spots));
                Ok(())
            }
        }
    }

    /// Fixes the cut at a score (a target rate, if one was held, is let go).
    ///
    /// # Errors
    /// The trigger has no cut, or the value is not a number or one the backend refuses.
    pub fn set_threshold(&self, threshold: f32) -> Result<(), RetuneError> {
        if !self.has_cut() {
            return Err(RetuneError::NoThreshold(self.kind.name()));
        }
        if threshold.is_nan() {
            return Err(RateError::Threshold(threshold).into());
        }
        self.backend.check_cut(threshold)?;
        self.rate.set_threshold(threshold)?;
        self.rate.set_target_rate(None)?;
        metrics::gauge!(crate::telemetry::TRIGGER_THRESHOLD).set(f64::from(threshold));
        Ok(())
    }

    /// Holds the accept rate at `rate` from now on.
    ///
    /// # Errors
    /// The trigger has no cut, or the rate is outside (0, 1].
    pub fn set_target_rate(&self, rate: f64) -> Result<(), RetuneError> {
        if !self.has_cut() {
            return Err(RetuneError::NoThreshold(self.kind.name()));
        }
        if let Some(fallback) = &self.fallback {
            fallback.rate.set_target_rate(Some(rate))?;
        }
        Ok(self.rate.set_target_rate(Some(rate))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spots(min_spots: u32, max_spots: Option<u32>) -> Trigger {
        Trigger::from_config(&TriggerSection {
            kind: TriggerKind::Spots,
            spots: SpotsTriggerSection { min_spots, max_spots, ..SpotsTriggerSection::default() },
            rate: RateSection::default(),
            ..TriggerSection::default()
        })
        .unwrap()
    }

    fn decide(t: &Trigger, spots_found: u32, sequence: u64) -> Decision {
        t.decide(t.scorer().unwrap().as_mut(), FrameFacts { spots_found, summary: &[] }, sequence)
    }

    #[test]
    fn accepts_from_min_spots_on_and_can_be_retuned() {
        let t = spots(8, None);
        assert!(!decide(&t, 7, 0).accepted);
        assert_eq!(decide(&t, 8, 1), Decision { score: 8.0, accepted: true, failed: false, fallback: false });
        assert!(decide(&t, 1_000_000, 2).accepted);
        t.set_min_spots(10).unwrap();
        assert_eq!(t.min_spots(), Some(10));
        assert!((0..100).all(|seq| !decide(&t, 9, seq).accepted && decide(&t, 10, seq).accepted));
    }

    #[test]
    fn a_retune_past_the_upper_cut_is_refused() {
        let t = spots(8, Some(50));
        assert_eq!(t.set_min_spots(51), Err(RetuneError::AboveMax(51, 50)));
        assert_eq!(t.set_min_spots(50), Ok(()));
        assert!(decide(&t, 50, 0).accepted && !decide(&t, 51, 0).accepted && !decide(&t, 49, 0).accepted);
    }

    #[test]
    fn a_fixed_cut_lets_a_target_rate_go_and_accept_all_has_no_cut() {
        let t = spots(8, None);
        t.set_target_rate(0.1).unwrap();
        assert_eq!(t.rate().target_rate(), Some(0.1));
        t.set_min_spots(9).unwrap();
        assert_eq!(t.rate().target_rate(), None);
        assert!(matches!(t.set_target_rate(2.0), Err(RetuneError::Rate(_))));
        let all = Trigger::from_config(&TriggerSection { kind: TriggerKind::AcceptAll, ..TriggerSection::default() })
            .unwrap();
        assert!(decide(&all, 0, 0).accepted);
        assert_eq!(all.set_target_rate(0.1), Err(RetuneError::NoThreshold("accept_all")));
        assert_eq!(all.min_spots(), None);
    }

    #[test]
    fn each_backend_says_where_its_cut_is_written() {
        let mut section = TriggerSection::default();
        assert_eq!(section.cut_setting(7.2), Some(("trigger.spots.min_spots".into(), toml::Value::Integer(8))));
        section.kind = TriggerKind::Tract;
        assert_eq!(section.cut_setting(0.25), Some(("trigger.tract.threshold".into(), toml::Value::Float(0.25))));
        section.kind = TriggerKind::Fpga;
        assert_eq!(section.cut_setting(0.25), Some(("trigger.fpga.threshold".into(), toml::Value::Float(0.25))));
        section.kind = TriggerKind::AcceptAll;
        assert_eq!(section.cut_setting(0.25), None);
        assert!(!section.has_cut());
    }

    #[test]
    fn while_the_alarm_is_raised_the_fallback_judges_by_spots_and_then_hands_back() {
        let section = TriggerSection {
            kind: TriggerKind::Tract,
            on_unfamiliar: OnUnfamiliar::Fallback,
            spots: SpotsTriggerSection { min_spots: 5, max_spots: Some(100), ..SpotsTriggerSection::default() },
            ..TriggerSection::default()
        };
        let t = Trigger::from_config(&section).unwrap();
        let mut scorer = t.scorer().unwrap();
        let summary = [0f32; crate::features::summary::SUMMARY_LEN];
        let mut judge =
            |spots_found, seq| t.decide(scorer.as_mut(), FrameFacts { spots_found, summary: &summary }, seq);
        assert!(!judge(50, 0).fallback, "the model judges until the alarm");
        let state = Familiarity { share: 0.9, frames: 40, limit: 0.25 };
        t.set_familiarity(state, true);
        assert!(t.falling_back());
        assert_eq!(judge(5, 1), Decision { score: 5.0, accepted: true, failed: false, fallback: true });
        assert!(!judge(4, 2).accepted && !judge(101, 3).accepted, "below the cut, and past max_spots");
        t.set_familiarity(Familiarity { share: 0.0, ..state }, false);
        assert!(!t.falling_back() && !judge(50, 4).fallback);
        // The target rate, set live, reaches the fallback's rate control too.
        t.set_target_rate(0.1).unwrap();
        assert_eq!(t.fallback_rate().unwrap().target_rate(), Some(0.1));
        // A model that knows no training ranges cannot tell when to fall back: refused.
        let mut no_ranges = section.clone();
        no_ranges.kind = TriggerKind::Spots;
        assert!(matches!(Trigger::from_config(&no_ranges), Err(TriggerError::FallbackWithoutRanges("spots"))));
    }

    #[test]
    fn min_spots_is_refused_where_the_cut_is_a_score() {
        let tract =
            Trigger::from_config(&TriggerSection { kind: TriggerKind::Tract, ..TriggerSection::default() }).unwrap();
        assert_eq!(tract.set_min_spots(3), Err(RetuneError::NotSpots("tract")));
        tract.set_threshold(0.7).unwrap();
        assert_eq!(tract.rate().threshold(), 0.7);
    }
}
