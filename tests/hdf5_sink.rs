//! The NeXus/HDF5 sink as the X-ray world reads it: h5py with hdf5plugin opens the master, follows its
//! links, and finds every kept frame byte for byte (raw values, whole photons, photons), with the NXmx
//! geometry as configured (`tests/python/nexus_check.py`); HDF5's own `h5ls` shows the layout. A run
//! killed with SIGKILL leaves every closed file whole and the open one marked. The Python readers come
//! from the test environment (`scripts/python-env`, or `HITGATE_PYTHON`); without them those checks
//! fail in CI and say they are skipped elsewhere (`common::missing`).

#![cfg(feature = "hdf5")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hitgate::calib::{CalibrationMaps, PhotonConverter, PixelMask};
use hitgate::config::{Config, Hdf5Section, SinkSection, StoredPixels, TriggerKind};
use hitgate::sim::{SimConfig, SimOutputs};
use hitgate::sink::raw::{FLAG_AUDIT, read_index};

/// The tests take turns: HDF5 opens files without close-on-exec and locks them, so a child process
/// (a reader, `h5ls`, a hitgate run) that one test starts while another has a data file open would
/// inherit that lock and keep the file from other readers until it exits.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    common::one_at_a_time()
}

/// The simulated run's replay config with raw frames in `out/raw` and NeXus files in `out/nexus`.
fn config_with_nexus(sim: &SimOutputs, out: &Path, pixels: StoredPixels, frames_per_file: u64) -> Config {
    let mut config = common::replay_config(sim);
    let mut nexus = Hdf5Section::in_dir(out.join("nexus"));
    nexus.pixels = pixels;
    nexus.frames_per_file = frames_per_file;
    nexus.flush_every_frames = 2;
    nexus.sample_name = "lysozyme".into();
    config.sinks =
        vec![SinkSection::Raw(hitgate::config::RawSection { dir: out.join("raw") }), SinkSection::Hdf5(nexus)];
    config.detector.distance_mm = Some(123.5);
    config.trigger.rate.audit_every = 4;
    config
}

/// Writes what the files must hold for the checker: the kept frames (from the raw sink of the same
/// run), converted to photons independently of the sink when those are stored, and their metadata.
fn write_expected(config: &Config, raw_dir: &Path, pixels: StoredPixels, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let geometry = config.geometry().unwrap();
    let (panels, rows, cols) = geometry.panels();
    let frame_pixels = panels * rows * cols;
    let raw = std::fs::read(raw_dir.join("frames.raw")).unwrap();
    let index = read_index(&raw_dir.join("frames.idx")).unwrap();
    assert_eq!(raw.len(), index.len() * frame_pixels * 2);
    let values: Vec<u16> = raw.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    let (bytes, dtype): (Vec<u8>, &str) = match pixels {
        StoredPixels::Raw => (raw.clone(), "<u2"),
        _ => {
            let c = &config.calibration;
            let maps = CalibrationMaps::load(c.file.as_ref().unwrap(), frame_pixels).unwrap();
            let mask = PixelMask::load(c.mask_file.as_ref().unwrap(), frame_pixels).unwrap();
            let converter = PhotonConverter::with_mask(&maps, config.detector.photon_energy_kev() as f32, &mask);
            // Photons are stored in the detector's image: each module assembled, border pixels split.
            let image = config.panel_image(&geometry);
            let mut photons = vec![0f32; frame_pixels];
            let mut assembled = vec![0f32; panels * image.pixels()];
            let mut out = Vec::new();
            for frame in values.chunks_exact(frame_pixels) {
                converter.jungfrau_photons(frame, 0, &mut photons);
                for (raw, module) in photons.chunks_exact(rows * cols).zip(assembled.chunks_exact_mut(image.pixels())) {
                    image.assemble(raw, module);
                }
                for &p in &assembled {
                    match pixels {
                        StoredPixels::PhotonsU32 => out.extend_from_slice(&(p.round().max(0.0) as u32).to_le_bytes()),
                        _ => out.extend_from_slice(&p.to_le_bytes()),
                    }
                }
            }
            (out, if pixels == StoredPixels::PhotonsU32 { "<u4" } else { "<f4" })
        }
    };
    std::fs::write(to.join("frames.bin"), bytes).unwrap();
    let (stored_rows, stored_cols) = pixels.image(&config.panel_image(&geometry)).shape();
    std::fs::write(to.join("shape.txt"), format!("{} {} {stored_cols} {dtype}", index.len(), panels * stored_rows))
        .unwrap();
    let frames = index
        .iter()
        .map(|r| {
            serde_json::json!({
                "frame_number": r.frame_number.get(),
                "score": r.score.get(),
                "audit": r.flags.get() & FLAG_AUDIT != 0,
            })
        })
        .collect();
    write_meta(config, pixels, frames, to);
}

