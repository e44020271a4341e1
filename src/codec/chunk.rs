//! A frame as the storing sinks take it: its pixels in the configured form (raw values, whole photons
//! or photons), compressed to one bitshuffle-LZ4 chunk. Runs on the reducers for the frames they
//! keep, and on the ordering thread for the few audit frames chosen there, so sink threads only write
//! finished chunks.

use serde::{Deserialize, Serialize};
use zerocopy::IntoBytes;

use super::bitshuffle::{BitshuffleError, ChunkCompressor, ElementSize, max_compressed_len};
use crate::calib::{PhotonConverter, Photons, flag_lost};
use crate::detector::{DetectorGeometry, PanelImage};

/// What a stored pixel holds (`pixels` of the HDF5, stream and JetStream sinks).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoredPixels {
    #[default]
    Raw,
    PhotonsU32,
    PhotonsF32,
}

impl StoredPixels {
    /// What a stored pixel holds, in words, for the files' and streams' own descriptions.
    pub fn description(self) -> &'static str {
        match self {
            StoredPixels::Raw => "raw detector values",
            StoredPixels::PhotonsU32 => "photons (whole)",
            StoredPixels::PhotonsF32 => "photons",
        }
    }

    /// The panel image a stored frame holds: photons in the detector's image (`image`: a JUNGFRAU
    /// module assembled, when configured), raw values as the detector sent them.
    pub fn image(self, image: &PanelImage) -> PanelImage {
        match self {
            StoredPixels::Raw => image.unsplit(),
            StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 => image.clone(),
        }
    }
}

/// What a flagged pixel (saturated, invalid, lost; `calib::FLAGGED`) is stored as in whole photons:
/// the largest value, as DECTRIS detectors mark such pixels. In `photons_f32` it stays NaN.
pub const FLAGGED_U32: u32 = u32::MAX;

/// Bytes of one stored pixel.
pub fn stored_element_size(pixels: StoredPixels, geometry: &DetectorGeometry) -> usize {
    match pixels {
        StoredPixels::Raw => (geometry.model.bits_per_pixel / 8).max(1),
        StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 => 4,
    }
}

/// Bytes of one frame as stored, before compression, its panels' photons in `image`.
pub fn stored_frame_bytes(pixels: StoredPixels, geometry: &DetectorGeometry, image: &PanelImage) -> usize {
    match pixels {
        StoredPixels::Raw => geometry.frame_bytes(),
        StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 => geometry.panels().0 * image.pixels() * 4,
    }
}

/// The largest chunk a frame can compress to: the room each frame slot and queue entry reserves.
pub fn chunk_bound(pixels: StoredPixels, geometry: &DetectorGeometry, image: &PanelImage) -> usize {
    let elem = stored_element_size(pixels, geometry);
    max_compressed_len(stored_frame_bytes(pixels, geometry, image), elem)
}

/// One thread's encoder, with its scratch allocated once.
pub struct FrameEncoder {
    pixels: StoredPixels,
    elem_size: ElementSize,
    /// Panels of a frame, and pixels of a panel.
    panels: usize,
    panel_pixels: usize,
    /// The pixels each packet carries, to flag a lost packet's.
    packet_pixels: Vec<std::ops::Range<usize>>,
    compressor: ChunkCompressor,
    /// One panel's photons, and its image when that differs (a JUNGFRAU module assembled).
    photons: Vec<f32>,
    image: PanelImage,
    assembled: Vec<f32>,
    /// The whole frame's stored pixels (photon forms only).
    stored: Vec<u8>,
}

impl FrameEncoder {
    /// # Errors
    /// The stored pixel is wider than the compression takes (a detector model past 64-bit pixels).
    pub fn new(
        pixels: StoredPixels,
        geometry: &DetectorGeometry,
        image: &PanelImage,
    ) -> Result<FrameEncoder, BitshuffleError> {
        let (panels, rows, cols) = geometry.panels();
        let calibrated = pixels != StoredPixels::Raw;
        let image = pixels.image(image);
        let assembled = if calibrated && image.is_split() { vec![0.0; image.pixels()] } else { Vec::new() };
        let mut compressor = ChunkCompressor::default();
        compressor.reserve();
        Ok(FrameEncoder {
            pixels,
            elem_size: ElementSize::new(stored_element_size(pixels, geometry))?,
            panels,
            panel_pixels: rows * cols,
            packet_pixels: geometry.packet_pixels(),
            compressor,
            photons: if calibrated { vec![0.0; rows * cols] } else { Vec::new() },
            stored: if calibrated { vec![0; stored_frame_bytes(pixels, geometry, &image)] } else { Vec::new() },
            image,
            assembled,
        })
    }

