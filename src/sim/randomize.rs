//! The built-in model's training distribution — beamlines drawn at random — and the held-out matrix
//! of runs at settings the distribution never draws.
//!
//! A randomized dataset is a series of short runs ("episodes"), each its own beamline: distance,
//! energy, beam centre (off the detector too), background from near-dark to several photons a pixel
//! (air scatter, a solvent ring of any strength and width, sometimes a shadow), hot and dead pixels,
//! pedestal drift, ice in some frames (uniform rings or spotty ones: misses, whatever their spots),
//! crystals of every strength and cell, mosaic streaks, pseudo-Voigt spots and a second lattice.
//! Settings near the held-out matrix's corners are drawn again, so the matrix is truly unseen.

use super::config::SimConfig;
use super::scene::{Scene, Shadow, draw, draw_log};
use crate::rng::Rng;

/// Frames of one episode: long enough to be a run, short enough that a dataset sees hundreds of
/// beamlines.
pub const EPISODE_FRAMES: u64 = 25;

/// Distances the training draws leave out (mm): the held-out matrix's near and far runs.
pub const HELD_OUT_DISTANCES_MM: [[f64; 2]; 2] = [[56.0, 65.0], [270.0, 290.0]];
/// Energies the training draws leave out (keV).
pub const HELD_OUT_ENERGIES_KEV: [[f64; 2]; 2] = [[6.6, 7.4], [19.0, 21.0]];
/// Beam centres the training draws leave out: above the module's top edge, rows and columns of the
/// assembled image.
pub const HELD_OUT_BEAM: [[f64; 2]; 2] = [[-170.0, -50.0], [150.0, 880.0]];
/// The solvent ring's peak is drawn up to this many photons a pixel; the matrix's bright ring is
/// twice as bright.
pub const MAX_SOLVENT_PHOTONS: f64 = 4.0;

fn outside(v: f64, bands: &[[f64; 2]]) -> bool {
    bands.iter().all(|&[lo, hi]| v < lo || v > hi)
}

/// Episode `episode` of the training distribution, keeping `base`'s detector, frames aside (the
/// episode's own), hit rate and calibration.
pub fn training_episode(base: &SimConfig, seed: u64, episode: u64) -> SimConfig {
    let mut rng = Rng::new(seed, (1 << 40) | episode);
    let distance_mm = loop {
        let d = draw_log(&mut rng, [50.0, 300.0]);
        if outside(d, &HELD_OUT_DISTANCES_MM) {
            break d;
        }
    };
    let photon_energy_kev = loop {
        let e = draw(&mut rng, [6.0, 25.0]);
        if outside(e, &HELD_OUT_ENERGIES_KEV) {
            break e;
        }
    };
    // Anywhere on a module or up to a module's half width beyond it (514 × 1030 assembled).
    let beam = loop {
        let (r, c) = (draw(&mut rng, [-260.0, 774.0]), draw(&mut rng, [-520.0, 1550.0]));
        let held_out = !outside(r, &[HELD_OUT_BEAM[0]]) && !outside(c, &[HELD_OUT_BEAM[1]]);
        if !held_out {
            break (r, c);
        }
    };
    let shadow = (rng.uniform() < 0.25).then(|| Shadow {
        angle: draw(&mut rng, [0.0, std::f64::consts::TAU]),
        offset_px: draw(&mut rng, [-150.0, 150.0]),
        transmission: draw(&mut rng, [0.2, 0.8]),
    });
    let scene = Scene {
        solvent_ring_d_a: draw(&mut rng, [2.9, 3.7]),
        solvent_ring_width: draw(&mut rng, [0.02, 0.07]),
        shadow,
        ice_rate: 0.15,
        spotty_ice_share: 0.5,
        uniform_ice_photons: [0.05, 3.0],
        ice_spots: [3.0, 300.0],
        ice_spot_photons: [10.0, 2000.0],
        cell_edges_a: Some([20.0, 250.0]),
        crystal_d_min_a: [1.2, 4.0],
        rocking_width: [0.0003, 0.004],
        two_lattices_rate: 0.2,
        spot_sigma_px: [0.35, 1.0],
        spot_lorentz_share: [0.0, 0.6],
        spot_streak: [1.0, 3.0],
    };
    SimConfig {
        seed: seed.wrapping_mul(1_000_003).wrapping_add(episode),
        frames: EPISODE_FRAMES,
        distance_mm,
        photon_energy_kev,
        beam_center_px: Some(beam),
        mean_reflection_photons: [2.0, 2000.0],
        air_photons: draw_log(&mut rng, [0.002, 3.0]),
        solvent_ring_photons: draw_log(&mut rng, [0.01, MAX_SOLVENT_PHOTONS]),
        hot_pixels_per_module: rng.below(30),
        dead_pixels_per_module: rng.below(30),
        pedestal_drift_adu_per_frame: draw(&mut rng, [0.0, 0.05]),
        scene,
        ..base.clone()
    }
}

