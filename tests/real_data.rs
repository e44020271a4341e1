//! hitgate on real JUNGFRAU data (`../shared/realdata/`, or `$HITGATE_REALDATA`; read in place, never
//! copied): PSI's own calibration files read as PSI writes them, and every frame of `jungfrau-mod5`
//! converted to photons as Jungfraujoch converts it. Where the data is absent the checks fail in CI
//! and say they are skipped elsewhere (`common::missing`).

mod common;

use common::{mod5_config, raw_frame, realdata};

use std::path::{Path, PathBuf};

use hitgate::calib::{PhotonConverter, SWITCHED_RELATIVE_ERROR};
use hitgate::config::Config;

const ROWS: usize = 512;
const COLS: usize = 1024;
/// What Jungfraujoch writes for a pixel it flags (saturated) in `photons_jfjoch_NN.bin`.
const JFJOCH_FLAGGED: f32 = 32678.0;

/// Runs the hitgate binary with `args`.
fn hitgate<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hitgate")).args(args).output().unwrap()
}

fn read<T: Copy>(path: &Path, from: fn([u8; 4]) -> T) -> Vec<T> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|c| from([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn psi_calibration_files_convert_every_mod5_frame_as_jungfraujoch_does() {
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    let config = mod5_config(dir.path(), &mod5, &mod5.join("gainMaps_derived.bin"));
    let c = &config.calibration;
    let maps = c.maps(1, ROWS, COLS).unwrap();
    let energy = config.detector.photon_energy_kev() as f32;
    let converter = PhotonConverter::new(&maps, energy);
    let mut photons = vec![0f32; ROWS * COLS];
    let (mut pixels, mut flagged) = (0usize, 0usize);
    // The worst difference in G0, and in G1/G2 as a share of what those stages' precision allows.
    let (mut worst_g0, mut worst_switched) = (0f32, 0f32);
    for n in 0..20 {
        let raw = raw_frame(&mod5.join(format!("raw_{n:02}.bin")));
        let jfjoch = read(&mod5.join(format!("photons_jfjoch_{n:02}.bin")), f32::from_le_bytes);
        let ours_flagged = converter.jungfrau_photons(&raw, 0, &mut photons);
        let theirs_flagged = jfjoch.iter().filter(|&&v| v == JFJOCH_FLAGGED).count();
        assert_eq!(ours_flagged, theirs_flagged, "frame {n}: pixels flagged");
        for (i, (&ours, &theirs)) in photons.iter().zip(&jfjoch).enumerate() {
            if theirs == JFJOCH_FLAGGED {
                assert!(ours.is_nan(), "frame {n} pixel {i}: Jungfraujoch flags it, hitgate reads {ours}");
                flagged += 1;
                continue;
            }
            let off = (ours - theirs).abs();
            let stage = [0, 1, 0, 2][usize::from(raw[i] >> 14)];
            let allowed = if stage == 0 {
                0.01
            } else {
                // A switched stage's factor is a half float and its pedestal in quarter ADU.
                0.01 + SWITCHED_RELATIVE_ERROR * theirs.abs() + 0.125 / (maps.gain(stage)[i] * energy).abs()
            };
            assert!(
                off <= allowed,
                "frame {n} pixel {i} (raw {:#06x}): {ours} photons, Jungfraujoch {theirs}, allowed {allowed}",
                raw[i]
            );
            if stage == 0 {
                worst_g0 = worst_g0.max(off);
            } else {
                worst_switched = worst_switched.max(off / allowed);
            }
            pixels += 1;
        }
    }
    assert!(flagged >= 20, "every frame holds saturated pixels: {flagged}");
    println!(
        "{pixels} pixels of 20 frames: G0 within {worst_g0:.2e} photon of Jungfraujoch, G1/G2 within {:.0}% of \
         their allowance; {flagged} flagged by both",
        100.0 * worst_switched
    );
}

#[test]
fn a_gain_file_of_the_wrong_sign_is_refused_naming_it_and_its_stage() {
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    // As a user who wrote G1 positive would: the G1 map's sign flipped.
    let mut bytes = std::fs::read(mod5.join("gainMaps_derived.bin")).unwrap();
    let stage = ROWS * COLS * 8;
    for v in bytes[stage..2 * stage].chunks_exact_mut(8) {
        let g = -f64::from_le_bytes(v.try_into().unwrap());
        v.copy_from_slice(&g.to_le_bytes());
    }
    let flipped = dir.path().join("M049_flipped.bin");
    std::fs::write(&flipped, &bytes).unwrap();
    let config = mod5_config(dir.path(), &mod5, &flipped);
    let err = config.calibration.maps(1, ROWS, COLS).unwrap_err().to_string();
    assert!(err.contains("M049_flipped.bin") && err.contains("G1 gains are not negative"), "{err}");
    // Said to count up, the detector's files are taken (and every G0 and G2 gain refused instead).
    let mut up = config.clone();
    up.calibration.gains_count_up = true;
    let err = up.calibration.maps(1, ROWS, COLS).unwrap_err().to_string();
    assert!(err.contains("G2 gains are not positive"), "{err}");
    // A file of another size is named at load, with both sizes.
    std::fs::write(&flipped, &bytes[..bytes.len() - 8]).unwrap();
    let path = dir.path().join("mod5.toml");
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("calibration.gain_files[0]") && err.contains("12582904 bytes"), "{err}");
}

/// The per-pixel mean of every frame's image in an slsReceiver run's files, port by port in frame order.
fn mean_of_raw_files(dir: &Path, stem: &str, ports: usize, image_bytes: usize) -> Vec<f64> {
    let mut sums = vec![0f64; ports * image_bytes / 2];
    let mut frames = 0;
    for d in 0..ports {
        frames = 0;
        for f in 0.. {
            let Ok(bytes) = std::fs::read(dir.join(format!("{stem}_d{d}_f{f}_0.raw"))) else { break };
            for frame in bytes.chunks_exact(112 + image_bytes) {
                let image = &frame[112..];
                let port = &mut sums[d * image_bytes / 2..(d + 1) * image_bytes / 2];
                for (s, px) in port.iter_mut().zip(image.chunks_exact(2)) {
                    *s += f64::from(u16::from_le_bytes([px[0], px[1]]) & 0x3fff);
                }
                frames += 1;
            }
        }
    }
    sums.iter().map(|s| s / f64::from(frames)).collect()
}

#[test]
fn a_dark_run_on_disk_gives_pedestals_of_its_frames_per_pixel_means() {
    let Some(data) = realdata() else { return };
    let darks = data.join("jungfrau-darks");
    let dir = tempfile::tempdir().unwrap();
    for (stem, ports) in [("jungfrau_single", 1), ("jungfrau_double", 2)] {
        let out = dir.path().join(stem);
        let master = darks.join(format!("{stem}_master_0.json"));
        let o = hitgate(&[
            "calibrate".as_ref(),
            "dark".as_ref(),
            "--capture".as_ref(),
            master.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        let said = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{said}");
        assert!(common::words(&said).contains("dark run 10 whole frames"), "{said}");
        let ours = read(&out.join("pedestal_g0.bin"), f32::from_le_bytes);
        let means = mean_of_raw_files(&darks, stem, ports, 512 * 1024 * 2 / ports);
        assert_eq!(ours.len(), 512 * 1024);
        let worst = ours.iter().zip(&means).map(|(&o, &m)| (f64::from(o) - m).abs()).fold(0f64, f64::max);
        assert!(worst <= 1.0, "{stem}: a pedestal {worst} ADU off its pixel's mean");
        let noise = read(&out.join("pedestal_g0_rms.bin"), f32::from_le_bytes);
        let mut sorted = noise.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!((20.0..35.0).contains(&median), "{stem}: median noise {median} ADU (about 27 on this module)");
        // A normal dark run also gives the mask of the pixels that misbehave without beam: on this
        // module a handful (two stuck pixels), nowhere near a share that would hide a spot field.
        let mask = hitgate::calib::PixelMask::load(&out.join("mask.bin"), 512 * 1024).unwrap();
        assert!(mask.masked_count() <= 512 * 1024 / 1000, "{stem}: {} pixels masked\n{said}", mask.masked_count());
        assert!(said.contains("written      [calibration] mask_file = "), "{said}");
    }
}

#[test]
fn a_dark_run_on_disk_replays_through_the_pipeline_with_nothing_lost() {
    let Some(data) = realdata() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("darks.toml");
    let master = data.join("jungfrau-darks/jungfrau_double_master_0.json");
    std::fs::write(
        &config,
        "[detector]\nmodel = \"jungfrau-2if\"\n[trigger]\nkind = \"accept_all\"\n[[sink]]\nkind = \"features\"\npath = \"f.jsonl\"\n",
    )
    .unwrap();
    let o = hitgate(&["replay".as_ref(), master.as_os_str(), "--config".as_ref(), config.as_os_str()]);
    let said = common::words(&String::from_utf8_lossy(&o.stdout));
    assert!(o.status.success(), "{said} {}", String::from_utf8_lossy(&o.stderr));
    assert!(said.contains("frames in 10 (") && said.contains("10 complete"), "{said}");
    assert!(said.contains("packets 1280 placed, 0 lost"), "{said}");
    let verdicts = hitgate::sink::features::read_verdicts(&dir.path().join("f.jsonl")).unwrap();
    assert_eq!(verdicts.len(), 10);
    // A run of another detector than the config's is refused, naming both.
    std::fs::write(&config, "[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"null\"\n").unwrap();
    let o = hitgate(&["replay".as_ref(), master.as_os_str(), "--config".as_ref(), config.as_os_str()]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && said.contains("2 port(s) of jungfrau-2if") && said.contains("1 port(s) of jungfrau-1if"),
        "{said}"
    );
}

/// Frames 0–9 set the threshold finder's defaults; frames 10–19 were held out while they were tuned.
const HELD_OUT: std::ops::Range<usize> = 10..20;

#[test]
fn at_their_defaults_both_finders_count_the_same_spots_on_real_frames() {
    use hitgate::features::{LocalThresholdFinder, Peakfinder8, RadialMap};
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    let config = mod5_config(dir.path(), &mod5, &mod5.join("gainMaps_derived.bin"));
    let maps = config.calibration.maps(1, ROWS, COLS).unwrap();
    let converter = PhotonConverter::new(&maps, config.detector.photon_energy_kev() as f32);
    let features = &config.features;
    // In the module as assembled (514 × 1030, border pixels split), as the reducer searches it.
    let image = config.panel_image(&config.geometry().unwrap());
    let (rows, cols) = image.shape();
    // The beam centre the data's README gives (just off the module's corner): peakfinder8's rings.
    let map = RadialMap::new(&[(0, 0)], rows, cols, (-15.0, 79.0), &features.peakfinder8);
    let mut pf8 = Peakfinder8::new(features.peakfinder8, map.rings);
    let mut threshold = LocalThresholdFinder::new(features.threshold, rows, cols);
    let mut raw_photons = vec![0f32; ROWS * COLS];
    let (mut photons, mut copy) = (vec![0f32; rows * cols], vec![0f32; rows * cols]);
    let mut out = Vec::with_capacity(features.max_spots_recorded);
    let (mut tuned, mut held_out) = ([0u32; 2], [0u32; 2]);
    for n in 0..20 {
        let raw = raw_frame(&mod5.join(format!("raw_{n:02}.bin")));
        converter.jungfrau_photons(&raw, 0, &mut raw_photons);
        image.assemble(&raw_photons, &mut photons);
        copy.copy_from_slice(&photons);
        let by_pf8 = pf8.find_in_panel(&mut photons, map.panel(0), rows, cols, 0, &mut out);
        out.clear();
        let by_threshold = threshold.find_in_panel(&mut copy, rows, cols, 0, &mut out);
        out.clear();
        let sums = if HELD_OUT.contains(&n) { &mut held_out } else { &mut tuned };
        sums[0] += by_pf8;
        sums[1] += by_threshold;
        // Not one frame far off either: 145–175 Bragg spots each.
        let ratio = f64::from(by_threshold) / f64::from(by_pf8);
        assert!((0.6..=1.5).contains(&ratio), "frame {n}: threshold {by_threshold}, peakfinder8 {by_pf8}");
    }
    let ratio = |s: [u32; 2]| f64::from(s[1]) / f64::from(s[0]);
    println!(
        "spots a frame, frames 0–9 (tuned on): threshold {:.1}, peakfinder8 {:.1} ({:.2}×); \
         frames 10–19 (held out): threshold {:.1}, peakfinder8 {:.1} ({:.2}×)",
        f64::from(tuned[1]) / 10.0,
        f64::from(tuned[0]) / 10.0,
        ratio(tuned),
        f64::from(held_out[1]) / 10.0,
        f64::from(held_out[0]) / 10.0,
        ratio(held_out)
    );
    assert!((0.7..=1.3).contains(&ratio(held_out)), "held out: {held_out:?}");
    // The simulator-era defaults (a fixed 2.5-photon threshold) find thousands of noise "spots" here.
    let raw = raw_frame(&mod5.join("raw_10.bin"));
    converter.jungfrau_photons(&raw, 0, &mut raw_photons);
    image.assemble(&raw_photons, &mut photons);
    let mut fixed = hitgate::features::SpotFinder::new(hitgate::features::SpotFinderParams::default());
    let old = fixed.find(&mut photons, 1, rows, cols, &mut out);
    println!("frame 10 with a fixed 2.5-photon threshold: {old} spots");
    assert!(old > 1000 && held_out[1] < 300 * 10, "{old} {held_out:?}");
}

/// The 20 mod5 frames as the module sends them, written as a packet capture into `dir`.
fn mod5_capture(dir: &Path, mod5: &Path, config: &Config) -> PathBuf {
    let path = dir.join("mod5.pcap");
    let frames = (0..20).map(|n| std::fs::read(mod5.join(format!("raw_{n:02}.bin"))).unwrap());
    hitgate::sim::write_frames_capture(&path, &config.geometry().unwrap(), frames, 1_000_000).unwrap();
    path
}

#[test]
fn the_beam_centre_is_estimated_from_the_real_background_rings() {
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    let config = mod5_config(dir.path(), &mod5, &mod5.join("gainMaps_derived.bin"));
    let capture = mod5_capture(dir.path(), &mod5, &config);
    let config_path = dir.path().join("mod5.toml");
    let out = hitgate(&[
        "geometry".as_ref(),
        "--estimate".as_ref(),
        capture.as_os_str(),
        "--config".as_ref(),
        config_path.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    println!("{said}");
    let value = |key: &str| -> f64 {
        let line = said.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{said}"));
        line.rsplit('=').next().unwrap().trim().parse().unwrap()
    };
    // The data's own description: near row −15, column 79, uncertain by a few tens of pixels.
    let (row, col) = (value("beam_center_row_px"), value("beam_center_col_px"));
    assert!((row + 15.0).abs() <= 30.0 && (col - 79.0).abs() <= 30.0, "({row}, {col})");
    assert!(said.contains("20 whole frames") && said.contains(" ± "), "{said}");
}

#[test]
fn on_real_frames_the_built_in_model_keeps_every_hit_and_finds_them_familiar() {
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    let mut config = mod5_config(dir.path(), &mod5, &mod5.join("gainMaps_derived.bin"));
    let capture = mod5_capture(dir.path(), &mod5, &config);
    // The beam where the data's description puts it; the distance is not given (100 mm assumed).
    (config.detector.beam_center_row_px, config.detector.beam_center_col_px) = (Some(-15.0), Some(79.0));
    config.trigger.kind = hitgate::config::TriggerKind::Tract;
    config.trigger.tract.model = "builtin".into();
    config.trigger.inputs.window_frames = 20;
    let summary = common::replay(config, &capture);
    println!("{summary}");
    assert_eq!((summary.frames_accepted, summary.frames_out()), (20, 20), "{summary}");
    assert!(summary.unfamiliar.is_none() && !summary.to_string().contains("WARNING"), "{summary}");
}

#[test]
fn the_simulator_draws_with_the_users_own_pedestals_and_gains() {
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    let config = mod5_config(dir.path(), &mod5, &mod5.join("gainMaps_derived.bin"));
    let out = dir.path().join("sim");
    let said = hitgate(&[
        "simulate".as_ref(),
        "--config".as_ref(),
        dir.path().join("mod5.toml").as_os_str(),
        "--frames".as_ref(),
        "12".as_ref(),
        "--hit-rate".as_ref(),
        "0.5".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(said.status.success(), "{}", String::from_utf8_lossy(&said.stderr));
    // The run's calibration is mod5's own, pixel for pixel.
    let simulated = hitgate::calib::CalibrationMaps::load(&out.join("calibration.bin"), ROWS * COLS).unwrap();
    let real = config.calibration.maps(1, ROWS, COLS).unwrap();
    for stage in 0..3 {
        assert_eq!(simulated.pedestal(stage), real.pedestal(stage), "stage {stage}");
        assert_eq!(simulated.gain(stage), real.gain(stage), "stage {stage}");
    }
    // And it replays, through that calibration, to the simulator's truth.
    let replayed = hitgate(&[
        "replay".as_ref(),
        out.join("run.pcap").as_os_str(),
        "--config".as_ref(),
        out.join("replay.toml").as_os_str(),
        "--truth".as_ref(),
        out.join("truth.json").as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&replayed.stdout);
    assert!(replayed.status.success(), "{text}{}", String::from_utf8_lossy(&replayed.stderr));
    println!("{text}");
    let line = text.lines().find(|l| l.contains("precision")).unwrap_or_else(|| panic!("{text}"));
    let pct: f64 = line.rsplit('(').next().unwrap().trim_end_matches("%)").parse().unwrap();
    assert!(pct >= 95.0, "{line}");
}

#[test]
fn a_real_capture_becomes_labelled_training_data_from_the_command_line() {
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    let config = mod5_config(dir.path(), &mod5, &mod5.join("gainMaps_derived.bin"));
    let capture = mod5_capture(dir.path(), &mod5, &config);
    let out = dir.path().join("frames");
    let args = |hit: &str, miss: &str| {
        hitgate(&[
            "dataset".as_ref(),
            "frames".as_ref(),
            "--capture".as_ref(),
            capture.as_os_str(),
            "--config".as_ref(),
            dir.path().join("mod5.toml").as_os_str(),
            "--label-by".as_ref(),
            "peakfinder8".as_ref(),
            "--hit-min-spots".as_ref(),
            hit.as_ref(),
            "--miss-max-spots".as_ref(),
            miss.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
    };
    // 145–175 Bragg spots a frame: every frame a hit at 100.
    let o = args("100", "3");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
    println!("{said}");
    assert!(said.contains("20 frame summaries") && said.contains("20 hits"), "{said}");
    let hit = std::fs::read(out.join("hit.npy")).unwrap();
    assert!(hit.ends_with(&[0, 0, 0x80, 0x3f].repeat(20)), "twenty 1.0 labels");
    let ranges = hitgate::trigger::InputRanges::load(&out.join("inputs.json")).unwrap();
    assert_eq!(ranges.frames, 20);
    // At a hit limit above every frame's count, none is a hit and none a miss: all left out.
    let o = args("1000", "3");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("0 frame summaries") && said.contains("20 left out"), "{said}");
    // Limits that overlap are refused.
    assert!(!args("3", "3").status.success());
}

/// The median of the finite values.
fn median(values: impl Iterator<Item = f32>) -> f32 {
    let mut v: Vec<f32> = values.filter(|x| x.is_finite()).collect();
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f32::NAN)
}

/// Median G0 noise (ADU) over the whole frames of a recording with no beam.
fn dark_noise_adu(model: &str, recording: &Path) -> f32 {
    let geometry = hitgate::detector::DetectorGeometry::with_consecutive_ports(model, 1, 50001).unwrap();
    let recording = hitgate::ingest::Recording::open(recording).unwrap();
    let assembler = Config::parse(&format!("[detector]\nmodel = \"{model}\"\n[[sink]]\nkind = \"null\"\n"))
        .unwrap()
        .assembler_config();
    let report = hitgate::pipeline::measure_dark(&geometry, assembler, &recording).unwrap();
    median(report.measurement.noise_adu[0].iter().copied())
}

#[test]
fn the_simulators_noise_and_background_beside_the_real_detectors() {
    use hitgate::sim::{SimConfig, SimulatedDetector};
    let Some(data) = realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let dir = tempfile::tempdir().unwrap();
    let config = mod5_config(dir.path(), &mod5, &mod5.join("gainMaps_derived.bin"));
    let maps = config.calibration.maps(1, ROWS, COLS).unwrap();
    let energy = config.detector.photon_energy_kev() as f32;
    // Noise: the real dark run, mod5's own pedestal noise, and the simulator's dark frames.
    let darks = dark_noise_adu("jungfrau-1if", &data.join("jungfrau-darks/jungfrau_single_master_0.json"));
    let mod5_rms = read(&mod5.join("pedestal_g0_rms.bin"), f32::from_le_bytes);
    let mod5_adu = median(mod5_rms.iter().copied());
    let mod5_kev = median(mod5_rms.iter().zip(maps.gain(0)).map(|(&n, &g)| n / g));
    let cfg = SimConfig { frames: 40, hit_rate: 0.0, dark_frames: 40, seed: 5, ..SimConfig::default() };
    let sim = hitgate::sim::simulate(&cfg, &dir.path().join("sim"), &mut |_| {}).unwrap();
    let sim_adu = dark_noise_adu("jungfrau-1if", &sim.capture);
    let sim_maps = hitgate::calib::CalibrationMaps::load(&sim.calibration, ROWS * COLS).unwrap();
    let sim_kev = sim_adu / median(sim_maps.gain(0).iter().copied());
    // Background: photons a pixel, the mean over each frame (Bragg spots are a small share of a real
    // frame's photons), of mod5's frames and of simulated misses.
    let converter = PhotonConverter::new(&maps, energy);
    let mut photons = vec![0f32; ROWS * COLS];
    let mut real_bg = Vec::new();
    for n in 0..20 {
        converter.jungfrau_photons(&raw_frame(&mod5.join(format!("raw_{n:02}.bin"))), 0, &mut photons);
        let finite: Vec<f32> = photons.iter().copied().filter(|p| p.is_finite()).collect();
        real_bg.push(finite.iter().sum::<f32>() / finite.len() as f32);
    }
    let detector = SimulatedDetector::new(&SimConfig { hit_rate: 0.0, seed: 6, ..SimConfig::default() }).unwrap();
    let sim_converter = PhotonConverter::new(detector.calibration(), SimConfig::default().photon_energy_kev as f32);
    let mut sim_bg = Vec::new();
    for n in 1..=20 {
        sim_converter.jungfrau_photons(&detector.frame(n).0, 0, &mut photons);
        sim_bg.push(photons.iter().filter(|p| p.is_finite()).sum::<f32>() / photons.len() as f32);
    }
    let range = |v: &[f32]| (v.iter().copied().fold(f32::INFINITY, f32::min), v.iter().copied().fold(0.0, f32::max));
    let ((rl, rh), (sl, sh)) = (range(&real_bg), range(&sim_bg));
    println!("| | real | simulated |");
    println!("|---|---|---|");
    println!("| G0 noise, median over pixels (ADU) | dark run {darks:.1}; mod5 {mod5_adu:.1} | {sim_adu:.1} |");
    println!(
        "| G0 noise in photons at 12.4 keV | mod5 {:.3} ({mod5_kev:.3} keV) | {:.3} ({sim_kev:.3} keV) |",
        mod5_kev / energy,
        sim_kev / energy
    );
    println!("| background, mean photons a pixel, per frame | mod5 {rl:.2}–{rh:.2} | {sl:.3}–{sh:.3} |");
    // The measurements themselves are sound: real noise as the data's description gives it, and the
    // simulator's noise set to the real module's (0.58 keV) and drawing it.
    assert!((20.0..35.0).contains(&darks), "{darks}");
    assert!(mod5_adu > 1.0 && mod5_kev > 0.0, "{mod5_adu} {mod5_kev}");
    assert!((sim_kev - 0.58).abs() < 0.06 && (sim_kev - mod5_kev).abs() < 0.1 * mod5_kev, "{sim_kev} keV");
    assert!(rl > 0.5 && sh < 0.5, "backgrounds: real {rl}–{rh}, simulated {sl}–{sh}");
}

/// The built-in model's hit probability for a photon image of the assembled module, summarised with
/// the beam and distance `diffraction` assumes.
fn builtin_score(
    state: &mut hitgate::trigger::TractState,
    photons: &[f32],
    shape: (usize, usize),
    diffraction: &hitgate::features::summary::Diffraction,
) -> f32 {
    use hitgate::features::summary::{SUMMARY_LEN, SummaryCounter, SummaryPlan};
    let plan = SummaryPlan::new(&[(0, 0)], shape.0, shape.1, diffraction);
    let mut counter = SummaryCounter::new(&plan);
    counter.add_panel(&plan, 0, photons);
    let mut summary = [0f32; SUMMARY_LEN];
    counter.finish(&plan, &mut summary);
    state.hit_probability(&summary).unwrap()
}

/// A frame's twin without a crystal: each pixel Poisson about the median of its ring around the beam
/// (4 pixels wide), so the twin has the real frame's background, solvent ring and shadows, no spots.
fn poisson_twin(photons: &[f32], cols: usize, beam: (f64, f64), rng: &mut hitgate::rng::Rng) -> Vec<f32> {
    let ring = |i: usize| (((i / cols) as f64 - beam.0).hypot((i % cols) as f64 - beam.1) / 4.0) as usize;
    let mut rings: Vec<Vec<f32>> = Vec::new();
    for (i, &p) in photons.iter().enumerate() {
        let r = ring(i);
        if rings.len() <= r {
            rings.resize(r + 1, Vec::new());
        }
        if p.is_finite() {
            rings[r].push(p);
        }
    }
    let medians: Vec<f32> = rings.into_iter().map(|v| if v.is_empty() { 0.0 } else { median(v.into_iter()) }).collect();
    (0..photons.len()).map(|i| rng.poisson(medians[ring(i)].max(0.0)) as f32).collect()
}

#[test]
fn the_built_in_model_keeps_every_real_hit_and_rejects_its_poisson_twin() {
    use hitgate::features::summary::Diffraction;
    use hitgate::trigger::{ClassifierSource, TractTrigger};
    let Some(mod5) = common::Mod5::open() else { return };
    let (rows, cols) = mod5.image.shape();
    let trigger = TractTrigger::load(&ClassifierSource::Builtin).unwrap();
    let mut state = trigger.state().unwrap();
    let mut rng = hitgate::rng::Rng::new(20, 20);
    let (mut raw_photons, mut photons) = (vec![0f32; ROWS * COLS], vec![0f32; rows * cols]);
    // The beam where the data's description puts it; the distance is not known, so three are tried.
    let beam = (-15.0, 79.0);
    let distances = [80.0, 120.0, 200.0];
    let mut worst_real = [1f32; 3];
    let mut worst_twin = [0f32; 3];
    for n in 0..20 {
        mod5.photons(n, &mut raw_photons, &mut photons);
        let twin = poisson_twin(&photons, cols, beam, &mut rng);
        let mut line = format!("frame {n:2}:");
        for (k, &distance_mm) in distances.iter().enumerate() {
            let d = Diffraction { beam_px: beam, distance_mm, pixel_mm: 0.075, photon_energy_kev: 12.4 };
            let (real, fake) = (
                builtin_score(&mut state, &photons, (rows, cols), &d),
                builtin_score(&mut state, &twin, (rows, cols), &d),
            );
            worst_real[k] = worst_real[k].min(real);
            worst_twin[k] = worst_twin[k].max(fake);
            line += &format!("  {distance_mm} mm: real {real:.4}, twin {fake:.4}");
        }
        println!("{line}");
    }
    for (k, distance_mm) in distances.iter().enumerate() {
        println!("at {distance_mm} mm: lowest real {:.4}, highest twin {:.4}", worst_real[k], worst_twin[k]);
        assert!(worst_real[k] >= 0.5, "a real hit scored {} at {distance_mm} mm", worst_real[k]);
        assert!(worst_twin[k] < 0.5, "a twin without a crystal scored {} at {distance_mm} mm", worst_twin[k]);
    }
}
