//! Training data for the learned models, made by the reducer's own steps on simulated frames: the
//! frame is calibrated and its spots found by the threshold finder with the run's default parameters.
//!
//! - Peaks: each spot's 11 × 11 patch is cut exactly as the reducer cuts it. A spot whose nearest
//!   reflection of the truth lies within the match radius becomes one example: the patch, the
//!   reflection's centre as an offset from the patch's central pixel (the target), the centre of mass as
//!   the same offset (the classical answer to compare with), and the reflection's photons.
//! - Frames: each frame's summary for the learned trigger (`features::summary`), computed as the
//!   reducer computes it, with the truth: hit or not, crystal strength, visible reflections, and the
//!   spots the finder found.

use std::path::Path;

use super::npy;
use super::randomize::training_episodes;
use super::run::{SimConfig, SimError, SimulatedDetector};
use crate::calib::PhotonConverter;
use crate::features::patch::{PATCH_PIXELS, PATCH_SIDE, extract_patch, patch_centre};
use crate::features::summary::{SUMMARY_LEN, SummaryCounter, SummaryPlan};
use crate::features::{LocalThresholdFinder, Spot, SpotFinder, SpotFinderParams, ThresholdParams};

/// Examples of spots with their true centres.
#[derive(Clone, Debug, Default)]
pub struct PeakDataset {
    /// Photons, [`PATCH_PIXELS`] per example, row-major.
    pub patches: Vec<f32>,
    /// True centre − patch centre, pixels (row, column).
    pub targets: Vec<[f32; 2]>,
    /// Centre of mass − patch centre, pixels (row, column).
    pub centre_of_mass: Vec<[f32; 2]>,
    /// The reflection's photons.
    pub photons: Vec<f32>,
}

impl PeakDataset {
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn append(&mut self, mut other: PeakDataset) {
        self.patches.append(&mut other.patches);
        self.targets.append(&mut other.targets);
        self.centre_of_mass.append(&mut other.centre_of_mass);
        self.photons.append(&mut other.photons);
    }

    /// Writes `patches.npy` (N × 11 × 11), `targets.npy` and `centre_of_mass.npy` (N × 2) and
    /// `photons.npy` (N) into `dir`.
    ///
    /// # Errors
    /// The folder or a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), SimError> {
        let n = self.len();
        let flat = |v: &[[f32; 2]]| v.iter().flatten().copied().collect::<Vec<f32>>();
        save_arrays(
            dir,
            &[
                ("patches.npy", &[n, PATCH_SIDE, PATCH_SIDE], &self.patches),
                ("targets.npy", &[n, 2], &flat(&self.targets)),
                ("centre_of_mass.npy", &[n, 2], &flat(&self.centre_of_mass)),
                ("photons.npy", &[n], &self.photons),
            ],
        )
    }
}

/// Writes each (file name, shape, values) as a `.npy` file in `dir`, creating it.
fn save_arrays(dir: &Path, arrays: &[(&str, &[usize], &[f32])]) -> Result<(), SimError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimError::Io { path: path.clone(), source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for &(name, shape, data) in arrays {
        let path = dir.join(name);
        npy::write_f32(&path, shape, data).map_err(io(&path))?;
    }
    Ok(())
}

/// Makes a dataset from frames `1..=cfg.frames` of a simulated run, spread over the machine's cores;
/// `progress` hears each frame number done.
///
/// # Errors
/// The simulation cannot be prepared (a non-JUNGFRAU model).
pub fn peak_dataset(
    cfg: &SimConfig,
    finder: PeakFinder,
    match_radius_px: f32,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PeakDataset, SimError> {
    let detector = SimulatedDetector::new(cfg)?;
    let converter = PhotonConverter::with_mask(detector.calibration(), cfg.photon_energy_kev as f32, &detector.mask());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u64;
    let parts: Vec<PeakDataset> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (detector, converter) = (&detector, &converter);
                s.spawn(move || {
                    let mut part = PeakDataset::default();
                    let mut examples = FrameExamples::new(detector, finder, match_radius_px);
                    for frame_number in (1..=cfg.frames).filter(|f| f % threads == t) {
                        examples.add(frame_number, converter, &mut part);
                        progress(frame_number);
                    }
                    part
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().map_err(|_| SimError::WorkerPanicked)).collect::<Result<Vec<_>, _>>()
    })?;
    let mut all = PeakDataset::default();
    for part in parts {
        all.append(part);
    }
    Ok(all)
}

