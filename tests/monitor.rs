//! The live monitor as an operator sees it: `hitgate run` receives a simulated run over loopback and
//! headless Chromium loads the page the control plane serves. What the page renders must be what
//! `/status` and `/monitor` say, the last kept frame must be an image the browser decodes at the size
//! the monitor states, the powder pattern must hold the run's spots, and the page's retune form must
//! change the trigger's cut. The screenshot is kept (`HITGATE_MONITOR_SCREENSHOT=PATH` copies it).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::live::*;
use hitgate::sim::SimConfig;

/// Debian's Chromium, or another named by `HITGATE_CHROMIUM`.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("HITGATE_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        Some(path)
    } else {
        common::missing(&format!("{} (scripts/setup installs Debian's chromium)", path.display()));
        None
    }
}

fn monitor(control: &str) -> serde_json::Value {
    let (code, body) = http(control, "GET", "/monitor");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_page_shows_what_the_run_reports_draws_the_last_hit_and_retunes_the_cut() {
    let Some(chromium) = chromium() else { return };
    let Some(python) = common::python_with("websocket") else { return };
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let frames = 120;
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames, hit_rate: 0.5, seed: 43, ..SimConfig::default() },
    );
    let ports = free_ports(1);
    let spots = "\n[trigger.spots]\nmin_spots = 4\n";
    let live = LiveRun::start(&dir.path().join("sim"), "jungfrau-1if", &ports, &dir.path().join("live"), spots);
    send(&sim.capture, &ports, &["--frame-rate-hz", "60"]);
    let status = wait_for_status(&live.control, "every frame judged", |s| s["frames_done"].as_u64() == Some(frames));
    assert!(status["frames_accepted"].as_u64().unwrap() > 0, "{status}");

    // The control plane's thread draws sampled frames a few times a second.
    let deadline = Instant::now() + Duration::from_secs(20);
    let view = loop {
        let view = monitor(&live.control);
        let points = view["powder"]["points"].as_array().map_or(0, Vec::len);
        if !view["last_hit"].is_null() && points > 0 && view["frames"].as_u64() == Some(frames) {
            break view;
        }
        assert!(Instant::now() < deadline, "the monitor never showed a kept frame: {view}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (width, height) = (view["last_hit"]["width"].as_u64().unwrap(), view["last_hit"]["height"].as_u64().unwrap());
    let (code, png) = http_bytes(&live.control, "/monitor/last-hit.png");
    assert_eq!(code, 200);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let dims = |at: usize| u64::from(u32::from_be_bytes(png[at..at + 4].try_into().unwrap()));
    assert_eq!((dims(16), dims(20)), (width, height), "the PNG's header gives the size /monitor states");
    assert_eq!((width, height), (1030, 514), "one assembled module, drawn pixel for pixel");
    assert_eq!(view["module_packets"][0].as_u64(), Some(frames * 128), "every packet of every frame, one module");

    let shot = dir.path().join("monitor.png");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/monitor_browser.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--chromium", chromium.to_str().unwrap()])
        .args(["--url", &format!("http://{}/", live.control)])
        .args(["--retune", "min_spots=7"])
        .args(["--screenshot", shot.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "the browser check failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("the page showed: {shown}");

    let status = wait_for_status(&live.control, "the new cut", |s| s["trigger"]["min_spots"].as_u64() == Some(7));
    for key in ["frames_done", "frames_accepted", "frames_dropped"] {
        assert_eq!(
            shown[key].as_str(),
            Some(status[key].to_string().as_str()),
            "{key}: page {shown}, /status {status}"
        );
    }
    assert_eq!(shown["connection"], "live");
    assert_eq!(shown["cut"], "4", "the cut before the retune");
    assert_eq!(shown["retune_result"], "applied");
    assert_eq!(shown["cut_after"], "7");
    assert_eq!((shown["image"]["width"].as_u64(), shown["image"]["height"].as_u64()), (Some(width), Some(height)));
    let view = monitor(&live.control);
    let points = view["powder"]["points"].as_array().unwrap().len() as u64;
    assert!(points > 0);
    assert_eq!(shown["powder_points"].as_u64(), Some(points), "the powder pattern drew every place a spot fell");
    assert_eq!(shown["modules"].as_u64(), Some(1));
    let screenshot = std::fs::read(&shot).unwrap();
    assert_eq!(&screenshot[..8], b"\x89PNG\r\n\x1a\n");
    if let Some(keep) = std::env::var_os("HITGATE_MONITOR_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let (output, _) = live.terminate();
    assert!(output.status.success());
}
