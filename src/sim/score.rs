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

/// Reflection strength bins for recall, in photons.
pub const STRENGTH_BINS: [(f32, f32); 5] =
    [(1.0, 10.0), (10.0, 25.0), (25.0, 100.0), (100.0, 1000.0), (1000.0, f32::INFINITY)];

/// How a spot finder did against the simulator's reflections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpotScore {
    /// Per strength bin: reflections, and those with a found spot within the match radius.
    pub recall: [(u64, u64); STRENGTH_BINS.len()],
    /// Found spots, and those with a reflection (≥ 1 photon) within the match radius.
    pub found: u64,
    pub found_matched: u64,
    /// Distance from each matched reflection of at least 25 photons to its nearest found spot, pixels.
    pub errors_px: Vec<f32>,
    pub match_radius_px: f32,
}

impl SpotScore {
    /// Compares found spots (frame number → image row and column) with the truth's reflections,
    /// frame by frame, counting a match within `match_radius_px`.
    pub fn new(truth: &RunTruth, found: &HashMap<u64, Vec<(f32, f32)>>, match_radius_px: f32) -> SpotScore {
        let mut s = SpotScore { match_radius_px, ..SpotScore::default() };
        let r2 = match_radius_px * match_radius_px;
        let none = Vec::new();
        for frame in &truth.frames {
            let spots = found.get(&frame.frame_number).unwrap_or(&none);
            let nearest = |row: f32, col: f32, points: &mut dyn Iterator<Item = (f32, f32)>| {
                points.map(|(r, c)| (r - row).powi(2) + (c - col).powi(2)).fold(f32::INFINITY, f32::min)
            };
            for &[row, col, photons] in &frame.reflections {
                let Some(bin) = STRENGTH_BINS.iter().position(|(lo, hi)| photons >= *lo && photons < *hi) else {
                    continue;
                };
                let d2 = nearest(row, col, &mut spots.iter().copied());
                s.recall[bin].0 += 1;
                if d2 <= r2 {
                    s.recall[bin].1 += 1;
                    if photons >= 25.0 {
                        s.errors_px.push(d2.sqrt());
                    }
                }
            }
            for &(row, col) in spots {
                s.found += 1;
                let d2 = nearest(row, col, &mut frame.reflections.iter().map(|r| (r[0], r[1])));
                s.found_matched += u64::from(d2 <= r2);
            }
        }
        s.errors_px.sort_by(f32::total_cmp);
        s
    }

    pub fn precision(&self) -> f64 {
        ratio(self.found_matched, self.found)
    }

    /// Localisation error at quantile `q` (pixels), of matched reflections of at least 25 photons.
    pub fn error_px(&self, q: f64) -> Option<f32> {
        let n = self.errors_px.len();
        (n > 0).then(|| self.errors_px[(((n - 1) as f64) * q).round() as usize])
    }
}

impl std::fmt::Display for SpotScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "spots        recall by reflection strength (a found spot within {} px):", self.match_radius_px)?;
        for ((lo, hi), (n, hit)) in STRENGTH_BINS.iter().zip(&self.recall) {
            let range = if hi.is_finite() { format!("{lo:>5}–{hi:<5}") } else { format!("{lo:>5}+     ") };
            writeln!(f, "             {range} photons: {hit:>6} of {n:>6} ({:5.1}%)", 100.0 * ratio(*hit, *n))?;
        }
        write!(
            f,
            "             precision {} of {} found spots on a reflection ({:.1}%)",
            self.found_matched,
            self.found,
            100.0 * self.precision()
        )?;
        if let (Some(median), Some(p95)) = (self.error_px(0.5), self.error_px(0.95)) {
            write!(
                f,
                "\n             centre of mass error (reflections ≥ 25 photons): median {median:.2} px, 95th percentile {p95:.2} px"
            )?;
        }
        Ok(())
    }
}
