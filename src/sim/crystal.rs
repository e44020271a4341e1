//! Bragg diffraction from a randomly oriented crystal: the reciprocal lattice rotated at random,
//! every reflection near the Ewald sphere projected along its diffracted ray onto the detector plane.

use crate::rng::Rng;

/// The unit cell (orthorhombic) and how the crystal diffracts.
#[derive(Clone, Copy, Debug)]
pub struct Crystal {
    pub cell_a: f64,
    pub cell_b: f64,
    pub cell_c: f64,
    /// Debye–Waller B factor (Å²): the fall-off of intensity with resolution.
    pub b_factor: f64,
    /// Width of the excitation error that still diffracts (Å⁻¹): mosaicity and bandwidth together.
    pub rocking_width: f64,
}

impl Default for Crystal {
    /// A lysozyme-like tetragonal cell.
    fn default() -> Self {
        Crystal { cell_a: 79.1, cell_b: 79.1, cell_c: 37.9, b_factor: 20.0, rocking_width: 0.0012 }
    }
}

/// Where the detector sits: distance and beam along +z through pixel (`beam_row`, `beam_col`) of the
/// assembled image.
#[derive(Clone, Copy, Debug)]
pub struct Experiment {
    pub wavelength_a: f64,
    pub distance_mm: f64,
    pub pixel_mm: f64,
    pub beam_row: f64,
    pub beam_col: f64,
    /// Outermost resolution considered (Å).
    pub d_min_a: f64,
}

/// One reflection on the detector: its position in image pixels and expected photons.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reflection {
    pub row: f64,
    pub col: f64,
    pub photons: f64,
    pub d_spacing_a: f64,
}

/// A uniformly random rotation (unit quaternion from three uniforms, Shoemake's method).
pub fn random_rotation(rng: &mut Rng) -> [[f64; 3]; 3] {
    let (u1, u2, u3) = (rng.uniform(), rng.uniform(), rng.uniform());
    let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
    let tau = std::f64::consts::TAU;
    let (x, y, z, w) = (a * (tau * u2).sin(), a * (tau * u2).cos(), b * (tau * u3).sin(), b * (tau * u3).cos());
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
        [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
        [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// The reflections of one crystal in one orientation, with `mean_photons` the mean intensity of a fully
/// excited reflection at zero resolution. Structure-factor amplitudes follow Wilson statistics.
pub fn reflections(
    crystal: &Crystal,
    exp: &Experiment,
    rotation: &[[f64; 3]; 3],
    mean_photons: f64,
    rng: &mut Rng,
    out: &mut Vec<Reflection>,
) {
    out.clear();
    let k = 1.0 / exp.wavelength_a;
    let s_max = 1.0 / exp.d_min_a;
    let (h_max, k_max, l_max) = (
        (crystal.cell_a * s_max).floor() as i32,
        (crystal.cell_b * s_max).floor() as i32,
        (crystal.cell_c * s_max).floor() as i32,
    );
    let r = rotation;
    for h in -h_max..=h_max {
        for kk in -k_max..=k_max {
            for l in -l_max..=l_max {
                if h == 0 && kk == 0 && l == 0 {
                    continue;
                }
                let g0 = [f64::from(h) / crystal.cell_a, f64::from(kk) / crystal.cell_b, f64::from(l) / crystal.cell_c];
                let g2 = g0[0] * g0[0] + g0[1] * g0[1] + g0[2] * g0[2];
                if g2 > s_max * s_max {
                    continue;
                }
                let g = [
                    r[0][0] * g0[0] + r[0][1] * g0[1] + r[0][2] * g0[2],
                    r[1][0] * g0[0] + r[1][1] * g0[1] + r[1][2] * g0[2],
                    r[2][0] * g0[0] + r[2][1] * g0[1] + r[2][2] * g0[2],
                ];
                // Diffracted wave vector k_out = k_in + g, with k_in = (0, 0, k).
                let s = [g[0], g[1], g[2] + k];
                let s_len = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt();
                let excitation = s_len - k;
                if excitation.abs() > 3.0 * crystal.rocking_width || s[2] <= 0.0 {
                    continue;
                }
                let col = exp.beam_col + exp.distance_mm * s[0] / s[2] / exp.pixel_mm;
                let row = exp.beam_row + exp.distance_mm * s[1] / s[2] / exp.pixel_mm;
                let partiality = (-0.5 * (excitation / crystal.rocking_width).powi(2)).exp();
                let falloff = (-crystal.b_factor * g2 / 2.0).exp();
                let photons = mean_photons * partiality * falloff * rng.exponential();
                out.push(Reflection { row, col, photons, d_spacing_a: 1.0 / g2.sqrt() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflections_lie_on_their_bragg_angle() {
        let mut rng = Rng::new(3, 0);
        let exp = Experiment {
            wavelength_a: 1.0,
            distance_mm: 100.0,
            pixel_mm: 0.075,
            beam_row: 0.0,
            beam_col: 0.0,
            d_min_a: 2.0,
        };
        let rot = random_rotation(&mut rng);
        let mut out = Vec::new();
        reflections(&Crystal { rocking_width: 1e-5, ..Crystal::default() }, &exp, &rot, 100.0, &mut rng, &mut out);
        assert!(out.len() >= 5, "{} reflections", out.len());
        for r in &out {
            let radius_mm = (r.row.hypot(r.col)) * exp.pixel_mm;
            let two_theta = (radius_mm / exp.distance_mm).atan();
            let bragg = 2.0 * (exp.wavelength_a / (2.0 * r.d_spacing_a)).asin();
            assert!((two_theta - bragg).abs() < 2e-3, "2θ {two_theta} vs Bragg {bragg}");
        }
    }

    #[test]
    fn rotations_are_orthonormal() {
        let mut rng = Rng::new(1, 1);
        let m = random_rotation(&mut rng);
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| m[i][k] * m[j][k]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }
}
