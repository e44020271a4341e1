//! One reducer's per-frame work, sans-IO: raw pixels → photons → spots → the trigger's verdict, all
//! written into the frame's own feature record. A [`ReducerPlan`] is prepared once (calibration maps
//! loaded and inverted) and shared; each worker thread owns a [`Reducer`] with its scratch buffers.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::calib::{CalibrationMaps, PedestalTracker, PhotonConverter, PixelMask, counts_as_photons};
use crate::config::{Config, FinderKind, LocaliseFrames, StoredPixels};
use crate::detector::{DetectorGeometry, DetectorType};
use crate::features::patch::{PATCH_PIXELS, PATCH_SIDE, extract_patch, patch_centre};
use crate::features::peaks::{PeakLocaliser, PeakModel, PeakModelError};
use crate::features::summary::{SUMMARY_LEN, SummaryCounter, SummaryPlan};
use crate::features::{Peakfinder8, Peakfinder8Params, RadialMap, SpotFinder, SpotFinderParams};
use crate::frame::FrameHandle;
use crate::sink::encode::FrameEncoder;
use crate::trigger::{Decision, Trigger, TriggerState};

/// Why a reduction could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Calibration(#[from] crate::calib::CalibrationError),
    #[error(transparent)]
    Mask(#[from] crate::calib::MaskError),
    #[error(transparent)]
    PeakModel(#[from] PeakModelError),
    #[error("trigger: {0}")]
    Trigger(#[from] crate::trigger::TriggerError),
}

/// The current converter, replaced while running when the pedestal is measured or has moved.
/// Workers read an epoch counter per frame and take the lock only when it changed.
pub struct SharedConverter {
    epoch: AtomicU64,
    current: Mutex<Arc<PhotonConverter>>,
    /// The converter as prepared, from which tracked ones derive.
    pub base: Arc<PhotonConverter>,
}

impl SharedConverter {
    fn new(base: PhotonConverter) -> SharedConverter {
        let base = Arc::new(base);
        SharedConverter { epoch: AtomicU64::new(0), current: Mutex::new(Arc::clone(&base)), base }
    }

    /// Installs a converter for every frame reduced from now on.
    pub fn publish(&self, converter: PhotonConverter) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(converter);
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Times a converter has been published.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn current(&self) -> Arc<PhotonConverter> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How raw values become photons for this detector.
pub enum Photons {
    /// JUNGFRAU: gain stages, pedestals, gains.
    Integrating(SharedConverter),
    /// EIGER: values are counts.
    Counting,
}

/// The spot finder, prepared.
enum FinderPlan {
    Threshold(SpotFinderParams),
    Peakfinder8(Peakfinder8Params, RadialMap),
}

/// Everything a reducer needs that is the same for every worker.
pub struct ReducerPlan {
    photons: Photons,
    /// Image row and column of every panel's first pixel.
    origins: Vec<(usize, usize)>,
    /// G0 gains (ADU/keV per pixel) for the pedestal tracker; empty for photon counters.
    gains_g0: Vec<f32>,
    dark_frames: usize,
    /// Flags per pixel, empty when nothing is masked.
    mask: Vec<u8>,
    panels: (usize, usize, usize),
    finder: FinderPlan,
    trigger: Trigger,
    /// The learned localiser and the frames it refines, when configured.
    peaks: Option<(PeakModel, LocaliseFrames)>,
    /// The rings of the frame summary, when the trigger reads one.
    summary: Option<SummaryPlan>,
    /// What kept frames are compressed as for storage, when a sink stores compressed frames.
    storage: Option<(StoredPixels, DetectorGeometry)>,
}

impl ReducerPlan {
    /// Prepares the reduction: loads and inverts the calibration maps, loads and optimises the peak
    /// model.
    ///
    /// # Errors
    /// The calibration or mask file cannot be read or does not fit the detector; the peak model cannot
    /// be loaded or does not follow its contract.
    pub fn new(config: &Config, geometry: &DetectorGeometry) -> Result<ReducerPlan, PlanError> {
        let (panels, rows, cols) = geometry.panels();
        let pixels = panels * rows * cols;
        let c = &config.calibration;
        let mask = PixelMask::for_calibration(c, pixels)?;
        let mut gains_g0 = Vec::new();
        let photons = match geometry.model.det_type {
            DetectorType::Eiger => Photons::Counting,
            DetectorType::Jungfrau => {
                let maps = match &c.file {
                    Some(file) => {
                        CalibrationMaps::load_modules(file, pixels, c.share.as_ref().map(|s| &s.modules[..]))?
                    }
                    None => CalibrationMaps::uniform(
                        geometry.modules,
                        geometry.model.module_rows(),
                        geometry.model.module_cols(),
                        c.pedestal_adu,
                        c.gain_adu_per_kev,
                    ),
                };
                let converter = match &mask {
                    Some(mask) => PhotonConverter::with_mask(&maps, c.photon_energy_kev, mask),
                    None => PhotonConverter::new(&maps, c.photon_energy_kev),
                };
                gains_g0 = maps.gain(0).to_vec();
                Photons::Integrating(SharedConverter::new(converter))
            }
        };
        let origins = config.panel_origins(geometry);
        let s = &config.trigger.spots;
        let finder = match config.features.finder {
            FinderKind::Threshold => FinderPlan::Threshold(SpotFinderParams::from(s)),
            FinderKind::Peakfinder8 => {
                let p = config.features.peakfinder8;
                let mut map = RadialMap::new(&origins, rows, cols, config.beam_center_px(), &p);
                if let Some(mask) = &mask {
                    map.exclude(mask.flags());
                }
                FinderPlan::Peakfinder8(p, map)
            }
        };
        let trigger = Trigger::from_config(&config.trigger)?;
        let summary = trigger.needs_summary().then(|| SummaryPlan::new(&origins, rows, cols, config.beam_center_px()));
        Ok(ReducerPlan {
            storage: config.stored_pixels().map(|p| (p, geometry.clone())),
            summary,
            trigger,
            photons,
            origins,
            gains_g0,
            dark_frames: if matches!(geometry.model.det_type, DetectorType::Jungfrau) { c.dark_frames } else { 0 },
            mask: mask.map(|m| m.flags().to_vec()).unwrap_or_default(),
            panels: (panels, rows, cols),
            finder,

            peaks: match config.features.localiser.source() {
                Some(source) => Some((
                    PeakModel::load(&source, config.features.localiser.batch_patches)?,
                    config.features.localiser.frames,
                )),
                None => None,
            },
        })
    }
}

impl ReducerPlan {
    /// Panels of a frame, and rows and columns of a panel.
    pub fn panel_shape(&self) -> (usize, usize, usize) {
        self.panels
    }

    /// Photons of panel `panel`'s raw pixels into `out`: with `converter` for an integrating detector
    /// (the prepared one when `None`), counts with the mask applied for a counting one.
    pub fn panel_photons(&self, converter: Option<&PhotonConverter>, panel: usize, raw: &[u16], out: &mut [f32]) {
        let (_, rows, cols) = self.panels;
        let panel_pixels = rows * cols;
        match &self.photons {
            Photons::Integrating(shared) => {
                converter.unwrap_or(&shared.base).jungfrau_photons(raw, panel * panel_pixels, out)
            }
            Photons::Counting => {
                let mask = self.mask.get(panel * panel_pixels..(panel + 1) * panel_pixels).unwrap_or(&[]);
                counts_as_photons(raw, mask, out)
            }
        }
    }

    /// An encoder of frames for storage, when a sink stores compressed frames.
    pub fn encoder(&self) -> Option<FrameEncoder> {
        self.storage.as_ref().map(|(pixels, geometry)| FrameEncoder::new(*pixels, geometry))
    }

    /// The converter frames are calibrated with now (integrating detectors).
    pub fn current_converter(&self) -> Option<Arc<PhotonConverter>> {
        self.converter().map(SharedConverter::current)
    }

    /// The trigger every worker consults, for tuning it while running.
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// The shared converter, for pedestal tracking (integrating detectors only).
    pub fn converter(&self) -> Option<&SharedConverter> {
        match &self.photons {
            Photons::Integrating(c) => Some(c),
            Photons::Counting => None,
        }
    }

    /// A tracker for this detector's pedestals, when the run measures them on dark frames.
    pub fn pedestal_tracker(&self, config: &Config) -> Option<PedestalTracker> {
        let c = &config.calibration;
        (self.dark_frames > 0 && !self.gains_g0.is_empty()).then(|| {
            PedestalTracker::new(&self.gains_g0, c.photon_energy_kev, self.dark_frames, c.pedestal_window_frames)
        })
    }
}

/// A worker's spot finder with its scratch.
enum Finder {
    Threshold(SpotFinder),
    /// Boxed: its scratch is larger than the threshold finder's.
    Peakfinder8(Box<Peakfinder8>),
}

/// A worker's localiser with its batch of patches.
struct Refiner {
    localiser: PeakLocaliser,
    patches: Vec<f32>,
    /// Which spot each patch of the batch belongs to, and the patch centre in the image.
    owners: Vec<(usize, [f32; 2])>,
    centres: Vec<[f32; 2]>,
}

/// One worker's reducer: the shared plan plus its own scratch.
pub struct Reducer {
    plan: Arc<ReducerPlan>,
    photons: Vec<f32>,
    finder: Finder,
    /// The converter in use and the epoch it was published at.
    converter: Option<(u64, Arc<PhotonConverter>)>,
    refiner: Option<Refiner>,
    trigger_state: TriggerState,
    summary: Option<SummaryCounter>,
    encoder: Option<FrameEncoder>,
    /// The frames of a batch waiting for the trigger's verdict.
    staged: Vec<FrameHandle>,
}

impl Reducer {
    /// A worker's reducer, with its scratch allocated now.
    ///
    /// # Errors
    /// The peak model's state for this worker cannot be made.
    pub fn new(plan: Arc<ReducerPlan>) -> Result<Reducer, PlanError> {
        let (_, rows, cols) = plan.panels;
        // Written now, not merely reserved, so its pages are in place before the first frame.
        let mut photons = Vec::with_capacity(rows * cols);
        photons.resize(rows * cols, 0.0);
        let finder = match &plan.finder {
            FinderPlan::Threshold(p) => Finder::Threshold(SpotFinder::new(*p)),
            FinderPlan::Peakfinder8(p, map) => Finder::Peakfinder8(Box::new(Peakfinder8::new(*p, map.rings))),
        };
        let refiner = match &plan.peaks {
            Some((model, _)) => {
                let batch = model.batch();
                Some(Refiner {
                    localiser: model.localiser()?,
                    patches: vec![0.0; batch * PATCH_PIXELS],
                    owners: Vec::with_capacity(batch),
                    centres: vec![[0.0; 2]; batch],
                })
            }
            None => None,
        };
        let trigger_state = plan.trigger.state()?;
        let summary = plan.summary.as_ref().map(SummaryCounter::new);
        let encoder = plan.encoder();
        let staged = Vec::with_capacity(plan.trigger.batch_frames());
        Ok(Reducer { plan, photons, finder, converter: None, refiner, trigger_state, summary, encoder, staged })
    }

    /// The most frames to reduce together (see [`Reducer::reduce_batch`]).
    pub fn batch_frames(&self) -> usize {
        self.plan.trigger.batch_frames()
    }

    /// Reduces one frame in place: its features and verdict are written into the frame.
    pub fn reduce(&mut self, frame: &mut FrameHandle) {
        let t0 = Instant::now();
        if self.measure(frame) {
            let sequence = frame.meta().sequence;
            let features = frame.pixels_and_features().1;
            let decision =
                self.plan.trigger.decide(&mut self.trigger_state, features.spots_found, &features.summary, sequence);
            self.finish(frame, decision);
        }
        frame.pixels_and_features().1.reduce_ns = t0.elapsed().as_nanos() as u64;
    }

    /// Reduces frames popped together, judging them in one trigger call (the FPGA card's batch);
    /// `done` takes each frame, in order, once it is reduced. A dark frame is handed on at once: the
    /// sink thread measures the pedestal that the frames after it wait for. `frames` is left empty.
    pub fn reduce_batch(&mut self, frames: &mut Vec<FrameHandle>, mut done: impl FnMut(FrameHandle)) {
        if frames.len() <= 1 {
            if let Some(mut frame) = frames.pop() {
                self.reduce(&mut frame);
                done(frame);
            }
            return;
        }
        let plan = Arc::clone(&self.plan);
        let trigger = &plan.trigger;
        for mut frame in frames.drain(..) {
            let t0 = Instant::now();
            let judge = self.measure(&mut frame);
            let features = frame.pixels_and_features().1;
            features.reduce_ns = t0.elapsed().as_nanos() as u64;
            if judge {
                trigger.stage(&mut self.trigger_state, &features.summary);
                self.staged.push(frame);
            } else {
                done(frame);
            }
        }
        let t0 = Instant::now();
        trigger.judge_staged(&mut self.trigger_state);
        let judge_share = t0.elapsed().as_nanos() as u64 / self.staged.len().max(1) as u64;
        let mut staged = std::mem::take(&mut self.staged);
        for (index, mut frame) in staged.drain(..).enumerate() {
            let t0 = Instant::now();
            let sequence = frame.meta().sequence;
            let features = frame.pixels_and_features().1;
            let decision = trigger.decide_staged(
                &mut self.trigger_state,
                index,
                features.spots_found,
                &features.summary,
                sequence,
            );
            self.finish(&mut frame, decision);
            frame.pixels_and_features().1.reduce_ns += judge_share + t0.elapsed().as_nanos() as u64;
            done(frame);
        }
        self.staged = staged;
    }

    /// Calibrates the frame, finds its spots and sums up what the trigger reads; false for a dark
    /// frame (nothing to judge). Panels are calibrated and searched one at a time so the photon
    /// image stays in cache.
    fn measure(&mut self, frame: &mut FrameHandle) -> bool {
        let sequence = frame.meta().sequence;
        let dark_frames = self.plan.dark_frames as u64;
        if sequence < dark_frames {
            // The pedestal is measured on this frame (by the sink thread, in order); nothing to judge.
            let features = frame.pixels_and_features().1;
            features.dark = true;
            features.spots.clear();
            features.spots_found = 0;
            return false;
        }
        if let Photons::Integrating(shared) = &self.plan.photons {
            // After dark frames, no frame is converted before their pedestal is in place. The dark
            // frames left the queue before this one, so the sink thread is already on them.
            while dark_frames > 0 && shared.epoch() == 0 {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            let epoch = shared.epoch();
            if self.converter.as_ref().is_none_or(|(e, _)| *e != epoch) {
                self.converter = Some((epoch, shared.current()));
            }
        }
        let (raw, features) = frame.pixels_and_features();
        let (panels, rows, cols) = self.plan.panels;
        let panel_pixels = rows * cols;
        features.spots.clear();
        features.spots_found = 0;
        features.spots_refined = 0;
        features.peak_batches_failed = 0;
        if let Some(counter) = self.summary.as_mut() {
            counter.clear();
        }
        for (panel, raw) in raw.chunks_exact(panel_pixels).take(panels).enumerate() {
            let converter = self.converter.as_ref().map(|(_, c)| c.as_ref());
            self.plan.panel_photons(converter, panel, raw, &mut self.photons);
            if let (Some(counter), Some(plan)) = (self.summary.as_mut(), self.plan.summary.as_ref()) {
                // Before the finder: it consumes the photon image.
                counter.add_panel(plan, panel, &self.photons);
            }
            let (photons, spots, id) = (&mut self.photons, &mut features.spots, panel as u16);
            features.spots_found += match (&mut self.finder, &self.plan.finder) {
                (Finder::Peakfinder8(f), FinderPlan::Peakfinder8(_, map)) => {
                    let rings = &map.ring_of_pixel[panel * panel_pixels..(panel + 1) * panel_pixels];
                    f.find_in_panel(photons, rings, rows, cols, id, spots)
                }
                (Finder::Threshold(f), _) => f.find_in_panel(photons, rows, cols, id, spots),
                // A worker's finder is built from its plan's, so the two always agree.
                (Finder::Peakfinder8(_), FinderPlan::Threshold(_)) => 0,
            };
        }
        for spot in features.spots.iter_mut() {
            let (r0, c0) = self.plan.origins.get(usize::from(spot.panel)).copied().unwrap_or((0, 0));
            spot.image_row = r0 as f32 + spot.row;
            spot.image_col = c0 as f32 + spot.col;
        }
        if let (Some(counter), Some(plan)) = (self.summary.as_ref(), self.plan.summary.as_ref()) {
            features.summary.resize(SUMMARY_LEN, 0.0);
            counter.finish(plan, features.spots_found, &features.spots, &mut features.summary);
        }
        true
    }

    /// Writes the verdict into the frame, then what it calls for: refined spots, a compressed image.
    fn finish(&mut self, frame: &mut FrameHandle, decision: Decision) {
        let features = frame.pixels_and_features().1;
        features.score = decision.score;
        features.accepted = decision.accepted;
        features.trigger_failed = decision.failed;
        let refine = match &self.plan.peaks {
            Some((_, LocaliseFrames::All)) => true,
            Some((_, LocaliseFrames::Accepted)) => decision.accepted,
            None => false,
        };
        if refine {
            self.refine_spots(frame);
        }
        if decision.accepted
            && let Some(encoder) = self.encoder.as_mut()
        {
            let converter = self.converter.as_ref().map(|(_, c)| c.as_ref());
            let (raw, features) = frame.pixels_and_features();
            encoder.encode(&self.plan, converter, raw, &mut features.chunk);
        }
    }

    /// Gives every recorded spot of the frame the learned localiser's centre, a batch of patches at a
    /// time. A batch the model fails on leaves its spots unrefined and is counted.
    fn refine_spots(&mut self, frame: &mut FrameHandle) {
        let Some(refiner) = self.refiner.as_mut() else { return };
        let conv = match (&self.plan.photons, &self.converter) {
            (Photons::Integrating(_), Some((_, c))) => Some(Arc::clone(c)),
            (Photons::Integrating(shared), None) => Some(Arc::clone(&shared.base)),
            (Photons::Counting, _) => None,
        };
        let (panels, rows, cols) = self.plan.panels;
        let panel_pixels = rows * cols;
        let batch = refiner.centres.len();
        let (raw, features) = frame.pixels_and_features();
        let spot_count = features.spots.len();
        let mut next = 0;
        while next < spot_count {
            refiner.owners.clear();
            while next < spot_count && refiner.owners.len() < batch {
                let spot = features.spots[next];
                let panel = usize::from(spot.panel);
                let Some(panel_raw) =
                    raw.get(panel * panel_pixels..(panel + 1) * panel_pixels).filter(|_| panel < panels)
                else {
                    next += 1;
                    continue;
                };
                let first = panel * panel_pixels;
                let centre = patch_centre(&spot);
                let k = refiner.owners.len();
                let out = &mut refiner.patches[k * PATCH_PIXELS..(k + 1) * PATCH_PIXELS];
                match &conv {
                    Some(c) => extract_patch(
                        panel_raw,
                        rows,
                        cols,
                        centre,
                        &mut |seg: &[u16], at: usize, o: &mut [f32]| c.jungfrau_photons(seg, first + at, o),
                        out,
                    ),
                    None => {
                        let mask = &self.plan.mask;
                        extract_patch(
                            panel_raw,
                            rows,
                            cols,
                            centre,
                            &mut |seg: &[u16], at: usize, o: &mut [f32]| {
                                let m = mask.get(first + at..first + at + seg.len()).unwrap_or(&[]);
                                counts_as_photons(seg, m, o)
                            },
                            out,
                        )
                    }
                }
                let (r0, c0) = self.plan.origins.get(panel).copied().unwrap_or((0, 0));
                refiner.owners.push((next, [(r0 as i64 + centre.0) as f32, (c0 as i64 + centre.1) as f32]));
                next += 1;
            }
            let n = refiner.owners.len();
            if n == 0 {
                break;
            }
            match refiner.localiser.locate(&refiner.patches[..n * PATCH_PIXELS], &mut refiner.centres) {
                Ok(()) => {
                    // A centre off its own patch is no refinement (a patch unlike any the model knows).
                    let on_patch = |d: f32| d.is_finite() && d.abs() <= (PATCH_SIDE / 2) as f32;
                    for (&(i, [pr, pc]), [dr, dc]) in refiner.owners.iter().zip(&refiner.centres) {
                        if on_patch(*dr) && on_patch(*dc) {
                            features.spots[i].refined = Some([pr + dr, pc + dc]);
                            features.spots_refined += 1;
                        }
                    }
                }
                Err(_) => features.peak_batches_failed += 1,
            }
        }
    }
}