/// Which finder cuts a peak dataset's spots.
#[derive(Clone, Copy, Debug)]
pub enum PeakFinder {
    /// The fixed-threshold finder (the simulator's backgrounds are low enough for it).
    Fixed(SpotFinderParams),
    /// The reducer's default: each tile's own background and noise (holds on real backgrounds).
    Local(ThresholdParams),
}

/// A worker's finder.
enum Finding {
    Fixed(SpotFinder),
    Local(LocalThresholdFinder),
}

impl Finding {
    fn new(finder: PeakFinder, rows: usize, cols: usize) -> Finding {
        match finder {
            PeakFinder::Fixed(p) => Finding::Fixed(SpotFinder::new(p)),
            PeakFinder::Local(p) => Finding::Local(LocalThresholdFinder::new(p, rows, cols)),
        }
    }

    fn find_in_panel(&mut self, image: &mut [f32], rows: usize, cols: usize, panel: u16, out: &mut Vec<Spot>) {
        match self {
            Finding::Fixed(f) => f.find_in_panel(image, rows, cols, panel, out),
            Finding::Local(f) => f.find_in_panel(image, rows, cols, panel, out),
        };
    }
}

/// Spot patches of `frames` frames of the built-in training distribution (`sim::randomize`): a new
/// beamline every [`EPISODE_FRAMES`](super::randomize::EPISODE_FRAMES) frames, on `base`'s detector at its hit rate, so the spots have
/// the distribution's shapes (pseudo-Voigt, streaked, of every width) on its backgrounds. Spots are
/// found by the reducer's default finder (each tile's own background), which holds on backgrounds of
/// several photons a pixel where a fixed threshold finds noise.
///
/// # Errors
/// The simulation cannot be prepared (a non-JUNGFRAU model).
pub fn randomized_peak_dataset(
    base: &SimConfig,
    seed: u64,
    frames: u64,
    finder: ThresholdParams,
    match_radius_px: f32,
) -> Result<PeakDataset, SimError> {
    let mut all = PeakDataset::default();
    for (_, cfg) in training_episodes(base, seed, frames) {
        all.append(peak_dataset(&cfg, PeakFinder::Local(finder), match_radius_px, &|_| {})?);
    }
    Ok(all)
}

/// Frame summaries with their truth, one row per frame.
#[derive(Clone, Debug, Default)]
pub struct FrameDataset {
    /// [`SUMMARY_LEN`] values per frame.
    pub summaries: Vec<f32>,
    /// 1 for a hit, 0 for a miss.
    pub hit: Vec<f32>,
    /// Crystal strength (mean photons of a strong reflection; 0 for a miss).
    pub strength: Vec<f32>,
    /// Reflections of at least 25 photons.
    pub visible_spots: Vec<f32>,
    /// Reflections standing out of the background where they land (`sim::run::detectable`): a hit
    /// with fewer than ten is not a usable one.
    pub detectable_spots: Vec<f32>,
    pub spots_found: Vec<f32>,
}

impl FrameDataset {
    pub fn len(&self) -> usize {
        self.hit.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hit.is_empty()
    }

    /// Writes `summaries.npy` (N × SUMMARY_LEN), `hit.npy`, `strength.npy`, `visible_spots.npy`,
    /// `detectable_spots.npy` and `spots_found.npy` (N) into `dir`.
    ///
    /// # Errors
    /// The folder or a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), SimError> {
        let n = self.len();
        save_arrays(
            dir,
            &[
                ("summaries.npy", &[n, SUMMARY_LEN], &self.summaries),
                ("hit.npy", &[n], &self.hit),
                ("strength.npy", &[n], &self.strength),
                ("visible_spots.npy", &[n], &self.visible_spots),
                ("detectable_spots.npy", &[n], &self.detectable_spots),
                ("spots_found.npy", &[n], &self.spots_found),
            ],
        )
    }
}

