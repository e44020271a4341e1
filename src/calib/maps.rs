//! Per-pixel pedestal and gain maps and their file format (little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `HGCALIB1` |
//! | 4 × u32 | modules, rows per module, columns per module, gain stages (3) |
//! | f32 × stages × pixels | pedestal in ADU, stage-major, then module, row, column |
//! | f32 × stages × pixels | gain in ADU/keV, same order (negative for G1 and G2, which count down) |
//!
//! Pixels are in frame order (`detector::geometry`): module-major, each module's rows top to bottom.

use std::io::Write;
use std::path::{Path, PathBuf};

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

pub const GAIN_STAGES: usize = 3;
const MAGIC: [u8; 8] = *b"HGCALIB1";

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct FileHeader {
    magic: [u8; 8],
    modules: U32,
    rows: U32,
    cols: U32,
    stages: U32,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("cannot read calibration {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write calibration {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a calibration file ({reason})")]
    Format { path: PathBuf, reason: String },
    #[error("calibration {path} is for {found} pixels, the detector has {expected}")]
    Size { path: PathBuf, found: usize, expected: usize },
    #[error(
        "{path}: {wrong} of {pixels} G{stage} gains are not {expected} (pixel {first_pixel}: {first_value}); JUNGFRAU counts up in G0 and down in G1 and G2 (set calibration.gains_count_up = true for a detector that counts up in every stage)"
    )]
    Sign {
        path: PathBuf,
        stage: usize,
        wrong: usize,
        pixels: usize,
        first_pixel: usize,
        first_value: f32,
        expected: &'static str,
    },
}

/// Pedestal and gain per gain stage and pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationMaps {
    pub modules: usize,
    pub rows: usize,
    pub cols: usize,
    pedestal_adu: Vec<f32>,
    gain_adu_per_kev: Vec<f32>,
}

impl CalibrationMaps {
    /// The same constants for every pixel, per stage.
    pub fn uniform(modules: usize, rows: usize, cols: usize, pedestal: [f32; 3], gain: [f32; 3]) -> Self {
        let n = modules * rows * cols;
        let spread = |v: [f32; 3]| v.iter().flat_map(|&x| std::iter::repeat_n(x, n)).collect();
        CalibrationMaps { modules, rows, cols, pedestal_adu: spread(pedestal), gain_adu_per_kev: spread(gain) }
    }

    /// Maps from arrays laid out stage-major, as in the file.
    pub fn from_arrays(
        modules: usize,
        rows: usize,
        cols: usize,
        pedestal_adu: Vec<f32>,
        gain_adu_per_kev: Vec<f32>,
    ) -> Self {
        let n = GAIN_STAGES * modules * rows * cols;
        assert!(pedestal_adu.len() == n && gain_adu_per_kev.len() == n, "maps of {n} values");
        CalibrationMaps { modules, rows, cols, pedestal_adu, gain_adu_per_kev }
    }

    pub fn pixels(&self) -> usize {
        self.modules * self.rows * self.cols
    }

    pub fn pedestal(&self, stage: usize) -> &[f32] {
        let n = self.pixels();
        &self.pedestal_adu[stage * n..(stage + 1) * n]
    }

    pub fn gain(&self, stage: usize) -> &[f32] {
        let n = self.pixels();
        &self.gain_adu_per_kev[stage * n..(stage + 1) * n]
    }

