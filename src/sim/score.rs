//! How a trigger did against the simulator's truth.

use std::collections::HashMap;

use super::run::RunTruth;
use crate::sink::features::SpotsByFrame;

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
    /// Distance from each matched reflection of at least 25 photons to its nearest found spot's
    /// centre of mass, pixels, sorted.
    pub errors_px: Vec<f32>,
    /// Per strength bin, for matched reflections whose spot the learned localiser refined: the
    /// centre-of-mass error and the learned centre's error on the same spots, pixels, each sorted.
    pub localisation: [LocalisationErrors; STRENGTH_BINS.len()],
    pub match_radius_px: f32,
}

/// Errors of two centres of the same spots, pixels, sorted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalisationErrors {
    pub centre_of_mass: Vec<f32>,
    pub learned: Vec<f32>,
}

impl SpotScore {
    /// Compares found spots with the truth's reflections, frame by frame, counting a match within
    /// `match_radius_px`.
    pub fn new(truth: &RunTruth, found: &SpotsByFrame, match_radius_px: f32) -> SpotScore {
        let mut s = SpotScore { match_radius_px, ..SpotScore::default() };
        let r2 = match_radius_px * match_radius_px;
        let none = Vec::new();
        let d2 = |a: (f32, f32), b: (f32, f32)| (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2);
        for frame in &truth.frames {
            let spots = found.get(&frame.frame_number).unwrap_or(&none);
            for &[row, col, photons] in &frame.reflections {
                let Some(bin) = STRENGTH_BINS.iter().position(|(lo, hi)| photons >= *lo && photons < *hi) else {
                    continue;
                };
                let nearest = spots
                    .iter()
                    .map(|spot| (d2((spot.row, spot.col), (row, col)), spot))
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                s.recall[bin].0 += 1;
                let Some((dist2, spot)) = nearest.filter(|(dist2, _)| *dist2 <= r2) else { continue };
                s.recall[bin].1 += 1;
                if photons >= 25.0 {
                    s.errors_px.push(dist2.sqrt());
                }
                if let Some([rr, rc]) = spot.refined {
                    s.localisation[bin].centre_of_mass.push(dist2.sqrt());
                    s.localisation[bin].learned.push(d2((rr, rc), (row, col)).sqrt());
                }
            }
            for spot in spots {
                s.found += 1;
                let nearest = frame.reflections.iter().map(|r| d2((spot.row, spot.col), (r[0], r[1])));
                s.found_matched += u64::from(nearest.fold(f32::INFINITY, f32::min) <= r2);
            }
        }
        s.errors_px.sort_by(f32::total_cmp);
        for bin in &mut s.localisation {
            bin.centre_of_mass.sort_by(f32::total_cmp);
            bin.learned.sort_by(f32::total_cmp);
        }
        s
    }

    pub fn precision(&self) -> f64 {
        ratio(self.found_matched, self.found)
    }

    /// Localisation error at quantile `q` (pixels), of matched reflections of at least 25 photons.
    pub fn error_px(&self, q: f64) -> Option<f32> {
        quantile(&self.errors_px, q)
    }

    /// Whether any spot was refined by the learned localiser.
    pub fn has_learned(&self) -> bool {
        self.localisation.iter().any(|b| !b.learned.is_empty())
    }
}

/// Quantile `q` of sorted values.
pub fn quantile(sorted: &[f32], q: f64) -> Option<f32> {
    let n = sorted.len();
    (n > 0).then(|| sorted[(((n - 1) as f64) * q).round() as usize])
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
        if self.has_learned() {
            write!(
                f,
                "\npeak centres on refined spots, error median / 95th percentile (px): centre of mass → learned"
            )?;
            for ((lo, hi), bin) in STRENGTH_BINS.iter().zip(&self.localisation) {
                let (Some(c50), Some(c95), Some(l50), Some(l95)) = (
                    quantile(&bin.centre_of_mass, 0.5),
                    quantile(&bin.centre_of_mass, 0.95),
                    quantile(&bin.learned, 0.5),
                    quantile(&bin.learned, 0.95),
                ) else {
                    continue;
                };
                let range = if hi.is_finite() { format!("{lo:>5}–{hi:<5}") } else { format!("{lo:>5}+     ") };
                write!(
                    f,
                    "\n             {range} photons: {:>6} spots  {c50:.3} / {c95:.3}  →  {l50:.3} / {l95:.3}",
                    bin.learned.len()
                )?;
            }
        }
        Ok(())
    }
}