/// Summarises frames `1..=cfg.frames` of a simulated run as the reducer would (threshold finder with
/// `finder`), spread over the machine's cores, in frame order.
///
/// # Errors
/// The simulation cannot be prepared (a non-JUNGFRAU model).
pub fn frame_dataset(
    cfg: &SimConfig,
    finder: SpotFinderParams,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FrameDataset, SimError> {
    let detector = SimulatedDetector::new(cfg)?;
    let converter = PhotonConverter::with_mask(detector.calibration(), cfg.photon_energy_kev as f32, &detector.mask());
    let (panels, rows, cols) = detector.geometry().panels();
    let image = detector.panel_image();
    let (image_rows, image_cols) = image.shape();
    let origins: Vec<(usize, usize)> =
        (0..panels).map(|p| detector.geometry().panel_origin(p, detector.layout())).collect();
    let plan = SummaryPlan::new(&origins, image_rows, image_cols, &detector.diffraction());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u64;
    let mut rows_out: Vec<(u64, Vec<f32>, [f32; 5])> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (detector, converter, plan) = (&detector, &converter, &plan);
                s.spawn(move || {
                    let mut finder = SpotFinder::new(finder);
                    let mut counter = SummaryCounter::new(plan);
                    let mut photons = vec![0f32; rows * cols];
                    let mut assembled = vec![0f32; image.pixels()];
                    let mut spots = Vec::with_capacity(512);
                    let mut out = Vec::new();
                    for frame_number in (1..=cfg.frames).filter(|f| f % threads == t) {
                        let (raw, truth) = detector.frame(frame_number);
                        counter.clear();
                        spots.clear();
                        let mut found = 0;
                        for (panel, raw) in raw.chunks_exact(rows * cols).take(panels).enumerate() {
                            converter.jungfrau_photons(raw, panel * rows * cols, &mut photons);
                            image.assemble(&photons, &mut assembled);
                            counter.add_panel(plan, panel, &assembled);
                            found +=
                                finder.find_in_panel(&mut assembled, image_rows, image_cols, panel as u16, &mut spots);
                        }
                        let mut summary = vec![0f32; SUMMARY_LEN];
                        counter.finish(plan, &mut summary);
                        let facts = [
                            f32::from(u8::from(truth.hit)),
                            truth.mean_reflection_photons as f32,
                            truth.visible_spots as f32,
                            truth.detectable_spots as f32,
                            found as f32,
                        ];
                        out.push((frame_number, summary, facts));
                        progress(frame_number);
                    }
                    out
                })
            })
            .collect();
        let parts = workers.into_iter().map(|w| w.join().map_err(|_| SimError::WorkerPanicked));
        parts.collect::<Result<Vec<_>, _>>().map(|p| p.into_iter().flatten().collect::<Vec<_>>())
    })?;
    rows_out.sort_by_key(|r| r.0);
    let mut data = FrameDataset::default();
    for (_, summary, [hit, strength, visible, detectable, found]) in rows_out {
        data.summaries.extend_from_slice(&summary);
        data.hit.push(hit);
        data.strength.push(strength);
        data.visible_spots.push(visible);
        data.detectable_spots.push(detectable);
        data.spots_found.push(found);
    }
    Ok(data)
}

impl FrameDataset {
    fn append(&mut self, mut other: FrameDataset) {
        self.summaries.append(&mut other.summaries);
        self.hit.append(&mut other.hit);
        self.strength.append(&mut other.strength);
        self.visible_spots.append(&mut other.visible_spots);
        self.detectable_spots.append(&mut other.detectable_spots);
        self.spots_found.append(&mut other.spots_found);
    }
}

/// Summarises `frames` frames of the built-in training distribution (`sim::randomize`): episodes of
/// [`EPISODE_FRAMES`](super::randomize::EPISODE_FRAMES) frames, each a beamline drawn at random, on `base`'s detector at its hit rate.
///
/// # Errors
/// The simulation cannot be prepared (a non-JUNGFRAU model).
pub fn randomized_frame_dataset(
    base: &SimConfig,
    seed: u64,
    frames: u64,
    finder: SpotFinderParams,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FrameDataset, SimError> {
    let mut all = FrameDataset::default();
    for (before, cfg) in training_episodes(base, seed, frames) {
        all.append(frame_dataset(&cfg, finder, &|f| progress(before + f))?);
    }
    Ok(all)
}

/// One worker's scratch.
struct FrameExamples<'a> {
    detector: &'a SimulatedDetector,
    finder: Finding,
    photons: Vec<f32>,
    assembled: Vec<f32>,
    spots: Vec<Spot>,
    match_radius_px: f32,
}

