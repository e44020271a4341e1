//! A dark run measured: every pixel's mean raw value (its pedestal) and spread (its noise) in each
//! gain stage it was seen in, over frames taken without beam. A normal dark run leaves every pixel in
//! G0; G1's and G2's pedestals come from runs with the gain forced, each measured the same way.
//! Written as PSI's pedestal files (`pedestal_g0.bin` …, `f32` a pixel), which `[calibration]
//! pedestal_files` reads back.

use std::path::{Path, PathBuf};

use super::maps::{CalibrationError, GAIN_STAGES};
use super::mask::{DEAD, HOT, PixelMask};
use super::psi::write_f32;

/// Gain-stage code in bits 15–14 → stage; code 2 is invalid and is not counted.
const STAGE_OF_CODE: [Option<usize>; 4] = [Some(0), Some(1), None, Some(2)];

/// Sums over a dark run's frames, per stage and pixel.
pub struct DarkRun {
    pixels: usize,
    sum: Vec<f64>,
    squares: Vec<f64>,
    count: Vec<u32>,
    frames: u64,
}

/// What a dark run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DarkMeasurement {
    /// Pedestal per stage and pixel, ADU; 0 where the pixel was never in that stage.
    pub pedestal_adu: [Vec<f32>; GAIN_STAGES],
    /// Noise (standard deviation) per stage and pixel, ADU.
    pub noise_adu: [Vec<f32>; GAIN_STAGES],
    /// Pixels seen at least once in each stage.
    pub pixels_seen: [usize; GAIN_STAGES],
    /// Frames each pixel spent in G0, and in G1 or G2.
    pub frames_in_g0: Vec<u32>,
    pub frames_switched: Vec<u32>,
    pub frames: u64,
}

/// A pixel whose G0 noise in a dark run is more than this many times the median pixel's is hot.
pub const NOISY_TIMES_MEDIAN: f32 = 5.0;

/// A dark run with fewer of its pixels in G0 than this share had its gain forced: it cannot say which
/// pixels misbehave without beam.
const NORMAL_DARK_G0_SHARE: f64 = 0.9;

/// The pixels a dark run says not to trust, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct DarkMask {
    pub mask: PixelMask,
    /// Hot: G0 noise over [`NOISY_TIMES_MEDIAN`] × the median's.
    pub noisy: usize,
    /// Hot: in G1 or G2 in a frame without beam.
    pub switched: usize,
    /// Dead: the same value in every frame, or never in a gain stage (an invalid code every time).
    pub dead: usize,
    pub median_noise_adu: f32,
}

impl DarkRun {
    pub fn new(pixels: usize) -> DarkRun {
        DarkRun {
            pixels,
            sum: vec![0.0; GAIN_STAGES * pixels],
            squares: vec![0.0; GAIN_STAGES * pixels],
            count: vec![0; GAIN_STAGES * pixels],
            frames: 0,
        }
    }

    /// Takes one frame's raw values (JUNGFRAU encoding, the detector's pixels in frame order).
    pub fn add(&mut self, raw: &[u16]) {
        for (pixel, &r) in raw.iter().enumerate().take(self.pixels) {
            if let Some(stage) = STAGE_OF_CODE[usize::from(r >> 14)] {
                let (at, adc) = (stage * self.pixels + pixel, f64::from(r & 0x3fff));
                self.sum[at] += adc;
                self.squares[at] += adc * adc;
                self.count[at] += 1;
            }
        }
        self.frames += 1;
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The pedestals and noise measured so far.
    pub fn measurement(&self) -> DarkMeasurement {
        let n = self.pixels;
        let stage = |s: usize, of: &dyn Fn(usize) -> f32| -> Vec<f32> { (s * n..(s + 1) * n).map(of).collect() };
        let mean =
            |at: usize| if self.count[at] == 0 { 0.0 } else { (self.sum[at] / f64::from(self.count[at])) as f32 };
        let noise = |at: usize| {
            if self.count[at] == 0 {
                return 0.0;
            }
            let c = f64::from(self.count[at]);
            let m = self.sum[at] / c;
            (self.squares[at] / c - m * m).max(0.0).sqrt() as f32
        };
        let seen = |s: usize| self.count[s * n..(s + 1) * n].iter().filter(|&&c| c > 0).count();
        DarkMeasurement {
            pedestal_adu: std::array::from_fn(|s| stage(s, &mean)),
            noise_adu: std::array::from_fn(|s| stage(s, &noise)),
            pixels_seen: std::array::from_fn(seen),
            frames_in_g0: self.count[..n].to_vec(),
            frames_switched: (0..n).map(|p| self.count[n + p] + self.count[2 * n + p]).collect(),
            frames: self.frames,
        }
    }
}

impl DarkMeasurement {
    /// The pixels not to trust, as a mask (`[calibration] mask_file`): dead where a pixel read the same
    /// value in every frame or never a valid gain stage, hot where it switched to G1 or G2 in a frame
    /// without beam or its noise is over [`NOISY_TIMES_MEDIAN`] × the median pixel's. `None` for a run
    /// of fewer than two frames (no noise to measure) or one whose gain was forced (most pixels out of
    /// G0).
    pub fn bad_pixels(&self) -> Option<DarkMask> {
        let pixels = self.frames_in_g0.len();
        if self.frames < 2 || (self.pixels_seen[0] as f64) < NORMAL_DARK_G0_SHARE * pixels as f64 {
            return None;
        }
        let mut measured: Vec<f32> =
            self.noise_adu[0].iter().zip(&self.frames_in_g0).filter(|&(_, &f)| f >= 2).map(|(&n, _)| n).collect();
        measured.sort_by(f32::total_cmp);
        let median = measured.get(measured.len() / 2).copied().unwrap_or(0.0);
        let mut bad =
            DarkMask { mask: PixelMask::none(pixels), noisy: 0, switched: 0, dead: 0, median_noise_adu: median };
        let seen = self.frames_in_g0.iter().zip(&self.frames_switched).zip(&self.noise_adu[0]);
        for (pixel, ((&in_g0, &switched), &noise)) in seen.enumerate() {
            if (in_g0 >= 2 && noise == 0.0) || in_g0 + switched == 0 {
                bad.mask.set(pixel, DEAD);
                bad.dead += 1;
            } else if switched > 0 {
                bad.mask.set(pixel, HOT);
                bad.switched += 1;
            } else if noise > NOISY_TIMES_MEDIAN * median {
                bad.mask.set(pixel, HOT);
                bad.noisy += 1;
            }
        }
        Some(bad)
    }

