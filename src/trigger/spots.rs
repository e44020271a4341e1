//! The classical trigger: a frame is a hit when it holds at least `min_spots` spots. Its score is the
//! spot count, so rate control (a later stage) can move the cut.

use super::Decision;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpotsTrigger {
    pub min_spots: u32,
}

impl SpotsTrigger {
    pub fn decide(&self, spots_found: u32) -> Decision {
        Decision { score: spots_found as f32, accepted: spots_found >= self.min_spots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_from_min_spots_on() {
        let t = SpotsTrigger { min_spots: 8 };
        assert!(!t.decide(7).accepted);
        assert_eq!(t.decide(8), Decision { score: 8.0, accepted: true });
    }
}
