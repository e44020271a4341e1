//! Reducer steps on one JUNGFRAU module frame (512 × 1024), one core: calibration (raw → photons),
//! spot finding and learned peak localisation, each as median and p99 per frame, beside the limit
//! measured in the same run: one pass that reads the frame's 1 MiB of raw pixels and writes 2 MiB of f32
//! (what calibration must at least do). Then the whole reducer on a JUNGFRAU 4M frame, and on one
//! module: the simulator's frames beside the real ones of `../shared/realdata/jungfrau-mod5` (or
//! `$HITGATE_REALDATA`) with PSI's calibration files, both finders at their defaults.
//!
//! `cargo bench --bench reducer`; `HITGATE_BENCH_ONLY=module cargo bench --bench reducer` stops after
//! the module frame's steps and the gain mixes.

#[path = "common.rs"]
mod common;

use std::hint::black_box;

use common::{assembled, percentiles, simulated, us};
use hitgate::calib::{CalibrationMaps, PhotonConverter};
use hitgate::features::{LocalThresholdFinder, ThresholdParams};
use hitgate::sim::SimConfig;

fn main() {
    let frames = 40;
    let (_dir, out) = simulated(&SimConfig { frames, hit_rate: 0.5, seed: 17, ..SimConfig::default() });
    let geometry = hitgate::detector::DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap();
    let frames = assembled(&out.capture, &geometry, frames as usize, 512);
    let maps = CalibrationMaps::load(&out.calibration, 512 * 1024).unwrap();
    let conv = PhotonConverter::new(&maps, 12.4);
    let mut finder = LocalThresholdFinder::new(ThresholdParams::default(), 512, 1024);
    let pf8_params = hitgate::features::Peakfinder8Params::default();
    let radial = hitgate::features::RadialMap::new(&[(0, 0)], 512, 1024, (259.3, 506.3), &pf8_params);
    let mut pf8 = hitgate::features::Peakfinder8::new(pf8_params, radial.rings);
    let mut pf8_times = Vec::new();
    let mut photons = vec![0f32; 512 * 1024];
    let mut spots = Vec::with_capacity(512);
    let rounds = 10;
    let (mut limit, mut calib, mut find) = (Vec::new(), Vec::new(), Vec::new());
    let module_image = hitgate::detector::PanelImage::new(512, 1024, true);
    let mut assembled_module = vec![0f32; module_image.pixels()];
    let mut assembly = Vec::new();
    let mut fused = Vec::new();
    let mut row = vec![0f32; 1024];
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
            let (_, t) = common::time(|| module_image.assemble(&photons, &mut assembled_module));
            assembly.push(t);
            black_box(&assembled_module);
            let mut convert = |seg: &[u16], at: usize, o: &mut [f32]| conv.jungfrau_photons(seg, at, o);
            let (_, t) = common::time(|| module_image.convert_into(raw, &mut convert, &mut row, &mut assembled_module));
            fused.push(t);
            black_box(&assembled_module);
            let (n, t) = common::time(|| finder.find(&mut photons, 1, 512, 1024, &mut spots));
            find.push(t);
            black_box(n);
            conv.jungfrau_photons(raw, 0, &mut photons);
            spots.clear();
            let (n, t) = common::time(|| pf8.find_in_panel(&mut photons, radial.panel(0), 512, 1024, 0, &mut spots));
            pf8_times.push(t);
            black_box(n);
        }
    }
    let (l50, l99) = percentiles(limit);
    let (c50, c99) = percentiles(calib);
    let (f50, f99) = percentiles(find);
    let (a50, a99) = percentiles(assembly);
    let (u50, u99) = percentiles(fused);
    println!("reducer, one JUNGFRAU module frame, {} frames × {rounds} rounds", frames.len());
    println!("limit: read 1 MiB u16 + write 2 MiB f32   median {:7.1} µs  p99 {:7.1} µs", us(l50), us(l99));
    println!(
        "calibration (gain, pedestal → photons)    median {:7.1} µs  p99 {:7.1} µs  ratio to limit {:.2}  budget 100 µs",
        us(c50),
        us(c99),
        us(c50) / us(l50)
    );
    println!(
        "module assembly (514 × 1030, split) alone median {:7.1} µs  p99 {:7.1} µs  ratio to limit {:.2}",
        us(a50),
        us(a99),
        us(a50) / us(l50)
    );
    println!(
        "calibration into the assembled module     median {:7.1} µs  p99 {:7.1} µs  ratio to limit {:.2} (row by row, as the reducer does)",
        us(u50),
        us(u99),
        us(u50) / us(l50)
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
    calibration_by_gain_mix(&frames, &conv);
    if std::env::var("HITGATE_BENCH_ONLY").is_ok_and(|v| v == "module") {
        return;
    }
    for finder in [hitgate::config::FinderKind::Threshold, hitgate::config::FinderKind::Peakfinder8] {
        real_beside_simulated(finder);
    }
    whole_reducer_on_a_4m(hitgate::config::FinderKind::Threshold, false);
    whole_reducer_on_a_4m(hitgate::config::FinderKind::Peakfinder8, false);
    whole_reducer_on_a_4m(hitgate::config::FinderKind::Threshold, true);
    peak_localisation(&frames, &conv, &mut finder);
}

