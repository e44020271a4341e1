//! The summary's tests: shells, background, excess, and persistent blocks.

use super::*;
use crate::rng::Rng;

fn module_at(distance_mm: f64, energy: f64, beam: (f64, f64)) -> Diffraction {
    Diffraction { beam_px: beam, distance_mm, pixel_mm: 0.075, photon_energy_kev: energy }
}

#[test]
fn shells_follow_resolution_not_pixels() {
    let d = module_at(100.0, crate::detector::HC_KEV_ANGSTROM, (257.0, 515.0));
    // 1/d of a pixel 500 px from the beam: 2θ = atan(37.5 / 100), λ = 1 Å.
    let s = d.inverse_d(257.0, 1015.0);
    assert!((s - 2.0 * (0.5 * (37.5f64 / 100.0).atan()).sin()).abs() < 1e-9);
    let plan = SummaryPlan::new(&[(0, 0)], 514, 1030, &d);
    let total: u32 = plan.blocks_per_shell.iter().sum();
    assert_eq!(total as usize, 257 * 515);
    assert_eq!(plan.shell_of(0, 128, 257), 0, "the block on the beam");
    // The module's corner at 100 mm, 12.4 keV: 1/d ≈ 0.40 — shell 8 of 12, none beyond.
    assert_eq!(plan.shell_of(0, 0, 0), 8);
    assert!(plan.blocks_per_shell[9..].iter().all(|&n| n == 0));
    // Twice as far, the same pixels see half the resolution range.
    let far = SummaryPlan::new(&[(0, 0)], 514, 1030, &module_at(200.0, 12.4, (257.0, 515.0)));
    assert_eq!(far.shell_of(0, 0, 0), 4);
    // Segments tile every row of blocks.
    for row in 0..257 {
        let segs = &plan.segments[plan.row_segments[row]..plan.row_segments[row + 1]];
        assert_eq!(segs.first().unwrap().start, 0);
        assert_eq!(segs.last().unwrap().end, 515);
        assert!(segs.windows(2).all(|w| w[0].end == w[1].start && w[0].shell != w[1].shell));
    }
}

/// A module's photons: Poisson background of `level` a pixel, and `spots` single-pixel spots of
/// `photons` each.
fn frame(level: f64, spots: usize, photons: f64, rng: &mut Rng) -> Vec<f32> {
    let mut px: Vec<f32> = (0..514 * 1030).map(|_| rng.poisson(level as f32) as f32).collect();
    for _ in 0..spots {
        let at = rng.below(px.len());
        px[at] += rng.poisson(photons as f32) as f32;
    }
    px
}

fn summarise(plan: &SummaryPlan, photons: &[f32]) -> [f32; SUMMARY_LEN] {
    let mut counter = SummaryCounter::new(plan);
    counter.add_panel(plan, 0, photons);
    let mut out = [0f32; SUMMARY_LEN];
    counter.finish(plan, &mut out);
    out
}

