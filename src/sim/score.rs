//! How a trigger did against the simulator's truth.

use std::collections::HashMap;

use super::run::RunTruth;

/// Counts of a trigger's verdicts against the truth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TriggerScore {
    pub hits: u64,
    pub hits_accepted: u64,
    /// Hits with at least the `clear_hit_spots` visible spots asked for.
    pub clear_hits: u64,
    pub clear_hits_accepted: u64,
    pub misses: u64,
    pub misses_accepted: u64,
    /// Frames of the truth with no verdict (lost on the way).
    pub frames_without_verdict: u64,
}

impl TriggerScore {
    /// Compares verdicts (frame number → accepted) with the truth.
    pub fn new(truth: &RunTruth, verdicts: &HashMap<u64, bool>, clear_hit_spots: u32) -> TriggerScore {
        let mut s = TriggerScore::default();
        for f in &truth.frames {
            let Some(&accepted) = verdicts.get(&f.frame_number) else {
                s.frames_without_verdict += 1;
                continue;
            };
            let a = u64::from(accepted);
            if f.hit {
                s.hits += 1;
                s.hits_accepted += a;
                if f.visible_spots >= clear_hit_spots {
                    s.clear_hits += 1;
                    s.clear_hits_accepted += a;
                }
            } else {
                s.misses += 1;
                s.misses_accepted += a;
            }
        }
        s
    }

    pub fn efficiency(&self) -> f64 {
        ratio(self.hits_accepted, self.hits)
    }

    pub fn clear_hit_efficiency(&self) -> f64 {
        ratio(self.clear_hits_accepted, self.clear_hits)
    }

    /// Fraction of misses rejected.
    pub fn rejection(&self) -> f64 {
        1.0 - ratio(self.misses_accepted, self.misses)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

impl std::fmt::Display for TriggerScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "vs truth     hits kept {}/{} ({:.1}%), clear hits kept {}/{} ({:.1}%)",
            self.hits_accepted,
            self.hits,
            100.0 * self.efficiency(),
            self.clear_hits_accepted,
            self.clear_hits,
            100.0 * self.clear_hit_efficiency()
        )?;
        write!(
            f,
            "             misses rejected {}/{} ({:.1}%)",
            self.misses - self.misses_accepted,
            self.misses,
            100.0 * self.rejection()
        )?;
        if self.frames_without_verdict > 0 {
            write!(f, ", {} frames never reached the trigger", self.frames_without_verdict)?;
        }
        Ok(())
    }
}
