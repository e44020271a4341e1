//! Trigger backends turn a frame's features into a score and a verdict. The classical `spots`
//! backend is the baseline every later trigger is measured against.

pub mod spots;

pub use spots::SpotsTrigger;

use crate::config::{TriggerKind, TriggerSection};

/// The configured trigger, prepared once and shared by every reducer worker.
#[derive(Clone, Debug)]
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

impl Trigger {
    pub fn from_config(section: &TriggerSection) -> Trigger {
        match section.kind {
            TriggerKind::Spots => Trigger::Spots(SpotsTrigger { min_spots: section.spots.min_spots }),
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
}
