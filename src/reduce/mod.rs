//! One reducer's per-frame work, sans-IO: raw pixels → photons → spots → the trigger's verdict, all
//! written into the frame's own feature record, then what the verdict calls for (the localiser's
//! centres, a compressed copy for storage). A [`ReducerPlan`] is prepared once from
//! [`ReducerSettings`] (calibration maps loaded and inverted, models loaded) and shared; each worker
//! thread owns a [`Reducer`] with its scratch buffers. `[reducer]` ([`ReducerSection`]) says how many
//! workers run and where.

mod worker;

#[cfg(test)]
mod tests;

pub use worker::Reducer;

use serde::{Deserialize, Serialize};

use crate::calib::{CalibrationSection, PedestalTracker, PhotonConverter, Photons, PixelMask, SharedConverter};
use crate::codec::bitshuffle::BitshuffleError;
use crate::codec::{FrameEncoder, StoredPixels};
use crate::detector::{DetectorGeometry, DetectorType, PanelImage};
use crate::features::localiser::{LocaliseFrames, Localiser, LocaliserError};
use crate::features::summary::{Diffraction, SummaryPlan};
use crate::features::{FeaturesSection, FinderKind, Peakfinder8Params, RadialMap, ThresholdParams};
use crate::section::{Claim, Problems, Resource, key};
use crate::trigger::{Trigger, TriggerSection};

/// `[reducer]`: the reducer stage's workers and the queues between stages.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReducerSection {
    /// Worker threads, each reducing whole frames.
    pub workers: usize,
    /// Capacity of the queues between stages, in frames.
    pub queue_frames: usize,
    /// CPU for each worker, in order; workers past the list are not pinned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<usize>,
}

impl Default for ReducerSection {
    fn default() -> Self {
        ReducerSection { workers: 1, queue_frames: 32, cpus: Vec::new() }
    }
}

impl ReducerSection {
    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        problems.outside(key(path, "workers"), self.workers, (1, 64));
        problems.outside(key(path, "queue_frames"), self.queue_frames, (1, 4096));
    }

    /// The CPUs its workers are pinned to.
    pub fn claims(&self, path: &str) -> Vec<Claim> {
        let cpus = key(path, "cpus");
        self.cpus.iter().enumerate().map(|(i, c)| Claim::new(format!("{cpus}[{i}]"), Resource::Cpu(*c))).collect()
    }
}

/// Everything a reduction is prepared from: the sections it reads and what the detector's layout
/// makes of them.
pub struct ReducerSettings<'a> {
    pub geometry: &'a DetectorGeometry,
    pub calibration: &'a CalibrationSection,
    pub features: &'a FeaturesSection,
    pub trigger: &'a TriggerSection,
    /// How each panel's raw pixels make its image (a JUNGFRAU module assembled, chip-border pixels
    /// split), where spots are found and summed up.
    pub panel_image: PanelImage,
    /// Each panel's first pixel in the assembled image (row, column).
    pub panel_origins: Vec<(usize, usize)>,
    /// The beam centre in the assembled image (row, column).
    pub beam_center_px: (f64, f64),
    /// The beam's photon energy (an integrating detector's conversion to photons).
    pub photon_energy_kev: f32,
    /// Where the detector sits in the beam (beam centre, distance, energy): each pixel's resolution,
    /// which the learned trigger's summary is taken in.
    pub diffraction: Diffraction,
    /// What kept frames are compressed as, when a sink stores compressed frames.
    pub stored_pixels: Option<StoredPixels>,
}