/// The learned localiser on every spot of hit module frames: patch cutting plus model runs, per frame
/// and per spot, at several batch sizes (the model's cost is the reason to batch).
fn peak_localisation(
    frames: &[hitgate::frame::FrameHandle],
    conv: &PhotonConverter,
    finder: &mut LocalThresholdFinder,
) {
    use hitgate::features::localiser::{Localiser, LocaliserSource};
    use hitgate::features::patch::{PATCH_PIXELS, extract_patch, patch_centre};
    let mut photons = vec![0f32; 512 * 1024];
    let mut spots = Vec::with_capacity(512);
    // Hit frames (at least 8 spots) with their spots, as the trigger would pass them on.
    let mut hits: Vec<(&hitgate::frame::FrameHandle, Vec<hitgate::features::Spot>)> = Vec::new();
    for f in frames {
        conv.jungfrau_photons(f.pixels_u16(), 0, &mut photons);
        finder.find(&mut photons, 1, 512, 1024, &mut spots);
        if spots.len() >= 8 {
            hits.push((f, spots.clone()));
        }
    }
    let total_spots: usize = hits.iter().map(|(_, s)| s.len()).sum();
    // The spots were found in the module as sent, so their patches are cut from it too.
    let as_sent = hitgate::detector::PanelImage::new(512, 1024, false);
    println!(
        "peak localisation, {} hit module frames, {:.0} spots a frame on average:",
        hits.len(),
        total_spots as f64 / hits.len().max(1) as f64
    );
    let braggnn = LocaliserSource::File(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/braggnn.onnx"));
    let runs = [1usize, 8, 16, 32, 64]
        .map(|b| ("built-in (dense)", LocaliserSource::Builtin, b))
        .into_iter()
        .chain([1usize, 16].map(|b| ("braggnn (conv + attention)", braggnn.clone(), b)));
    for (name, source, batch) in runs {
        let model = Localiser::load(&source, batch).unwrap();
        let mut loc = model.state().unwrap();
        let mut patches = vec![0f32; batch * PATCH_PIXELS];
        let mut centres = vec![[0f32; 2]; batch];
        let (mut frame_times, mut cut_times) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            for (f, spots) in &hits {
                let raw = f.pixels_u16();
                let mut cut = std::time::Duration::ZERO;
                let (_, t) = common::time(|| {
                    for chunk in spots.chunks(batch) {
                        let (_, c) = common::time(|| {
                            for (k, spot) in chunk.iter().enumerate() {
                                extract_patch(
                                    raw,
                                    &as_sent,
                                    patch_centre(spot),
                                    &mut |seg: &[u16], at: usize, o: &mut [f32]| {
                                        conv.jungfrau_photons(seg, at, o);
                                    },
                                    &mut patches[k * PATCH_PIXELS..(k + 1) * PATCH_PIXELS],
                                );
                            }
                        });
                        cut += c;
                        loc.locate(&patches[..chunk.len() * PATCH_PIXELS], &mut centres).unwrap();
                    }
                });
                frame_times.push(t);
                cut_times.push(cut);
                black_box(&centres);
            }
        }
        let spots_timed = 3 * total_spots;
        let sum: f64 = frame_times.iter().map(|t| t.as_secs_f64()).sum();
        let cut: f64 = cut_times.iter().map(|t| t.as_secs_f64()).sum();
        let (m50, m99) = percentiles(frame_times);
        println!(
            "  {name:<27} batch {batch:>2}: per frame median {:7.1} µs  p99 {:7.1} µs  mean {:7.1} µs   per spot {:5.1} µs (cutting patches {:4.2} µs)",
            us(m50),
            us(m99),
            sum * 1e6 / (3 * hits.len()) as f64,
            sum * 1e6 / spots_timed as f64,
            cut * 1e6 / spots_timed as f64
        );
    }
}

