//! Reducer steps on one JUNGFRAU module frame (512 × 1024), one core: calibration (raw → photons) and
//! spot finding, each as median and p99 per frame, beside the limit measured in the same run: one pass
//! that reads the frame's 1 MiB of raw pixels and writes 2 MiB of f32 (what calibration must at least do).
//!
//! `cargo bench --bench reducer`

#[path = "common.rs"]
mod common;

use std::hint::black_box;

use common::{assembled, percentiles, simulated, us};
use hitgate::calib::{CalibrationMaps, PhotonConverter};
use hitgate::config::SpotsTriggerSection;
use hitgate::features::{SpotFinder, SpotFinderParams};
use hitgate::sim::SimConfig;

fn main() {
    let frames = 40;
    let (_dir, out) = simulated(&SimConfig { frames, hit_rate: 0.5, seed: 17, ..SimConfig::default() });
    let geometry = hitgate::detector::DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap();
    let frames = assembled(&out.capture, &geometry, frames as usize, 512);
    let maps = CalibrationMaps::load(&out.calibration, 512 * 1024).unwrap();
    let conv = PhotonConverter::new(&maps, 12.4);
    let s = SpotsTriggerSection::default();
    let mut finder = SpotFinder::new(SpotFinderParams {
        threshold_photons: s.threshold_photons,
        min_spot_pixels: s.min_spot_pixels,
        max_spot_pixels: s.max_spot_pixels,
        min_spot_photons: s.min_spot_photons,
    });
    let pf8_params = hitgate::features::Peakfinder8Params::default();
    let radial = hitgate::features::RadialMap::new(&[(0, 0)], 512, 1024, (259.3, 506.3), &pf8_params);
    let mut pf8 = hitgate::features::Peakfinder8::new(pf8_params, radial.rings);
    let mut pf8_times = Vec::new();
    let mut photons = vec![0f32; 512 * 1024];
    let mut spots = Vec::with_capacity(512);
    let rounds = 10;
    let (mut limit, mut calib, mut find) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for f in &frames {
            let raw = f.pixels_u16();
            let (_, t) = common::time(|| {
                for (o, &r) in photons.iter_mut().zip(raw) {
                    *o = f32::from(r);
                }
            });
            limit.push(t);
            black_box(&photons);
            let (_, t) = common::time(|| conv.jungfrau_photons(raw, 0, &mut photons));
            calib.push(t);
            let (n, t) = common::time(|| finder.find(&mut photons, 1, 512, 1024, &mut spots));
            find.push(t);
            black_box(n);
            conv.jungfrau_photons(raw, 0, &mut photons);
            spots.clear();
            let (n, t) =
                common::time(|| pf8.find_in_panel(&mut photons, &radial.ring_of_pixel, 512, 1024, 0, &mut spots));
            pf8_times.push(t);
            black_box(n);
        }
    }
    let (l50, l99) = percentiles(limit);
    let (c50, c99) = percentiles(calib);
    let (f50, f99) = percentiles(find);
    println!("reducer, one JUNGFRAU module frame, {} frames × {rounds} rounds", frames.len());
    println!("limit: read 1 MiB u16 + write 2 MiB f32   median {:7.1} µs  p99 {:7.1} µs", us(l50), us(l99));
    println!(
        "calibration (gain, pedestal → photons)    median {:7.1} µs  p99 {:7.1} µs  ratio to limit {:.2}  budget 100 µs",
        us(c50),
        us(c99),
        us(c50) / us(l50)
    );
    println!(
        "spot finding (threshold + components)     median {:7.1} µs  p99 {:7.1} µs  budget 250 µs",
        us(f50),
        us(f99)
    );
    let (p50, p99) = percentiles(pf8_times);
    println!(
        "peakfinder8 (rings, sigma clipping, SNR)  median {:7.1} µs  p99 {:7.1} µs  budget 250 µs",
        us(p50),
        us(p99)
    );
    whole_reducer_on_a_4m(hitgate::config::FinderKind::Threshold);
    whole_reducer_on_a_4m(hitgate::config::FinderKind::Peakfinder8);
}

/// The reducer as the pipeline runs it (panel by panel) on JUNGFRAU 4M frames: 8 modules whose maps
/// (48 MiB) do not fit in cache, so this is the figure that meets memory bandwidth.
fn whole_reducer_on_a_4m(finder: hitgate::config::FinderKind) {
    let n = 12;
    let cfg = SimConfig { frames: n, hit_rate: 0.5, seed: 19, modules: 8, modules_per_row: 2, ..SimConfig::default() };
    let (_dir, out) = simulated(&cfg);
    let mut config = hitgate::config::Config::load(&out.replay_config).unwrap();
    config.features.finder = finder;
    let geometry = config.geometry().unwrap();
    let plan = std::sync::Arc::new(hitgate::reduce::ReducerPlan::new(&config, &geometry).unwrap());
    let mut reducer = hitgate::reduce::Reducer::new(plan);
    let mut frames = assembled(&out.capture, &geometry, n as usize, 512);
    let mut samples = Vec::new();
    for _ in 0..8 {
        for f in frames.iter_mut() {
            samples.push(common::time(|| reducer.reduce(f)).1);
        }
    }
    let (m50, m99) = percentiles(samples);
    println!(
        "whole reducer ({finder:?}), JUNGFRAU 4M frame (8 modules) median {:7.1} µs  p99 {:7.1} µs  = {:.1} µs per module",
        us(m50),
        us(m99),
        us(m50) / 8.0
    );
}
