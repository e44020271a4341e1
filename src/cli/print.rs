//! The tables and reports the subcommands print.

use std::path::Path;

use super::out::say;
use hitgate::ingest::inventory::CaptureInventory;
use hitgate::sim::SimOutputs;

pub fn simulation(o: &SimOutputs) {
    let t = &o.truth_summary;
    let hits = t.frames.iter().filter(|f| f.hit).count();
    say!("simulated    {} frames ({} hits) of {} × {}", t.frames.len(), hits, t.config.modules, t.config.model);
    say!(
        "packets      {} sent, {} lost, {} reordered, {} duplicated",
        t.packets_sent,
        t.packets_lost,
        t.packets_reordered,
        t.packets_duplicated
    );
    say!("capture      {}", o.capture.display());
    say!("truth        {}", o.truth.display());
    say!("calibration  {}", o.calibration.display());
    say!(
        "replay with  hitgate replay {} --config {} --truth {}",
        o.capture.display(),
        o.replay_config.display(),
        o.truth.display()
    );
}

#[cfg(feature = "hdf5")]
pub fn master(path: &Path, m: &hitgate::sink::hdf5::inspect::MasterSummary) {
    let state = if m.run_complete { "complete" } else { "not closed (running, or stopped without closing)" };
    say!("{}: {} master, run {state}", path.display(), m.definition);
    say!("started {}{}", m.start_time, m.end_time.as_ref().map(|e| format!(", ended {e}")).unwrap_or_default());
    say!(
        "{}: {} module(s), frames {} × {} of {} ({}-byte pixels)",
        m.detector,
        m.modules,
        m.frame_shape.0,
        m.frame_shape.1,
        m.pixel_content,
        m.element_bytes
    );
    say!(
        "beam {:.4} Å, detector at {:.1} mm, beam centre (row, col) {:.1}, {:.1} px",
        m.wavelength_angstrom,
        m.distance_m * 1e3,
        m.beam_center_px.0,
        m.beam_center_px.1
    );
    say!("{:<14} {:<28} {:>7} {:>6} {:>10}", "link", "file", "frames", "audit", "MB");
    for f in &m.files {
        let name = f.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        say!(
            "{:<14} {:<28} {:>7} {:>6} {:>10.1}",
            f.link,
            name,
            f.frames,
            f.audit_frames,
            f.bytes_on_disk as f64 / 1e6
        );
    }
    say!("{} frames in {} files, compression {:.2}:1 on disk", m.frames(), m.files.len(), m.compression_ratio());
    for p in &m.partial_files {
        say!("open or cut short: {}", p.display());
    }
}

pub fn inventory(path: &Path, inv: &CaptureInventory) {
    let secs = (inv.last_timestamp_ns.saturating_sub(inv.first_timestamp_ns)) as f64 / 1e9;
    say!(
        "{}: {}, {:.1} MB, {} records over {:.3} s",
        path.display(),
        inv.format,
        inv.bytes as f64 / 1e6,
        inv.records,
        secs
    );
    let skipped: Vec<String> = inv.skipped.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{n} {r}")).collect();
    if !skipped.is_empty() {
        say!("not UDP/usable: {}", skipped.join(", "));
    }
    say!(
        "{:>6} {:>9} {:>7} {:>5} {:<18} {:^16} {:>7} {:>8} {:>8} {:>6}",
        "port",
        "datagrams",
        "size",
        "type",
        "model",
        "frames",
        "whole",
        "missing",
        "dup",
        "bad"
    );
    for p in &inv.ports {
        let models = if p.models.is_empty() { "?".to_string() } else { p.models.join("|") };
        say!(
            "{:>6} {:>9} {:>7} {:>5} {:<18} {:>7}..{:<7} {:>7} {:>8} {:>8} {:>6}",
            p.udp_port,
            p.datagrams,
            p.payload_bytes,
            p.det_type,
            models,
            p.first_frame,
            p.last_frame,
            format!("{}/{}", p.frames_complete, p.frames),
            p.packets_missing(),
            p.packets_duplicate,
            p.datagrams_malformed
        );
    }
    if let Some(e) = &inv.error {
        say!("damaged: {e}");
    }
}
