//! The verdict rule: a frame's contributions, one per node heard from, into keep or drop.

use super::messages::Contribution;
use super::section::VerdictRule;

/// Keep or drop, and the figure the rule weighed.
pub fn decide(rule: VerdictRule, min_spots: u32, threshold: f32, parts: &[&Contribution]) -> (bool, f32) {
    match rule {
        VerdictRule::SumSpots => {
            let spots: u64 = parts.iter().map(|c| u64::from(c.spots_found)).sum();
            (spots >= u64::from(min_spots), spots as f32)
        }
        VerdictRule::Any => {
            let best = parts.iter().map(|c| c.score).fold(f32::NEG_INFINITY, f32::max);
            (parts.iter().any(|c| c.accepted), best)
        }
        VerdictRule::MaxScore => {
            let best = parts.iter().map(|c| c.score).fold(f32::NEG_INFINITY, f32::max);
            (best >= threshold, best)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(spots: u32, score: f32, accepted: bool) -> Contribution {
        Contribution {
            node: "a".into(),
            frame_number: 1,
            spots_found: spots,
            score,
            accepted,
            packets_received: 1,
            packets_expected: 1,
        }
    }

    #[test]
    fn each_rule_weighs_what_it_says() {
        let (a, b) = (part(3, 0.2, false), part(5, 0.7, true));
        assert_eq!(decide(VerdictRule::SumSpots, 8, 0.0, &[&a, &b]), (true, 8.0));
        assert_eq!(decide(VerdictRule::SumSpots, 9, 0.0, &[&a, &b]), (false, 8.0));
        assert_eq!(decide(VerdictRule::Any, 0, 0.0, &[&a, &b]), (true, 0.7));
        assert_eq!(decide(VerdictRule::Any, 0, 0.0, &[&a]), (false, 0.2));
        assert_eq!(decide(VerdictRule::MaxScore, 0, 0.7, &[&a, &b]), (true, 0.7));
        assert_eq!(decide(VerdictRule::MaxScore, 0, 0.71, &[&a, &b]), (false, 0.7));
        // No contribution at all keeps nothing.
        assert!(!decide(VerdictRule::SumSpots, 1, 0.0, &[]).0);
    }
}
