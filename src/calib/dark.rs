//! A dark run measured: every pixel's mean raw value (its pedestal) and spread (its noise) in each
//! gain stage it was seen in, over frames taken without beam. A normal dark run leaves every pixel in
//! G0; G1's and G2's pedestals come from runs with the gain forced, each measured the same way.
//! Written as PSI's pedestal files (`pedestal_g0.bin` …, `f32` a pixel), which `[calibration]
//! pedestal_files` reads back.

use std::path::{Path, PathBuf};

use super::maps::{CalibrationError, GAIN_STAGES};
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
    pub frames: u64,
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
            frames: self.frames,
        }
    }
}

impl DarkMeasurement {
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
}