impl<'a> FrameExamples<'a> {
    fn new(detector: &'a SimulatedDetector, finder: PeakFinder, match_radius_px: f32) -> FrameExamples<'a> {
        let (rows, cols) = detector.panel_image().shape();
        FrameExamples {
            detector,
            finder: Finding::new(finder, rows, cols),
            photons: Vec::new(),
            assembled: Vec::new(),
            spots: Vec::with_capacity(4096),
            match_radius_px,
        }
    }

    fn add(&mut self, frame_number: u64, converter: &PhotonConverter, out: &mut PeakDataset) {
        let (raw, truth) = self.detector.frame(frame_number);
        if truth.reflections.is_empty() {
            return;
        }
        let (panels, rows, cols) = self.detector.geometry().panels();
        let panel_pixels = rows * cols;
        let image = self.detector.panel_image();
        let (image_rows, image_cols) = image.shape();
        self.photons.resize(panel_pixels, 0.0);
        self.assembled.resize(image.pixels(), 0.0);
        let r2 = self.match_radius_px * self.match_radius_px;
        let mut patch = [0f32; PATCH_PIXELS];
        for (panel, raw) in raw.chunks_exact(panel_pixels).take(panels).enumerate() {
            let first = panel * panel_pixels;
            converter.jungfrau_photons(raw, first, &mut self.photons);
            image.assemble(&self.photons, &mut self.assembled);
            self.spots.clear();
            self.finder.find_in_panel(&mut self.assembled, image_rows, image_cols, panel as u16, &mut self.spots);
            let (r0, c0) = self.detector.geometry().panel_origin(panel, self.detector.layout());
            for spot in &self.spots {
                let (row, col) = (r0 as f32 + spot.row, c0 as f32 + spot.col);
                let nearest = truth
                    .reflections
                    .iter()
                    .map(|&[tr, tc, photons]| ((tr - row).powi(2) + (tc - col).powi(2), tr, tc, photons))
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                let Some((d2, tr, tc, photons)) = nearest.filter(|n| n.0 <= r2) else { continue };
                let _ = d2;
                let centre = patch_centre(spot);
                extract_patch(
                    raw,
                    image,
                    centre,
                    &mut |seg: &[u16], at: usize, o: &mut [f32]| {
                        converter.jungfrau_photons(seg, first + at, o);
                    },
                    &mut patch,
                );
                let (pr, pc) = ((r0 as i64 + centre.0) as f32, (c0 as i64 + centre.1) as f32);
                out.patches.extend_from_slice(&patch);
                out.targets.push([tr - pr, tc - pc]);
                out.centre_of_mass.push([row - pr, col - pc]);
                out.photons.push(photons);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::summary::{PER_SHELL, SHELLS};

    #[test]
    fn examples_are_bright_patches_near_their_targets() {
        let cfg = SimConfig { frames: 4, hit_rate: 1.0, seed: 5, ..SimConfig::default() };
        let params = SpotFinderParams::default();
        let data = peak_dataset(&cfg, PeakFinder::Fixed(params), 2.0, &|_| {}).unwrap();
        assert!(data.len() > 20, "{} examples", data.len());
        assert_eq!(data.patches.len(), data.len() * PATCH_PIXELS);
        for (i, t) in data.targets.iter().enumerate() {
            assert!(t[0].abs() <= 2.6 && t[1].abs() <= 2.6, "target {t:?}");
            let patch = &data.patches[i * PATCH_PIXELS..(i + 1) * PATCH_PIXELS];
            let (max_at, _) = patch.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
            let (mr, mc) = ((max_at / PATCH_SIDE) as f32 - 5.0, (max_at % PATCH_SIDE) as f32 - 5.0);
            // The brightest pixel of a patch sits on its spot.
            assert!((mr - t[0]).abs() <= 2.5 && (mc - t[1]).abs() <= 2.5, "max at ({mr}, {mc}), target {t:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        data.save(dir.path()).unwrap();
        let size = std::fs::metadata(dir.path().join("patches.npy")).unwrap().len();
        assert_eq!(size as usize, 128 + data.patches.len() * 4);
    }

    #[test]
    fn frame_summaries_tell_hits_from_misses() {
        let cfg = SimConfig { frames: 12, hit_rate: 0.5, seed: 9, ..SimConfig::default() };
        let params = SpotFinderParams::default();
        let data = frame_dataset(&cfg, params, &|_| {}).unwrap();
        assert_eq!(data.len(), 12);
        assert_eq!(data.summaries.len(), 12 * SUMMARY_LEN);
        let hits = data.hit.iter().filter(|&&h| h == 1.0).count();
        assert!(hits > 0 && hits < 12, "{hits} hits");
        // Blocks 6 deviations above the background, summed over the shells: more in every strong hit
        // than in any miss.
        let clustered =
            |i: usize| -> f32 { (0..SHELLS).map(|r| data.summaries[i * SUMMARY_LEN + r * PER_SHELL + 4]).sum() };
        let most_in_a_miss = (0..12).filter(|&i| data.hit[i] == 0.0).map(clustered).fold(0.0, f32::max);
        for i in (0..12).filter(|&i| data.visible_spots[i] >= 10.0) {
            assert!(clustered(i) > most_in_a_miss, "frame {i}");
        }
        let dir = tempfile::tempdir().unwrap();
        data.save(dir.path()).unwrap();
        assert!(dir.path().join("summaries.npy").is_file());
    }
}
