//! Calibration as PSI's tools write it, read in place:
//!
//! - **pedestal files**, one per gain stage (G0, G1, G2): `f32` little-endian ADU, one value a pixel,
//!   modules stacked in frame order (each module's rows top to bottom) — what Jungfraujoch and
//!   `hitgate calibrate dark` write;
//! - **gain-map files**, one per module: `f64` little-endian ADU/keV, the module's G0 map, then G1's,
//!   then G2's (3 × 512 × 1024 doubles for a JUNGFRAU module) — PSI's gain-map layout.
//!
//! JUNGFRAU counts up in G0 and down in G1 and G2, so a G0 gain must be positive and G1 and G2 gains
//! negative; a map with another sign is refused naming its file and stage, unless the detector is said
//! to count up in every stage ([`GainSigns::AllPositive`]).

use std::path::{Path, PathBuf};

use super::maps::{CalibrationError, GAIN_STAGES};

/// What sign each stage's gain must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GainSigns {
    /// G0 positive, G1 and G2 negative: JUNGFRAU's analogue chain.
    Jungfrau,
    /// Every stage positive (a detector or a file that counts up in every stage).
    AllPositive,
}

impl GainSigns {
    /// Whether `gain` has the sign stage `stage` must have (zero and non-finite have none).
    pub fn holds(self, stage: usize, gain: f32) -> bool {
        let up = stage == 0 || self == GainSigns::AllPositive;
        gain.is_finite() && if up { gain > 0.0 } else { gain < 0.0 }
    }

    fn said(self, stage: usize) -> &'static str {
        if stage == 0 || self == GainSigns::AllPositive { "positive" } else { "negative" }
    }
}

/// Refuses a stage's gains of the wrong sign, naming `path` and the stage.
///
/// # Errors
/// Some pixel's gain has the wrong sign, is zero or is not a number.
pub fn check_signs(path: &Path, stage: usize, gains: &[f32], signs: GainSigns) -> Result<(), CalibrationError> {
    let wrong = gains.iter().filter(|&&g| !signs.holds(stage, g)).count();
    if wrong == 0 {
        return Ok(());
    }
    let first = gains.iter().position(|&g| !signs.holds(stage, g)).unwrap_or(0);
    Err(CalibrationError::Sign {
        path: path.into(),
        stage,
        wrong,
        pixels: gains.len(),
        first_pixel: first,
        first_value: gains[first],
        expected: signs.said(stage),
    })
}

/// Reads a file of `count` little-endian values of `width` bytes.
fn read_values(path: &Path, count: usize, width: usize) -> Result<Vec<u8>, CalibrationError> {
    let bytes = std::fs::read(path).map_err(|source| CalibrationError::Read { path: path.into(), source })?;
    let expected = count.saturating_mul(width);
    if bytes.len() != expected {
        return Err(CalibrationError::Format {
            path: path.into(),
            reason: format!("{} bytes, expected {expected} ({count} values of {width} bytes)", bytes.len()),
        });
    }
    Ok(bytes)
}

/// The modules a file of the whole detector's `modules` modules holds that this detector uses:
/// `keep` (a cluster node's share, in its order), or all of them.
fn kept(keep: Option<&[usize]>, modules: usize, path: &Path) -> Result<Vec<usize>, CalibrationError> {
    match keep.filter(|k| !k.is_empty()) {
        None => Ok((0..modules).collect()),
        Some(keep) => match keep.iter().find(|&&m| m >= modules) {
            Some(m) => Err(CalibrationError::Format {
                path: path.into(),
                reason: format!("holds {modules} modules, not module {m}"),
            }),
            None => Ok(keep.to_vec()),
        },
    }
}

