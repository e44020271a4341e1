use super::*;
use crate::section::Resource;

const MINIMAL: &str = "[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"null\"\n";

#[test]
fn a_minimal_config_takes_the_defaults() {
    let c = Config::parse(MINIMAL).unwrap().validated().unwrap();
    assert_eq!(c.geometry().unwrap().udp_ports, vec![50001]);
    assert_eq!(c.assembler_config().frame_timeout_ns, 10_000_000);
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let text = "[detector]\nmodel = \"jungfrau-1if\"\n[assembler]\nframe_timeout_ms = 3\n";
    let err = Config::parse(text).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "assembler.frame_timeout_ms");
    assert!(p.reason.contains("unknown field"), "{p}");
    let text =
        "[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"null\"\n[[sink]]\nkind = \"raw\"\ndri = \"x\"\n";
    let err = Config::parse(text).unwrap_err();
    assert_eq!(err.problems()[0].key, "sink[1].dri", "{err}");
}

#[test]
fn wrong_types_name_the_key() {
    let text = "[detector]\nmodel = \"jungfrau-1if\"\nmodules = \"two\"\n";
    let err = Config::parse(text).unwrap_err();
    assert_eq!(err.problems()[0].key, "detector.modules", "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[detector]
model = "jungfrau-2if"
modules = 2
udp_ports = [50001, 50002, 50001]
[assembler]
window_frames = 0
frame_timeout_us = 0
[reducer]
workers = 0
[calibration]
photon_energy_kev = 0.1
file = "/nonexistent/calibration.bin"
[trigger.spots]
max_spots = 2
[features.threshold]
min_pixels = 5
max_pixels = 4
[trigger.fpga]
batch_frames = 5000
timeout_us = 1
[[sink]]
kind = "raw"
dir = "/tmp/out"
[[sink]]
kind = "features"
path = "/tmp/out/features.jsonl"
"#;
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
    for expected in [
        "detector.udp_ports",
        "detector.udp_ports[2]",
        "assembler.window_frames",
        "assembler.frame_timeout_us",
        "reducer.workers",
        "calibration.photon_energy_kev",
        "calibration.file",
        "features.threshold.max_pixels",
        "trigger.spots.max_spots",
        "trigger.fpga.batch_frames",
        "trigger.fpga.timeout_us",
        "sink[1].path",
    ] {
        assert!(keys.iter().any(|k| k == expected), "missing {expected} in {keys:?}");
    }
    let shown = err.to_string();
    assert!(shown.contains("port 50001 is already claimed by detector.udp_ports[0]"), "{shown}");
}

#[test]
fn an_unknown_model_lists_the_known_ones() {
    let text = "[detector]\nmodel = \"pilatus\"\n[[sink]]\nkind = \"null\"\n";
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "detector.model");
    assert!(p.reason.contains("jungfrau-2if"));
}

#[test]
fn the_peak_localiser_is_checked_at_load() {
    let text = format!("{MINIMAL}[features.localiser]\nmodel = \"models/none.onnx\"\nbatch_patches = 0\n");
    let err = Config::parse(&text).unwrap().resolved_against(Path::new("/nonexistent")).validated().unwrap_err();
    let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
    assert!(keys.iter().any(|k| k == "features.localiser.model"), "{keys:?}");
    assert!(keys.iter().any(|k| k == "features.localiser.batch_patches"), "{keys:?}");
    assert!(err.to_string().contains("/nonexistent/models/none.onnx"), "{err}");
    let text = format!("{MINIMAL}[features.localiser]\nmodel = \"builtin\"\nframes = \"all\"\n");
    let c = Config::parse(&text).unwrap().resolved_against(Path::new("/elsewhere")).validated().unwrap();
    assert_eq!(c.features.localiser.source(), Some(crate::features::localiser::LocaliserSource::Builtin));
    assert_eq!(c.features.localiser.frames, LocaliseFrames::All);
}

#[test]
fn rate_settings_are_checked_at_load() {
    let text = format!(
        "{MINIMAL}[trigger.rate]\ntarget_accept_rate = 1.5\nwindow_frames = 10\nupdate_every_frames = 0\naudit_every = 100\n"
    );
    let err = Config::parse(&text).unwrap().validated().unwrap_err();
    let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
    for key in ["trigger.rate.target_accept_rate", "trigger.rate.window_frames", "trigger.rate.update_every_frames"] {
        assert!(keys.iter().any(|k| k == key), "missing {key} in {keys:?}");
    }
    let ok = format!("{MINIMAL}[trigger.rate]\ntarget_accept_rate = 0.05\naudit_every = 100\n");
    let c = Config::parse(&ok).unwrap().validated().unwrap();
    assert_eq!(c.trigger.rate.target_accept_rate, Some(0.05));
}

