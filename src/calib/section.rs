//! `[calibration]`: the maps raw JUNGFRAU values are converted with (a file, or per-stage constants),
//! the mask of pixels not to trust, the photon energy, and the pedestal measured on the run's dark
//! frames and followed during it. EIGER counts photons already and reads only the mask.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detector::ModuleShare;
use crate::section::{Problems, key, resolve};

/// h·c in keV·Å: a photon of E keV has a wavelength of `HC_KEV_ANGSTROM / E` Å.
pub const HC_KEV_ANGSTROM: f64 = 12.398_419_843;

/// Conversion of raw JUNGFRAU values to photons. EIGER counts photons already and ignores it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationSection {
    /// Per-pixel pedestal and gain maps (the format `hitgate simulate` writes; see docs/formats.md).
    /// Without one, the per-gain-stage constants below apply to every pixel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Pixels not to trust (dead, hot, user-flagged; the format `hitgate simulate` writes, see
    /// docs/formats.md): they read 0 photons and are never part of a spot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_file: Option<PathBuf>,
    pub photon_energy_kev: f32,
    /// Frames at the start of the run that are dark (no beam): the G0 pedestal is measured on them,
    /// then followed on frames without signal. 0 keeps the pedestals of the file (or constants).
    pub dark_frames: usize,
    /// The tracked pedestal's memory, in frames without signal.
    pub pedestal_window_frames: usize,
    /// Track on every n-th frame without signal (tracking a module frame costs ~0.5 ms).
    pub pedestal_track_every: usize,
    /// Pedestal of gain stages G0, G1, G2 where no file is given.
    pub pedestal_adu: [f32; 3],
    /// Gain of G0, G1, G2 where no file is given (G1 and G2 count down, hence negative).
    pub gain_adu_per_kev: [f32; 3],
    /// Set for a cluster node (`--node`), never read from a config: the files describe the whole
    /// detector, the node uses its modules of them.
    #[serde(skip)]
    pub share: Option<ModuleShare>,
}

impl Default for CalibrationSection {
    fn default() -> Self {
        CalibrationSection {
            file: None,
            mask_file: None,
            photon_energy_kev: 12.4,
            dark_frames: 0,
            pedestal_window_frames: 1000,
            pedestal_track_every: 10,
            pedestal_adu: [3000.0, 14500.0, 14000.0],
            gain_adu_per_kev: [40.0, -1.45, -0.11],
            share: None,
        }
    }
}

impl CalibrationSection {
    /// The incident wavelength the photon energy makes.
    pub fn wavelength_angstrom(&self) -> f64 {
        HC_KEV_ANGSTROM / f64::from(self.photon_energy_kev)
    }

    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if !(1.0..=200.0).contains(&self.photon_energy_kev) {
            problems.bad(k("photon_energy_kev"), format!("{} is outside 1..=200 keV", self.photon_energy_kev));
        }
        if self.dark_frames > 100_000 {
            problems.bad(k("dark_frames"), format!("{} is above 100000", self.dark_frames));
        }
        if self.pedestal_window_frames == 0 {
            problems.bad(k("pedestal_window_frames"), "must be at least 1");
        }
        if self.pedestal_track_every == 0 {
            problems.bad(k("pedestal_track_every"), "must be at least 1");
        }
        for (i, g) in self.gain_adu_per_kev.iter().enumerate() {
            if *g == 0.0 || !g.is_finite() {
                problems.bad(format!("{}[{i}]", k("gain_adu_per_kev")), "a gain must be finite and non-zero");
            }
        }
        for (name, file) in [("file", &self.file), ("mask_file", &self.mask_file)] {
            if let Some(file) = file
                && !file.is_file()
            {
                problems.bad(k(name), format!("{} is not a readable file", file.display()));
            }
        }
    }

    /// Relative paths are taken from the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        for file in [self.file.as_mut(), self.mask_file.as_mut()].into_iter().flatten() {
            resolve(file, base);
        }
    }
}
