//! The pixel mask: one byte per pixel in frame order, bit flags saying why a pixel is not to be
//! trusted. Masked pixels read as 0 photons and are never part of a spot. File format: magic
//! `HGMASK01`, u32 pixel count (little-endian), then one byte per pixel.

use std::path::{Path, PathBuf};

pub const DEAD: u8 = 1;
pub const HOT: u8 = 2;
/// Flagged by a person (shadowed by the beamstop, a known bad region).
pub const USER: u8 = 4;

const MAGIC: [u8; 8] = *b"HGMASK01";

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("cannot read mask {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write mask {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a mask file ({reason})")]
    Format { path: PathBuf, reason: String },
    #[error("mask {path} is for {found} pixels, the detector has {expected}")]
    Size { path: PathBuf, found: usize, expected: usize },
    #[error(
        "mask {path} masks {masked} of {pixels} pixels: more than half, which looks inverted (a mask flags the pixels NOT to use; in a file from a tool that marks good pixels, flip it)"
    )]
    Inverted { path: PathBuf, masked: usize, pixels: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelMask {
    flags: Vec<u8>,
}

impl PixelMask {
    /// Nothing masked.
    pub fn none(pixels: usize) -> PixelMask {
        PixelMask { flags: vec![0; pixels] }
    }

    pub fn flags(&self) -> &[u8] {
        &self.flags
    }

    pub fn set(&mut self, pixel: usize, flag: u8) {
        if let Some(f) = self.flags.get_mut(pixel) {
            *f |= flag;
        }
    }

    pub fn is_masked(&self, pixel: usize) -> bool {
        self.flags.get(pixel).is_some_and(|&f| f != 0)
    }

    pub fn masked_count(&self) -> usize {
        self.flags.iter().filter(|&&f| f != 0).count()
    }

    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), MaskError> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(self.flags.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&self.flags);
        std::fs::write(path, bytes).map_err(|source| MaskError::Write { path: path.into(), source })
    }

    /// Reads a mask and checks it fits a detector of `pixels` pixels.
    ///
    /// # Errors
    /// Unreadable, not in the format, or for another pixel count.
    pub fn load(path: &Path, pixels: usize) -> Result<PixelMask, MaskError> {
        let bytes = std::fs::read(path).map_err(|source| MaskError::Read { path: path.into(), source })?;
        let format = |reason: &str| MaskError::Format { path: path.into(), reason: reason.into() };
        if bytes.len() < 12 || bytes[..8] != MAGIC {
            return Err(format("no HGMASK01 header"));
        }
        let found = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        if bytes.len() - 12 != found {
            return Err(format("pixel count and length disagree"));
        }
        if found != pixels {
            return Err(MaskError::Size { path: path.into(), found, expected: pixels });
        }
        let masked = bytes[12..].iter().filter(|&&f| f != 0).count();
        if masked * 2 > found {
            return Err(MaskError::Inverted { path: path.into(), masked, pixels: found });
        }
        Ok(PixelMask { flags: bytes[12..].to_vec() })
    }

    /// The mask a calibration section names, for a detector of `pixels` pixels (a cluster node's
    /// share of the file when it is one); `None` without a mask file.
    ///
    /// # Errors
    /// As [`PixelMask::load_modules`].
    pub fn for_calibration(c: &super::CalibrationSection, pixels: usize) -> Result<Option<PixelMask>, MaskError> {
        let Some(file) = &c.mask_file else { return Ok(None) };
        let mask = match &c.share {
            Some(share) => PixelMask::load_modules(file, pixels, Some(&share.modules), share.of)?,
            None => PixelMask::load(file, pixels)?,
        };
        Ok(Some(mask))
    }

    /// Reads the mask of a whole detector of `modules` modules and keeps `keep` of them, in that
    /// order (a cluster node's share; `None` keeps all), for a detector of `pixels` pixels.
    ///
    /// # Errors
    /// As [`PixelMask::load`] for the whole detector, or a module it does not hold.
    pub fn load_modules(
        path: &Path,
        pixels: usize,
        keep: Option<&[usize]>,
        modules: usize,
    ) -> Result<PixelMask, MaskError> {
        let Some(keep) = keep.filter(|k| !k.is_empty()) else { return PixelMask::load(path, pixels) };
        let module = pixels / keep.len();
        let whole = PixelMask::load(path, module * modules)?;
        if let Some(&m) = keep.iter().find(|&&m| m >= modules) {
            return Err(MaskError::Format {
                path: path.into(),
                reason: format!("holds {modules} modules, not module {m}"),
            });
        }
        let flags = keep.iter().flat_map(|&m| &whole.flags[m * module..(m + 1) * module]).copied().collect();
        Ok(PixelMask { flags })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mask_flagging_most_pixels_is_refused_as_inverted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        let mut mask = super::PixelMask::none(10);
        for p in 0..6 {
            mask.set(p, super::USER);
        }
        mask.save(&path).unwrap();
        let err = super::PixelMask::load(&path, 10).unwrap_err();
        assert!(matches!(err, super::MaskError::Inverted { masked: 6, pixels: 10, .. }), "{err}");
        mask = super::PixelMask::none(10);
        mask.set(0, super::HOT);
        mask.save(&path).unwrap();
        assert_eq!(super::PixelMask::load(&path, 10).unwrap().masked_count(), 1);
    }

    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        let mut m = PixelMask::none(10);
        m.set(3, HOT);
        m.set(3, USER);
        m.set(9, DEAD);
        m.set(99, DEAD); // outside: ignored
        m.save(&path).unwrap();
        let back = PixelMask::load(&path, 10).unwrap();
        // Two modules of five pixels: the second alone.
        let share = PixelMask::load_modules(&path, 5, Some(&[1]), 2).unwrap();
        assert_eq!(share.flags(), &back.flags()[5..]);
        assert!(PixelMask::load_modules(&path, 5, Some(&[2]), 2).is_err());
        assert_eq!(back, m);
        assert_eq!((back.masked_count(), back.flags()[3]), (2, HOT | USER));
        assert!(matches!(PixelMask::load(&path, 11), Err(MaskError::Size { .. })));
        std::fs::write(&path, b"HGMASK01\\x05\\0\\0\\0ab").unwrap();
        assert!(matches!(PixelMask::load(&path, 5), Err(MaskError::Format { .. })));
    }
}
