//! Training data for the learned peak localiser, made by the reducer's own steps on simulated frames:
//! the frame is calibrated, its spots found by the threshold finder with the run's default parameters,
//! and each spot's 11 × 11 patch cut exactly as the reducer cuts it. A spot whose nearest reflection of
//! the truth lies within the match radius becomes one example: the patch, the reflection's centre as an
//! offset from the patch's central pixel (the target), the centre of mass as the same offset (the
//! classical answer to compare with), and the reflection's photons.

use std::path::Path;

use super::npy;
use super::run::{SimConfig, SimError, SimulatedDetector};
use crate::calib::PhotonConverter;
use crate::features::patch::{PATCH_PIXELS, PATCH_SIDE, extract_patch, patch_centre};
use crate::features::{Spot, SpotFinder, SpotFinderParams};

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
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SimError::Io { path: path.clone(), source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let n = self.len();
        let flat = |v: &[[f32; 2]]| v.iter().flatten().copied().collect::<Vec<f32>>();
        let files: [(&str, Vec<usize>, Vec<f32>); 4] = [
            ("patches.npy", vec![n, PATCH_SIDE, PATCH_SIDE], self.patches.clone()),
            ("targets.npy", vec![n, 2], flat(&self.targets)),
            ("centre_of_mass.npy", vec![n, 2], flat(&self.centre_of_mass)),
            ("photons.npy", vec![n], self.photons.clone()),
        ];
        for (name, shape, data) in files {
            let path = dir.join(name);
            npy::write_f32(&path, &shape, &data).map_err(io(&path))?;
        }
        Ok(())
    }
}

/// Makes a dataset from frames `1..=cfg.frames` of a simulated run, spread over the machine's cores;
/// `progress` hears each frame number done.
///
/// # Errors
/// The simulation cannot be prepared (a non-JUNGFRAU model).
pub fn peak_dataset(
    cfg: &SimConfig,
    finder: SpotFinderParams,
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
        workers.into_iter().map(|w| w.join().unwrap_or_default()).collect()
    });
    let mut all = PeakDataset::default();
    for part in parts {
        all.append(part);
    }
    Ok(all)
}

/// One worker's scratch.
struct FrameExamples<'a> {
    detector: &'a SimulatedDetector,
    finder: SpotFinder,
    photons: Vec<f32>,
    spots: Vec<Spot>,
    match_radius_px: f32,
}

impl<'a> FrameExamples<'a> {
    fn new(detector: &'a SimulatedDetector, finder: SpotFinderParams, match_radius_px: f32) -> FrameExamples<'a> {
        FrameExamples {
            detector,
            finder: SpotFinder::new(finder),
            photons: Vec::new(),
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
        self.photons.resize(panel_pixels, 0.0);
        let r2 = self.match_radius_px * self.match_radius_px;
        let mut patch = [0f32; PATCH_PIXELS];
        for (panel, raw) in raw.chunks_exact(panel_pixels).take(panels).enumerate() {
            let first = panel * panel_pixels;
            converter.jungfrau_photons(raw, first, &mut self.photons);
            self.spots.clear();
            self.finder.find_in_panel(&mut self.photons, rows, cols, panel as u16, &mut self.spots);
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
                    rows,
                    cols,
                    centre,
                    &mut |seg: &[u16], at: usize, o: &mut [f32]| converter.jungfrau_photons(seg, first + at, o),
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
    use crate::config::SpotsTriggerSection;

    #[test]
    fn examples_are_bright_patches_near_their_targets() {
        let cfg = SimConfig { frames: 4, hit_rate: 1.0, seed: 5, ..SimConfig::default() };
        let s = SpotsTriggerSection::default();
        let params = SpotFinderParams {
            threshold_photons: s.threshold_photons,
            min_spot_pixels: s.min_spot_pixels,
            max_spot_pixels: s.max_spot_pixels,
            min_spot_photons: s.min_spot_photons,
        };
        let data = peak_dataset(&cfg, params, 2.0, &|_| {}).unwrap();
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
}