/// Why a reduction could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Calibration(#[from] crate::calib::CalibrationError),
    #[error(transparent)]
    Mask(#[from] crate::calib::MaskError),
    #[error(transparent)]
    Localiser(#[from] LocaliserError),
    #[error("trigger: {0}")]
    Trigger(#[from] crate::trigger::TriggerError),
    #[error("storage encoding: {0}")]
    Encoding(#[from] BitshuffleError),
}

/// The spot finder, prepared.
enum FinderPlan {
    Threshold(ThresholdParams),
    Peakfinder8(Peakfinder8Params, RadialMap),
}

/// How the run follows its pedestal, for integrating detectors that measure it on dark frames.
struct PedestalPlan {
    /// G0 gains (ADU/keV per pixel).
    gains_g0: Vec<f32>,
    photon_energy_kev: f32,
    dark_frames: usize,
    window_frames: usize,
}

/// Everything a reducer needs that is the same for every worker.
pub struct ReducerPlan {
    photons: Photons,
    /// Image row and column of every panel's first pixel.
    origins: Vec<(usize, usize)>,
    pedestal: Option<PedestalPlan>,
    /// Panels of a frame, and raw rows and columns of a panel.
    panels: (usize, usize, usize),
    /// A panel's image: where spots are found, summed up and stored as photons.
    image: PanelImage,
    finder: FinderPlan,
    trigger: Trigger,
    /// The localiser and the frames it refines, when configured.
    localiser: Option<(Localiser, LocaliseFrames)>,
    /// The rings of the frame summary, when the trigger reads one.
    summary: Option<SummaryPlan>,
    /// What kept frames are compressed as for storage, when a sink stores compressed frames.
    storage: Option<(StoredPixels, DetectorGeometry)>,
    /// The pixels each packet carries (by its index in the packet mask), to flag a lost packet's;
    /// empty for detectors whose pixels are not 16-bit words.
    packet_pixels: Vec<std::ops::Range<usize>>,
}

impl ReducerPlan {
    /// Prepares the reduction: loads and inverts the calibration maps, loads and optimises the
    /// trigger's and the localiser's models.
    ///
    /// # Errors
    /// The calibration or mask file cannot be read or does not fit the detector; a model cannot be
    /// loaded or does not follow its contract.
    pub fn new(settings: &ReducerSettings<'_>) -> Result<ReducerPlan, PlanError> {
        let geometry = settings.geometry;
        let (panels, rows, cols) = geometry.panels();
        let pixels = panels * rows * cols;
        let c = settings.calibration;
        let mask = PixelMask::for_calibration(c, pixels)?;
        let (photons, pedestal) = match geometry.model.det_type {
            DetectorType::Eiger => {
                (Photons::Counting { mask: mask.as_ref().map(|m| m.flags().to_vec()).unwrap_or_default() }, None)
            }
            DetectorType::Jungfrau => {
                let maps = c.maps(geometry.modules, geometry.model.module_rows(), geometry.model.module_cols())?;
                let converter = match &mask {
                    Some(mask) => PhotonConverter::with_mask(&maps, settings.photon_energy_kev, mask),
                    None => PhotonConverter::new(&maps, settings.photon_energy_kev),
                };
                let pedestal = (c.dark_frames > 0).then(|| PedestalPlan {
                    gains_g0: maps.gain(0).to_vec(),
                    photon_energy_kev: settings.photon_energy_kev,
                    dark_frames: c.dark_frames,
                    window_frames: c.pedestal_window_frames,
                });
                (Photons::Integrating(SharedConverter::new(converter)), pedestal)
            }
        };
        let origins = settings.panel_origins.clone();
        let image = settings.panel_image.clone();
        let (image_rows, image_cols) = image.shape();
        let finder = match settings.features.finder {
            FinderKind::Threshold => FinderPlan::Threshold(settings.features.threshold),
            FinderKind::Peakfinder8 => {
                let p = settings.features.peakfinder8;
                let mut map = RadialMap::new(&origins, image_rows, image_cols, settings.beam_center_px, &p);
                if let Some(mask) = &mask {
                    let mut flags = vec![0u8; panels * image.pixels()];
                    image.spread(mask.flags(), &mut flags);
                    map.exclude(&flags);
                }
                FinderPlan::Peakfinder8(p, map)
            }
        };
        let trigger = Trigger::from_config(settings.trigger)?;
        let summary = trigger.needs_summary().then(|| {
            SummaryPlan::new(&origins, image_rows, image_cols, &settings.diffraction)
                .ignoring_persistent(settings.trigger.inputs.ignore_persistent_excess)
        });
        let l = &settings.features.localiser;
        let localiser = match l.source() {
            Some(source) => Some((Localiser::load(&source, l.batch_patches)?, l.frames)),
            None => None,
        };
        let plan = ReducerPlan {
            packet_pixels: geometry.packet_pixels(),
            storage: settings.stored_pixels.map(|p| (p, geometry.clone())),
            summary,
            trigger,
            photons,
            origins,
            pedestal,
            panels: (panels, rows, cols),
            image,
            finder,
            localiser,
        };
        // An encoder that cannot be made is a setup error now, not a loss per frame later.
        plan.encoder().transpose()?;
        Ok(plan)
    }

    /// Panels of a frame, and rows and columns of a panel.
    pub fn panel_shape(&self) -> (usize, usize, usize) {
        self.panels
    }

    /// A panel's image, where spots are found and positions given.
    pub fn panel_image(&self) -> &PanelImage {
        &self.image
    }

    /// How this detector's raw values become photons (and the converter in use now).
    pub fn photons(&self) -> &Photons {
        &self.photons
    }

    /// An encoder of frames for storage, when a sink stores compressed frames.
    ///
    /// # Errors
    /// The stored pixel is wider than the compression takes.
    pub fn encoder(&self) -> Option<Result<FrameEncoder, BitshuffleError>> {
        self.storage.as_ref().map(|(pixels, geometry)| FrameEncoder::new(*pixels, geometry, &self.image))
    }

    /// The trigger every worker consults, for tuning it while running.
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// Frames at the run's start that are dark (their pedestal is measured, they are not judged).
    pub fn dark_frames(&self) -> usize {
        self.pedestal.as_ref().map_or(0, |p| p.dark_frames)
    }

    /// A tracker for this detector's pedestals, when the run measures them on dark frames.
    pub fn pedestal_tracker(&self) -> Option<PedestalTracker> {
        let p = self.pedestal.as_ref()?;
        Some(PedestalTracker::new(&p.gains_g0, p.photon_energy_kev, p.dark_frames, p.window_frames))
    }
}
