//! Trigger backends turn a frame's features into a score; the rate control turns scores into verdicts
//! (a fixed cut or a target accept rate, plus the audit stream). The classical `spots` backend is the
//! baseline every later trigger is measured against.

pub mod fpga;
pub mod rate;
pub mod spots;
pub mod tract;

pub use rate::{RateControl, RateError, RateTracker};
pub use spots::SpotsTrigger;
pub use tract::{ClassifierError, ClassifierSource, TractState, TractTrigger};

use crate::config::{TriggerKind, TriggerSection};

/// The backend that scores frames.
#[derive(Debug)]
pub enum Backend {
    Spots(SpotsTrigger),
    /// The learned hit classifier on the frame's summary.
    Tract(TractTrigger),
    /// The int8 hit classifier on an FPGA card, with its software fallback.
    Fpga(Box<fpga::backend::FpgaBackend>),
    AcceptAll,
}

/// Why a trigger cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Rate(#[from] RateError),
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Fpga(#[from] fpga::backend::FpgaBackendError),
}

/// One worker's trigger state: the learned backend's run state, the FPGA backend's batch.
#[derive(Debug, Default)]
pub struct TriggerState {
    tract: Option<TractState>,
    batch: Option<CardBatch>,
}

/// A worker's frames staged for one card call: their inputs, then their scores once judged. Sized
/// once for the largest batch, so judging allocates nothing.
#[derive(Debug)]
struct CardBatch {
    inputs: Vec<[i8; fpga::quant::INPUTS]>,
    logits: Vec<i64>,
    scores: Vec<f32>,
}

/// The configured trigger, prepared once and shared by every reducer worker.
#[derive(Debug)]
pub struct Trigger {
    backend: Backend,
    rate: RateControl,
}

/// A trigger's decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub score: f32,
    pub accepted: bool,
    /// The backend failed on this frame; it was accepted so that no hit is lost to the failure.
    pub failed: bool,
}

