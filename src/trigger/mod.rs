//! Trigger backends turn a frame's features into a score and a verdict. The classical `spots`
//! backend is the baseline every later trigger is measured against.

pub mod spots;

pub use spots::SpotsTrigger;

use crate::config::{TriggerKind, TriggerSection};

/// The configured trigger, prepared once and shared by every reducer worker.
#[derive(Debug)]
pub enum Trigger {
    Spots(SpotsTrigger),
    AcceptAll,
}

/// A trigger's decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub score: f32,
    pub accepted: bool,
}

/// A retune the trigger cannot take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetuneError {
    #[error("the {0} trigger has no threshold to tune")]
    NoThreshold(&'static str),
    #[error("min_spots must be at least 1 (use trigger.kind = \"accept_all\" to keep everything)")]
    ZeroSpots,
    #[error("min_spots {0} is above max_spots {1}: no frame could pass")]
    AboveMax(u32, u32),
}

impl Trigger {
    pub fn from_config(section: &TriggerSection) -> Trigger {
        match section.kind {
            TriggerKind::Spots => Trigger::Spots(SpotsTrigger::new(section.spots.min_spots, section.spots.max_spots)),
            TriggerKind::AcceptAll => Trigger::AcceptAll,
        }
    }

    /// Scores a frame from the number of spots found in it.
    pub fn decide(&self, spots_found: u32) -> Decision {
        match self {
            Trigger::Spots(t) => t.decide(spots_found),
            Trigger::AcceptAll => Decision { score: spots_found as f32, accepted: true },
        }
    }

    /// The current cut, where the trigger has one.
    pub fn min_spots(&self) -> Option<u32> {
        match self {
            Trigger::Spots(t) => Some(t.min_spots()),
            Trigger::AcceptAll => None,
        }
    }

    /// Moves the cut while running.
    ///
    /// # Errors
    /// The trigger has no cut, or the value would accept everything.
    pub fn set_min_spots(&self, min_spots: u32) -> Result<(), RetuneError> {
        match self {
            Trigger::Spots(_) if min_spots == 0 => Err(RetuneError::ZeroSpots),
            Trigger::Spots(t) if min_spots > t.max_spots() => Err(RetuneError::AboveMax(min_spots, t.max_spots())),
            Trigger::Spots(t) => {
                t.set_min_spots(min_spots);
                metrics::gauge!(crate::telemetry::TRIGGER_MIN_SPOTS).set(f64::from(min_spots));
                Ok(())
            }
            Trigger::AcceptAll => Err(RetuneError::NoThreshold("accept_all")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SpotsTriggerSection;

    #[test]
    fn a_retune_past_the_upper_cut_is_refused() {
        let section = TriggerSection {
            kind: TriggerKind::Spots,
            spots: SpotsTriggerSection { min_spots: 8, max_spots: Some(50), ..SpotsTriggerSection::default() },
        };
        let t = Trigger::from_config(&section);
        assert_eq!(t.set_min_spots(51), Err(RetuneError::AboveMax(51, 50)));
        assert_eq!(t.set_min_spots(50), Ok(()));
        assert!(t.decide(50).accepted && !t.decide(51).accepted && !t.decide(49).accepted);
    }
}