#[test]
fn storage_and_hdf5_keys_are_checked_with_their_paths() {
    let text = r#"
[detector]
model = "eiger-10g-4bit"
[trigger]
kind = "accept_all"
[storage]
queue_frames = 0
on_full = "raise_threshold"
[[sink]]
kind = "hdf5"
dir = "/tmp/nexus-a"
prefix = "a/b"
frames_per_file = 0
distance_mm = -1.0
[[sink]]
kind = "hdf5"
dir = "/tmp/nexus-b"
pixels = "photons_u32"
"#;
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let problems = err.problems();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "storage.queue_frames",
        "storage.on_full",
        "sink[0].prefix",
        "sink[0].frames_per_file",
        "sink[0].distance_mm",
        "sink[0].pixels",
        "sink[1].pixels",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    let packed = problems.iter().find(|p| p.key == "sink[0].pixels").unwrap();
    assert!(packed.reason.contains("packed"), "{packed}");
}

// A build without HDF5 refuses HDF5 sinks at load.
#[cfg(feature = "hdf5")]
#[test]
fn an_hdf5_sink_takes_its_defaults_and_an_unknown_pixel_form_is_refused() {
    let c = Config::parse(
        "[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"hdf5\"\ndir = \"nexus\"\n[[sink]]\nkind = \"null\"\nwrite_delay_us = 5\n",
    )
    .unwrap()
    .validated()
    .unwrap();
    assert_eq!(c.stored_pixels(), Some(StoredPixels::Raw));
    assert_eq!(c.storage.on_full, OnFull::Auto);
    let text = "[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"hdf5\"\ndir = \"n\"\npixels = \"kev\"\n";
    let err = Config::parse(text).unwrap_err();
    assert_eq!(err.problems()[0].key, "sink[0].pixels", "{err}");
}

// A build without HDF5 refuses HDF5 sinks at load.
#[cfg(feature = "hdf5")]
#[test]
fn every_committed_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            loaded += 1;
        }
    }
    assert!(loaded >= 7, "{loaded} configs in {}", dir.display());
}

#[test]
fn a_cluster_must_own_every_module_once_and_name_its_node() {
    let text = r#"
[detector]
model = "jungfrau-1if"
modules = 4
[cluster]
nats = ["nats://127.0.0.1:4222", "127.0.0.1:4223"]
run = "beam time"
node = "d"
nodes = [{ name = "a", modules = [0, 1] }, { name = "b", modules = [1, 7] }, { name = "a", modules = [] }]
[[sink]]
kind = "null"
"#;
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let shown = err.to_string();
    for expected in [
        "cluster.nats[1]",
        "cluster.run",
        "cluster.node",
        "cluster.nodes[1].modules[0]",
        "cluster.nodes[1].modules[1]",
        "cluster.nodes[2].name",
        "cluster.nodes[2].modules",
    ] {
        assert!(err.problems().iter().any(|p| p.key == expected), "missing {expected} in {shown}");
    }
    assert!(shown.contains("module 1 is already owned by node \"a\""), "{shown}");
    assert!(shown.contains("modules 2, 3 belong to no node"), "{shown}");

    let good = r#"
[detector]
model = "jungfrau-2if"
modules = 3
first_udp_port = 50001
[cluster]
nats = ["nats://127.0.0.1:4222"]
nodes = [{ name = "a", modules = [2, 0] }, { name = "b", modules = [1] }]
[[sink]]
kind = "null"
"#;
    let c = Config::parse(good).unwrap().validated().unwrap();
    let a = c.for_node("a").unwrap();
    // Two ports a module: module 2's, then module 0's.
    assert_eq!(a.detector.udp_ports, Some(vec![50005, 50006, 50001, 50002]));
    assert_eq!((a.detector.modules, a.cluster.node.as_deref()), (2, Some("a")));
    assert!(c.for_node("z").is_none());
}

#[test]
fn a_forward_names_its_bad_keys_and_a_node_names_its_messages() {
    let text = r#"
[detector]
model = "jungfrau-1if"
modules = 2
[[sink]]
kind = "jetstream"
nats = ["not a url at all"]
stream = "has space"
subject = "hitgate..forward"
replicas = 7
part_bytes = 10
"#;
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
    for key in ["sink[0].nats", "sink[0].stream", "sink[0].subject", "sink[0].replicas", "sink[0].part_bytes"] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {err}");
    }

    let text = r#"
