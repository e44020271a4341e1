//! The conversion of JUNGFRAU's raw values to photons, prepared once from the calibration maps at one
//! photon energy, and the pass-through of photon counters.

use super::maps::{CalibrationMaps, GAIN_STAGES};
#[cfg(test)]
use super::mask;
use super::mask::PixelMask;

/// Gain-stage code in bits 15–14 → stage index; code 2 is invalid (flagged before the lookup) and
/// maps to stage 3, whose pedestal and gain are zero.
const STAGE_OF_CODE: [usize; 4] = [0, 1, 3, 2];

/// What a pixel reads in a frame where it has no photon count: saturated (G1 or G2 at ADC 0, the
/// analogue chain at its end) or an invalid gain code, as Jungfraujoch flags them frame by frame; and
/// a pixel whose packet never arrived. Comparisons with it are false, so no finder takes it for a spot
/// or a background; the storing sinks write it as their format's flagged value.
pub const FLAGGED: f32 = f32::NAN;

/// Converts raw frames to photons with a prepared calibration.
///
/// G0 — where almost every pixel sits — is stored compactly for the streaming pass: the pedestal as a
/// `u16` in quarter ADU (0.25 ADU is 1/2000 of a 12 keV photon) and one `f32` factor, 6 bytes a pixel
/// instead of 8, since on a multi-module detector this pass is bound by memory bandwidth. The switched
/// stages keep `f32` maps and are read only for the pixels that need them.
#[derive(Clone)]
pub struct PhotonConverter {
    g0_pedestal_quarter_adu: Vec<u16>,
    /// Shared between converters that differ only in their G0 pedestal (pedestal tracking).
    g0_photons_per_quarter_adu: std::sync::Arc<[f32]>,
    /// Stages G1, G2 and "invalid" (zeros), stage-major then pixel.
    switched_pedestal_adu: std::sync::Arc<[f32]>,
    switched_photons_per_adu: std::sync::Arc<[f32]>,
    pixels: usize,
}

impl PhotonConverter {
    /// Prepares the conversion at one photon energy, masked pixels reading 0 photons: their factors
    /// are 0, so the mask costs nothing per frame.
    pub fn with_mask(maps: &CalibrationMaps, photon_energy_kev: f32, mask: &PixelMask) -> PhotonConverter {
        let conv = Self::new(maps, photon_energy_kev);
        let (n, mut g0, mut switched) =
            (conv.pixels, conv.g0_photons_per_quarter_adu.to_vec(), conv.switched_photons_per_adu.to_vec());
        for (i, &flag) in mask.flags().iter().enumerate().take(n) {
            if flag != 0 {
                g0[i] = 0.0;
                for stage in 0..3 {
                    switched[stage * n + i] = 0.0;
                }
            }
        }
        PhotonConverter { g0_photons_per_quarter_adu: g0.into(), switched_photons_per_adu: switched.into(), ..conv }
    }

    /// The same conversion with another G0 pedestal (ADU per pixel); the rest is shared, not copied.
    pub fn with_g0_pedestal(&self, pedestal_adu: &[f32]) -> PhotonConverter {
        PhotonConverter { g0_pedestal_quarter_adu: quarter_adu(pedestal_adu), ..self.clone() }
    }

    /// Prepares the conversion at one photon energy.
    pub fn new(maps: &CalibrationMaps, photon_energy_kev: f32) -> PhotonConverter {
        let pixels = maps.pixels();
        let g0_pedestal_quarter_adu =
            maps.pedestal(0).iter().map(|p| (p * 4.0).round().clamp(0.0, 65535.0) as u16).collect();
        let g0_photons_per_quarter_adu = maps.gain(0).iter().map(|g| 0.25 / (g * photon_energy_kev)).collect();
        let mut switched_pedestal_adu = vec![0.0; 3 * pixels];
        let mut switched_photons_per_adu = vec![0.0; 3 * pixels];
        for stage in 1..GAIN_STAGES {
            let range = (stage - 1) * pixels..stage * pixels;
            switched_pedestal_adu[range.clone()].copy_from_slice(maps.pedestal(stage));
            for (out, gain) in switched_photons_per_adu[range].iter_mut().zip(maps.gain(stage)) {
                *out = 1.0 / (gain * photon_energy_kev);
            }
        }
        PhotonConverter {
            g0_pedestal_quarter_adu,
            g0_photons_per_quarter_adu,
            switched_pedestal_adu: switched_pedestal_adu.into(),
            switched_photons_per_adu: switched_photons_per_adu.into(),
            pixels,
        }
    }

    pub fn pixels(&self) -> usize {
        self.pixels
    }

    /// Photons of the pixels `raw` (JUNGFRAU encoding) into `out`, where `raw[0]` is pixel
    /// `first_pixel` of the maps; returns how many pixels read [`FLAGGED`] (saturated, invalid gain
    /// code). Pixels beyond the maps or `out` are left alone.
    pub fn jungfrau_photons(&self, raw: &[u16], first_pixel: usize, out: &mut [f32]) -> usize {
        let n = self.pixels.saturating_sub(first_pixel).min(raw.len()).min(out.len());
        let g0 = G0Maps {
            pedestal_quarter_adu: &self.g0_pedestal_quarter_adu[first_pixel..first_pixel + n],
            photons_per_quarter_adu: &self.g0_photons_per_quarter_adu[first_pixel..first_pixel + n],
        };
        let switched = SwitchedMaps {
            pedestal_adu: &self.switched_pedestal_adu,
            photons_per_adu: &self.switched_photons_per_adu,
            pixels: self.pixels,
            first_pixel,
        };
        convert_jungfrau(&raw[..n], &g0, &switched, &mut out[..n])
    }
}

