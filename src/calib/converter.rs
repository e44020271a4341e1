//! The conversion of JUNGFRAU's raw values to photons, prepared once from the calibration maps at one
//! photon energy, and the pass-through of photon counters.

use super::maps::CalibrationMaps;
#[cfg(test)]
use super::mask;
use super::mask::PixelMask;
use super::switched_simd::{self, SwitchedRun};

/// What a pixel reads in a frame where it has no photon count: saturated (G1 or G2 at ADC 0, the
/// analogue chain at its end) or an invalid gain code, as Jungfraujoch flags them frame by frame; and
/// a pixel whose packet never arrived. Comparisons with it are false, so no finder takes it for a spot
/// or a background; the storing sinks write it as their format's flagged value.
pub const FLAGGED: f32 = f32::NAN;
// The vectorised switched pass writes `f32::NAN`'s bits for a flagged pixel (`switched_simd`).
const _: () = assert!(FLAGGED.to_bits() == f32::NAN.to_bits());

/// Converts raw frames to photons with a prepared calibration.
///
/// G0 — where almost every pixel sits — is stored compactly for the streaming pass: the pedestal as a
/// `u16` in quarter ADU (0.25 ADU is 1/2000 of a 12 keV photon) and one `f32` factor, 6 bytes a pixel
/// instead of 8, since on a multi-module detector this pass is bound by memory bandwidth. The switched
/// stages take 4 bytes a pixel each: the pedestal in quarter ADU and the factor as an IEEE half, so a
/// frame whose pixels all switched reads 8 bytes of maps a pixel, not 16. A half keeps 11 significant
/// bits, a relative error of at most [`SWITCHED_RELATIVE_ERROR`]: at the top of G2's range (~10⁴
/// photons a pixel) under 5 photons, where the shot noise is 100. Jungfraujoch's own FPGA converts
/// with maps of the same size: quarter-ADU pedestals and 16-bit fixed-point factors.
#[derive(Clone)]
pub struct PhotonConverter {
    g0_pedestal_quarter_adu: Vec<u16>,
    /// Shared between converters that differ only in their G0 pedestal (pedestal tracking).
    g0_photons_per_quarter_adu: std::sync::Arc<[f32]>,
    /// G1's and G2's pedestals in quarter ADU, then their photons per quarter ADU as half floats:
    /// four maps of `pixels` each.
    switched: std::sync::Arc<[u16]>,
    pixels: usize,
}

/// The largest relative error of a switched pixel's conversion from its factor's rounding to half
/// precision (half an ulp of an 11-bit significand); the pedestal's rounding to a quarter ADU adds at
/// most 0.125 ADU.
pub const SWITCHED_RELATIVE_ERROR: f32 = 1.0 / 2048.0;

/// Where each switched map starts in [`PhotonConverter`]'s `switched`, in units of `pixels`.
const G1_PEDESTAL: usize = 0;
const G2_PEDESTAL: usize = 1;
const G1_FACTOR: usize = 2;
const G2_FACTOR: usize = 3;

impl PhotonConverter {
    /// Prepares the conversion at one photon energy, masked pixels reading 0 photons: their factors
    /// are 0, so the mask costs nothing per frame.
    pub fn with_mask(maps: &CalibrationMaps, photon_energy_kev: f32, mask: &PixelMask) -> PhotonConverter {
        let conv = Self::new(maps, photon_energy_kev);
        let (n, mut g0, mut switched) = (conv.pixels, conv.g0_photons_per_quarter_adu.to_vec(), conv.switched.to_vec());
        for (i, &flag) in mask.flags().iter().enumerate().take(n) {
            if flag != 0 {
                g0[i] = 0.0;
                for factor in [G1_FACTOR, G2_FACTOR] {
                    switched[factor * n + i] = half::f16::ZERO.to_bits();
                }
            }
        }
        PhotonConverter { g0_photons_per_quarter_adu: g0.into(), switched: switched.into(), ..conv }
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
        let mut switched = vec![0u16; 4 * pixels];
        for (stage, (pedestal_at, factor_at)) in
            [(G1_PEDESTAL, G1_FACTOR), (G2_PEDESTAL, G2_FACTOR)].into_iter().enumerate()
        {
            let stage = stage + 1;
            switched[pedestal_at * pixels..][..pixels].copy_from_slice(&quarter_adu(maps.pedestal(stage)));
            for (out, gain) in switched[factor_at * pixels..][..pixels].iter_mut().zip(maps.gain(stage)) {
                *out = half_factor(0.25 / (gain * photon_energy_kev));
            }
        }
        PhotonConverter { g0_pedestal_quarter_adu, g0_photons_per_quarter_adu, switched: switched.into(), pixels }
    }

