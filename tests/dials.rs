//! DIALS reads a replay's NeXus output whole: `dials.import` sees every stored frame, over every data
//! file (through the master's virtual `/entry/data/data`), and `dials.find_spots` finds the hits'
//! spots in whole photons. DIALS is Debian's `dials` (`scripts/setup` installs it); the bitshuffle
//! filter comes from hdf5plugin's plugins (`HDF5_PLUGIN_PATH`), as the README tells users. Without
//! either the check fails in CI and says it is skipped elsewhere (`common::missing`).

#![cfg(feature = "hdf5")]

mod common;

use std::path::Path;
use std::process::Command;

use hitgate::config::{Hdf5Section, SinkSection, StoredPixels};
use hitgate::sim::SimConfig;

/// Where hdf5plugin keeps its HDF5 filter plugins.
fn plugin_path(python: &Path) -> String {
    let out = Command::new(python).args(["-c", "import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs a DIALS command in `dir`; what it printed, or a failure with its output.
fn dials(dir: &Path, plugins: &str, args: &[&str]) -> String {
    let out =
        Command::new(args[0]).args(&args[1..]).current_dir(dir).env("HDF5_PLUGIN_PATH", plugins).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} failed:\n{text}", args[0]);
    text
}

/// The number after `label` on the line that holds it.
fn number_after(text: &str, label: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.contains(label))?;
    line.split(label).nth(1)?.split_whitespace().next()?.parse().ok()
}

#[test]
fn dials_imports_every_stored_frame_and_finds_spots() {
    if Command::new("dials.import").arg("-h").output().is_err() {
        common::missing("DIALS (dials.import; Debian's dials, which scripts/setup installs)");
        return;
    }
    let Some(python) = common::h5py_python() else { return };
    let plugins = plugin_path(&python);
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 60, hit_rate: 0.4, seed: 29, ..SimConfig::default() },
    );
    let mut config = common::replay_config(&sim);
    let mut nexus = Hdf5Section::in_dir(dir.path().join("nexus"));
    nexus.pixels = StoredPixels::PhotonsU32;
    nexus.frames_per_file = 6;
    config.sinks.push(SinkSection::Hdf5(nexus));
    let summary = common::replay(config, &sim.capture);
    let stored = summary.sinks.iter().find(|s| s.name == "hdf5").unwrap().frames_written;
    assert!(stored > 12, "more frames kept than two files hold: {stored}");

    let work = dir.path().join("dials");
    std::fs::create_dir_all(&work).unwrap();
    let master = dir.path().join("nexus/run_master.h5");
    let imported = dials(&work, &plugins, &["dials.import", master.to_str().unwrap()]);
    assert_eq!(number_after(&imported, "num images:"), Some(stored), "{imported}");
    let found = dials(&work, &plugins, &["dials.find_spots", "imported.expt", "nproc=2"]);
    let reflections = number_after(&found, "Saved").unwrap_or_else(|| panic!("{found}"));
    // Every stored frame is a hit of at least 8 spots by hitgate's own finder.
    assert!(reflections >= 8 * stored, "{reflections} spots on {stored} frames:\n{found}");
    println!("dials.import: {stored} of {stored} stored frames; dials.find_spots: {reflections} spots");
}

/// Spot centres (row, column; pixel centres at whole numbers) by stored image, from DIALS's
/// `strong.refl` in `dir`.
fn dials_spots(dir: &Path) -> Vec<Vec<(f64, f64)>> {
    let script = "from dials.array_family import flex\n\
                  t = flex.reflection_table.from_file('strong.refl')\n\
                  x, y, z = t['xyzobs.px.value'].parts()\n\
                  for i in range(len(t)): print(int(z[i]), y[i] - 0.5, x[i] - 0.5)\n";
    let out = Command::new("libtbx.python").args(["-c", script]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut by_image: Vec<Vec<(f64, f64)>> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Vec<f64> = line.split_whitespace().map(|w| w.parse().unwrap()).collect();
        let image = v[0] as usize;
        if by_image.len() <= image {
            by_image.resize(image + 1, Vec::new());
        }
        by_image[image].push((v[1], v[2]));
    }
    by_image
}

/// Whether an assembled-image position lies within `px` of a line between two chips.
fn near_chip_border(row: f64, col: f64, px: f64) -> bool {
    // In the 514 × 1030 module, chip borders run between rows 256 and 257 and between columns 256/257,
    // 514/515 and 772/773 (each border pixel split in two on either side).
    (row - 256.5).abs() <= px || [256.5, 514.5, 772.5].iter().any(|b| (col - b).abs() <= px)
}

