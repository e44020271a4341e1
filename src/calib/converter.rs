//! The conversion of JUNGFRAU's raw values to photons, prepared once from the calibration maps at one
//! photon energy, and the pass-through of photon counters.

use super::maps::{CalibrationMaps, GAIN_STAGES};
#[cfg(test)]
use super::mask;
use super::mask::PixelMask;

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
    /// G1's, then G2's, pixel by pixel.
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
                for stage in 0..GAIN_STAGES - 1 {
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
        let g0_pedestal_quarter_adu = quarter_adu(maps.pedestal(0));
        let g0_photons_per_quarter_adu = maps.gain(0).iter().map(|g| 0.25 / (g * photon_energy_kev)).collect();
        let mut switched_pedestal_adu = vec![0.0; (GAIN_STAGES - 1) * pixels];
        let mut switched_photons_per_adu = vec![0.0; (GAIN_STAGES - 1) * pixels];
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

/// Each chunk's gain codes are looked at first. A chunk with a G0 pixel is converted as if it were all
/// G0 — a straight loop the compiler vectorises — and a chunk that holds switched pixels is then
/// converted again where they are, branch-free (`fix_switched`), which is also where saturated and
/// invalid pixels are flagged; a chunk without a G0 pixel skips the G0 pass and its maps. Compiled
/// for AVX2 as well as the baseline and chosen at run time by the CPU's features. Returns the pixels
/// flagged.
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
        // A chunk where no pixel is in G0 (a bright region) reads no G0 map at all.
        let (codes, lowest_code) = r.iter().fold((0u16, 3u16), |(any, low), &r| (any | r, low.min(r >> 14)));
        if lowest_code == 0 {
            for (((o, &r), &p), &g) in o.iter_mut().zip(r).zip(p).zip(g) {
                *o = (f32::from((r & 0x3fff) << 2) - f32::from(p)) * g;
            }
        }
        if codes & 0xc000 != 0 {
            flagged += fix_switched(o, r, switched.first_pixel + c * CHUNK, switched);
        }
    }
    flagged
}

/// Converts the switched pixels of one chunk that starts at pixel `base`: every pixel's value in G1
/// and in G2 computed and the one its gain code asks for selected, without a branch a pixel — so the
/// cost does not depend on how the stages mix. (A loop of its own for chunks without G2 was measured
/// slower than this one.) Returns the pixels flagged.
#[inline(always)]
fn fix_switched(out: &mut [f32], raw: &[u16], base: usize, switched: &SwitchedMaps<'_>) -> usize {
    let n = out.len().min(raw.len());
    // G1's maps, then G2's.
    let stage = |s: usize| {
        let at = s * switched.pixels + base;
        (switched.pedestal_adu.get(at..at + n), switched.photons_per_adu.get(at..at + n))
    };
    let ((Some(p1), Some(g1)), (Some(p2), Some(g2))) = (stage(0), stage(1)) else { return 0 };
    let (out, raw) = (&mut out[..n], &raw[..n]);
    let mut flagged = 0u32;
    for i in 0..n {
        let (code, adc) = (raw[i] >> 14, raw[i] & 0x3fff);
        // Code 2 is no stage; G1 or G2 at ADC 0 is saturated. Both stages' values are computed and
        // one selected: selects of values vectorise, where a branch or a select of loads does not.
        let bad = (code == 2) | ((code != 0) & (adc == 0));
        let adc = f32::from(adc);
        let (g1_value, g2_value) = ((adc - p1[i]) * g1[i], (adc - p2[i]) * g2[i]);
        let value = if code == 1 { g1_value } else { g2_value };
        let value = if code == 0 { out[i] } else { value };
        out[i] = if bad { FLAGGED } else { value };
        flagged += u32::from(bad);
    }
    flagged as usize
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

    /// Any mix of stages, per pixel maps of their own, chunks with and without G2, a first pixel
    /// inside the maps: each pixel as its own stage's pedestal and gain give it.
    #[test]
    fn every_mix_of_stages_converts_as_each_pixel_alone() {
        let mut rng = crate::rng::Rng::new(3, 3);
        let n = 1000;
        let value = |rng: &mut crate::rng::Rng, lo: f32, spread: f32| lo + spread * rng.uniform() as f32;
        let pedestal: Vec<f32> =
            (0..3 * n).map(|i| value(&mut rng, [3000.0, 14000.0, 13500.0][i / n], 500.0)).collect();
        let gain: Vec<f32> =
            (0..3 * n).map(|i| value(&mut rng, [40.0, -1.6, -0.13][i / n], 0.1 * [40.0, 1.6, 0.13][i / n])).collect();
        let maps = CalibrationMaps::from_arrays(1, 1, n, pedestal.clone(), gain.clone());
        let conv = PhotonConverter::new(&maps, 12.4);
        for round in 0..40 {
            // Rounds alternate between chunks with G2 pixels and chunks of G0 and G1 only.
            let codes: &[u16] = if round % 2 == 0 { &[0, 1, 2, 3] } else { &[0, 0, 1] };
            let first = rng.below(100);
            let raw: Vec<u16> = (0..n - first)
                .map(|_| {
                    let adc = if rng.below(20) == 0 { 0 } else { rng.below(1 << 14) as u16 };
                    (codes[rng.below(codes.len())] << 14) | adc
                })
                .collect();
            let mut out = vec![0f32; raw.len()];
            let flagged = conv.jungfrau_photons(&raw, first, &mut out);
            let mut expected_flagged = 0;
            for (k, (&r, &o)) in raw.iter().zip(&out).enumerate() {
                let (code, adc) = (usize::from(r >> 14), f32::from(r & 0x3fff));
                if code == 2 || (code != 0 && r & 0x3fff == 0) {
                    assert!(o.is_nan(), "pixel {k}: {r:#06x} → {o}");
                    expected_flagged += 1;
                    continue;
                }
                let at = [0, 1, 0, 2][code] * n + first + k;
                let photons = (adc - pedestal[at]) / (gain[at] * 12.4);
                assert!(
                    (o - photons).abs() <= 1e-3 * photons.abs().max(1.0),
                    "pixel {k}: {r:#06x} → {o}, not {photons}"
                );
            }
            assert_eq!(flagged, expected_flagged);
        }
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
