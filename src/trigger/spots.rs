//! The classical trigger's score: the number of spots a frame holds. A frame with more than
//! `max_spots` (where set) is no hit whatever the cut: more spots than a crystal gives means ice rings,
//! stray light or a detector glitch. The cut itself (`min_spots`) is the rate control's threshold.

/// The spots backend.
#[derive(Debug)]
pub struct SpotsTrigger {
    max_spots: u32,
}

impl SpotsTrigger {
    /// A backend vetoing frames with more than `max_spots` spots (no upper limit for `None`).
    pub fn new(max_spots: Option<u32>) -> SpotsTrigger {
        SpotsTrigger { max_spots: max_spots.unwrap_or(u32::MAX) }
    }

    /// The frame's score (its spot count) and whether it may be accepted at all.
    pub fn score(&self, spots_found: u32) -> (f32, bool) {
        (spots_found as f32, spots_found <= self.max_spots)
    }

    /// The upper cut (`u32::MAX` when there is none).
    pub fn max_spots(&self) -> u32 {
        self.max_spots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_spots_is_vetoed_when_a_maximum_is_set() {
        assert_eq!(SpotsTrigger::new(Some(300)).score(300), (300.0, true));
        assert_eq!(SpotsTrigger::new(Some(300)).score(301), (301.0, false));
        assert!(SpotsTrigger::new(None).score(1_000_000).1);
    }
}
