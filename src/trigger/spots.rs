//! The classical trigger, `[trigger.spots]`: a frame's score is the number of spots it holds, and it
//! is a hit from `min_spots` on (the cut the rate control holds). A frame with more than `max_spots`
//! (where set) is no hit whatever the cut: more spots than a crystal gives means ice rings, stray light
//! or a detector glitch. What a spot is belongs to the finder, `[features]`.

use std::any::Any;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, BackendSection, ConfiguredCut, CutUnit, FrameFacts, Score, Scorer};
use super::{RetuneError, TriggerError};
use crate::section::{Moved, Problems, key};

/// The classical spot-counting trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpotsTriggerSection {
    /// A frame is a hit from this many spots on.
    pub min_spots: u32,
    /// ... and up to this many, if set: more spots than a crystal gives (ice rings, a flash of stray
    /// light, a detector glitch) is no hit.
    pub max_spots: Option<u32>,
    /// The finder's keys, moved to `[features]` / `[features.threshold]`.
    #[serde(skip_serializing_if = "Moved::is_absent")]
    pub threshold_photons: Moved,
    #[serde(skip_serializing_if = "Moved::is_absent")]
    pub min_spot_pixels: Moved,
    #[serde(skip_serializing_if = "Moved::is_absent")]
    pub max_spot_pixels: Moved,
    #[serde(skip_serializing_if = "Moved::is_absent")]
    pub min_spot_photons: Moved,
    #[serde(skip_serializing_if = "Moved::is_absent")]
    pub max_spots_recorded: Moved,
}

/// Where each of the finder's old keys went.
const MOVED_TO: [(&str, &str); 5] = [
    ("threshold_photons", "features.threshold.min_photons_above (photons above the local background)"),
    ("min_spot_pixels", "features.threshold.min_pixels"),
    ("max_spot_pixels", "features.threshold.max_pixels"),
    ("min_spot_photons", "features.threshold.min_spot_photons"),
    ("max_spots_recorded", "features.max_spots_recorded"),
];

impl Default for SpotsTriggerSection {
    fn default() -> Self {
        SpotsTriggerSection {
            min_spots: 8,
            max_spots: None,
            threshold_photons: Moved::default(),
            min_spot_pixels: Moved::default(),
            max_spot_pixels: Moved::default(),
            min_spot_photons: Moved::default(),
            max_spots_recorded: Moved::default(),
        }
    }
}

impl BackendSection for SpotsTriggerSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        let old = [
            &self.threshold_photons,
            &self.min_spot_pixels,
            &self.max_spot_pixels,
            &self.min_spot_photons,
            &self.max_spots_recorded,
        ];
        for (moved, (name, to)) in old.into_iter().zip(MOVED_TO) {
            moved.check(k(name), to, problems);
        }
        if self.min_spots == 0 {
            problems.bad(k("min_spots"), "0 would accept every frame; use trigger.kind = \"accept_all\"");
        }
        if let Some(max) = self.max_spots
            && max < self.min_spots
        {
            problems.bad(k("max_spots"), format!("{max} is below min_spots ({})", self.min_spots));
        }
    }

    fn prepare(&self) -> Result<Box<dyn Backend>, TriggerError> {
        Ok(Box::new(SpotsTrigger::new(self.max_spots)))
    }

    fn cut(&self) -> Option<ConfiguredCut> {
        Some(ConfiguredCut { key: "min_spots", value: self.min_spots as f32, unit: CutUnit::Spots })
    }
}

/// The spots backend.
#[derive(Clone, Copy, Debug)]
pub struct SpotsTrigger {
    max_spots: u32,
}

impl SpotsTrigger {
    /// A backend vetoing frames with more than `max_spots` spots (no upper limit for `None`).
    pub fn new(max_spots: Option<u32>) -> SpotsTrigger {
        SpotsTrigger { max_spots: max_spots.unwrap_or(u32::MAX) }
    }

    /// The upper cut (`u32::MAX` when there is none).
    pub fn max_spots(&self) -> u32 {
        self.max_spots
    }
}

impl Backend for SpotsTrigger {
    fn scorer(&self) -> Result<Box<dyn Scorer>, TriggerError> {
        Ok(Box::new(*self))
    }

    fn cut_unit(&self) -> Option<CutUnit> {
        Some(CutUnit::Spots)
    }

    fn check_cut(&self, cut: f32) -> Result<(), RetuneError> {
        let min_spots = cut.ceil().max(0.0) as u32;
        if min_spots == 0 {
            Err(RetuneError::ZeroSpots)
        } else if min_spots > self.max_spots {
            Err(RetuneError::AboveMax(min_spots, self.max_spots))
        } else {
            Ok(())
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Scorer for SpotsTrigger {
    fn score(&mut self, frame: FrameFacts<'_>, _staged: Option<usize>) -> Score {
        let spots = frame.spots_found as f32;
        if frame.spots_found <= self.max_spots { Score::Value(spots) } else { Score::Vetoed(spots) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_spots_is_vetoed_when_a_maximum_is_set() {
        let facts = |spots_found| FrameFacts { spots_found, summary: &[] };
        assert_eq!(SpotsTrigger::new(Some(300)).score(facts(300), None), Score::Value(300.0));
        assert_eq!(SpotsTrigger::new(Some(300)).score(facts(301), None), Score::Vetoed(301.0));
        assert_eq!(SpotsTrigger::new(None).score(facts(1_000_000), None), Score::Value(1e6));
    }

    #[test]
    fn a_cut_of_no_spots_or_past_the_maximum_is_refused() {
        let t = SpotsTrigger::new(Some(50));
        assert_eq!(t.check_cut(0.0), Err(RetuneError::ZeroSpots));
        assert_eq!(t.check_cut(51.0), Err(RetuneError::AboveMax(51, 50)));
        assert_eq!(t.check_cut(50.0), Ok(()));
    }
}