    /// Writes the maps in the documented format.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), CalibrationError> {
        let err = |source| CalibrationError::Write { path: path.into(), source };
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
        let header = FileHeader {
            magic: MAGIC,
            modules: (self.modules as u32).into(),
            rows: (self.rows as u32).into(),
            cols: (self.cols as u32).into(),
            stages: (GAIN_STAGES as u32).into(),
        };
        out.write_all(header.as_bytes()).map_err(err)?;
        for v in self.pedestal_adu.iter().chain(&self.gain_adu_per_kev) {
            out.write_all(&v.to_le_bytes()).map_err(err)?;
        }
        out.flush().map_err(err)
    }

    /// Reads maps and checks they fit a detector of `pixels` pixels.
    ///
    /// # Errors
    /// Unreadable, not in the format, or for another pixel count.
    pub fn load(path: &Path, pixels: usize) -> Result<Self, CalibrationError> {
        Self::load_modules(path, pixels, None)
    }

    /// Reads maps of a whole detector and keeps `modules` of it, in that order (a cluster node's
    /// share; `None` keeps every module), and checks they fit a detector of `pixels` pixels.
    ///
    /// # Errors
    /// Unreadable, not in the format, a module the file does not hold, or another pixel count.
    pub fn load_modules(path: &Path, pixels: usize, keep: Option<&[usize]>) -> Result<Self, CalibrationError> {
        let bytes = std::fs::read(path).map_err(|source| CalibrationError::Read { path: path.into(), source })?;
        let format = |reason: String| CalibrationError::Format { path: path.into(), reason };
        let (header, body) =
            FileHeader::ref_from_prefix(&bytes).map_err(|_| format("shorter than its header".into()))?;
        if header.magic != MAGIC {
            return Err(format(format!("magic {:?}", header.magic)));
        }
        if header.stages.get() as usize != GAIN_STAGES {
            return Err(format(format!("{} gain stages, expected {GAIN_STAGES}", header.stages.get())));
        }
        let (modules, rows, cols) =
            (header.modules.get() as usize, header.rows.get() as usize, header.cols.get() as usize);
        let found = modules
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(cols))
            .ok_or_else(|| format("dimensions overflow".into()))?;
        if found == 0 {
            return Err(format("maps of no pixels".into()));
        }
        let values = found.checked_mul(2 * GAIN_STAGES).ok_or_else(|| format("dimensions overflow".into()))?;
        let expected = values.checked_mul(4).ok_or_else(|| format("dimensions overflow".into()))?;
        if body.len() != expected {
            return Err(format(format!("{} bytes of maps, expected {expected}", body.len())));
        }
        let all: Vec<f32> = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let (ped, gain) = all.split_at(GAIN_STAGES * found);
        let (modules, ped, gain) = match keep {
            None => (modules, ped.to_vec(), gain.to_vec()),
            Some(keep) => {
                if let Some(&m) = keep.iter().find(|&&m| m >= modules) {
                    return Err(format(format!("holds {modules} modules, not module {m}")));
                }
                let module = rows * cols;
                let select = |maps: &[f32]| -> Vec<f32> {
                    maps.chunks_exact(found)
                        .flat_map(|stage| keep.iter().flat_map(move |&m| &stage[m * module..(m + 1) * module]))
                        .copied()
                        .collect()
                };
                (keep.len(), select(ped), select(gain))
            }
        };
        if modules * rows * cols != pixels {
            return Err(CalibrationError::Size { path: path.into(), found: modules * rows * cols, expected: pixels });
        }
        Ok(Self::from_arrays(modules, rows, cols, ped, gain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        let mut maps = CalibrationMaps::uniform(2, 2, 3, [1.0, 2.0, 3.0], [4.0, -5.0, -6.0]);
        maps.pedestal_adu[7] = 42.5;
        maps.save(&path).unwrap();
        assert_eq!(CalibrationMaps::load(&path, 12).unwrap(), maps);
        // A share of the modules, in the order asked for.
        let share = CalibrationMaps::load_modules(&path, 12, Some(&[1, 0])).unwrap();
        let module = maps.rows * maps.cols;
        for stage in 0..GAIN_STAGES {
            let (all, part) = (maps.pedestal(stage), share.pedestal(stage));
            assert_eq!(&part[..module], &all[all.len() - module..]);
            assert_eq!(&part[module..], &all[..module]);
            assert_eq!(&share.gain(stage)[module..], &maps.gain(stage)[..module]);
        }
        assert_eq!(share.pedestal(0)[1], 42.5);
        assert!(CalibrationMaps::load_modules(&path, 6, Some(&[9])).is_err());
        assert_eq!(CalibrationMaps::load_modules(&path, 6, Some(&[1])).unwrap().pedestal(0)[1], 42.5);
        assert!(matches!(CalibrationMaps::load(&path, 13), Err(CalibrationError::Size { found: 12, .. })));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(CalibrationMaps::load(&path, 12), Err(CalibrationError::Format { .. })));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(CalibrationMaps::load(&path, 12), Err(CalibrationError::Format { .. })));
    }

    #[test]
    fn dimensions_whose_byte_count_wraps_are_refused() {
        // 1 824 726 041 × 37 171 × 33 996 = 2^61 + 4 pixels: 6 maps of 4 bytes each wrap to 96
        // bytes, which this body has; unchecked, the maps were then cut past their end.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        let mut bytes = MAGIC.to_vec();
        for v in [1_824_726_041u32, 37_171, 33_996, GAIN_STAGES as u32] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&[0; 96]);
        std::fs::write(&path, &bytes).unwrap();
        let refused = CalibrationMaps::load(&path, 12);
        assert!(matches!(refused, Err(CalibrationError::Format { .. })), "{refused:?}");
    }
}