/// `meta.json` for the checker: the geometry the master must describe and the kept frames.
fn write_meta(config: &Config, pixels: StoredPixels, frames: Vec<serde_json::Value>, to: &Path) {
    let geometry = config.geometry().unwrap();
    let (panels, _, _) = geometry.panels();
    let layout = config.image_layout().unwrap();
    // Raw values are described as sent, photons in the assembled image (`Experiment::stored`).
    let (image, (bc_row, bc_col)) = config.experiment(&geometry).stored(pixels);
    let rows = image.shape().0;
    let meta = serde_json::json!({
        "pixel_size_m": f64::from(geometry.model.pixel_size_um) * 1e-6,
        "distance_m": config.detector.distance_mm() * 1e-3,
        "wavelength_angstrom": config.detector.wavelength_angstrom(),
        "beam_center_row_px": bc_row,
        "beam_center_col_px": bc_col,
        "modules": panels,
        "module_rows": rows,
        "module_origins": (0..panels).map(|p| geometry.panel_origin(p, &layout)).collect::<Vec<_>>(),
        "frames": frames,
    });
    std::fs::write(to.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
}

/// A simulated run of `frames` frames, replayed with every frame kept into `dir/out` (raw and NeXus,
/// `frames_per_file` a file, changed by `adjust`); the simulation and the config.
fn keep_everything(dir: &Path, frames: u64, seed: u64, adjust: impl FnOnce(&mut Hdf5Section)) -> (SimOutputs, Config) {
    let sim = common::simulated(&dir.join("sim"), &SimConfig { frames, hit_rate: 0.5, seed, ..SimConfig::default() });
    let mut config = config_with_nexus(&sim, &dir.join("out"), StoredPixels::Raw, 100);
    config.trigger.kind = TriggerKind::AcceptAll;
    if let Some(SinkSection::Hdf5(h)) = config.sinks.get_mut(1) {
        adjust(h);
    }
    common::replay(config.clone(), &sim.capture);
    (sim, config)
}

/// What a command printed on its standard output.
fn stdout_of(command: &mut Command) -> String {
    String::from_utf8_lossy(&command.output().unwrap().stdout).into_owned()
}

fn check(python: &Path, master: &Path, expected: &Path, mode: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/nexus_check.py");
    let out = Command::new(python).arg(script).arg(master).arg(expected).arg(mode).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    said
}

fn run_and_check(pixels: StoredPixels, sim_config: SimConfig) {
    let Some(python) = common::h5py_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(&dir.path().join("sim"), &sim_config);
    let out = dir.path().join("out");
    let config = config_with_nexus(&sim, &out, pixels, 5);
    let summary = common::replay(config.clone(), &sim.capture);
    let kept = summary.frames_accepted + summary.frames_audited;
    assert!(summary.frames_accepted >= 6 && summary.frames_audited >= 2, "{summary}");
    let nexus = summary.sinks.iter().find(|s| s.name == "hdf5").unwrap();
    assert_eq!(nexus.frames_written, kept);
    write_expected(&config, &out.join("raw"), pixels, &dir.path().join("expected"));
    let said = check(&python, &out.join("nexus/run_master.h5"), &dir.path().join("expected"), "whole");
    println!("{said}");
    let files = std::fs::read_dir(out.join("nexus")).unwrap().count();
    assert_eq!(files as u64, 1 + kept.div_ceil(5), "master and one data file per 5 frames");
}

fn small_run(seed: u64) -> SimConfig {
    SimConfig { frames: 40, hit_rate: 0.4, seed, ..SimConfig::default() }
}

#[test]
fn raw_frames_read_back_byte_for_byte_with_their_nxmx_description() {
    let _turn = turn();
    run_and_check(StoredPixels::Raw, small_run(71));
}

#[test]
fn whole_photons_as_u32_read_back_exactly() {
    let _turn = turn();
    run_and_check(StoredPixels::PhotonsU32, small_run(72));
}

#[test]
fn photons_as_f32_read_back_exactly() {
    let _turn = turn();
    run_and_check(StoredPixels::PhotonsF32, small_run(73));
}

#[test]
fn a_detector_of_four_modules_with_gaps_describes_where_each_sits() {
    let _turn = turn();
    run_and_check(
        StoredPixels::Raw,
        SimConfig {
            modules: 4,
            modules_per_row: 2,
            module_gap_rows_px: 36,
            module_gap_cols_px: 8,
            hit_rate: 0.6,
            ..small_run(76)
        },
    );
}

#[test]
fn h5ls_shows_the_frames_chunked_one_a_chunk_with_their_metadata() {
    let _turn = turn();
    if Command::new("h5ls").arg("--version").output().is_err() {
        common::missing("h5ls (hdf5-tools; scripts/setup installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    keep_everything(dir.path(), 12, 74, |_| {});
    let out = dir.path().join("out");
    let data = out.join("nexus/run_data_000001.h5");
    let ls = stdout_of(Command::new("h5ls").arg("-r").arg(&data));
    println!("{ls}");
    let data_line = ls.lines().find(|l| l.starts_with("/entry/data/data ")).unwrap_or_default();
    assert!(data_line.ends_with("Dataset {12/Inf, 512, 1024}"), "{ls}");
    for name in ["frame_number", "timestamp", "trigger_score", "audit", "packet_mask", "packets_received"] {
        assert!(ls.contains(&format!("/entry/data/{name}")), "{name} missing: {ls}");
    }
    let dump = stdout_of(Command::new("h5dump").args(["-p", "-H", "-d", "/entry/data/data"]).arg(&data));
    assert!(dump.contains("CHUNKED ( 1, 512, 1024 )"), "{dump}");
    assert!(dump.contains("FILTER_ID 32008"), "{dump}");
    let master = out.join("nexus/run_master.h5");
    let ls = stdout_of(Command::new("h5ls").arg("-r").arg(&master));
    let shown = stdout_of(Command::new(env!("CARGO_BIN_EXE_hitgate")).arg("inspect").arg(&master));
    assert!(shown.contains("NXmx master, run complete") && shown.contains("12 frames in 1 files"), "{shown}");
    let link = ls.lines().find(|l| l.starts_with("/entry/data/data_000001 ")).unwrap_or_default();
    assert!(link.ends_with("External Link {run_data_000001.h5//entry/data/data}"), "{ls}");
}

#[test]
fn a_run_killed_mid_file_leaves_whole_closed_files_and_a_marked_open_one() {
    let _turn = turn();
    let Some(python) = common::h5py_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // What the files must hold: a whole run of the same capture and config, in process.
    let (sim, config) = keep_everything(dir.path(), 80, 75, |h| h.frames_per_file = 4);
    write_expected(&config, &dir.path().join("out/raw"), StoredPixels::Raw, &dir.path().join("expected"));

    // The same run in a child process, at a fiftieth of the recorded pace (20 frames a second), killed
    // once two data files are closed.
    let killed = dir.path().join("killed");
    let mut child_config = config_with_nexus(&sim, &killed, StoredPixels::Raw, 4);
    child_config.trigger.kind = TriggerKind::AcceptAll;
    let config_path = dir.path().join("killed.toml");
    std::fs::write(&config_path, toml::to_string(&child_config).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitgate"))
        .args(["replay", "--speed", "0.02", "--config"])
        .arg(&config_path)
        .arg(&sim.capture)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let third = killed.join("nexus/run_data_000003.h5.partial");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !third.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(third.exists(), "the run never reached its third file");
    std::thread::sleep(Duration::from_millis(60));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");

    let master = killed.join("nexus/run_master.h5");
    let said = check(&python, &master, &dir.path().join("expected"), "killed");
    println!("{said}");
    assert!(said.contains("2 data files linked, 8 frames"), "{said}");
    // The operator's view of the same folder.
    let shown = stdout_of(Command::new(env!("CARGO_BIN_EXE_hitgate")).arg("inspect").arg(&master));
    assert!(shown.contains("run not closed") && shown.contains("8 frames in 2 files"), "{shown}");
    assert!(shown.contains("open or cut short:") && shown.contains("run_data_000003.h5.partial"), "{shown}");
    assert!(killed.join("nexus/run_data_000001.h5").exists() && killed.join("nexus/run_data_000002.h5").exists());
}

/// The vendor's EIGER capture (`../shared/captures`, or `$HITGATE_CAPTURES`), every frame kept: the
/// NeXus files hold exactly the images the vendor's own receiver wrote for each port, ports stacked.
#[test]
fn the_vendor_eiger_capture_lands_as_the_vendor_receiver_wrote_it() {
    let _turn = turn();
    let Some(python) = common::h5py_python() else { return };
    let captures = std::env::var_os("HITGATE_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/captures"));
    if !captures.join("eiger16.pcap").exists() {
        common::missing(&format!("the reference captures at {} (set HITGATE_CAPTURES)", captures.display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nexus");
    let config = Config::parse(&format!(
        "[detector]\nmodel = \"eiger-10g-16bit\"\nudp_ports = [50011, 50012]\n[trigger]\nkind = \"accept_all\"\n\
         [assembler]\nframe_timeout_us = 1000000\n\
         [[sink]]\nkind = \"hdf5\"\ndir = \"{}\"\nframes_per_file = 3\n",
        out.display()
    ))
    .unwrap()
    .validated()
    .unwrap();
    let summary = common::replay(config.clone(), &captures.join("eiger16.pcap"));
    // The capture's ports are far apart in time: a long frame timeout keeps every frame whole.
    assert_eq!(summary.frames_accepted, 8, "{summary}");
    assert_eq!(summary.assembly.packets_lost, 0, "{summary}");

    // The vendor receiver's file per port: a 112-byte header (frame number first) before each image.
    let geometry = config.geometry().unwrap();
    let image = geometry.model.port_image_bytes();
    let ports: Vec<Vec<u8>> = (0..2)
        .map(|d| std::fs::read(captures.join(format!("slsreceiver-output/eiger16_d{d}_f0_0.raw"))).unwrap())
        .collect();
    let (mut frames, mut numbers) = (Vec::new(), Vec::new());
    for k in 0..8 {
        for port in &ports {
            let record = &port[k * (112 + image)..(k + 1) * (112 + image)];
            frames.extend_from_slice(&record[112..]);
        }
        numbers.push(u64::from_le_bytes(ports[0][k * (112 + image)..][..8].try_into().unwrap()));
    }
    let expected = dir.path().join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    let (panels, rows, cols) = geometry.panels();
    std::fs::write(expected.join("frames.bin"), &frames).unwrap();
    std::fs::write(expected.join("shape.txt"), format!("8 {} {cols} <u2", panels * rows)).unwrap();
    let frames = numbers.iter().map(|n| serde_json::json!({"frame_number": n, "audit": false})).collect();
    write_meta(&config, StoredPixels::Raw, frames, &expected);
    let said = check(&python, &out.join("run_master.h5"), &expected, "whole");
    println!("{said}");
    assert!(said.contains("3 data files linked, 8 frames, chunks (1, 512, 512)"), "{said}");
}

#[test]
fn files_rotate_by_size_as_well_as_by_frames() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    keep_everything(dir.path(), 16, 77, |h| {
        h.frames_per_file = 1000;
        h.max_file_mib = 1;
    });
    let master = dir.path().join("out/nexus/run_master.h5");
    let inspect =
        Command::new(env!("CARGO_BIN_EXE_hitgate")).arg("inspect").arg("--json").arg(master).output().unwrap();
    let said = String::from_utf8_lossy(&inspect.stderr);
    assert!(inspect.status.success(), "{said}");
    let summary: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let files = summary["files"].as_array().unwrap();
    let frames: Vec<u64> = files.iter().map(|f| f["frames"].as_u64().unwrap()).collect();
    // A raw module frame compresses to about 0.74 MB: a file closes at its second frame.
    assert_eq!(frames.iter().sum::<u64>(), 16, "{frames:?}");
    assert!(frames.iter().all(|&n| n == 2), "{frames:?}");
    for f in files {
        let bytes = f["bytes_on_disk"].as_u64().unwrap();
        assert!(bytes < 2 << 20, "a file of {bytes} bytes");
    }
}

#[test]
fn a_stored_run_of_raw_frames_replays_to_the_same_frames_with_its_lost_packets_lost_again() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let faults = hitgate::sim::PacketFaults { loss: 0.003, reorder: 0.0, duplicate: 0.0 };
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 30, hit_rate: 0.5, seed: 77, faults, modules: 2, ..SimConfig::default() },
    );
    let mut config = config_with_nexus(&sim, &dir.path().join("first"), StoredPixels::Raw, 7);
    config.trigger.kind = TriggerKind::AcceptAll;
    let first = common::replay(config.clone(), &sim.capture);
    assert!(first.assembly.packets_lost > 0 && first.assembly.frames_partial > 0, "{first}");

    // Reprocessing the stored run: the same config, the master as the recording.
    let master = dir.path().join("first/nexus/run_master.h5");
    let mut again = config.clone();
    again.sinks = vec![SinkSection::Raw(hitgate::config::RawSection { dir: dir.path().join("again/raw") })];
    let plan = hitgate::pipeline::Plan::new(again).unwrap();
    let run = hitgate::sink::hdf5::recorded::RecordedRun::open(&master).unwrap();
    let options = hitgate::pipeline::ReplayOptions { pace: hitgate::pipeline::Pace::AsFastAsPossible };
    let second = plan.replay_stored(&run, options, &hitgate::pipeline::Progress::default()).unwrap();
    assert_eq!(second.frames_out(), first.frames_out());
    assert_eq!(
        (second.assembly.frames_complete, second.assembly.frames_partial, second.assembly.packets_lost),
        (first.assembly.frames_complete, first.assembly.frames_partial, first.assembly.packets_lost),
        "first:\n{first}\nagain:\n{second}"
    );
    let frames = |d: &str| std::fs::read(dir.path().join(d).join("raw/frames.raw")).unwrap();
    assert!(frames("first") == frames("again"), "the replayed frames differ from the stored ones");
    let index = |d: &str| {
        read_index(&dir.path().join(d).join("raw/frames.idx"))
            .unwrap()
            .iter()
            .map(|e| (e.frame_number.get(), e.bunch_id.get(), e.detector_timestamp.get(), e.packets_received.get()))
            .collect::<Vec<_>>()
    };
    assert_eq!(index("first"), index("again"));

    // The same from the command line, by the master's name.
    let mut cli = config.clone();
    cli.sinks = vec![SinkSection::Raw(hitgate::config::RawSection { dir: dir.path().join("cli/raw") })];
    let toml_path = dir.path().join("again.toml");
    std::fs::write(&toml_path, toml::to_string(&cli).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hitgate"))
        .args(["replay", master.to_str().unwrap(), "--config", toml_path.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("frames in    {}", first.frames_out())), "{said}");
    assert!(frames("first") == frames("cli"));

    // Photons cannot be replayed, and are refused with the reason.
    let photons = dir.path().join("photons");
    let mut config = config_with_nexus(&sim, &photons, StoredPixels::PhotonsU32, 50);
    config.trigger.kind = TriggerKind::AcceptAll;
    common::replay(config, &sim.capture);
    let err = hitgate::sink::hdf5::recorded::RecordedRun::open(&photons.join("nexus/run_master.h5")).err().unwrap();
    assert!(err.to_string().contains("only raw detector values can be replayed"), "{err}");
}
