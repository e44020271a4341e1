//! Bitshuffle-LZ4 on JUNGFRAU module frames, one core: the compression ratio and MB/s for raw frames
//! (u16 ADC + gain bits) and calibrated ones (photons rounded to u32, and f32), beside the limit
//! measured in the same run — copying the same bytes (what writing them uncompressed costs in memory).
//!
//! `cargo bench --bench compress`

#[path = "common.rs"]
mod common;

use std::hint::black_box;

use common::{assembled, percentiles, simulated, us};
use hitgate::calib::{CalibrationMaps, PhotonConverter};
use hitgate::codec::bitshuffle::{ChunkCompressor, ElementSize, decompress};
use hitgate::sim::SimConfig;

fn main() {
    let n = 30;
    let (_dir, out) = simulated(&SimConfig { frames: n, hit_rate: 0.5, seed: 71, ..SimConfig::default() });
    let geometry = hitgate::detector::DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap();
    let frames = assembled(&out.capture, &geometry, n as usize, 512);
    let maps = CalibrationMaps::load(&out.calibration, 512 * 1024).unwrap();
    let conv = PhotonConverter::new(&maps, 12.4);
    let mut photons = vec![0f32; 512 * 1024];
    let mut raw = Vec::new();
    let mut counts = Vec::new();
    let mut floats = Vec::new();
    for f in &frames {
        raw.push(f.data().to_vec());
        conv.jungfrau_photons(f.pixels_u16(), 0, &mut photons);
        counts.push(photons.iter().flat_map(|p| (p.round().max(0.0) as u32).to_le_bytes()).collect::<Vec<u8>>());
        floats.push(photons.iter().flat_map(|p| p.to_le_bytes()).collect::<Vec<u8>>());
    }
    println!("bitshuffle-LZ4, one JUNGFRAU module frame, {} frames × 5 rounds, one core", frames.len());
    for (name, data, elem) in [("raw u16", &raw, 2usize), ("photons u32", &counts, 4), ("photons f32", &floats, 4)] {
        let mut compressor = ChunkCompressor::default();
        let mut chunk = Vec::new();
        let mut copy = vec![0u8; data[0].len()];
        let (mut times, mut copies, mut unpack) = (Vec::new(), Vec::new(), Vec::new());
        let (mut bytes_in, mut bytes_out) = (0usize, 0usize);
        for _ in 0..5 {
            for d in data {
                times.push(
                    common::time(|| compressor.compress(black_box(d), ElementSize::new(elem).unwrap(), &mut chunk)).1,
                );
                bytes_in += d.len();
                bytes_out += chunk.len();
                copies.push(common::time(|| copy.copy_from_slice(black_box(d))).1);
                black_box(&copy);
                unpack.push(common::time(|| black_box(decompress(&chunk, elem).unwrap())).1);
            }
        }
        let mb = data[0].len() as f64 / 1e6;
        let (c50, c99) = percentiles(times);
        let (l50, _) = percentiles(copies);
        let (d50, _) = percentiles(unpack);
        println!(
            "{name:<12} {:5.2} MB a frame  ratio {:5.2}  compress median {:7.1} µs ({:6.0} MB/s) p99 {:7.1} µs | decompress {:7.1} µs | copy (limit) {:6.1} µs ({:6.0} MB/s), ratio to limit {:.1}",
            mb,
            bytes_in as f64 / bytes_out as f64,
            us(c50),
            mb / (us(c50) * 1e-6),
            us(c99),
            us(d50),
            us(l50),
            mb / (us(l50) * 1e-6),
            us(c50) / us(l50)
        );
    }
}
