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
