//! `[calibration]`: the maps raw JUNGFRAU values are converted with (PSI's files, hitgate's own, or
//! per-stage constants), the mask of pixels not to trust, and the pedestal measured on the run's dark
//! frames and followed during it. EIGER counts photons already and reads only the mask. The photon
//! energy is the beam's, in `[detector]`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::maps::{CalibrationError, CalibrationMaps, GAIN_STAGES};
use super::psi::{GainSigns, check_signs, read_gain_maps, read_pedestals};
use crate::detector::ModuleShare;
use crate::section::{Moved, Problems, key, resolve};

/// Conversion of raw JUNGFRAU values to photons. EIGER counts photons already and ignores it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationSection {
    /// Per-pixel pedestal and gain maps in hitgate's own format (what `hitgate simulate` writes; see
    /// docs/formats.md). Or give PSI's files below. Without any, the per-gain-stage constants below
    /// apply to every pixel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Pedestal maps as PSI's tools and `hitgate calibrate dark` write them: three files, G0, G1 and
    /// G2, each one `f32` (ADU) a pixel, the detector's modules stacked in frame order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pedestal_files: Vec<PathBuf>,
    /// PSI gain-map files, one a module in the detector's module order: `f64` ADU/keV, the module's
    /// G0 map, then G1's, then G2's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gain_files: Vec<PathBuf>,
    /// The detector counts up in every gain stage, so G1 and G2 gains are positive. JUNGFRAU counts
    /// down in G1 and G2: gains of the wrong sign are refused unless this is set.
    pub gains_count_up: bool,
    /// Pixels not to trust (dead, hot, user-flagged; the format `hitgate simulate` writes, see
    /// docs/formats.md): they read 0 photons and are never part of a spot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_file: Option<PathBuf>,
    /// Moved to `detector.photon_energy_kev`.
    #[serde(skip_serializing_if = "Moved::is_absent")]
    pub photon_energy_kev: Moved,
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
            pedestal_files: Vec::new(),
            gain_files: Vec::new(),
            gains_count_up: false,
            mask_file: None,
            photon_energy_kev: Moved::default(),
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
    /// What sign each stage's gains must have.
    pub fn gain_signs(&self) -> GainSigns {
        if self.gains_count_up { GainSigns::AllPositive } else { GainSigns::Jungfrau }
    }

    /// The pedestal and gain maps of a detector of `modules` modules of `rows` × `cols` pixels (a
    /// cluster node's share of the files' modules when it is one): from PSI's files, from hitgate's
    /// own file, or the constants; gains' signs checked.
    ///
    /// # Errors
    /// A file that cannot be read, does not fit the detector, or holds gains of the wrong sign.
    pub fn maps(&self, modules: usize, rows: usize, cols: usize) -> Result<CalibrationMaps, CalibrationError> {
        let module_pixels = rows * cols;
        let pixels = modules * module_pixels;
        let keep = self.share.as_ref().map(|s| &s.modules[..]);
        let whole = self.share.as_ref().map_or(modules, |s| s.of);
        let signs = self.gain_signs();
        let constants = CalibrationMaps::uniform(modules, rows, cols, self.pedestal_adu, self.gain_adu_per_kev);
        let from_file = match &self.file {
            Some(file) => {
                let maps = CalibrationMaps::load_modules(file, pixels, keep)?;
                for stage in 0..GAIN_STAGES {
                    check_signs(file, stage, maps.gain(stage), signs)?;
                }
                Some(maps)
            }
            None => None,
        };
        let base = from_file.as_ref().unwrap_or(&constants);
        let pedestal = match self.pedestal_files.is_empty() {
            true => (0..GAIN_STAGES).flat_map(|s| base.pedestal(s).iter().copied()).collect(),
            false => read_pedestals(&self.pedestal_files, whole, module_pixels, keep)?,
        };
        let gain = match self.gain_files.is_empty() {
            true => (0..GAIN_STAGES).flat_map(|s| base.gain(s).iter().copied()).collect(),
            false => read_gain_maps(&self.gain_files, module_pixels, keep, signs)?,
        };
        Ok(CalibrationMaps::from_arrays(modules, rows, cols, pedestal, gain))
    }

    /// Every problem of the section, with its key path under `path`, for a detector of
    /// `modules` modules of `module_pixels` pixels each (`None` when the model is unknown).
    pub fn validate(&self, path: &str, detector: Option<(usize, usize)>, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        self.photon_energy_kev.check(k("photon_energy_kev"), "detector.photon_energy_kev", problems);
        if self.dark_frames > 100_000 {
            problems.bad(k("dark_frames"), format!("{} is above 100000", self.dark_frames));
        }
        if self.pedestal_window_frames == 0 {
            problems.bad(k("pedestal_window_frames"), "must be at least 1");
        }
        if self.pedestal_track_every == 0 {
            problems.bad(k("pedestal_track_every"), "must be at least 1");
        }
        let signs = self.gain_signs();
        for (i, g) in self.gain_adu_per_kev.iter().enumerate() {
            if *g == 0.0 || !g.is_finite() {
                problems.bad(format!("{}[{i}]", k("gain_adu_per_kev")), "a gain must be finite and non-zero");
            } else if !signs.holds(i, *g) {
                let want = if i == 0 || self.gains_count_up { "positive" } else { "negative" };
                problems.bad(
                    format!("{}[{i}]", k("gain_adu_per_kev")),
                    format!("{g}: a G{i} gain must be {want} (JUNGFRAU counts down in G1 and G2; calibration.gains_count_up = true for a detector that counts up)"),
                );
            }
        }
        if self.file.is_some() && !(self.pedestal_files.is_empty() && self.gain_files.is_empty()) {
            problems.bad(k("file"), "give either file or pedestal_files/gain_files, not both");
        }
        if !self.pedestal_files.is_empty() && self.pedestal_files.len() != GAIN_STAGES {
            problems.bad(
                k("pedestal_files"),
                format!("{} files, expected {GAIN_STAGES}: G0, G1 and G2", self.pedestal_files.len()),
            );
        }
        // A node's share reads the whole detector's files.
        let whole = detector.map(|(modules, pixels)| (self.share.as_ref().map_or(modules, |s| s.of), pixels));
        if let Some((modules, _)) = whole
            && !self.gain_files.is_empty()
            && self.gain_files.len() != modules
        {
            problems.bad(
                k("gain_files"),
                format!("{} files for {modules} modules: one gain-map file a module", self.gain_files.len()),
            );
        }
        let sized = |file: &PathBuf, bytes: Option<usize>| match (std::fs::metadata(file), bytes) {
            (Err(_), _) => Some(format!("{} is not a readable file", file.display())),
            (Ok(m), Some(want)) if m.len() != want as u64 => {
                Some(format!("{} holds {} bytes, a file of this detector {want}", file.display(), m.len()))
            }
            (Ok(m), _) if !m.is_file() => Some(format!("{} is not a readable file", file.display())),
            _ => None,
        };
        for (i, file) in self.pedestal_files.iter().enumerate() {
            if let Some(reason) = sized(file, whole.map(|(modules, pixels)| modules * pixels * 4)) {
                problems.bad(format!("{}[{i}]", k("pedestal_files")), reason);
            }
        }
        for (i, file) in self.gain_files.iter().enumerate() {
            if let Some(reason) = sized(file, whole.map(|(_, pixels)| GAIN_STAGES * pixels * 8)) {
                problems.bad(format!("{}[{i}]", k("gain_files")), reason);
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
        for file in self.pedestal_files.iter_mut().chain(self.gain_files.iter_mut()) {
            resolve(file, base);
        }
    }
}
