//! A frame as the HDF5 sink stores it: its pixels in the configured form (raw values, whole photons
//! or photons), compressed to one bitshuffle-LZ4 chunk. Runs on the reducers for the frames they
//! keep, and on the ordering thread for the few audit frames chosen there, so the sink thread only
//! writes finished chunks.

use zerocopy::IntoBytes;

use super::bitshuffle::{ChunkCompressor, max_compressed_len};
use crate::calib::PhotonConverter;
use crate::config::StoredPixels;
use crate::detector::DetectorGeometry;
use crate::reduce::ReducerPlan;

/// Bytes of one stored pixel.
pub fn stored_element_size(pixels: StoredPixels, geometry: &DetectorGeometry) -> usize {
    match pixels {
        StoredPixels::Raw => (geometry.model.bits_per_pixel / 8).max(1),
        StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 => 4,
    }
}

/// Bytes of one frame as stored, before compression.
pub fn stored_frame_bytes(pixels: StoredPixels, geometry: &DetectorGeometry) -> usize {
    match pixels {
        StoredPixels::Raw => geometry.frame_bytes(),
        StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 => {
            let (panels, rows, cols) = geometry.panels();
            panels * rows * cols * 4
        }
    }
}

/// The largest chunk a frame can compress to: the room each frame slot and queue entry reserves.
pub fn chunk_bound(pixels: StoredPixels, geometry: &DetectorGeometry) -> usize {
    let elem = stored_element_size(pixels, geometry);
    max_compressed_len(stored_frame_bytes(pixels, geometry), elem)
}

/// One thread's encoder, with its scratch allocated once.
pub struct FrameEncoder {
    pixels: StoredPixels,
    elem_size: usize,
    compressor: ChunkCompressor,
    /// One panel's photons.
    photons: Vec<f32>,
    /// The whole frame's stored pixels (photon forms only).
    stored: Vec<u8>,
}

impl FrameEncoder {
    pub fn new(pixels: StoredPixels, geometry: &DetectorGeometry) -> FrameEncoder {
        let (_, rows, cols) = geometry.panels();
        let calibrated = pixels != StoredPixels::Raw;
        let mut compressor = ChunkCompressor::default();
        compressor.reserve();
        FrameEncoder {
            pixels,
            elem_size: stored_element_size(pixels, geometry),
            compressor,
            photons: if calibrated { vec![0.0; rows * cols] } else { Vec::new() },
            stored: if calibrated { vec![0; stored_frame_bytes(pixels, geometry)] } else { Vec::new() },
        }
    }

    /// Compresses the frame whose raw pixels are `raw` into `out` (replaced), converting them first
    /// with `converter` (or the plan's own) when photons are stored.
    pub fn encode(&mut self, plan: &ReducerPlan, converter: Option<&PhotonConverter>, raw: &[u16], out: &mut Vec<u8>) {
        let data: &[u8] = match self.pixels {
            StoredPixels::Raw => raw.as_bytes(),
            StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 => {
                let (panels, rows, cols) = plan.panel_shape();
                let panel_pixels = rows * cols;
                for (panel, panel_raw) in raw.chunks_exact(panel_pixels).take(panels).enumerate() {
                    plan.panel_photons(converter, panel, panel_raw, &mut self.photons);
                    let at = panel * panel_pixels * 4;
                    let Some(dest) = self.stored.get_mut(at..at + panel_pixels * 4) else { break };
                    for (d, &p) in dest.chunks_exact_mut(4).zip(&self.photons) {
                        let bytes = match self.pixels {
                            // Rounded to whole photons; noise below zero is no photon.
                            StoredPixels::PhotonsU32 => (p.round().max(0.0) as u32).to_le_bytes(),
                            _ => p.to_le_bytes(),
                        };
                        d.copy_from_slice(&bytes);
                    }
                }
                &self.stored
            }
        };
        // The element size is 1, 2 or 4 by construction, which the compressor always takes.
        let _ = self.compressor.compress(data, self.elem_size, out);
    }
}