/// Pedestals in quarter ADU, as the G0 pass stores them.
fn quarter_adu(pedestal_adu: &[f32]) -> Vec<u16> {
    pedestal_adu.iter().map(|p| (p * 4.0).round().clamp(0.0, 65535.0) as u16).collect()
}

struct G0Maps<'a> {
    pedestal_quarter_adu: &'a [u16],
    photons_per_quarter_adu: &'a [f32],
}

struct SwitchedMaps<'a> {
    pedestal_adu: &'a [f32],
    photons_per_adu: &'a [f32],
    pixels: usize,
    first_pixel: usize,
}

/// Each chunk is first converted as if it were all G0 — a straight loop the compiler vectorises — and
/// only a chunk that holds switched pixels is fixed up with the per-stage lookup, which is also where
/// saturated and invalid pixels are flagged (the G0 pass has no branch). Compiled for AVX2 as well as
/// the baseline and chosen at run time by the CPU's features. Returns the pixels flagged.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx2"))]
fn convert_jungfrau<'m>(raw: &[u16], g0: &G0Maps<'m>, switched: &SwitchedMaps<'m>, out: &mut [f32]) -> usize {
    const CHUNK: usize = 64;
    let chunks = out
        .chunks_mut(CHUNK)
        .zip(raw.chunks(CHUNK))
        .zip(g0.pedestal_quarter_adu.chunks(CHUNK))
        .zip(g0.photons_per_quarter_adu.chunks(CHUNK));
    let mut flagged = 0;
    for (c, (((o, r), p), g)) in chunks.enumerate() {
        let mut codes = 0u16;
        for (((o, &r), &p), &g) in o.iter_mut().zip(r).zip(p).zip(g) {
            codes |= r;
            *o = (f32::from((r & 0x3fff) << 2) - f32::from(p)) * g;
        }
        if codes & 0xc000 != 0 {
            let base = switched.first_pixel + c * CHUNK;
            for (k, (o, &r)) in o.iter_mut().zip(r).enumerate().filter(|(_, (_, r))| **r >> 14 != 0) {
                let (code, adc) = (r >> 14, r & 0x3fff);
                if code == 2 || adc == 0 {
                    *o = FLAGGED;
                    flagged += 1;
                    continue;
                }
                let at = (STAGE_OF_CODE[usize::from(code)] - 1) * switched.pixels + base + k;
                *o = (f32::from(adc) - switched.pedestal_adu[at]) * switched.photons_per_adu[at];
            }
        }
    }
    flagged
}

/// Photon-counting detectors: values are counts already; masked pixels (`mask` from this panel's
/// first pixel on, empty for none) read 0.
pub fn counts_as_photons(raw: &[u16], mask: &[u8], out: &mut [f32]) {
    for (o, &r) in out.iter_mut().zip(raw) {
        *o = f32::from(r);
    }
    for (o, _) in out.iter_mut().zip(mask).filter(|(_, m)| **m != 0) {
        *o = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_pixels_read_zero_in_every_stage() {
        let maps = CalibrationMaps::uniform(1, 1, 4, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
        let mut mask = PixelMask::none(4);
        mask.set(0, mask::HOT);
        mask.set(1, mask::DEAD);
        let conv = PhotonConverter::with_mask(&maps, 10.0, &mask);
        let raw = [3400u16, (1 << 14) | 14210, 3400, (1 << 14) | 14210];
        let mut out = [f32::NAN; 4];
        conv.jungfrau_photons(&raw, 0, &mut out);
        assert_eq!(&out[..2], &[0.0, 0.0]);
        assert!((out[2] - 1.0).abs() < 1e-6 && (out[3] - 20.0).abs() < 1e-3);
    }

    #[test]
    fn gain_stages_convert_with_their_own_maps_and_saturated_or_invalid_pixels_are_flagged() {
        let maps = CalibrationMaps::uniform(1, 1, 6, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
        let conv = PhotonConverter::new(&maps, 10.0);
        let raw = [3400u16, (1 << 14) | 14210, (3 << 14) | 13989, (2 << 14) | 5000, 3 << 14, 1 << 14];
        let mut out = [0.0f32; 6];
        assert_eq!(conv.jungfrau_photons(&raw, 0, &mut out), 3, "three pixels flagged");
        assert!((out[0] - 1.0).abs() < 1e-6, "G0: 400 ADU at 40 ADU/keV = 10 keV = 1 photon");
        assert!((out[1] - 20.0).abs() < 1e-3, "G1: -290 ADU at -1.45 ADU/keV = 200 keV");
        assert!((out[2] - 10.0).abs() < 1e-3, "G2: -11 ADU at -0.11 ADU/keV = 100 keV");
        assert!(out[3].is_nan(), "invalid gain code 2");
        assert!(out[4].is_nan() && out[5].is_nan(), "G2 and G1 at ADC 0: saturated");
        // A frame in G0 only flags nothing, whatever its values.
        assert_eq!(conv.jungfrau_photons(&[0, 0x3fff, 3000, 3400, 1, 2], 0, &mut out), 0);
    }
}
