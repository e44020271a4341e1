//! The classical trigger: a frame is a hit when it holds at least `min_spots` spots. Its score is the
//! spot count. The cut can be moved while running (control plane, SIGHUP): workers read it per frame.

use std::sync::atomic::{AtomicU32, Ordering};

use super::Decision;

#[derive(Debug)]
pub struct SpotsTrigger {
    min_spots: AtomicU32,
}

impl SpotsTrigger {
    pub fn new(min_spots: u32) -> SpotsTrigger {
        SpotsTrigger { min_spots: AtomicU32::new(min_spots) }
    }

    pub fn decide(&self, spots_found: u32) -> Decision {
        Decision { score: spots_found as f32, accepted: spots_found >= self.min_spots() }
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
        let t = SpotsTrigger::new(8);
        assert!(!t.decide(7).accepted);
        assert_eq!(t.decide(8), Decision { score: 8.0, accepted: true });
        t.set_min_spots(10);
        assert!(!t.decide(9).accepted);
    }
}
