//! What a frame holds besides the detector's own response: the solvent ring's place and width, a
//! shadow across the detector, ice (uniform rings or spotty ones, which are misses, not hits), the
//! crystals (cell, mosaicity, a second lattice) and the shape of their spots.
//!
//! The defaults reproduce the plain scene: a lysozyme-like cell, round Gaussian spots, no ice and no
//! shadow; nothing here draws a random number unless its feature is switched on, so runs made before
//! these features read the same.

use serde::{Deserialize, Serialize};

use super::crystal::{Crystal, Experiment};
use crate::rng::Rng;

/// Hexagonal ice's strongest powder rings, d-spacings in Å.
pub const ICE_RINGS_A: [f64; 10] = [3.897, 3.669, 3.441, 2.671, 2.249, 2.072, 1.948, 1.918, 1.883, 1.721];
/// Width of an ice ring in 1/d (Å⁻¹, Gaussian sigma): far sharper than the solvent ring.
pub const ICE_RING_WIDTH: f64 = 0.0015;

/// A scene's settings, per run; ranges are drawn from per frame (or per hit), log-uniformly for
/// photons and uniformly otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scene {
    /// Where the solvent ring peaks (d, Å) and its width (Gaussian sigma in 1/d, Å⁻¹).
    pub solvent_ring_d_a: f64,
    pub solvent_ring_width: f64,
    /// A shadow across the detector (a nozzle or a kapton film): the background beyond a straight
    /// edge is let through at `transmission`.
    pub shadow: Option<Shadow>,
    /// Fraction of frames with ice; of those, the share whose ice is spotty (a few crystallites:
    /// sharp spots on the ice rings) rather than uniform rings.
    pub ice_rate: f64,
    pub spotty_ice_share: f64,
    /// Peak photons a pixel of a uniform ice ring.
    pub uniform_ice_photons: [f64; 2],
    /// Spots of spotty ice a frame, and photons in each.
    pub ice_spots: [f64; 2],
    pub ice_spot_photons: [f64; 2],
    /// Unit cell edges (Å), each drawn per hit; `None` keeps a lysozyme-like cell.
    pub cell_edges_a: Option<[f64; 2]>,
    /// The crystal's own resolution limit (Å), drawn per hit.
    pub crystal_d_min_a: [f64; 2],
    /// Mosaicity and bandwidth together: the width of the excitation error that diffracts (Å⁻¹).
    pub rocking_width: [f64; 2],
    /// Fraction of hits with a second lattice in the beam.
    pub two_lattices_rate: f64,
    /// Spot shape: Gaussian sigma (pixels), the Lorentzian share of a pseudo-Voigt, and how much
    /// longer a spot is across its ring than along it (mosaic streaks).
    pub spot_sigma_px: [f64; 2],
    pub spot_lorentz_share: [f64; 2],
    pub spot_streak: [f64; 2],
}

/// A straight edge at `angle` (radians) through a point `offset_px` from the beam along its normal;
/// the side the normal points to is shadowed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    pub angle: f64,
    pub offset_px: f64,
    pub transmission: f64,
}

impl Default for Scene {
    fn default() -> Self {
        Scene {
            solvent_ring_d_a: 3.2,
            solvent_ring_width: 0.035,
            shadow: None,
            ice_rate: 0.0,
            spotty_ice_share: 0.5,
            uniform_ice_photons: [0.05, 2.0],
            ice_spots: [5.0, 300.0],
            ice_spot_photons: [10.0, 1000.0],
            cell_edges_a: None,
            crystal_d_min_a: [0.0, 0.0],
            rocking_width: [0.0012, 0.0012],
            two_lattices_rate: 0.0,
            spot_sigma_px: [0.6, 0.6],
            spot_lorentz_share: [0.0, 0.0],
            spot_streak: [1.0, 1.0],
        }
    }
}

/// What a frame's ice is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ice {
    None,
    /// Uniform rings of this peak photons a pixel.
    Uniform(f64),
    /// This many sharp spots on the rings.
    Spotty(usize),
}

/// Draws from `[lo, hi]` uniformly, or returns `lo` without a draw when the range is a point.
pub fn draw(rng: &mut Rng, [lo, hi]: [f64; 2]) -> f64 {
    if hi > lo { rng.range(lo, hi) } else { lo }
}

/// Draws from `[lo, hi]` log-uniformly (both positive), or `lo` without a draw.
pub fn draw_log(rng: &mut Rng, [lo, hi]: [f64; 2]) -> f64 {
    if hi > lo { (lo.ln() + (hi.ln() - lo.ln()) * rng.uniform()).exp() } else { lo }
}

impl Scene {
    /// This frame's ice: none, or drawn when the scene has any.
    pub fn ice(&self, rng: &mut Rng) -> Ice {
        if self.ice_rate <= 0.0 || rng.uniform() >= self.ice_rate {
            return Ice::None;
        }
        if rng.uniform() < self.spotty_ice_share {
            Ice::Spotty(draw_log(rng, self.ice_spots).round() as usize)
        } else {
            Ice::Uniform(draw_log(rng, self.uniform_ice_photons))
        }
    }

    /// The crystal of one hit and the experiment as it sees it (its own resolution limit): the run's
    /// `crystal`, or one drawn from the scene's ranges.
    pub fn crystal(&self, mut crystal: Crystal, mut experiment: Experiment, rng: &mut Rng) -> (Crystal, Experiment) {
        if let Some(edges) = self.cell_edges_a {
            crystal.cell_a = draw_log(rng, edges);
            crystal.cell_b = draw_log(rng, edges);
            crystal.cell_c = draw_log(rng, edges);
            crystal.b_factor = rng.range(10.0, 60.0);
        }
        crystal.rocking_width = draw_log(rng, self.rocking_width);
        experiment.d_min_a = experiment.d_min_a.max(draw(rng, self.crystal_d_min_a));
        // Reflections are sought over a box of Miller indices: a large cell at high resolution would
        // take minutes a frame, so its resolution is capped to keep the box below 8 million.
        let cell = crystal.cell_a * crystal.cell_b * crystal.cell_c;
        experiment.d_min_a = experiment.d_min_a.max((8.0 * cell / 8.0e6).cbrt());
        (crystal, experiment)
    }

