//! The `hitgate` binary as operators and scripts use it: exit codes, messages, example configs.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn hitgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hitgate")).args(args).output().expect("hitgate runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_example_config_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let o = hitgate(&["validate", path.to_str().unwrap()]);
            assert!(o.status.success(), "{}: {}", path.display(), text(&o));
            assert!(text(&o).contains(": ok"));
            n += 1;
        }
    }
    assert!(n >= 4, "found {n} configs");
}

#[test]
fn a_bad_config_exits_3_listing_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[detector]\nmodel = \"jungfrau-2if\"\nudp_ports = [7, 7]\n[reducer]\nworkers = 0\n")
        .unwrap();
    let o = hitgate(&["validate", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let t = text(&o);
    for key in ["detector.udp_ports[1]", "reducer.workers", "sink:"] {
        assert!(t.contains(key), "{key} missing from: {t}");
    }
    std::fs::write(&path, "[detector]\nmodel = \"jungfrau-1if\"\nport = 5\n").unwrap();
    let o = hitgate(&["validate", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("detector.port: unknown field"), "{}", text(&o));
    let o = hitgate(&["validate", "/nonexistent.toml"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn garbage_input_exits_4_and_bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    let cfg = repo().join("configs/jungfrau-module.toml");
    let o = hitgate(&["replay", junk.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("not a pcap or pcapng file"));
    assert_eq!(hitgate(&["inspect", junk.to_str().unwrap()]).status.code(), Some(4));
    assert_eq!(hitgate(&["replay"]).status.code(), Some(2));
}

#[test]
fn simulate_inspect_and_replay_with_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = hitgate(&[
        "simulate",
        "--out",
        out.to_str().unwrap(),
        "--frames",
        "40",
        "--model",
        "jungfrau-2if",
        "--seed",
        "9",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let capture = out.join("run.pcap");

    let o = hitgate(&["inspect", capture.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ports = inv["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    for p in ports {
        assert_eq!(p["models"][0], "jungfrau-2if");
        assert_eq!((p["frames"].as_u64(), p["frames_complete"].as_u64()), (Some(40), Some(40)));
        assert_eq!(p["packets_unique"].as_u64(), Some(40 * 64));
    }

    let o = hitgate(&[
        "replay",
        capture.to_str().unwrap(),
        "--config",
        out.join("replay.toml").to_str().unwrap(),
        "--truth",
        out.join("truth.json").to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for line in ["frames in    40", "packets      5120 placed, 0 lost", "vs truth", "misses rejected"] {
        assert!(t.contains(line), "{line:?} missing from:\n{t}");
    }
}

#[test]
fn inspect_names_the_vendor_captures_detectors() {
    let dir = repo().join("../shared/captures");
    if !dir.join("README.md").exists() {
        common::missing(&format!("the vendor captures at {}", dir.display()));
        return;
    }
    for (file, model, ports) in
        [("jf1if.pcap", "jungfrau-1if", 1), ("jf2if.pcap", "jungfrau-2if", 2), ("eiger16.pcap", "eiger-10g-16bit", 2)]
    {
        let o = hitgate(&["inspect", dir.join(file).to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{file}: {}", text(&o));
        let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let p = inv["ports"].as_array().unwrap();
        assert_eq!(p.len(), ports, "{file}");
        for port in p {
            assert_eq!(port["models"][0], model, "{file}");
            assert_eq!(port["packets_unique"], port["packets_expected"], "{file}: nothing missing");
        }
    }
}

/// tshark (Wireshark's decoder, independent of ours) must read the simulator's captures as UDP to the
/// configured ports with the detector's payload size, in every container and framing we write.
#[test]
fn tshark_decodes_the_simulated_captures() {
    if Command::new("tshark").arg("--version").output().is_err() {
        common::missing("tshark (scripts/setup installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (format, link) in [("pcap", "ethernet"), ("pcap-ns", "vlan"), ("pcapng", "sll"), ("pcapng", "sll2")] {
        let out = dir.path().join(format!("{format}-{link}"));
        let o = hitgate(&[
            "simulate",
            "--out",
            out.to_str().unwrap(),
            "--frames",
            "3",
            "--model",
            "jungfrau-2if",
            "--format",
            format,
            "--link",
            link,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let capture = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_stem().is_some_and(|s| s == "run"))
            .unwrap();
        let o = Command::new("tshark")
            .args([
                "-n",
                "-r",
                capture.to_str().unwrap(),
                "-T",
                "fields",
                "-e",
                "udp.dstport",
                "-e",
                "udp.length",
                "-e",
                "ip.checksum.status",
            ])
            .args(["-o", "ip.check_checksum:TRUE"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 3 * 128, "{format}/{link}");
        for line in &lines {
            let f: Vec<&str> = line.split('\t').collect();
            assert!(f[0] == "50001" || f[0] == "50002", "{format}/{link}: {line}");
            assert_eq!(f[1], "8248", "{format}/{link}: UDP length = 8 + 8240");
            // Wireshark: 0 bad, 1 good, 2 unverified.
            assert_eq!(f[2], "1", "{format}/{link}: IP checksum good");
        }
    }
}

#[test]
fn tune_chooses_the_cut_for_a_target_rate_and_writes_it_into_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let s = sim.to_str().unwrap();
    let o = hitgate(&["simulate", "--out", s, "--frames", "200", "--hit-rate", "0.1", "--seed", "31"]);
    assert!(o.status.success(), "{}", text(&o));
    let svg = dir.path().join("curve.svg");
    let capture = format!("{s}/run.pcap");
    let config = format!("{s}/replay.toml");
    let truth = format!("{s}/truth.json");
    let o = hitgate(&[
        "tune",
        &capture,
        "--config",
        &config,
        "--truth",
        &truth,
        "--target-rate",
        "0.08",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        common::words(&out).contains("threshold accept rate efficiency purity") && out.contains("← target"),
        "{out}"
    );
    let chosen = out.lines().find(|l| l.starts_with("chosen")).expect("a chosen cut");
    let min_spots: u32 = chosen.split_whitespace().nth(3).unwrap().parse().expect(chosen);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));

    // The tuned config sits beside the original (relative paths hold), loads, and keeps at most
    // the target rate when replayed.
    let tuned = sim.join("replay.tuned.toml");
    let loaded = hitgate::config::Config::load(&tuned).expect("tuned config loads");
    assert_eq!(loaded.trigger.spots.min_spots, min_spots);
    let o = hitgate(&["replay", &capture, "--config", tuned.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let verdicts = hitgate::sink::features::read_verdicts(&sim.join("replay/features.jsonl")).unwrap();
    let rate = verdicts.values().filter(|a| **a).count() as f64 / verdicts.len() as f64;
    assert!(rate <= 0.08 && rate > 0.0, "accept rate {rate} with min_spots {min_spots}");

    // A rate no cut can hold, and a rate out of range, are clear errors.
    let o =
        hitgate(&["tune", &capture, "--config", &config, "--target-rate", "0.0001", "--svg", svg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no cut holds"), "{}", text(&o));
    let o = hitgate(&["tune", &capture, "--config", &config, "--target-rate", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn tune_writes_each_backends_own_cut() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let s = sim.to_str().unwrap();
    let o = hitgate(&["simulate", "--out", s, "--frames", "120", "--hit-rate", "0.1", "--seed", "37"]);
    assert!(o.status.success(), "{}", text(&o));
    let base = std::fs::read_to_string(sim.join("replay.toml")).unwrap();
    // The learned trigger's cut in `trigger.tract`, the FPGA trigger's in `trigger.fpga` (which the
    // FPGA trigger reads; the other backend's section stays as it was).
    for kind in ["tract", "fpga"] {
        let config = sim.join(format!("{kind}.toml"));
        std::fs::write(&config, base.replace("kind = \"spots\"", &format!("kind = \"{kind}\""))).unwrap();
        let o = hitgate(&[
            "tune",
            &format!("{s}/run.pcap"),
            "--config",
            config.to_str().unwrap(),
            "--truth",
            &format!("{s}/truth.json"),
            "--target-rate",
            "0.1",
            "--svg",
            dir.path().join("c.svg").to_str().unwrap(),
        ]);
        let out = common::words(&text(&o));
        assert!(o.status.success(), "{out}");
        let key = format!("chosen trigger.{kind}.threshold = ");
        let at = out.find(&key).unwrap_or_else(|| panic!("{key} not in {out}")) + key.len();
        let chosen: f32 = out[at..].split_whitespace().next().unwrap().parse().unwrap();
        let tuned = hitgate::config::Config::load(&sim.join(format!("{kind}.tuned.toml"))).unwrap();
        assert_eq!(tuned.trigger.kind.name(), kind);
        let (own, other) = match kind {
            "tract" => (tuned.trigger.tract.threshold, tuned.trigger.fpga.threshold),
            _ => (tuned.trigger.fpga.threshold, tuned.trigger.tract.threshold),
        };
        assert!((own - chosen).abs() < 1e-6 && (0.0..=1.0).contains(&own), "{kind}: {own} vs {chosen}");
        assert_eq!(other, 0.5, "{kind}: the other backend's cut is left alone");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    // As `hitgate simulate … | head -0`: the reading end is closed before anything is printed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitgate"))
        .args(["simulate", "--out", out.to_str().unwrap(), "--frames", "8", "--seed", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("panicked") && !text(&o).contains("Broken pipe"), "{}", text(&o));
    assert!(out.join("run.pcap").is_file(), "the work itself was done");
}

#[test]
fn a_truth_file_that_cannot_be_read_is_said_before_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("sim");
    let o = hitgate(&["simulate", "--out", s.to_str().unwrap(), "--frames", "4", "--seed", "6"]);
    assert!(o.status.success(), "{}", text(&o));
    let config = s.join("replay.toml");
    let o = hitgate(&[
        "replay",
        s.join("run.pcap").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--truth",
        "/nonexistent/truth.json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--truth") && !text(&o).contains("frames in"), "{}", text(&o));
}

/// The panels of a CrystFEL geometry: (min_ss, max_ss, min_fs, max_fs, corner_x, corner_y).
fn crystfel_panels(geom: &str) -> Vec<[f64; 6]> {
    let value = |key: &str| -> Vec<f64> {
        geom.lines()
            .filter(|l| l.split(" = ").next().is_some_and(|k| k.ends_with(key)))
            .map(|l| l.split(" = ").nth(1).unwrap().parse().unwrap())
            .collect()
    };
    let keys = ["/min_ss", "/max_ss", "/min_fs", "/max_fs", "/corner_x", "/corner_y"].map(value);
    (0..keys[0].len()).map(|i| keys.each_ref().map(|k| k[i])).collect()
}

/// No two panels overlap in space, each `rows × cols` pixels.
fn no_two_overlap(panels: &[[f64; 6]]) {
    for (a, p) in panels.iter().enumerate() {
        for q in &panels[a + 1..] {
            let (rows, cols) = (p[1] - p[0] + 1.0, p[3] - p[2] + 1.0);
            assert!((p[4] - q[4]).abs() >= cols || (p[5] - q[5]).abs() >= rows, "{p:?} and {q:?} overlap");
        }
    }
}

#[test]
fn a_crystfel_geometry_places_every_chip_of_every_module_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("4m.geom");
    let config = repo().join("configs/jungfrau-4m.toml");
    // As configured (modules assembled, the default): one panel a module of 514 × 1030.
    let o = hitgate(&["geometry", "--crystfel", out.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let geom = std::fs::read_to_string(&out).unwrap();
    let panels = crystfel_panels(&geom);
    assert_eq!(panels.len(), 8, "{geom}");
    for (m, p) in panels.iter().enumerate() {
        assert_eq!(p[..4], [m as f64 * 514.0, m as f64 * 514.0 + 513.0, 0.0, 1029.0], "{geom}");
    }
    no_two_overlap(&panels);
    assert!(geom.contains("clen = 0.120000") && geom.contains("data = /entry/data/data"), "{geom}");

    // The image kept raw: one panel a chip, 2 × 4 a module with the gaps of the double pixels.
    let raw_config = dir.path().join("raw.toml");
    let text_of = std::fs::read_to_string(&config).unwrap();
    let with_raw = text_of.replacen("image = \"assembled\"", "image = \"raw\"", 1);
    assert_ne!(with_raw, text_of, "the config names its image");
    std::fs::write(&raw_config, with_raw).unwrap();
    let o = hitgate(&["geometry", "--crystfel", out.to_str().unwrap(), "--config", raw_config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let geom = std::fs::read_to_string(&out).unwrap();
    let panels = crystfel_panels(&geom);
    // Eight modules of 2 × 4 chips, the data of each chip once: 8 × 512 rows of 1024 columns.
    assert_eq!(panels.len(), 64, "{geom}");
    let mut data: Vec<(u64, u64)> = panels.iter().map(|p| (p[0] as u64, p[2] as u64)).collect();
    data.sort_unstable();
    data.dedup();
    assert_eq!(data.len(), 64);
    assert_eq!(panels.iter().map(|p| p[1]).fold(0.0, f64::max), 4095.0);
    no_two_overlap(&panels);
}

#[test]
fn the_simulator_takes_the_users_detector_from_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("beamline.toml");
    std::fs::write(
        &config,
        "[detector]\nmodel = \"jungfrau-2if\"\nmodules = 2\nmodules_per_row = 1\nmodule_gap_rows_px = 20\n\
         first_udp_port = 40001\nbeam_center_row_px = -40.0\nbeam_center_col_px = 1200.5\ndistance_mm = 250.0\n\
         photon_energy_kev = 7.0\n[[sink]]\nkind = \"null\"\n",
    )
    .unwrap();
    let out = dir.path().join("sim");
    let o = hitgate(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--frames",
        "6",
        "--hit-rate",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let replay = std::fs::read_to_string(out.join("replay.toml")).unwrap();
    for line in [
        "model = \"jungfrau-2if\"",
        "modules = 2",
        "first_udp_port = 40001",
        "module_gap_rows_px = 20",
        "beam_center_row_px = -40",
        "beam_center_col_px = 1200.5",
        "distance_mm = 250",
        "photon_energy_kev = 7",
    ] {
        assert!(replay.lines().any(|l| l == line), "{line} not in\n{replay}");
    }
    // The run replays with its own config: every packet of the two modules' four ports placed.
    let o = hitgate(&[
        "replay",
        out.join("run.pcap").to_str().unwrap(),
        "--config",
        out.join("replay.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success() && text(&o).contains("6 complete"), "{}", text(&o));
    // And its model or energy cannot be given twice.
    let o = hitgate(&["simulate", "--config", config.to_str().unwrap(), "--photon-energy-kev", "9"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_dark_run_gives_the_mask_of_the_pixels_that_misbehave() {
    // A run of dark frames only, its detector with hot and dead pixels: the mask `calibrate dark`
    // writes flags the pixels the simulator's own mask does, each for its reason, and no other.
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let args = ["--frames", "12", "--dark-frames", "12", "--hit-rate", "0", "--seed", "61", "--out"];
    let o = hitgate(&[&["simulate"][..], &args, &[sim.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("dark");
    let o = hitgate(&[
        "calibrate",
        "dark",
        "--capture",
        sim.join("run.pcap").to_str().unwrap(),
        "--config",
        sim.join("replay.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("written      [calibration] mask_file = "), "{said}");
    let pixels = 512 * 1024;
    let flagged = |path: PathBuf| -> Vec<(usize, u8)> {
        let mask = hitgate::calib::PixelMask::load(&path, pixels).unwrap();
        mask.flags().iter().enumerate().filter(|&(_, &f)| f != 0).map(|(p, &f)| (p, f)).collect()
    };
    let truth = flagged(sim.join("mask.bin"));
    let (hot, dead) = (hitgate::calib::mask::HOT, hitgate::calib::mask::DEAD);
    assert!(truth.iter().any(|&(_, f)| f == hot) && truth.iter().any(|&(_, f)| f == dead), "{truth:?}");
    assert_eq!(flagged(out.join("mask.bin")), truth, "{said}");
}