/// The reducer as the pipeline runs it (panel by panel) on JUNGFRAU 4M frames: 8 modules whose maps
/// (48 MiB) do not fit in cache, so this is the figure that meets memory bandwidth.
fn whole_reducer_on_a_4m(finder: hitgate::config::FinderKind, localise: bool) {
    let n = 12;
    let cfg = SimConfig { frames: n, hit_rate: 0.5, seed: 19, modules: 8, modules_per_row: 2, ..SimConfig::default() };
    let (_dir, out) = simulated(&cfg);
    let mut config = hitgate::config::Config::load(&out.replay_config).unwrap();
    config.features.finder = finder;
    config.features.localiser.model = localise.then(|| "builtin".to_string());
    config.features.localiser.frames = hitgate::config::LocaliseFrames::Accepted;
    let geometry = config.geometry().unwrap();
    let plan = std::sync::Arc::new(hitgate::reduce::ReducerPlan::new(&config.reducer_settings(&geometry)).unwrap());
    let mut reducer = hitgate::reduce::Reducer::new(plan).unwrap();
    let mut frames = assembled(&out.capture, &geometry, n as usize, 512);
    let mut samples = Vec::new();
    for _ in 0..8 {
        for f in frames.iter_mut() {
            samples.push(common::time(|| reducer.reduce(f)).1);
        }
    }
    let mean_us = samples.iter().map(|t| t.as_secs_f64()).sum::<f64>() * 1e6 / samples.len() as f64;
    if finder == hitgate::config::FinderKind::Threshold && !localise {
        // Calibration alone, panel by panel as the reducer does it: its share of the whole.
        let converter = reducer_plan_converter(&config, &geometry);
        let mut photons = vec![0f32; 512 * 1024];
        let mut calib = Vec::new();
        for _ in 0..8 {
            for f in &frames {
                calib.push(
                    common::time(|| {
                        for (m, raw) in f.pixels_u16().chunks_exact(512 * 1024).enumerate() {
                            converter.jungfrau_photons(raw, m * 512 * 1024, &mut photons);
                        }
                    })
                    .1,
                );
                black_box(&photons);
            }
        }
        let (c50, c99) = percentiles(calib);
        println!(
            "calibration alone, JUNGFRAU 4M frame (8 modules)            median {:7.1} µs  p99 {:7.1} µs",
            us(c50),
            us(c99)
        );
    }
    let (m50, m99) = percentiles(samples);
    let with = if localise { " + learned peaks on accepted frames" } else { "" };
    println!(
        "whole reducer ({finder:?}{with}), JUNGFRAU 4M frame (8 modules) median {:7.1} µs  p99 {:7.1} µs  mean {mean_us:7.1} µs  = {:.1} µs per module (median)",
        us(m50),
        us(m99),
        us(m50) / 8.0
    );
    if localise {
        let accepted: Vec<_> = frames.iter().map(|f| f.features()).filter(|f| f.accepted).collect();
        let refined: u32 = accepted.iter().map(|f| f.spots_localised).sum();
        println!(
            "  {} of {} 4M frames accepted, {:.0} spots refined in each on average",
            accepted.len(),
            frames.len(),
            f64::from(refined) / accepted.len().max(1) as f64
        );
    }
}

/// The photon converter a reducer plan prepares for `config`.
fn reducer_plan_converter(
    config: &hitgate::config::Config,
    geometry: &hitgate::detector::DetectorGeometry,
) -> std::sync::Arc<PhotonConverter> {
    let plan = hitgate::reduce::ReducerPlan::new(&config.reducer_settings(geometry)).unwrap();
    std::sync::Arc::clone(&plan.photons().converter().expect("JUNGFRAU").base)
}