    /// The spot shape of one hit.
    pub fn spot_shape(&self, rng: &mut Rng) -> SpotShape {
        SpotShape {
            sigma_px: draw(rng, self.spot_sigma_px),
            lorentz_share: draw(rng, self.spot_lorentz_share),
            streak: draw(rng, self.spot_streak),
        }
    }
}

/// How a spot's photons spread over the pixels around its centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpotShape {
    pub sigma_px: f64,
    pub lorentz_share: f64,
    pub streak: f64,
}

impl SpotShape {
    /// A round Gaussian spot.
    pub fn gaussian(sigma_px: f64) -> SpotShape {
        SpotShape { sigma_px, lorentz_share: 0.0, streak: 1.0 }
    }

    /// Pixels out from the centre the spot is drawn to.
    pub fn reach(&self) -> i32 {
        (3.0 * self.sigma_px * self.streak + 0.5).ceil().clamp(2.0, 8.0) as i32
    }

    /// The profile's weight (unnormalised) at each pixel of the square of side `2 × reach + 1` around
    /// the pixel nearest the spot's centre (row-major): the centre sits (`row`, `col`) off that
    /// pixel's centre, and `radial` is the unit vector along the ring's radius there (the streak runs
    /// across it).
    pub fn profile(&self, row: f64, col: f64, radial: (f64, f64)) -> Vec<f64> {
        let reach = self.reach();
        let (ur, uc) = radial;
        let mut weights = Vec::with_capacity(((2 * reach + 1) * (2 * reach + 1)) as usize);
        for dr in -reach..=reach {
            for dc in -reach..=reach {
                let (a, b) = (f64::from(dr) - row, f64::from(dc) - col);
                weights.push(self.weight(a * ur + b * uc, b * ur - a * uc));
            }
        }
        weights
    }

    /// The pseudo-Voigt profile (unnormalised) at an offset `along` the ring's radius and `across` it,
    /// pixels: Gaussian and Lorentzian of the same half width, the spot `streak` times longer across.
    pub fn weight(&self, along: f64, across: f64) -> f64 {
        let q2 = (along / self.sigma_px).powi(2) + (across / (self.sigma_px * self.streak)).powi(2);
        // A Lorentzian 1 / (1 + 4x²/Γ²) with Γ = 2√(2 ln 2) σ, the Gaussian's full width at half maximum.
        let lorentz = 1.0 / (1.0 + q2 / (2.0 * std::f64::consts::LN_2));
        let gauss = (-0.5 * q2).exp();
        self.lorentz_share * lorentz + (1.0 - self.lorentz_share) * gauss
    }
}

/// The largest sum of a 2 × 2 block of a square grid of `side` × `side` values (row-major).
pub fn brightest_block(grid: &[f64], side: usize) -> f64 {
    let at = |r: usize, c: usize| grid[r * side + c];
    (0..side.saturating_sub(1))
        .flat_map(|r| (0..side - 1).map(move |c| (r, c)))
        .map(|(r, c)| at(r, c) + at(r + 1, c) + at(r, c + 1) + at(r + 1, c + 1))
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The brightest 2 × 2 block of a spot: nearly all of a sharp round one, a small part of a broad
    /// streaked one — which is why a spot's detectability is judged on its own profile.
    #[test]
    fn a_spots_brightest_block_holds_what_its_shape_leaves_there() {
        let peak = |shape: SpotShape| {
            let mut shares = shape.profile(0.2, -0.3, (0.6, 0.8));
            let norm: f64 = shares.iter().sum();
            shares.iter_mut().for_each(|s| *s /= norm);
            brightest_block(&shares, (2 * shape.reach() + 1) as usize)
        };
        assert!(peak(SpotShape::gaussian(0.35)) > 0.9);
        let broad = peak(SpotShape { sigma_px: 1.0, lorentz_share: 0.6, streak: 3.0 });
        assert!((0.05..0.2).contains(&broad), "{broad}");
    }

    #[test]
    fn a_pseudo_voigt_halves_where_its_gaussian_does_and_streaks_across() {
        let g = SpotShape::gaussian(1.0);
        let half = (2.0 * std::f64::consts::LN_2).sqrt();
        assert!((g.weight(half, 0.0) - 0.5).abs() < 1e-12);
        let v = SpotShape { lorentz_share: 1.0, ..g };
        assert!((v.weight(half, 0.0) - 0.5).abs() < 1e-12, "{}", v.weight(half, 0.0));
        // The Lorentzian keeps more in its tails.
        assert!(v.weight(3.0, 0.0) > 10.0 * g.weight(3.0, 0.0));
        let streaked = SpotShape { streak: 3.0, ..g };
        assert!((streaked.weight(0.0, 3.0) - g.weight(1.0, 0.0)).abs() < 1e-12);
        assert!(streaked.reach() > g.reach());
    }

    #[test]
    fn the_plain_scene_draws_nothing() {
        let mut a = Rng::new(1, 1);
        let scene = Scene::default();
        assert_eq!(scene.ice(&mut a), Ice::None);
        assert_eq!(scene.spot_shape(&mut a), SpotShape::gaussian(0.6));
        assert_eq!(a.uniform(), Rng::new(1, 1).uniform());
    }
}