    pub fn pixels(&self) -> usize {
        self.pixels
    }

    /// Photons of the pixels `raw` (JUNGFRAU encoding) into `out`, where `raw[0]` is pixel
    /// `first_pixel` of the maps; returns how many pixels read [`FLAGGED`] (saturated, invalid gain
    /// code). Pixels beyond the maps or `out` are left alone.
    pub fn jungfrau_photons(&self, raw: &[u16], first_pixel: usize, out: &mut [f32]) -> usize {
        let n = self.pixels.saturating_sub(first_pixel).min(raw.len()).min(out.len());
        let map = |at: usize| &self.switched[at * self.pixels + first_pixel..][..n];
        let frame = SwitchedRun {
            raw: &raw[..n],
            g0_pedestal: &self.g0_pedestal_quarter_adu[first_pixel..first_pixel + n],
            g0_factor: &self.g0_photons_per_quarter_adu[first_pixel..first_pixel + n],
            g1_pedestal: map(G1_PEDESTAL),
            g2_pedestal: map(G2_PEDESTAL),
            g1_factor: map(G1_FACTOR),
            g2_factor: map(G2_FACTOR),
        };
        convert_jungfrau(&frame, &mut out[..n])
    }
}

/// A factor as a half float's bits, finite: a gain too close to zero for a half (refused at load in
/// any case) reads as the largest half.
fn half_factor(factor: f32) -> u16 {
    half::f16::from_f32(factor.clamp(-65504.0, 65504.0)).to_bits()
}

/// A half float's value, exact for every finite half, in a few integer operations that vectorise:
/// its exponent and significand moved into an `f32`'s place and rescaled by 2¹¹² (the difference of
/// the two formats' exponent biases), its sign moved across.
#[inline(always)]
fn from_half(bits: u16) -> f32 {
    let bits = u32::from(bits);
    let magnitude = f32::from_bits((bits & 0x7fff) << 13) * f32::from_bits((127 + 112) << 23);
    f32::from_bits(magnitude.to_bits() | ((bits & 0x8000) << 16))
}

/// Pedestals in quarter ADU, as the G0 pass stores them.
fn quarter_adu(pedestal_adu: &[f32]) -> Vec<u16> {
    pedestal_adu.iter().map(|p| (p * 4.0).round().clamp(0.0, 65535.0) as u16).collect()
}

/// Which stages a chunk of pixels holds, as the conversion treats them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    G0Only,
    G0AndSwitched,
    SwitchedOnly,
}

/// The gain codes of each 64-pixel chunk are looked at first, and consecutive chunks of the same mix
/// are converted together, so each loop runs long enough to pay for its vector set-up. Chunks with a
/// G0 pixel are converted as if they were all G0 — a straight loop the compiler vectorises — and where
/// they hold switched pixels, converted again there, branch-free (`fix_switched`), which is also where
/// saturated and invalid pixels are flagged; chunks without a G0 pixel read no G0 map at all. Compiled
/// for AVX2 as well as the baseline and chosen at run time by the CPU's features. Returns the pixels
/// flagged.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx2"))]
fn convert_jungfrau<'m>(frame: &SwitchedRun<'m>, out: &mut [f32]) -> usize {
    const CHUNK: usize = 64;
    // A run's output stays in the first-level cache between its G0 pass and its switched pass.
    const RUN: usize = 32 * CHUNK;
    let (raw, n) = (frame.raw, out.len().min(frame.raw.len()));
    let mix_at = |at: usize| {
        let chunk = &raw[at..(at + CHUNK).min(n)];
        let (codes, lowest_code) = chunk.iter().fold((0u16, 3u16), |(any, low), &r| (any | r, low.min(r >> 14)));
        match (lowest_code, codes & 0xc000) {
            (0, 0) => Mix::G0Only,
            (0, _) => Mix::G0AndSwitched,
            _ => Mix::SwitchedOnly,
        }
    };
    let mut flagged = 0;
    let mut start = 0;
    let mut mix = if n > 0 { mix_at(0) } else { Mix::G0Only };
    while start < n {
        let mut end = (start + CHUNK).min(n);
        let mut next = mix;
        while end < n {
            next = mix_at(end);
            if next != mix || end - start >= RUN {
                break;
            }
            end = (end + CHUNK).min(n);
        }
        let (o, run) = (&mut out[start..end], frame.part(start..end));
        // The vectorised pass converts G0 pixels of a mixed run too; the portable one after the G0 pass.
        let (done, simd_flagged) = match mix {
            Mix::G0Only => (0, 0),
            Mix::G0AndSwitched => switched_simd::convert_prefix::<true>(&run, o),
            Mix::SwitchedOnly => switched_simd::convert_prefix::<false>(&run, o),
        };
        if mix != Mix::SwitchedOnly {
            let (r, p, g) = (&run.raw[done..], &run.g0_pedestal[done..], &run.g0_factor[done..]);
            for (((o, &r), &p), &g) in o[done..].iter_mut().zip(r).zip(p).zip(g) {
                *o = (f32::from((r & 0x3fff) << 2) - f32::from(p)) * g;
            }
        }
        flagged += (simd_flagged
            + match mix {
                Mix::G0Only => 0,
                Mix::G0AndSwitched => convert_switched_portable::<true>(&run, o, done),
                Mix::SwitchedOnly => convert_switched_portable::<false>(&run, o, done),
            }) as usize;
        (start, mix) = (end, next);
    }
    flagged
}