    /// Writes `pedestal_g0.bin`, `pedestal_g1.bin`, `pedestal_g2.bin` and `pedestal_g0_rms.bin` into
    /// `dir`; returns the pedestal files, in stage order.
    ///
    /// # Errors
    /// The folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, CalibrationError> {
        std::fs::create_dir_all(dir).map_err(|source| CalibrationError::Write { path: dir.into(), source })?;
        let mut written = Vec::new();
        for (stage, pedestal) in self.pedestal_adu.iter().enumerate() {
            let path = dir.join(format!("pedestal_g{stage}.bin"));
            write_f32(&path, pedestal)?;
            written.push(path);
        }
        write_f32(&dir.join("pedestal_g0_rms.bin"), &self.noise_adu[0])?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_is_averaged_over_the_frames_a_pixel_spent_in_it() {
        let mut run = DarkRun::new(3);
        run.add(&[2900, (1 << 14) | 14000, 3000]);
        run.add(&[2902, 2950, 3000]);
        run.add(&[2904, (2 << 14) | 1, (3 << 14) | 13800]);
        let m = run.measurement();
        assert_eq!(m.frames, 3);
        assert_eq!(m.pedestal_adu[0], vec![2902.0, 2950.0, 3000.0]);
        assert_eq!(m.pedestal_adu[1], vec![0.0, 14000.0, 0.0]);
        assert_eq!(m.pedestal_adu[2], vec![0.0, 0.0, 13800.0]);
        assert_eq!(m.pixels_seen, [3, 1, 1]);
        assert!((m.noise_adu[0][0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-4 && m.noise_adu[0][2] == 0.0);
        let dir = tempfile::tempdir().unwrap();
        let files = m.write(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&files[1]).unwrap().len(), 12);
        assert!(dir.path().join("pedestal_g0_rms.bin").is_file());
    }

    #[test]
    fn a_dark_run_masks_the_pixels_that_misbehave_without_beam() {
        // 100 pixels over 20 frames: pixel 3 noisy, 5 switching once, 7 stuck at one value, 9 always
        // in G2, 11 never in a valid stage; the rest with the noise of a real module (a few ADU over 2900).
        let mut run = DarkRun::new(100);
        let mut rng = crate::rng::Rng::new(3, 3);
        for frame in 0..20u16 {
            let mut raw: Vec<u16> = (0..100).map(|_| 2900 + rng.below(60) as u16).collect();
            raw[3] = 2000 + rng.below(2000) as u16;
            if frame == 4 {
                raw[5] = (1 << 14) | 14000;
            }
            raw[7] = 3100;
            raw[9] = (3 << 14) | (13000 + rng.below(50) as u16);
            raw[11] = (2 << 14) | 100;
            run.add(&raw);
        }
        let bad = run.measurement().bad_pixels().unwrap();
        let flagged: Vec<(usize, u8)> =
            bad.mask.flags().iter().enumerate().filter(|&(_, &f)| f != 0).map(|(p, &f)| (p, f)).collect();
        assert_eq!(flagged, vec![(3, HOT), (5, HOT), (7, DEAD), (9, HOT), (11, DEAD)]);
        assert_eq!((bad.noisy, bad.switched, bad.dead), (1, 2, 2));
        // A forced-gain run, or a single frame, says nothing of which pixels misbehave.
        let mut forced = DarkRun::new(10);
        forced.add(&[(1 << 14) | 14000; 10]);
        forced.add(&[(1 << 14) | 14001; 10]);
        assert_eq!(forced.measurement().bad_pixels(), None);
        let mut single = DarkRun::new(10);
        single.add(&[2900; 10]);
        assert_eq!(single.measurement().bad_pixels(), None);
    }
}