[detector]
model = "jungfrau-1if"
modules = 2
[[sink]]
kind = "jetstream"
[cluster]
nats = ["nats://127.0.0.1:4222"]
nodes = [{ name = "a", modules = [0] }, { name = "b", modules = [1] }]
"#;
    let config = Config::parse(text).unwrap().validated().unwrap();
    let SinkSection::Jetstream(whole) = &config.sinks[0] else { panic!() };
    assert_eq!(whole.source_name(), "all");
    let node = config.for_node("b").unwrap();
    let SinkSection::Jetstream(part) = &node.sinks[0] else { panic!() };
    assert_eq!(part.source_name(), "b");
}

#[test]
fn a_node_keeps_its_modules_places_and_the_beam_of_the_whole_detector() {
    let text = r#"
[detector]
model = "jungfrau-1if"
modules = 4
modules_per_row = 2
module_gap_rows_px = 36
module_gap_cols_px = 8
[[sink]]
kind = "null"
[cluster]
nats = ["nats://127.0.0.1:4222"]
nodes = [{ name = "a", modules = [0, 3] }, { name = "b", modules = [1, 2] }]
"#;
    let whole = Config::parse(text).unwrap().validated().unwrap();
    let origins = whole.panel_origins(&whole.geometry().unwrap());
    let node = whole.for_node("a").unwrap();
    assert_eq!(node.panel_origins(&node.geometry().unwrap()), vec![origins[0], origins[3]]);
    // Modules assembled as PSI shows them: 514 × 1030 each.
    assert_eq!(origins[3], (514 + 36, 1030 + 8));
    assert_eq!(node.beam_center_px(), whole.beam_center_px());
}

#[test]
fn a_control_plane_off_loopback_needs_a_token_file_only_its_owner_reads() {
    let off = format!("{MINIMAL}[control]\nlisten_address = \"0.0.0.0:9464\"\n");
    let err = Config::parse(&off).unwrap().validated().unwrap_err();
    assert_eq!(err.problems()[0].key, "control.listen_address", "{err}");

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let with = format!("{off}token_file = \"{}\"\n", token.display());
    let err = Config::parse(&with).unwrap().validated().unwrap_err();
    assert_eq!(err.problems()[0].key, "control.token_file");
    assert!(err.problems()[0].reason.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = Config::parse(&with).unwrap().validated().unwrap();
    assert_eq!(config.control.token().unwrap().as_deref(), Some("0123456789abcdef0123"));
    std::fs::write(&token, "short\n").unwrap();
    assert!(Config::parse(&with).unwrap().validated().is_err(), "a short token is refused");
}

#[test]
fn emulated_card_faults_are_named_and_for_the_emulated_card_only() {
    let ok = format!("{MINIMAL}[trigger.fpga]\nemulated_faults = [\"stuck_done\", \"dma_refused\"]\n");
    Config::parse(&ok).unwrap().validated().unwrap();
    let unknown = format!("{MINIMAL}[trigger.fpga]\nemulated_faults = [\"on_fire\"]\n");
    let err = Config::parse(&unknown).unwrap().validated().unwrap_err();
    assert_eq!(err.problems()[0].key, "trigger.fpga.emulated_faults");
    assert!(err.problems()[0].reason.contains("stuck_done"), "{err}");
    let real = format!(
        "{MINIMAL}[trigger.fpga]\ncard = \"xdma0\"\nmanifest = \"{}\"\nemulated_faults = [\"stuck_done\"]\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/bitstreams/emulated/manifest.toml")
    );
    let err = Config::parse(&real).unwrap().validated().unwrap_err();
    assert!(err.problems().iter().any(|p| p.key == "trigger.fpga.emulated_faults"), "{err}");
}

#[test]
fn two_parts_claiming_one_endpoint_are_refused_at_the_later_ones_key() {
    let text = r#"
[detector]
model = "jungfrau-1if"
[control]
listen_address = "127.0.0.1:31001"
[[sink]]
kind = "stream"
endpoint = "tcp://127.0.0.1:31002"
[[sink]]
kind = "stream"
endpoint = "tcp://*:31002"
[[sink]]
kind = "stream"
endpoint = "tcp://127.0.0.1:31001"
[[sink]]
kind = "stream"
endpoint = "tcp://127.0.0.1:31003"
"#;
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let problems = err.problems();
    let reason = |key: &str| problems.iter().find(|p| p.key == key).map(|p| p.reason.clone());
    assert_eq!(reason("sink[1].endpoint").as_deref(), Some("*:31002 is already claimed by sink[0].endpoint"));
    assert_eq!(
        reason("sink[2].endpoint").as_deref(),
        Some("127.0.0.1:31001 is already claimed by control.listen_address"),
        "{err}"
    );
    assert!(reason("sink[3].endpoint").is_none(), "{err}");
    assert_eq!(problems.len(), 2, "{err}");
}