/// The whole reducer (calibration, `finder` at its defaults, spot trigger) on one module frame: 20
/// simulated frames beside the 20 real mod5 frames, median and p99 per frame and spots a frame.
fn real_beside_simulated(finder: hitgate::config::FinderKind) {
    let data = std::env::var_os("HITGATE_REALDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/realdata"));
    let mod5 = data.join("jungfrau-mod5");
    if !mod5.join("raw_00.bin").is_file() {
        println!("real frames: {} absent (set HITGATE_REALDATA); the real-frame rows are left out", mod5.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[detector]\nmodel = \"jungfrau-1if\"\nphoton_energy_kev = 12.4\nbeam_center_row_px = -15.0\nbeam_center_col_px = 79.0\n\
         [calibration]\npedestal_files = [\"{m}/pedestal_g0.bin\", \"{m}/pedestal_g1.bin\", \"{m}/pedestal_g2.bin\"]\n\
         gain_files = [\"{m}/gainMaps_derived.bin\"]\n[[sink]]\nkind = \"null\"\n",
        m = mod5.display()
    );
    let path = dir.path().join("mod5.toml");
    std::fs::write(&path, text).unwrap();
    let mut real = hitgate::config::Config::load(&path).unwrap();
    real.features.finder = finder;
    let capture = mod5_capture(dir.path(), &mod5, &real);
    let (_sim_dir, out) = simulated(&SimConfig { frames: 20, hit_rate: 0.5, seed: 31, ..SimConfig::default() });
    let mut simulated_config = hitgate::config::Config::load(&out.replay_config).unwrap();
    simulated_config.features.finder = finder;
    for (name, config, capture) in [("simulated", simulated_config, out.capture.clone()), ("real mod5", real, capture)]
    {
        let geometry = config.geometry().unwrap();
        let plan = std::sync::Arc::new(hitgate::reduce::ReducerPlan::new(&config.reducer_settings(&geometry)).unwrap());
        let mut reducer = hitgate::reduce::Reducer::new(plan).unwrap();
        let mut frames = assembled(&capture, &geometry, 20, 512);
        let mut samples = Vec::new();
        for _ in 0..8 {
            for f in frames.iter_mut() {
                samples.push(common::time(|| reducer.reduce(f)).1);
            }
        }
        let spots: u32 = frames.iter().map(|f| f.features().spots_found).sum();
        let (m50, m99) = percentiles(samples);
        println!(
            "whole reducer ({finder:?}), one module, {name:<9} frame       median {:7.1} µs  p99 {:7.1} µs  {:.0} spots a frame",
            us(m50),
            us(m99),
            f64::from(spots) / frames.len() as f64
        );
    }
}

/// The 20 mod5 frames as the module sends them, as a packet capture in `dir`.
fn mod5_capture(dir: &std::path::Path, mod5: &std::path::Path, config: &hitgate::config::Config) -> std::path::PathBuf {
    let path = dir.join("mod5.pcap");
    let frames = (0..20).map(|n| std::fs::read(mod5.join(format!("raw_{n:02}.bin"))).unwrap());
    hitgate::sim::write_frames_capture(&path, &config.geometry().unwrap(), frames, 1_000_000).unwrap();
    path
}

/// Calibration with a share of the pixels switched to G1 or G2 (four in five G1), as under strong
/// illumination, beside the same frames all in G0, in one run: switched pixels scattered at random
/// (the worst case: every chunk holds all three stages) and in runs of 64 pixels (a bright region).
fn calibration_by_gain_mix(frames: &[hitgate::frame::FrameHandle], conv: &PhotonConverter) {
    let mut rng = hitgate::rng::Rng::new(21, 21);
    let switch = |raw: &[u16], share: f64, run: usize, rng: &mut hitgate::rng::Rng| -> Vec<u16> {
        let mut out = raw.to_vec();
        for chunk in out.chunks_mut(run) {
            if rng.uniform() < share {
                let code = if rng.uniform() < 0.8 { 0x4000 } else { 0xc000 };
                for v in chunk {
                    // A switched pixel's ADC sits a little under its stage's pedestal (gains are negative).
                    *v = code | (13_000 + rng.below(1000) as u16);
                }
            }
        }
        out
    };
    let mut photons = vec![0f32; 512 * 1024];
    let mixes: Vec<(&str, f64, usize)> = vec![
        ("all G0", 0.0, 1),
        ("70% switched, scattered", 0.7, 1),
        ("100% switched", 1.0, 1),
        ("70% switched, in runs of 64", 0.7, 64),
    ];
    let sets: Vec<Vec<Vec<u16>>> = mixes
        .iter()
        .map(|&(_, share, run)| frames.iter().map(|f| switch(f.pixels_u16(), share, run, &mut rng)).collect())
        .collect();
    let mut times: Vec<Vec<std::time::Duration>> = vec![Vec::new(); mixes.len()];
    // Frame by frame, every mix in turn: a slow spell of a shared machine falls on all of them alike.
    for _ in 0..10 {
        for k in 0..frames.len() {
            for (set, t) in sets.iter().zip(times.iter_mut()) {
                t.push(common::time(|| black_box(conv.jungfrau_photons(&set[k], 0, &mut photons))).1);
            }
        }
    }
    let medians: Vec<f64> = times.into_iter().map(|t| us(percentiles(t).0)).collect();
    for ((name, _, _), m) in mixes.iter().zip(&medians) {
        println!(
            "calibration, {name:<28} median {m:7.1} µs  ratio to all G0 {:.2}  (goal with every pixel switched: 1.3)",
            m / medians[0]
        );
    }
}
