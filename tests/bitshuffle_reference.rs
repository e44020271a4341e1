//! hitgate's bitshuffle-LZ4 chunks against the HDF5 filter the X-ray world reads them with: h5py with
//! hdf5plugin reads hitgate's chunks back equal, and hitgate decompresses the filter's own chunks. The
//! Python readers come from the test environment (`scripts/python-env`, or `HITGATE_PYTHON`); where it
//! is absent the check fails in CI and says it is skipped elsewhere (`common::missing`).

mod common;

use hitgate::codec::bitshuffle::{ChunkCompressor, ElementSize, decompress};
use hitgate::sim::SimConfig;

#[test]
fn h5py_and_hdf5plugin_agree_with_our_chunks_both_ways() {
    let Some(python) = common::h5py_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 6, hit_rate: 0.5, seed: 61, ..SimConfig::default() },
    );
    let geometry = common::replay_config(&sim).geometry().unwrap();
    let frames = common::assembled(&sim.capture, &geometry, 6);
    assert_eq!(frames.len(), 6);

    let mut all = Vec::new();
    let mut compressor = ChunkCompressor::default();
    let mut chunk = Vec::new();
    for (k, f) in frames.iter().enumerate() {
        all.extend_from_slice(f.data());
        compressor.compress(f.data(), ElementSize::new(2).unwrap(), &mut chunk);
        // Raw JUNGFRAU values carry the pedestal's noise in their low bits: they shrink, not much.
        assert!(chunk.len() * 5 < f.data().len() * 4, "frame {k}: {} of {} bytes", chunk.len(), f.data().len());
        std::fs::write(dir.path().join(format!("chunk-{k}.bin")), &chunk).unwrap();
    }
    std::fs::write(dir.path().join("frames.u16"), &all).unwrap();
    std::fs::write(dir.path().join("shape.txt"), "6 512 1024").unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/bitshuffle_check.py");
    let out = std::process::Command::new(python).arg(script).arg(dir.path()).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    println!("{said}");
    for (k, f) in frames.iter().enumerate() {
        let reference = std::fs::read(dir.path().join(format!("reference-{k}.bin"))).unwrap();
        assert_eq!(decompress(&reference, 2).unwrap(), f.data(), "frame {k}: hdf5plugin's chunk");
    }
}