#[test]
fn a_cpu_is_pinned_once_and_must_exist() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let text = format!("{MINIMAL}[udp]\nreceiver_cpu = 0\n[reducer]\ncpus = [0, {cpus}]\n");
    let err = Config::parse(&text).unwrap().validated().unwrap_err();
    let problems = err.problems();
    assert_eq!(problems[0].key, "reducer.cpus[0]");
    assert_eq!(problems[0].reason, "CPU 0 is already claimed by udp.receiver_cpu");
    assert_eq!(problems[1].key, "reducer.cpus[1]");
    assert!(problems[1].reason.contains("does not exist here"), "{err}");
}

#[test]
fn a_loaded_config_says_where_each_part_of_it_writes_and_listens() {
    let text = format!(
        "{MINIMAL}[[sink]]\nkind = \"features\"\npath = \"out/f.jsonl\"\n[[sink]]\nkind = \"stream\"\nendpoint = \"ipc:///tmp/s\"\n"
    );
    let c = Config::parse(&text).unwrap().resolved_against(Path::new("/data/run")).validated().unwrap();
    let claims: Vec<(String, Resource)> = checks::claims(&c).into_iter().map(|c| (c.key, c.resource)).collect();
    assert_eq!(
        claims,
        vec![
            ("control.listen_address".into(), Resource::Tcp { host: "127.0.0.1".into(), port: 9464 }),
            ("sink[1].path".into(), Resource::Output("/data/run/out/f.jsonl".into())),
            ("sink[2].endpoint".into(), Resource::Ipc("/tmp/s".into())),
        ]
    );
}

#[test]
fn the_beam_and_distance_live_in_the_detector_section_and_old_keys_name_it() {
    let text = "[detector]\nmodel = \"jungfrau-1if\"\n[calibration]\nphoton_energy_kev = 9.0\n[[sink]]\nkind = \"hdf5\"\ndir = \"/tmp/n\"\ndistance_mm = 80.0\nwavelength_angstrom = 1.0\n";
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let problems = err.problems();
    let reason = |key: &str| problems.iter().find(|p| p.key == key).map(|p| p.reason.clone()).unwrap_or_default();
    assert_eq!(reason("calibration.photon_energy_kev"), "moved to detector.photon_energy_kev");
    assert_eq!(reason("sink[0].distance_mm"), "moved to detector.distance_mm");
    assert_eq!(reason("sink[0].wavelength_angstrom"), "moved to detector.photon_energy_kev");

    // What a spot is belongs to the finder: the threshold finder's old keys name where they went.
    let text = "[detector]\nmodel = \"jungfrau-1if\"\n[trigger.spots]\nthreshold_photons = 2.5\nmin_spot_pixels = 2\nmax_spots_recorded = 100\n[[sink]]\nkind = \"null\"\n";
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let problems = err.problems();
    let reason = |key: &str| problems.iter().find(|p| p.key == key).map(|p| p.reason.clone()).unwrap_or_default();
    assert!(reason("trigger.spots.threshold_photons").contains("features.threshold.min_photons_above"), "{problems:?}");
    assert_eq!(reason("trigger.spots.min_spot_pixels"), "moved to features.threshold.min_pixels");
    assert_eq!(reason("trigger.spots.max_spots_recorded"), "moved to features.max_spots_recorded");

    let text = "[detector]\nmodel = \"jungfrau-1if\"\ndistance_mm = 0.0\nphoton_energy_kev = 500.0\n[[sink]]\nkind = \"null\"\n";
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
    assert!(keys.contains(&"detector.distance_mm".to_string()), "{keys:?}");
    assert!(keys.contains(&"detector.photon_energy_kev".to_string()), "{keys:?}");
}