#[test]
fn background_is_measured_and_excess_is_relative_to_it() {
    let d = module_at(100.0, 12.4, (257.0, 515.0));
    let plan = SummaryPlan::new(&[(0, 0)], 514, 1030, &d);
    let mut rng = Rng::new(4, 4);
    for level in [0.05, 0.5, 3.0] {
        let blank = summarise(&plan, &frame(level, 0, 0.0, &mut rng));
        // 400 one-pixel spots of 40 photons over the module: at every level they stand out at 12
        // deviations in every shell, where a blank frame has nothing.
        let hit = summarise(&plan, &frame(level, 400, 40.0, &mut rng));
        for shell in 1..7 {
            let (b, h) = (&blank[shell * PER_SHELL..][..PER_SHELL], &hit[shell * PER_SHELL..][..PER_SHELL]);
            assert_eq!(b[0], 1.0, "shell {shell} is covered");
            assert!((f64::from(b[1]) - level).abs() < 0.05 * level + 0.01, "level {level}: {b:?}");
            assert!((0.8..1.25).contains(&b[2]), "Poisson spread {b:?}");
            assert!(b[5] < 1e-4, "blank frame at {level}: {b:?}");
            assert!(h[5] > 2.0 * b[5] + 1e-4, "level {level}, shell {shell}: hit {h:?} blank {b:?}");
        }
        // Shells beyond the module's corner are absent, whatever the frame.
        assert!(blank[9 * PER_SHELL..].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn the_excess_is_every_block_over_its_shells_thresholds() {
    let mut rng = Rng::new(6, 6);
    // A row of 515 blocks crossing three shells (16 groups and a remainder), thresholds per shell.
    let segments = [
        Segment { start: 0, end: 100, shell: 2 },
        Segment { start: 100, end: 333, shell: 5 },
        Segment { start: 333, end: 515, shell: 7 },
    ];
    let mut thresholds = [[u8::MAX; 6]; SHELLS];
    thresholds[2] = [3, 4, 6, 7, 12, 13];
    thresholds[5] = [0, 1, 9, 10, 30, 31];
    thresholds[7] = [200, 201, 250, 251, 255, 255];
    let mut lowest = vec![0u8; 515];
    for seg in &segments {
        lowest[seg.start as usize..seg.end as usize].fill(thresholds[usize::from(seg.shell)][0]);
    }
    for round in 0..20 {
        let blocks: Vec<u8> =
            (0..515).map(|_| if round % 2 == 0 { rng.below(256) } else { rng.below(12) } as u8).collect();
        let mut excess = [Excess::default(); SHELLS];
        count_excess(&blocks, &segments, &lowest, &thresholds, None, &mut excess);
        for seg in &segments {
            let shell = usize::from(seg.shell);
            let run = &blocks[seg.start as usize..seg.end as usize];
            let expected: Vec<u64> =
                thresholds[shell].iter().map(|&t| run.iter().filter(|&&b| b >= t).count() as u64).collect();
            assert_eq!(excess[shell].at_least.to_vec(), expected, "shell {shell}, round {round}");
        }
        assert!(excess.iter().enumerate().all(|(s, e)| [2, 5, 7].contains(&s) || e.at_least == [0; 6]));
    }
}

#[test]
fn blocks_out_in_every_frame_are_left_out_once_persistent() {
    let d = module_at(100.0, 12.4, (257.0, 515.0));
    let hot: Vec<usize> = {
        let mut rng = Rng::new(8, 8);
        (0..50).map(|_| rng.below(514 * 1030)).collect()
    };
    // Blocks 12 deviations out, and blocks left out, in each of 12 frames: 50 hot pixels in every
    // frame, 100 spots somewhere new in each.
    let twelve = |ignore: bool| -> Vec<(u32, u32)> {
        let plan = SummaryPlan::new(&[(0, 0)], 514, 1030, &d).ignoring_persistent(ignore);
        let mut counter = SummaryCounter::new(&plan);
        let mut rng = Rng::new(9, 9);
        (0..12)
            .map(|_| {
                let mut px = frame(0.5, 100, 40.0, &mut rng);
                for &p in &hot {
                    px[p] += 50.0;
                }
                counter.clear();
                counter.add_panel(&plan, 0, &px);
                let mut out = [0f32; SUMMARY_LEN];
                counter.finish(&plan, &mut out);
                let blocks = |s: usize| f64::from(out[s * PER_SHELL + 5]) * f64::from(plan.blocks_per_shell[s]);
                ((0..SHELLS).map(blocks).sum::<f64>().round() as u32, counter.persistent_ignored())
            })
            .collect()
    };
    // Frames 1 to 7 count the hot pixels with the spots; from the eighth on, the hot pixels are
    // left out and the spots still count.
    let left_out = twelve(true);
    assert!(left_out[..7].iter().all(|&(n, ignored)| n >= 140 && ignored == 0), "{left_out:?}");
    assert!(left_out[7..].iter().all(|&(n, ignored)| (85..=100).contains(&n) && ignored >= 50), "{left_out:?}");
    // A plan that keeps them counts them in every frame.
    let kept = twelve(false);
    assert!(kept.iter().all(|&(n, ignored)| n >= 140 && ignored == 0), "{kept:?}");
    assert_eq!(kept[..7], left_out[..7]);
}

#[test]
fn a_blank_frame_reads_alike_whatever_its_level() {
    let plan = SummaryPlan::new(&[(0, 0)], 514, 1030, &module_at(100.0, 12.4, (257.0, 515.0)));
    let mut rng = Rng::new(5, 5);
    let low = summarise(&plan, &frame(0.3, 0, 0.0, &mut rng));
    let high = summarise(&plan, &frame(6.0, 0, 0.0, &mut rng));
    for shell in 1..7 {
        let (l, h) = (&low[shell * PER_SHELL..][..PER_SHELL], &high[shell * PER_SHELL..][..PER_SHELL]);
        assert!((l[2] - h[2]).abs() < 0.25, "spread {l:?} {h:?}");
        assert!(l[4] < 2e-3 && h[4] < 2e-3, "6 deviations {l:?} {h:?}");
    }
}
