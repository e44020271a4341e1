//! The classical trigger: a frame is a hit when it holds at least `min_spots` spots, and at most
//! `max_spots` where that is set. Its score is the spot count. The lower cut can be moved while
//! running (control plane, SIGHUP): workers read it per frame.

use std::sync::atomic::{AtomicU32, Ordering};

use super::Decision;

#[derive(Debug)]
pub struct SpotsTrigger {
    min_spots: AtomicU32,
    max_spots: u32,
}

impl SpotsTrigger {
    /// A trigger keeping frames with `min_spots..=max_spots` spots (no upper limit for `None`).
    pub fn new(min_spots: u32, max_spots: Option<u32>) -> SpotsTrigger {
        SpotsTrigger { min_spots: AtomicU32::new(min_spots), max_spots: max_spots.unwrap_or(u32::MAX) }
    }

    pub fn decide(&self, spots_found: u32) -> Decision {
        let accepted = spots_found >= self.min_spots() && spots_found <= self.max_spots;
        Decision { score: spots_found as f32, accepted }
    }

    /// The upper cut (`u32::MAX` when there is none).
    pub fn max_spots(&self) -> u32 {
        self.max_spots
    }

    pub fn min_spots(&self) -> u32 {
        self.min_spots.load(Ordering::Relaxed)
    }

    /// Moves the cut for every frame decided from now on.
    pub fn set_min_spots(&self, min_spots: u32) {
        self.min_spots.store(min_spots, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_from_min_spots_on_and_can_be_retuned() {
        let t = SpotsTrigger::new(8, None);
        assert!(!t.decide(7).accepted);
        assert_eq!(t.decide(8), Decision { score: 8.0, accepted: true });
        assert!(t.decide(1_000_000).accepted);
        t.set_min_spots(10);
        assert!(!t.decide(9).accepted);
    }

    #[test]
    fn too_many_spots_is_no_hit_when_a_maximum_is_set() {
        let t = SpotsTrigger::new(8, Some(300));
        assert!(t.decide(300).accepted);
        assert_eq!(t.decide(301), Decision { score: 301.0, accepted: false });
    }
}