/// hitgate's spots of the 20 real mod5 frames, found in the module's `image` ("assembled" or
/// "raw"), in the assembled image's positions, by frame in order; and the NeXus run it stored.
fn mod5_spots(dir: &Path, mod5: &Path, image: &str) -> Vec<Vec<(f64, f64)>> {
    let text = format!(
        r#"[detector]
model = "jungfrau-1if"
photon_energy_kev = 12.4
distance_mm = 100.0
beam_center_row_px = -28.5
beam_center_col_px = 73.5
image = "{image}"
[calibration]
pedestal_files = ["{m}/pedestal_g0.bin", "{m}/pedestal_g1.bin", "{m}/pedestal_g2.bin"]
gain_files = ["{m}/gainMaps_derived.bin"]
[trigger]
kind = "accept_all"
[[sink]]
kind = "features"
path = "{d}/features.jsonl"
[[sink]]
kind = "hdf5"
dir = "{d}/nexus"
pixels = "photons_u32"
"#,
        m = mod5.display(),
        d = dir.display()
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("mod5.toml");
    std::fs::write(&path, text).unwrap();
    let config = hitgate::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let geometry = config.geometry().unwrap();
    let capture = dir.join("mod5.pcap");
    let frames = (0..20).map(|n| std::fs::read(mod5.join(format!("raw_{n:02}.bin"))).unwrap());
    hitgate::sim::write_frames_capture(&capture, &geometry, frames, 1_000_000).unwrap();
    let summary = common::replay(config, &capture);
    assert_eq!(summary.frames_accepted, 20, "{summary}");
    let mut spots: Vec<_> =
        hitgate::sink::features::read_spots(&dir.join("features.jsonl")).unwrap().into_iter().collect();
    spots.sort_by_key(|(n, _)| *n);
    // Raw-image spots are put where their pixels sit in the assembled module, to compare like with like.
    let module = hitgate::detector::PanelImage::new(512, 1024, true);
    let place = |r: f32, c: f32| match image {
        "raw" => module.image_position(f64::from(r), f64::from(c)),
        _ => (f64::from(r), f64::from(c)),
    };
    spots.into_iter().map(|(_, s)| s.iter().map(|s| place(s.row, s.col)).collect()).collect()
}

/// Of `ours`, how many have one of `theirs` within 2 pixels: (all, near a chip border) as (matched, of).
fn matched(ours: &[Vec<(f64, f64)>], theirs: &[Vec<(f64, f64)>]) -> [(usize, usize); 2] {
    let mut counts = [(0, 0); 2];
    for (frame, spots) in ours.iter().enumerate() {
        let others = theirs.get(frame).map_or(&[][..], |v| &v[..]);
        for &(r, c) in spots {
            let hit = others.iter().any(|&(tr, tc)| (tr - r).hypot(tc - c) <= 2.0);
            for (k, counted) in [true, near_chip_border(r, c, 3.0)].into_iter().enumerate() {
                if counted {
                    counts[k].1 += 1;
                    counts[k].0 += usize::from(hit);
                }
            }
        }
    }
    counts
}

#[test]
fn on_real_frames_hitgates_spots_are_dials_spots_chip_borders_included() {
    if Command::new("dials.find_spots").arg("-h").output().is_err() {
        common::missing("DIALS (dials.find_spots; Debian's dials, which scripts/setup installs)");
        return;
    }
    let Some(python) = common::h5py_python() else { return };
    let Some(data) = common::realdata() else { return };
    let mod5 = data.join("jungfrau-mod5");
    let plugins = plugin_path(&python);
    let dir = tempfile::tempdir().unwrap();
    let assembled = mod5_spots(&dir.path().join("assembled"), &mod5, "assembled");
    let raw = mod5_spots(&dir.path().join("raw"), &mod5, "raw");

    // DIALS's own spot finder on the photons hitgate stored, in the assembled module.
    let work = dir.path().join("dials");
    std::fs::create_dir_all(&work).unwrap();
    let master = dir.path().join("assembled/nexus/run_master.h5");
    let imported = dials(&work, &plugins, &["dials.import", master.to_str().unwrap()]);
    assert_eq!(number_after(&imported, "num images:"), Some(20), "{imported}");
    dials(&work, &plugins, &["dials.find_spots", "imported.expt", "nproc=2"]);
    let theirs = dials_spots(&work);
    let dials_total: usize = theirs.iter().map(Vec::len).sum();
    assert!(dials_total >= 20 * 100, "DIALS found {dials_total} spots on 20 frames of 145–175 Bragg spots");

    let [all, border] = matched(&assembled, &theirs);
    let [raw_all, raw_border] = matched(&raw, &theirs);
    let found_by_us = matched(&theirs, &assembled)[0];
    let pct = |(m, n): (usize, usize)| 100.0 * m as f64 / n.max(1) as f64;
    println!(
        "DIALS {dials_total} spots on 20 real frames. hitgate in the assembled module: {} spots, {:.1}% with a DIALS \
         spot within 2 px; near chip borders {} spots, {:.1}% matched. In the raw module: {} spots, {:.1}% matched; \
         near chip borders {}, {:.1}% matched. DIALS spots hitgate found: {:.1}%",
        all.1,
        pct(all),
        border.1,
        pct(border),
        raw_all.1,
        pct(raw_all),
        raw_border.1,
        pct(raw_border),
        pct(found_by_us)
    );
    assert!(pct(all) >= 80.0, "{all:?}");
    assert!(pct(border) >= 75.0, "chip-border spots are DIALS's too: {border:?}");
    // The raw module's double-size border pixels collect twice the background: lines of false spots.
    assert!(pct(raw_border) + 10.0 <= pct(border), "{raw_border:?} against {border:?}");
    assert!(pct(found_by_us) >= 90.0, "{found_by_us:?}");
}
