//! Writing kept frames to disk: the HDF5 sink (bitshuffle-LZ4 chunks, direct chunk writes, rotation,
//! master) beside HDF5 writing the same frames uncompressed (chunked, no filter, the library's own
//! write), the raw sink (plain appends), and `dd` writing as many bytes to the same folder in the same
//! run — the disk's limit. Every writer ends with its files synced to disk, as `dd conv=fdatasync`.
//!
//! `cargo bench --bench storage` (folder: `$HITGATE_BENCH_DIR`, else the system's temporary folder)

#[path = "common.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assembled, simulated};
use hitgate::codec::bitshuffle::{ChunkCompressor, ElementSize};
use hitgate::config::{Config, Hdf5Section, StoredPixels};
use hitgate::sim::SimConfig;
use hitgate::sink::{FrameRecord, Sink};

/// Frames written by each writer: 600 module frames, 629 MB uncompressed.
const FRAMES: usize = 600;

fn sync_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::File::open(&path).unwrap().sync_all().unwrap();
        }
    }
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn main() {
    let base = std::env::var_os("HITGATE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let work = tempfile::tempdir_in(&base).unwrap();
    let (_sim_dir, sim) = simulated(&SimConfig { frames: 30, hit_rate: 0.5, seed: 77, ..SimConfig::default() });
    let mut config = Config::load(&sim.replay_config).unwrap();
    let geometry = config.geometry().unwrap();
    let frames = assembled(&sim.capture, &geometry, 30, 512);
    let frame_bytes = geometry.frame_bytes();
    let total = FRAMES * frame_bytes;
    let mut compressor = ChunkCompressor::default();
    let mut records: Vec<FrameRecord> = Vec::new();
    let mut raw_records: Vec<FrameRecord> = Vec::new();
    for f in &frames {
        raw_records.push(FrameRecord::of(f, raw_interest()));
        let mut r = FrameRecord::of(f, raw_interest());
        compressor.compress(f.data(), ElementSize::new(2).unwrap(), &mut r.payload);
        records.push(r);
    }
    let compressed: usize = records.iter().map(|r| r.payload.len()).sum::<usize>() * FRAMES / records.len();
    println!(
        "{FRAMES} JUNGFRAU module frames ({:.0} MB raw, {:.0} MB as bitshuffle-LZ4) to {}",
        total as f64 / 1e6,
        compressed as f64 / 1e6,
        base.display()
    );

    let mut rows: Vec<(String, Duration, u64)> = Vec::new();
    for round in 0..2 {
        // dd: the same bytes, synced, in the same folder: the limit.
        let dd_path = work.path().join("dd.bin");
        let t = Instant::now();
        let ok = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", dd_path.display()))
            .args(["bs=1M", &format!("count={}", total >> 20), "conv=fdatasync", "status=none"])
            .status()
            .is_ok_and(|s| s.success());
        let dd = t.elapsed();
        assert!(ok, "dd failed");
        std::fs::remove_file(&dd_path).unwrap();
        rows.push((format!("dd bs=1M conv=fdatasync (round {round})"), dd, (total >> 20 << 20) as u64));

        // The HDF5 sink: finished chunks, direct chunk writes, 100 frames a file, master.
        let dir = work.path().join(format!("nexus-{round}"));
        let mut section = Hdf5Section::in_dir(dir.clone());
        section.frames_per_file = 100;
        section.pixels = StoredPixels::Raw;
        config.sinks = vec![hitgate::config::SinkSection::Hdf5(section.clone())];
        let t = Instant::now();
        let mut sink = hitgate::sink::hdf5::Hdf5Sink::create(&section, &config.experiment(&geometry)).unwrap();
        for i in 0..FRAMES {
            sink.write(&records[i % records.len()]).unwrap();
        }
        sink.finish().unwrap();
        sync_dir(&dir);
        rows.push((format!("hdf5 sink, bitshuffle-LZ4 (round {round})"), t.elapsed(), dir_bytes(&dir)));
        std::fs::remove_dir_all(&dir).unwrap();

        // HDF5 uncompressed: the library's own chunked write, no filter.
        let path = work.path().join(format!("plain-{round}.h5"));
        let (panels, prow, pcol) = geometry.panels();
        let t = Instant::now();
        {
            let file = hdf5::File::create(&path).unwrap();
            let ds = file
                .new_dataset::<u16>()
                .shape((0.., panels * prow, pcol))
                .chunk((1, panels * prow, pcol))
                .create("data")
                .unwrap();
            for i in 0..FRAMES {
                let f = &frames[i % frames.len()];
                ds.resize((i + 1, panels * prow, pcol)).unwrap();
                let view = ndarray::ArrayView3::from_shape((1, panels * prow, pcol), f.pixels_u16()).unwrap();
                ds.write_slice(view, ndarray::s![i..i + 1, .., ..]).unwrap();
            }
            file.close().unwrap();
        }
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        rows.push((format!("hdf5 uncompressed (round {round})"), t.elapsed(), std::fs::metadata(&path).unwrap().len()));
        std::fs::remove_file(&path).unwrap();

        // The raw sink: plain appends of the frames and a 64-byte index.
        let dir = work.path().join(format!("raw-{round}"));
        let t = Instant::now();
        let mut sink = hitgate::sink::raw::RawSink::create(&dir, &geometry).unwrap();
        for i in 0..FRAMES {
            sink.write(&raw_records[i % raw_records.len()]).unwrap();
        }
        sink.finish().unwrap();
        sync_dir(&dir);
        rows.push((format!("raw sink (round {round})"), t.elapsed(), dir_bytes(&dir)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let dd_best = rows.iter().filter(|r| r.0.starts_with("dd")).map(|r| r.1).min().unwrap();
    println!("{:<42} {:>9} {:>11} {:>14} {:>16}", "writer", "time", "disk MB", "frames MB/s", "time / dd time");
    for (name, d, bytes) in &rows {
        println!(
            "{name:<42} {:>7.0} ms {:>11.1} {:>14.0} {:>16.2}",
            d.as_secs_f64() * 1e3,
            *bytes as f64 / 1e6,
            mbps(total, *d),
            d.as_secs_f64() / dd_best.as_secs_f64()
        );
    }
}

fn raw_interest() -> hitgate::sink::Interest {
    hitgate::sink::Interest {
        frames: hitgate::sink::Frames::Kept,
        payload: hitgate::sink::Payload::FrameBytes,
        payload_bytes: 0,
    }
}