/// The switched pixels of `run` converted from pixel `from` on, in portable code: each pixel's stage's
/// pedestal and factor selected by its gain code (as bit masks, so no branch a pixel and a cost that
/// does not depend on how the stages mix) and converted once. With `MIXED`, G0 pixels keep what the
/// G0 pass wrote; without, `out` is only written. Returns the pixels flagged.
fn convert_switched_portable<const MIXED: bool>(run: &SwitchedRun<'_>, out: &mut [f32], from: usize) -> u32 {
    let SwitchedRun { raw, g1_pedestal: p1, g2_pedestal: p2, g1_factor: f1, g2_factor: f2, .. } = *run;
    let n = [p1.len(), p2.len(), f1.len(), f2.len()].into_iter().fold(out.len().min(raw.len()), usize::min);
    let mut flagged = 0u32;
    for i in from..n {
        let (code, adc) = (raw[i] >> 14, raw[i] & 0x3fff);
        // Code 2 is no stage; G1 or G2 at ADC 0 is saturated.
        let bad = (code == 2) | ((code != 0) & (adc == 0));
        // Selects written as masks: the compiler keeps them selects, where `if` may become a branch.
        let g1 = u16::from(code == 1).wrapping_neg();
        let pedestal = (p1[i] & g1) | (p2[i] & !g1);
        let factor = from_half((f1[i] & g1) | (f2[i] & !g1));
        let value = ((f32::from(adc << 2) - f32::from(pedestal)) * factor).to_bits();
        let value = if MIXED {
            let g0 = u32::from(code == 0).wrapping_neg();
            (out[i].to_bits() & g0) | (value & !g0)
        } else {
            value
        };
        let bad_mask = u32::from(bad).wrapping_neg();
        out[i] = f32::from_bits((FLAGGED.to_bits() & bad_mask) | (value & !bad_mask));
        flagged += u32::from(bad);
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
        assert!((out[2] - 1.0).abs() < 1e-6 && (out[3] - 20.0).abs() <= 20.0 * SWITCHED_RELATIVE_ERROR);
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
                // Each stage to its pedestal's rounding to a quarter ADU; a switched one to its half
                // factor besides.
                let allowed = if code == 0 {
                    1e-3 * photons.abs().max(1.0)
                } else {
                    SWITCHED_RELATIVE_ERROR * photons.abs() + 0.125 / (gain[at] * 12.4).abs() + 1e-5
                };
                assert!((o - photons).abs() <= allowed, "pixel {k}: {r:#06x} → {o}, not {photons}");
            }
            assert_eq!(flagged, expected_flagged);
        }
    }

    /// The vectorised switched pass gives the portable one's results (after the G0 pass, where the run
    /// mixes stages) to the bit, flags included, for any mix of codes and maps, in runs that are and are not multiples of its sixteen pixels. On a
    /// CPU without AVX2 and F16C it does nothing, which is said.
    #[test]
    fn the_vectorised_switched_pass_matches_the_portable_one_to_the_bit() {
        let mut rng = crate::rng::Rng::new(5, 5);
        let halves = |n: usize, rng: &mut crate::rng::Rng| -> Vec<u16> {
            (0..n).map(|_| half_factor(-(0.01 + rng.uniform() as f32) * 0.3)).collect()
        };
        for round in 0..60 {
            let n = 16 * (1 + rng.below(20)) + [0, 1, 7, 15][round % 4];
            let raw: Vec<u16> = (0..n)
                .map(|_| {
                    let adc = if rng.below(10) == 0 { 0 } else { rng.below(1 << 14) as u16 };
                    ((rng.below(4) as u16) << 14) | adc
                })
                .collect();
            let pedestals: Vec<Vec<u16>> =
                (0..3).map(|_| (0..n).map(|_| rng.below(1 << 16) as u16).collect()).collect();
            let factors = [halves(n, &mut rng), halves(n, &mut rng)];
            let g0_factor: Vec<f32> = (0..n).map(|_| 0.0005 + 0.0001 * rng.uniform() as f32).collect();
            let run = SwitchedRun {
                raw: &raw,
                g0_pedestal: &pedestals[2],
                g0_factor: &g0_factor,
                g1_pedestal: &pedestals[0],
                g2_pedestal: &pedestals[1],
                g1_factor: &factors[0],
                g2_factor: &factors[1],
            };
            // The portable mixed pass follows the G0 pass; the vectorised one does both.
            let g0_pass: Vec<f32> = (0..n)
                .map(|i| (f32::from((raw[i] & 0x3fff) << 2) - f32::from(pedestals[2][i])) * g0_factor[i])
                .collect();
            let garbage: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            let (mut simd, mut portable) = ([garbage.clone(), garbage.clone()], [g0_pass, garbage]);
            let (done, simd_flagged) = switched_simd::convert_prefix::<true>(&run, &mut simd[0]);
            let portable_flagged = convert_switched_portable::<true>(&run, &mut portable[0], 0);
            let (done_alone, alone_flagged) = switched_simd::convert_prefix::<false>(&run, &mut simd[1]);
            let portable_alone = convert_switched_portable::<false>(&run, &mut portable[1], 0);
            if done == 0 {
                eprintln!("this CPU has no AVX2 and F16C: only the portable pass runs here");
                return;
            }
            assert_eq!((done, done_alone), (n / 16 * 16, n / 16 * 16));
            let flagged_in = |out: &[f32]| out[..done].iter().filter(|v| v.is_nan()).count() as u32;
            assert_eq!(simd_flagged, flagged_in(&portable[0]), "round {round}");
            assert_eq!(alone_flagged, flagged_in(&portable[1]), "round {round}");
            assert!(portable_flagged >= simd_flagged && portable_alone >= alone_flagged);
            for (which, (s, p)) in simd.iter().zip(&portable).enumerate() {
                for i in 0..done {
                    assert_eq!(
                        s[i].to_bits(),
                        p[i].to_bits(),
                        "round {round}, pass {which}, pixel {i}: {:#06x}",
                        raw[i]
                    );
                }
            }
        }
    }

    /// Every finite half, normal or not, reads back as the value it stands for.
    #[test]
    fn halves_read_back_exactly() {
        for bits in 0..=u16::MAX {
            let reference = half::f16::from_bits(bits);
            if reference.is_finite() {
                assert_eq!(from_half(bits), reference.to_f32(), "{bits:#06x}");
            }
        }
        assert_eq!(from_half(half_factor(1e9)), 65504.0, "a factor past a half's range is clamped");
    }

    #[test]
    fn gain_stages_convert_with_their_own_maps_and_saturated_or_invalid_pixels_are_flagged() {
        let maps = CalibrationMaps::uniform(1, 1, 6, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
        let conv = PhotonConverter::new(&maps, 10.0);
        let raw = [3400u16, (1 << 14) | 14210, (3 << 14) | 13989, (2 << 14) | 5000, 3 << 14, 1 << 14];
        let mut out = [0.0f32; 6];
        assert_eq!(conv.jungfrau_photons(&raw, 0, &mut out), 3, "three pixels flagged");
        assert!((out[0] - 1.0).abs() < 1e-6, "G0: 400 ADU at 40 ADU/keV = 10 keV = 1 photon");
        let close = |value: f32, photons: f32| (value - photons).abs() <= SWITCHED_RELATIVE_ERROR * photons;
        assert!(close(out[1], 20.0), "G1: -290 ADU at -1.45 ADU/keV = 200 keV: {}", out[1]);
        assert!(close(out[2], 10.0), "G2: -11 ADU at -0.11 ADU/keV = 100 keV: {}", out[2]);
        assert!(out[3].is_nan(), "invalid gain code 2");
        assert!(out[4].is_nan() && out[5].is_nan(), "G2 and G1 at ADC 0: saturated");
        // A frame in G0 only flags nothing, whatever its values.
        assert_eq!(conv.jungfrau_photons(&[0, 0x3fff, 3000, 3400, 1, 2], 0, &mut out), 0);
    }
}
