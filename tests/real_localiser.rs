//! The learned peak localiser on real spots (`jungfrau-mod5`, read in place): each spot the threshold
//! finder finds at its defaults is cut into the 11 × 11 patch the reducer gives the localiser, and a
//! 2-D pseudo-Voigt with a flat background is fitted to it by least squares (the labelling BraggNN
//! used on real data). The centre of mass and the built-in localiser are both measured against the
//! fitted centre. Where the data is absent the check fails in CI and says it is skipped elsewhere.
//!
//! `cargo test --release --test real_localiser -- --nocapture` prints the table.

mod common;

use common::Mod5;

use hitgate::features::LocalThresholdFinder;
use hitgate::features::localiser::{Localiser, LocaliserSource};
use hitgate::features::patch::{PATCH_PIXELS, PATCH_SIDE, patch_centre};

const ROWS: usize = 512;
const COLS: usize = 1024;

/// Background, amplitude, centre row and column (from the patch's middle), sigma and the Lorentzian
/// share of a round pseudo-Voigt.
type Params = [f64; 6];

fn profile(p: &Params, r: f64, c: f64) -> f64 {
    let q2 = ((r - p[2]).powi(2) + (c - p[3]).powi(2)) / (p[4] * p[4]);
    let gauss = (-0.5 * q2).exp();
    let lorentz = 1.0 / (1.0 + q2 / (2.0 * std::f64::consts::LN_2));
    p[0] + p[1] * (p[5] * lorentz + (1.0 - p[5]) * gauss)
}