    /// Compresses the frame whose raw pixels are `raw` into `out` (replaced), converting them first
    /// with `photons` (and `converter`, the prepared one when `None`) when photons are stored; a
    /// partial frame's packet mask (`lost`: `Some` of the packets present) flags the pixels of the
    /// packets that never came. Raw values are stored as they are (the files keep the mask).
    pub fn encode(
        &mut self,
        photons: &Photons,
        converter: Option<&PhotonConverter>,
        raw: &[u16],
        lost: Option<&[u64]>,
        out: &mut Vec<u8>,
    ) {
        let data: &[u8] = match self.pixels {
            StoredPixels::Raw => raw.as_bytes(),
            StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 => {
                let panel_pixels = self.panel_pixels;
                let image_pixels = self.image.pixels();
                for (panel, panel_raw) in raw.chunks_exact(panel_pixels).take(self.panels).enumerate() {
                    let first = panel * panel_pixels;
                    photons.convert(converter, panel_raw, first, &mut self.photons);
                    if let Some(present) = lost {
                        flag_lost(&self.packet_pixels, present, first, &mut self.photons);
                    }
                    let values = if self.image.is_split() {
                        self.image.assemble(&self.photons, &mut self.assembled);
                        &self.assembled
                    } else {
                        &self.photons
                    };
                    let at = panel * image_pixels * 4;
                    let Some(dest) = self.stored.get_mut(at..at + image_pixels * 4) else { break };
                    for (d, &p) in dest.chunks_exact_mut(4).zip(values) {
                        let bytes = match self.pixels {
                            // A flagged pixel is the format's flagged value (NXmx and DECTRIS: the
                            // type's largest), not a count.
                            StoredPixels::PhotonsU32 if p.is_nan() => FLAGGED_U32.to_le_bytes(),
                            // Rounded to whole photons; noise below zero is no photon.
                            StoredPixels::PhotonsU32 => (p.round().max(0.0) as u32).to_le_bytes(),
                            // NaN, as the converter flags it.
                            _ => p.to_le_bytes(),
                        };
                        d.copy_from_slice(&bytes);
                    }
                }
                &self.stored
            }
        };
        self.compressor.compress(data, self.elem_size, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::{CalibrationMaps, SharedConverter};
    use crate::codec::bitshuffle::decompress;

    #[test]
    fn photons_are_stored_rounded_and_raw_values_as_they_are() {
        let geometry = DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap();
        let (_, rows, cols) = geometry.panels();
        let maps = CalibrationMaps::uniform(1, rows, cols, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
        let photons = Photons::Integrating(SharedConverter::new(PhotonConverter::new(&maps, 10.0)));
        // 2.6 photons in pixel 0, below the pedestal (negative photons) in pixel 1.
        let mut raw = vec![3000u16; rows * cols];
        (raw[0], raw[1]) = (3000 + 1040, 2900);
        let mut chunk = Vec::new();
        let as_sent = PanelImage::for_geometry(&geometry, false);
        FrameEncoder::new(StoredPixels::PhotonsU32, &geometry, &as_sent)
            .unwrap()
            .encode(&photons, None, &raw, None, &mut chunk);
        let whole = decompress(&chunk, 4).unwrap();
        assert_eq!(whole.len(), rows * cols * 4);
        let at = |i: usize| u32::from_le_bytes(whole[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!((at(0), at(1), at(2)), (3, 0, 0));
        // Raw values stay as sent even when the detector's image is assembled.
        let assembled = PanelImage::for_geometry(&geometry, true);
        FrameEncoder::new(StoredPixels::Raw, &geometry, &assembled)
            .unwrap()
            .encode(&photons, None, &raw, None, &mut chunk);
        assert_eq!(decompress(&chunk, 2).unwrap(), raw.as_bytes());
        assert!(chunk.len() <= chunk_bound(StoredPixels::Raw, &geometry, &assembled));
    }

    #[test]
    fn photons_are_stored_in_the_assembled_module_when_configured() {
        let geometry = DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap();
        let (_, rows, cols) = geometry.panels();
        let maps = CalibrationMaps::uniform(1, rows, cols, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
        let photons = Photons::Integrating(SharedConverter::new(PhotonConverter::new(&maps, 10.0)));
        // 8 photons in the double pixel at the border of chips 0 and 1, 5 inside chip 1.
        let mut raw = vec![3000u16; rows * cols];
        (raw[255], raw[300]) = (3000 + 8 * 400, 3000 + 5 * 400);
        let image = PanelImage::for_geometry(&geometry, true);
        let mut chunk = Vec::new();
        FrameEncoder::new(StoredPixels::PhotonsF32, &geometry, &image)
            .unwrap()
            .encode(&photons, None, &raw, None, &mut chunk);
        let whole = decompress(&chunk, 4).unwrap();
        assert_eq!(whole.len(), 514 * 1030 * 4);
        let at = |i: usize| f32::from_le_bytes(whole[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!((at(255), at(256), at(300 + 2)), (4.0, 4.0, 5.0));
        assert!(chunk.len() <= chunk_bound(StoredPixels::PhotonsF32, &geometry, &image));
    }
}