/// A retune the trigger cannot take.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RetuneError {
    #[error("the {0} trigger has no threshold to tune")]
    NoThreshold(&'static str),
    #[error("min_spots must be at least 1 (use trigger.kind = \"accept_all\" to keep everything)")]
    ZeroSpots,
    #[error("min_spots {0} is above max_spots {1}: no frame could pass")]
    AboveMax(u32, u32),
    #[error(transparent)]
    Rate(#[from] RateError),
}

impl Trigger {
    /// The trigger a validated config describes; a learned backend's model is loaded, checked and
    /// optimised here.
    ///
    /// # Errors
    /// A rate setting out of range (validation reports the same with its key), or a model that cannot
    /// be loaded or does not fit.
    pub fn from_config(section: &TriggerSection) -> Result<Trigger, TriggerError> {
        let r = &section.rate;
        let (backend, threshold, tie_spread) = match section.kind {
            TriggerKind::Spots => {
                (Backend::Spots(SpotsTrigger::new(section.spots.max_spots)), section.spots.min_spots as f32, 1.0)
            }
            TriggerKind::Tract => {
                let model = TractTrigger::load(&ClassifierSource::parse(&section.tract.model))?;
                (Backend::Tract(model), section.tract.threshold, 0.0)
            }
            TriggerKind::Fpga => {
                (Backend::Fpga(Box::new(fpga::backend::FpgaBackend::open(&section.fpga)?)), section.fpga.threshold, 0.0)
            }
            TriggerKind::AcceptAll => (Backend::AcceptAll, 0.0, 0.0),
        };
        let rate = RateControl::new(threshold, r.target_accept_rate, r.audit_every, tie_spread)?;
        Ok(Trigger { backend, rate })
    }

    /// A worker's own state for this trigger.
    ///
    /// # Errors
    /// The learned backend's runtime cannot make one.
    pub fn state(&self) -> Result<TriggerState, TriggerError> {
        let most = self.batch_frames();
        Ok(TriggerState {
            tract: match &self.backend {
                Backend::Tract(t) => Some(t.state()?),
                _ => None,
            },
            batch: matches!(self.backend, Backend::Fpga(_)).then(|| CardBatch {
                inputs: Vec::with_capacity(most),
                logits: vec![0; most],
                scores: Vec::with_capacity(most),
            }),
        })
    }

    /// The most frames a worker should judge together ([`Trigger::stage`]): the FPGA card's batch;
    /// one for backends that gain nothing from batches.
    pub fn batch_frames(&self) -> usize {
        match &self.backend {
            Backend::Fpga(f) => f.batch_frames(),
            _ => 1,
        }
    }

    /// Stages a frame's summary for the next [`Trigger::judge_staged`] (the FPGA backend quantizes
    /// it now; the others judge in [`Trigger::decide_staged`]). At most [`Trigger::batch_frames`]
    /// frames are staged between two judgements; one more is judged alone, later.
    pub fn stage(&self, state: &mut TriggerState, summary: &[f32]) {
        if let (Backend::Fpga(f), Some(batch)) = (&self.backend, state.batch.as_mut())
            && batch.inputs.len() < batch.inputs.capacity()
        {
            let mut input = [0i8; fpga::quant::INPUTS];
            f.quantize(summary, &mut input);
            batch.inputs.push(input);
        }
    }

    /// Judges the staged frames together (one card call for the FPGA backend).
    pub fn judge_staged(&self, state: &mut TriggerState) {
        if let (Backend::Fpga(f), Some(batch)) = (&self.backend, state.batch.as_mut()) {
            let n = batch.inputs.len();
            batch.scores.clear();
            batch.scores.resize(n, 0.0);
            f.score_batch(&batch.inputs, &mut batch.logits[..n], &mut batch.scores);
            batch.inputs.clear();
        }
    }

    /// The decision on the `index`th frame staged before the last [`Trigger::judge_staged`]; the
    /// arguments are those [`Trigger::decide`] takes, for backends that judge here.
    pub fn decide_staged(
        &self,
        state: &mut TriggerState,
        index: usize,
        spots_found: u32,
        summary: &[f32],
        sequence: u64,
    ) -> Decision {
        if let (Backend::Fpga(f), Some(batch)) = (&self.backend, state.batch.as_ref()) {
            // A frame staged past the batch's capacity was not judged with it: it is judged alone.
            let score = batch.scores.get(index).copied().unwrap_or_else(|| f.score(summary));
            return Decision { score, accepted: self.rate.passes(score, sequence), failed: false };
        }
        self.decide(state, spots_found, summary, sequence)
    }

    /// Whether the backend reads the frame's summary (`features::summary`).
    pub fn needs_summary(&self) -> bool {
        matches!(self.backend, Backend::Tract(_) | Backend::Fpga(_))
    }

    /// What the FPGA backend did (frames on the card, in software, why the card is down).
    pub fn fpga_stats(&self) -> Option<fpga::backend::FpgaStats> {
        match &self.backend {
            Backend::Fpga(f) => Some(f.stats()),
            _ => None,
        }
    }

    /// The FPGA backend's emulated card, when it runs one.
    pub fn emulated_card(&self) -> Option<&fpga::emulator::EmulatedCard> {
        match &self.backend {
            Backend::Fpga(f) => f.emulated_card(),
            _ => None,
        }
    }

    /// Judges a frame from its spot count and summary; `sequence` is its place in the run.
    pub fn decide(&self, state: &mut TriggerState, spots_found: u32, summary: &[f32], sequence: u64) -> Decision {
        match (&self.backend, state.tract.as_mut()) {
            (Backend::Spots(t), _) => {
                let (score, allowed) = t.score(spots_found);
                Decision { score, accepted: allowed && self.rate.passes(score, sequence), failed: false }
            }
            (Backend::Tract(_), Some(model)) => match model.score(summary) {
                Ok(score) if !score.is_nan() => {
                    Decision { score, accepted: self.rate.passes(score, sequence), failed: false }
                }
                // Fail open: a frame the model could not judge is kept, and counted.
                _ => Decision { score: f32::INFINITY, accepted: true, failed: true },
            },
            (Backend::Tract(_), None) => Decision { score: f32::INFINITY, accepted: true, failed: true },
            (Backend::Fpga(f), _) => {
                let score = f.score(summary);
                Decision { score, accepted: self.rate.passes(score, sequence), failed: false }
            }
            (Backend::AcceptAll, _) => Decision { score: spots_found as f32, accepted: true, failed: false },
        }
    }

    /// The cut and its target rate, for the thread that tracks the rate and for operators.
    pub fn rate(&self) -> &RateControl {
        &self.rate
    }

    fn name(&self) -> &'static str {
        match self.backend {
            Backend::Spots(_) => "spots",
            Backend::Tract(_) => "tract",
            Backend::Fpga(_) => "fpga",
            Backend::AcceptAll => "accept_all",
        }
    }

    /// Whether the trigger judges at all (`accept_all` keeps everything and has no cut).
    pub fn has_cut(&self) -> bool {
        !matches!(self.backend, Backend::AcceptAll)
    }

    /// The current cut in spots, where the trigger counts spots.
    pub fn min_spots(&self) -> Option<u32> {
        match self.backend {
            Backend::Spots(_) => Some(self.rate.threshold().ceil().max(0.0) as u32),
            Backend::Tract(_) | Backend::Fpga(_) | Backend::AcceptAll => None,
        }
    }

    /// Fixes the cut at `min_spots` (a target rate, if one was held, is let go).
    ///
    /// # Errors
    /// The trigger has no cut, or the value would accept everything or nothing.
    pub fn set_min_spots(&self, min_spots: u32) -> Result<(), RetuneError> {
        match &self.backend {
            Backend::Spots(_) if min_spots == 0 => Err(RetuneError::ZeroSpots),
            Backend::Spots(t) if min_spots > t.max_spots() => Err(RetuneError::AboveMax(min_spots, t.max_spots())),
            Backend::Spots(_) => {
                self.set_threshold(min_spots as f32)?;
                metrics::gauge!(crate::telemetry::TRIGGER_MIN_SPOTS).set(f64::from(min_spots));
                Ok(())
            }
            Backend::Tract(_) => Err(RetuneError::NoThreshold("tract (use threshold=)")),
            Backend::Fpga(_) => Err(RetuneError::NoThreshold("fpga (use threshold=)")),
            Backend::AcceptAll => Err(RetuneError::NoThreshold("accept_all")),
        }
    }

    /// Fixes the cut at a score (a target rate, if one was held, is let go).
    ///
    /// # Errors
    /// The trigger has no cut, or the value is not a number.
    pub fn set_threshold(&self, threshold: f32) -> Result<(), RetuneError> {
        if !self.has_cut() {
            return Err(RetuneError::NoThreshold(self.name()));
        }
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
            return Err(RetuneError::NoThreshold(self.name()));
        }
        Ok(self.rate.set_target_rate(Some(rate))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RateSection, SpotsTriggerSection};

    fn spots(min_spots: u32, max_spots: Option<u32>) -> Trigger {
        Trigger::from_config(&TriggerSection {
            kind: TriggerKind::Spots,
            spots: SpotsTriggerSection { min_spots, max_spots, ..SpotsTriggerSection::default() },
            rate: RateSection::default(),
            ..TriggerSection::default()
        })
        .unwrap()
    }

    #[test]
    fn accepts_from_min_spots_on_and_can_be_retuned() {
        let t = spots(8, None);
        assert!(!t.decide(&mut TriggerState::default(), 7, &[], 0).accepted);
        assert_eq!(
            t.decide(&mut TriggerState::default(), 8, &[], 1),
            Decision { score: 8.0, accepted: true, failed: false }
        );
        assert!(t.decide(&mut TriggerState::default(), 1_000_000, &[], 2).accepted);
        t.set_min_spots(10).unwrap();
        assert_eq!(t.min_spots(), Some(10));
        assert!((0..100).all(|seq| !t.decide(&mut TriggerState::default(), 9, &[], seq).accepted
            && t.decide(&mut TriggerState::default(), 10, &[], seq).accepted));
    }

    #[test]
    fn a_retune_past_the_upper_cut_is_refused() {
        let t = spots(8, Some(50));
        assert_eq!(t.set_min_spots(51), Err(RetuneError::AboveMax(51, 50)));
        assert_eq!(t.set_min_spots(50), Ok(()));
        assert!(
            t.decide(&mut TriggerState::default(), 50, &[], 0).accepted
                && !t.decide(&mut TriggerState::default(), 51, &[], 0).accepted
                && !t.decide(&mut TriggerState::default(), 49, &[], 0).accepted
        );
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
        assert!(all.decide(&mut TriggerState::default(), 0, &[], 0).accepted);
        assert_eq!(all.set_target_rate(0.1), Err(RetuneError::NoThreshold("accept_all")));
    }
}