/// Least squares by Levenberg–Marquardt with a numerical Jacobian, from the centre of mass; `None`
/// when it does not settle on a spot (centre off the patch, width out of reason).
fn fit(patch: &[f32], start: [f64; 2]) -> Option<Params> {
    let half = (PATCH_SIDE / 2) as f64;
    let points: Vec<(f64, f64, f64)> = patch
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i / PATCH_SIDE) as f64 - half, (i % PATCH_SIDE) as f64 - half, f64::from(v)))
        .collect();
    let floor = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min).max(0.0);
    let peak = points.iter().map(|p| p.2).fold(0.0, f64::max);
    let mut p: Params = [floor, (peak - floor).max(1.0), start[0], start[1], 0.8, 0.3];
    let cost = |p: &Params| points.iter().map(|&(r, c, v)| (profile(p, r, c) - v).powi(2)).sum::<f64>();
    let mut lambda = 1e-2;
    let mut current = cost(&p);
    for _ in 0..200 {
        // Normal equations J^T J δ = J^T e.
        let mut jtj = [[0f64; 6]; 6];
        let mut jte = [0f64; 6];
        for &(r, c, v) in &points {
            let f = profile(&p, r, c);
            let mut grad = [0f64; 6];
            for (k, g) in grad.iter_mut().enumerate() {
                let mut q = p;
                let h = 1e-6 * p[k].abs().max(1e-3);
                q[k] += h;
                *g = (profile(&q, r, c) - f) / h;
            }
            for a in 0..6 {
                jte[a] += grad[a] * (v - f);
                for b in 0..6 {
                    jtj[a][b] += grad[a] * grad[b];
                }
            }
        }
        let mut improved = false;
        for _ in 0..10 {
            let mut m = jtj;
            for (k, row) in m.iter_mut().enumerate() {
                row[k] *= 1.0 + lambda;
            }
            let Some(step) = solve(m, jte) else { break };
            let mut q = p;
            for k in 0..6 {
                q[k] += step[k];
            }
            (q[4], q[5]) = (q[4].abs().max(0.2), q[5].clamp(0.0, 1.0));
            let c = cost(&q);
            if c < current {
                (p, current, lambda, improved) = (q, c, lambda * 0.3, true);
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (p[2].abs() <= 2.0 && p[3].abs() <= 2.0 && (0.25..3.0).contains(&p[4]) && p[1] > 0.0).then_some(p)
}

/// Solves a 6 × 6 system by Gaussian elimination with partial pivoting.
fn solve(mut m: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for k in 0..6 {
        let pivot = (k..6).max_by(|&i, &j| m[i][k].abs().total_cmp(&m[j][k].abs()))?;
        if m[pivot][k].abs() < 1e-12 {
            return None;
        }
        m.swap(k, pivot);
        b.swap(k, pivot);
        let (above, below) = m.split_at_mut(k + 1);
        let row_k = &above[k];
        for (i, row) in below.iter_mut().enumerate() {
            let f = row[k] / row_k[k];
            for (x, y) in row[k..].iter_mut().zip(&row_k[k..]) {
                *x -= f * y;
            }
            b[k + 1 + i] -= f * b[k];
        }
    }
    let mut x = [0f64; 6];
    for k in (0..6).rev() {
        x[k] = (b[k] - (k + 1..6).map(|j| m[k][j] * x[j]).sum::<f64>()) / m[k][k];
    }
    Some(x)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn on_real_spots_the_localiser_and_the_centre_of_mass_against_a_pseudo_voigt_fit() {
    let Some(mod5) = Mod5::open() else { return };
    let (rows, cols) = mod5.image.shape();
    let mut finder = LocalThresholdFinder::new(mod5.config.features.threshold, rows, cols);
    let localiser = Localiser::load(&LocaliserSource::Builtin, 16).unwrap();
    let mut state = localiser.state().unwrap();
    let (mut raw_photons, mut photons) = (vec![0f32; ROWS * COLS], vec![0f32; rows * cols]);
    // Per spot: photons in the patch above its fitted background, and the distance of the centre of
    // mass and of the localiser from the fitted centre.
    let mut measured: Vec<(f64, f64, f64)> = Vec::new();
    let (mut spots_seen, mut not_fitted) = (0, 0);
    for n in 0..20 {
        mod5.photons(n, &mut raw_photons, &mut photons);
        let kept = photons.clone();
        // The finder lists as many spots as the list has room for.
        let mut spots = Vec::with_capacity(4096);
        finder.find_in_panel(&mut photons, rows, cols, 0, &mut spots);
        for spot in &spots {
            let (cr, cc) = patch_centre(spot);
            let half = (PATCH_SIDE / 2) as i64;
            if cr < half || cc < half || cr + half >= rows as i64 || cc + half >= cols as i64 {
                continue;
            }
            let mut patch = [0f32; PATCH_PIXELS];
            for (k, row) in (cr - half..=cr + half).enumerate() {
                let at = row as usize * cols + (cc - half) as usize;
                patch[k * PATCH_SIDE..(k + 1) * PATCH_SIDE].copy_from_slice(&kept[at..at + PATCH_SIDE]);
            }
            if patch.iter().any(|p| !p.is_finite()) {
                continue;
            }
            spots_seen += 1;
            let com = [f64::from(spot.row) - cr as f64, f64::from(spot.col) - cc as f64];
            let Some(p) = fit(&patch, com) else {
                not_fitted += 1;
                continue;
            };
            let mut centre = [[0f32; 2]];
            state.locate(&patch, &mut centre).unwrap();
            let learned = [f64::from(centre[0][0]), f64::from(centre[0][1])];
            let off = |x: [f64; 2]| (x[0] - p[2]).hypot(x[1] - p[3]);
            let signal: f64 = patch.iter().map(|&v| f64::from(v) - p[0]).sum();
            measured.push((signal, off(com), off(learned)));
        }
    }
    println!("{spots_seen} spots away from the module's edge, {not_fitted} not fitted, {} measured", measured.len());
    println!(
        "| spot (photons above background) | spots | centre of mass: median / 95% (px) | localiser: median / 95% (px) |"
    );
    println!("|---|---|---|---|");
    let mut rows_out = Vec::new();
    for (lo, hi) in [(0.0, 25.0), (25.0, 100.0), (100.0, 1000.0), (1000.0, f64::INFINITY), (0.0, f64::INFINITY)] {
        let band: Vec<&(f64, f64, f64)> = measured.iter().filter(|m| m.0 >= lo && m.0 < hi).collect();
        if band.is_empty() {
            continue;
        }
        let (com, learned): (Vec<f64>, Vec<f64>) = band.iter().map(|m| (m.1, m.2)).unzip();
        let (cm, c95, lm, l95) =
            (median(com.clone()), quantile(com, 0.95), median(learned.clone()), quantile(learned, 0.95));
        println!("| {lo}–{hi} | {} | {cm:.3} / {c95:.3} | {lm:.3} / {l95:.3} |", band.len());
        rows_out.push((band.len(), cm, c95, lm, l95));
    }
    // The measurement is sound: most spots fit, and there are enough of them to say.
    assert!(
        measured.len() >= 1000 && not_fitted * 4 < spots_seen,
        "{} measured, {not_fitted} not fitted",
        measured.len()
    );
    // The localiser is nearer the fitted centre than the centre of mass: over all spots, at the median
    // and the 95th percentile, and at the median in every band of strength with 50 spots or more.
    let &(_, com, com95, learned, learned95) = rows_out.last().unwrap();
    assert!(learned < com && learned95 < com95, "localiser {learned} / {learned95}, centre of mass {com} / {com95}");
    for &(n, com, _, learned, _) in &rows_out {
        assert!(n < 50 || learned < com, "a band of {n} spots: localiser {learned}, centre of mass {com}");
    }
}
