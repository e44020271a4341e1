//! The classical trigger, `[trigger.spots]`: a frame's score is the number of spots it holds, and it
//! is a hit from `min_spots` on (the cut the rate control holds). A frame with more than `max_spots`
//! (where set) is no hit whatever the cut: more spots than a crystal gives means ice rings, stray light
//! or a detector glitch. The section also holds the threshold finder's parameters (what a spot is).

use std::any::Any;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, BackendSection, ConfiguredCut, CutUnit, FrameFacts, Score, Scorer};
use super::{RetuneError, TriggerError};
use crate::features::SpotFinderParams;
use crate::section::{Problems, key};

/// The classical spot-counting trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpotsTriggerSection {
    /// A pixel belongs to a spot from this many photons on.
    pub threshold_photons: f32,
    /// Connected pixels a spot needs, at least and at most.
    pub min_spot_pixels: u32,
    pub max_spot_pixels: u32,
    /// A spot's summed photons must reach this.
    pub min_spot_photons: f32,
    /// A frame is a hit from this many spots on.
    pub min_spots: u32,
    /// ... and up to this many, if set: more spots than a crystal gives (ice rings, a flash of stray
    /// light, a detector glitch) is no hit.
    pub max_spots: Option<u32>,
    /// Spots recorded per frame at most (the rest are counted, not listed).
    pub max_spots_recorded: usize,
}

impl Default for SpotsTriggerSection {
    fn default() -> Self {
        let finder = SpotFinderParams::default();
        SpotsTriggerSection {
            threshold_photons: finder.threshold_photons,
            min_spot_pixels: finder.min_spot_pixels,
            max_spot_pixels: finder.max_spot_pixels,
            min_spot_photons: finder.min_spot_photons,
            min_spots: 8,
            max_spots: None,
            max_spots_recorded: 512,
        }
    }
}

impl SpotsTriggerSection {
    /// The threshold finder's parameters, which this section also holds.
    pub fn finder(&self) -> SpotFinderParams {
        SpotFinderParams {
            threshold_photons: self.threshold_photons,
            min_spot_pixels: self.min_spot_pixels,
            max_spot_pixels: self.max_spot_pixels,
            min_spot_photons: self.min_spot_photons,
        }
    }
}

impl BackendSection for SpotsTriggerSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if self.threshold_photons.is_nan() || self.threshold_photons <= 0.0 {
            problems.bad(k("threshold_photons"), format!("{} must be above 0", self.threshold_photons));
        }
        if self.min_spot_pixels == 0 {
            problems.bad(k("min_spot_pixels"), "a spot has at least one pixel");
        }
        if self.max_spot_pixels < self.min_spot_pixels {
            problems.bad(
                k("max_spot_pixels"),
                format!("{} is below min_spot_pixels ({})", self.max_spot_pixels, self.min_spot_pixels),
            );
        }
        if self.min_spots == 0 {
            problems.bad(k("min_spots"), "0 would accept every frame; use trigger.kind = \"accept_all\"");
        }
        if let Some(max) = self.max_spots
            && max < self.min_spots
        {
            problems.bad(k("max_spots"), format!("{max} is below min_spots ({})", self.min_spots));
        }
        if self.max_spots_recorded > 100_000 {
            problems.bad(k("max_spots_recorded"), format!("{} is above 100000", self.max_spots_recorded));
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