#[test]
fn a_learned_trigger_without_a_pixel_mask_is_said() {
    let text = "[detector]\nmodel = \"jungfrau-1if\"\nbeam_center_row_px = 250.0\nbeam_center_col_px = 500.0\ndistance_mm = 120.0\nphoton_energy_kev = 9.0\nimage = \"assembled\"\n[trigger]\nkind = \"tract\"\n[[sink]]\nkind = \"null\"\n";
    let c = Config::parse(text).unwrap().validated().unwrap();
    let said = c.defaults_assumed();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("calibration.mask_file not given")
            && said[0].contains("first 7 frames each reducer worker sees"),
        "{said:?}"
    );
    let kept = text.replace("[[sink]]", "[trigger.inputs]\nignore_persistent_excess = false\n[[sink]]");
    let said = Config::parse(&kept).unwrap().validated().unwrap().defaults_assumed();
    assert!(said[0].contains("hot pixel as a reflection in every frame"), "{said:?}");
    // With a mask, or with the spots trigger (which reads no summary), nothing is said of it.
    let mask = tempfile::NamedTempFile::new().unwrap();
    let masked = text.replace("[trigger]", &format!("[calibration]\nmask_file = {:?}\n[trigger]", mask.path()));
    assert_eq!(Config::parse(&masked).unwrap().validated().unwrap().defaults_assumed(), Vec::<String>::new());
    let spots = text.replace("kind = \"tract\"", "kind = \"spots\"");
    assert_eq!(Config::parse(&spots).unwrap().validated().unwrap().defaults_assumed(), Vec::<String>::new());
}

#[test]
fn every_default_the_run_depends_on_is_said() {
    // A JUNGFRAU run into NeXus without the beam: centre, distance and energy are all assumed.
    let text = "[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"hdf5\"\ndir = \"/tmp/n\"\n";
    let c = Config::parse(text).unwrap().validated().unwrap();
    let said = c.defaults_assumed().join("\n");
    for key in ["detector.beam_center_row_px", "detector.distance_mm", "detector.photon_energy_kev", "detector.image"] {
        assert!(said.contains(key), "{key} not said in:\n{said}");
    }
    assert!(said.contains("(257.0, 515.0)"), "the centre of the assembled module: {said}");
    assert!(said.contains("the conversion to photons and the wavelength"), "{said}");

    // Given, nothing is said; and an EIGER counting into the features sink alone needs none of it.
    let text = "[detector]\nmodel = \"jungfrau-1if\"\nbeam_center_row_px = 250.0\nbeam_center_col_px = 500.0\ndistance_mm = 120.0\nphoton_energy_kev = 9.0\nimage = \"assembled\"\n[[sink]]\nkind = \"hdf5\"\ndir = \"/tmp/n\"\n";
    let c = Config::parse(text).unwrap().validated().unwrap();
    assert_eq!(c.defaults_assumed(), Vec::<String>::new());
    assert!((c.detector.wavelength_angstrom() - 1.377_602).abs() < 1e-5);
    let text = "[detector]\nmodel = \"eiger-10g-16bit\"\n[[sink]]\nkind = \"features\"\npath = \"/tmp/f.jsonl\"\n";
    let c = Config::parse(text).unwrap().validated().unwrap();
    assert_eq!(c.defaults_assumed(), Vec::<String>::new());
    // An EIGER has no JUNGFRAU chips to assemble.
    let text = "[detector]\nmodel = \"eiger-10g-16bit\"\nimage = \"assembled\"\n[[sink]]\nkind = \"null\"\n";
    let err = Config::parse(text).unwrap().validated().unwrap_err();
    assert!(err.problems().iter().any(|p| p.key == "detector.image"), "{err}");
}

#[test]
fn the_udp_receiver_s_choices_are_checked_at_load() {
    let ok = format!("{MINIMAL}[udp]\nbackend = \"io_uring\"\nwait = \"poll\"\nlinger_us = 0\n");
    let c = Config::parse(&ok).unwrap().validated().unwrap();
    assert_eq!(c.udp.backend, crate::ingest::UdpBackend::IoUring);
    let both = format!(
        "{MINIMAL}[udp]\nbackend = \"io_uring\"\nreceiver_threads = 2\nlinger_us = 20000\nrealtime_priority = 100\n"
    );
    let err = Config::parse(&both).unwrap().validated().unwrap_err();
    let problems = err.problems();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in ["udp.backend", "udp.linger_us", "udp.realtime_priority"] {
        assert!(keys.contains(&key), "{key}: {err}");
    }
    let unknown = format!("{MINIMAL}[udp]\nbackend = \"af_xdp\"\n");
    assert_eq!(Config::parse(&unknown).unwrap_err().problems()[0].key, "udp.backend");
}