/// The episodes that make `frames` frames of the training distribution, each with the number of
/// frames before it: [`EPISODE_FRAMES`] each, the last cut to what is left.
pub fn training_episodes(base: &SimConfig, seed: u64, frames: u64) -> impl Iterator<Item = (u64, SimConfig)> + '_ {
    (0..frames.div_ceil(EPISODE_FRAMES)).map(move |episode| {
        let mut cfg = training_episode(base, seed, episode);
        let before = episode * EPISODE_FRAMES;
        cfg.frames = cfg.frames.min(frames - before);
        (before, cfg)
    })
}

/// One run of the held-out matrix: its name and settings.
pub struct HeldOutRun {
    pub name: &'static str,
    pub config: SimConfig,
}

/// The held-out matrix: runs at settings the training distribution never draws, each `frames`
/// long, seeds of their own. Each keeps the training scene's crystals and spots otherwise.
pub fn held_out_matrix(frames: u64) -> Vec<HeldOutRun> {
    let base = SimConfig {
        frames,
        hit_rate: 0.25,
        mean_reflection_photons: [5.0, 2000.0],
        air_photons: 0.3,
        solvent_ring_photons: 0.6,
        ..training_episode(&SimConfig::default(), 0, 0)
    };
    let scene =
        Scene { shadow: None, ice_rate: 0.0, solvent_ring_d_a: 3.2, solvent_ring_width: 0.04, ..base.scene.clone() };
    let run = |name, seed, f: &dyn Fn(&mut SimConfig)| {
        let mut config =
            SimConfig { seed, distance_mm: 120.0, photon_energy_kev: 12.4, scene: scene.clone(), ..base.clone() };
        config.beam_center_px = Some((260.0, 500.0));
        f(&mut config);
        HeldOutRun { name, config }
    };
    vec![
        run("beam off the detector (above its top edge)", 90_001, &|c| c.beam_center_px = Some((-110.0, 515.0))),
        run("60 mm", 90_002, &|c| c.distance_mm = 60.0),
        run("280 mm", 90_003, &|c| c.distance_mm = 280.0),
        run("7 keV", 90_004, &|c| c.photon_energy_kev = 7.0),
        run("20 keV", 90_005, &|c| c.photon_energy_kev = 20.0),
        run("bright water ring (8 photons a pixel)", 90_006, &|c| c.solvent_ring_photons = 2.0 * MAX_SOLVENT_PHOTONS),
        run("5% of frames spotty-ice misses", 90_007, &|c| {
            c.scene.ice_rate = 0.05;
            c.scene.spotty_ice_share = 1.0;
        }),
        run("40% hits, all weak (2-10 photons a reflection)", 90_008, &|c| {
            c.hit_rate = 0.4;
            c.mean_reflection_photons = [2.0, 10.0];
        }),
        // The training sees one module; a 2M detector's shells take in four, gaps between them.
        run("four modules (2 x 2), the beam between them", 90_009, &|c| {
            c.modules = 4;
            c.modules_per_row = 2;
            c.beam_center_px = None;
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_vary_and_never_draw_the_held_out_corners() {
        let base = SimConfig::default();
        let episodes: Vec<SimConfig> = (0..400).map(|e| training_episode(&base, 7, e)).collect();
        for e in &episodes {
            assert!(outside(e.distance_mm, &HELD_OUT_DISTANCES_MM) && (50.0..=300.0).contains(&e.distance_mm));
            assert!(outside(e.photon_energy_kev, &HELD_OUT_ENERGIES_KEV));
            let (r, c) = e.beam_center_px.unwrap();
            assert!(!(!outside(r, &[HELD_OUT_BEAM[0]]) && !outside(c, &[HELD_OUT_BEAM[1]])));
            assert!(e.solvent_ring_photons <= MAX_SOLVENT_PHOTONS);
        }
        let off = episodes.iter().filter(|e| {
            let (r, c) = e.beam_center_px.unwrap();
            !(0.0..514.0).contains(&r) || !(0.0..1030.0).contains(&c)
        });
        assert!(off.count() > 100, "the beam is often off the module");
        assert!(episodes.iter().any(|e| e.air_photons > 1.0) && episodes.iter().any(|e| e.air_photons < 0.01));
        assert_ne!(training_episode(&base, 7, 1), training_episode(&base, 8, 1));
        for run in held_out_matrix(10) {
            let c = &run.config;
            // The four-module run leaves the beam where the simulator puts it: between the modules.
            let beam_held_out = c
                .beam_center_px
                .is_some_and(|(r, col)| !outside(r, &[HELD_OUT_BEAM[0]]) && !outside(col, &[HELD_OUT_BEAM[1]]));
            let unseen = !outside(c.distance_mm, &HELD_OUT_DISTANCES_MM)
                || !outside(c.photon_energy_kev, &HELD_OUT_ENERGIES_KEV)
                || beam_held_out
                || c.solvent_ring_photons > MAX_SOLVENT_PHOTONS
                || c.scene.spotty_ice_share == 1.0
                || c.mean_reflection_photons[1] <= 10.0
                || c.modules > 1;
            assert!(unseen, "{}", run.name);
        }
    }
}