/// The pedestals of `paths` (G0, G1, G2), stage-major, for the detector's modules: each file holds
/// `whole_modules` modules of `module_pixels` pixels, of which `keep` are used (all when `None`).
///
/// # Errors
/// Not three files, a file that cannot be read or has another size, or a module it does not hold.
pub fn read_pedestals(
    paths: &[PathBuf],
    whole_modules: usize,
    module_pixels: usize,
    keep: Option<&[usize]>,
) -> Result<Vec<f32>, CalibrationError> {
    if paths.len() != GAIN_STAGES {
        return Err(CalibrationError::Format {
            path: paths.first().cloned().unwrap_or_default(),
            reason: format!("{} pedestal files, expected one a gain stage ({GAIN_STAGES})", paths.len()),
        });
    }
    let mut out = Vec::new();
    for path in paths {
        let bytes = read_values(path, whole_modules * module_pixels, 4)?;
        for m in kept(keep, whole_modules, path)? {
            let module = &bytes[m * module_pixels * 4..(m + 1) * module_pixels * 4];
            out.extend(module.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
    }
    Ok(out)
}

/// The gains of PSI gain-map files, one a module of the whole detector (`paths[m]` for module `m`),
/// stage-major for the modules `keep` (all when `None`), each stage's sign checked.
///
/// # Errors
/// A file that cannot be read, has another size, or holds a gain of the wrong sign.
pub fn read_gain_maps(
    paths: &[PathBuf],
    module_pixels: usize,
    keep: Option<&[usize]>,
    signs: GainSigns,
) -> Result<Vec<f32>, CalibrationError> {
    let first = paths.first().cloned().unwrap_or_default();
    let modules = kept(keep, paths.len(), &first)?;
    let mut stages: Vec<Vec<f32>> =
        (0..GAIN_STAGES).map(|_| Vec::with_capacity(modules.len() * module_pixels)).collect();
    for &m in &modules {
        let path = &paths[m];
        let bytes = read_values(path, GAIN_STAGES * module_pixels, 8)?;
        for (stage, maps) in stages.iter_mut().enumerate() {
            let stage_bytes = &bytes[stage * module_pixels * 8..(stage + 1) * module_pixels * 8];
            let gains: Vec<f32> = stage_bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                .collect();
            check_signs(path, stage, &gains, signs)?;
            maps.extend_from_slice(&gains);
        }
    }
    Ok(stages.concat())
}

/// Writes one value a pixel as little-endian `f32` (a pedestal or noise file as PSI's tools read it).
///
/// # Errors
/// The file cannot be written.
pub fn write_f32(path: &Path, values: &[f32]) -> Result<(), CalibrationError> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(|source| CalibrationError::Write { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain_file(path: &Path, pixels: usize, gains: [f64; 3]) {
        let bytes: Vec<u8> =
            gains.iter().flat_map(|g| std::iter::repeat_n(*g, pixels)).flat_map(f64::to_le_bytes).collect();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn gain_maps_are_read_a_module_a_file_and_their_signs_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("M049.bin"), dir.path().join("M050.bin"));
        gain_file(&a, 4, [41.0, -1.44, -0.115]);
        gain_file(&b, 4, [40.0, -1.5, -0.12]);
        let all = read_gain_maps(&[a.clone(), b.clone()], 4, None, GainSigns::Jungfrau).unwrap();
        assert_eq!(all.len(), 3 * 8);
        assert_eq!((all[0], all[4], all[8], all[12], all[16], all[20]), (41.0, 40.0, -1.44, -1.5, -0.115, -0.12));
        let second = read_gain_maps(&[a.clone(), b.clone()], 4, Some(&[1]), GainSigns::Jungfrau).unwrap();
        assert_eq!(second, vec![40.0, 40.0, 40.0, 40.0, -1.5, -1.5, -1.5, -1.5, -0.12, -0.12, -0.12, -0.12]);
        gain_file(&b, 4, [40.0, 1.5, -0.12]);
        let refused = read_gain_maps(&[a.clone(), b.clone()], 4, None, GainSigns::Jungfrau).unwrap_err();
        assert!(matches!(&refused, CalibrationError::Sign { stage: 1, wrong: 4, .. }), "{refused}");
        assert!(refused.to_string().contains("M050.bin") && refused.to_string().contains("G1"), "{refused}");
        gain_file(&a, 4, [41.0, 1.44, 0.115]);
        gain_file(&b, 4, [40.0, 1.5, 0.12]);
        assert!(read_gain_maps(&[a.clone(), b], 4, None, GainSigns::AllPositive).is_ok());
        assert!(matches!(read_gain_maps(&[a], 5, None, GainSigns::AllPositive), Err(CalibrationError::Format { .. })));
    }

    #[test]
    fn pedestal_files_are_one_a_stage_and_hold_the_whole_detector() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3).map(|s| dir.path().join(format!("pedestal_g{s}.bin"))).collect();
        for (s, p) in paths.iter().enumerate() {
            write_f32(p, &[(s * 10) as f32, (s * 10 + 1) as f32, (s * 10 + 2) as f32, (s * 10 + 3) as f32]).unwrap();
        }
        assert_eq!(
            read_pedestals(&paths, 2, 2, None).unwrap(),
            vec![0., 1., 2., 3., 10., 11., 12., 13., 20., 21., 22., 23.]
        );
        assert_eq!(read_pedestals(&paths, 2, 2, Some(&[1])).unwrap(), vec![2., 3., 12., 13., 22., 23.]);
        assert!(matches!(read_pedestals(&paths, 3, 2, None), Err(CalibrationError::Format { .. })));
        assert!(matches!(read_pedestals(&paths[..2], 2, 2, None), Err(CalibrationError::Format { .. })));
    }
}
