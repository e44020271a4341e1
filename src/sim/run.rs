//! One simulated run, from its parameters to the files on disk: `run.pcap` (or `.pcapng`),
//! `truth.json`, `calibration.bin` and `replay.toml` (a config that replays the run).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::capture_writer::{CaptureFileFormat, CaptureWriter};
pub use super::config::SimConfig;
use super::crystal::{Crystal, Experiment, Reflection, random_rotation, reflections};
pub use super::error::SimError;
pub use super::packets::PacketFaults;
use super::packets::{PacketCounts, PacketEmitter};
use super::response::JungfrauResponse;
use super::scene::{ICE_RING_WIDTH, ICE_RINGS_A, Ice, SpotShape, brightest_block, draw_log};
use crate::detector::{DetectorGeometry, DetectorType, ImageLayout, PanelImage};
use crate::features::summary::Diffraction;
use crate::rng::Rng;

/// What was really in one frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameTruth {
    pub frame_number: u64,
    pub hit: bool,
    /// Crystal strength of this hit (0 for a miss).
    pub mean_reflection_photons: f64,
    /// Reflections landing on a module.
    pub reflections_on_detector: u32,
    /// Those with at least [`VISIBLE_SPOT_PHOTONS`] photons: what a spot finder can be expected to see.
    pub visible_spots: u32,
    /// Those standing out of the background where they land: the brightest 2 × 2 block of the spot
    /// as drawn (its expected photons, from its own profile) at least 5 Poisson deviations above
    /// the block's background. What makes a hit usable: with fewer than [`USABLE_HIT_SPOTS`] a
    /// crystal was there but left too little.
    #[serde(default)]
    pub detectable_spots: u32,
    pub bragg_photons: f64,
    /// Every reflection centred on a module with at least one photon: image row, column, photons.
    #[serde(default)]
    pub reflections: Vec<[f32; 3]>,
}

/// A reflection with this many photons puts a few photons in each of its central pixels.
pub const VISIBLE_SPOT_PHOTONS: f64 = 25.0;

/// Detectable spots a hit needs to be usable (indexing needs about ten).
pub const USABLE_HIT_SPOTS: u32 = 10;

/// Whether a spot whose brightest 2 × 2 block holds `block_photons` (expected) stands out of a
/// background of `background` photons a pixel. The block's share of the spot is the spot's own: from
/// nearly all of a sharp round spot to a tenth of a broad streaked one (taking it as half, as this
/// rule once did, counted broad spots that no block shows).
pub fn detectable(block_photons: f64, background: f64) -> bool {
    block_photons >= 5.0 * (4.0 * background.max(0.0) + 1.0).sqrt()
}

/// The truth file: the run's parameters, what was done to the packets, and every frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunTruth {
    pub config: SimConfig,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub packets_reordered: u64,
    pub packets_duplicated: u64,
    pub frames: Vec<FrameTruth>,
}

impl RunTruth {
    /// Reads a truth file.
    ///
    /// # Errors
    /// Unreadable or not a truth file.
    pub fn load(path: &Path) -> Result<RunTruth, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read { path: path.into(), source })?;
        serde_json::from_str(&text).map_err(|e| SimError::Truth { path: path.into(), reason: e.to_string() })
    }
}

/// Where a run's files went.
#[derive(Clone, Debug)]
pub struct SimOutputs {
    pub capture: PathBuf,
    pub truth: PathBuf,
    pub calibration: PathBuf,
    pub replay_config: PathBuf,
    pub truth_summary: RunTruth,
}

/// Fixed per run: detector response, layout, background and where the beam is.
struct RunModel {
    geometry: DetectorGeometry,
    /// A module as built: chip-border pixels twice the size, so scenes are drawn on the assembled
    /// image and each raw pixel collects what falls on it (both halves of a border pixel).
    image: PanelImage,
    layout: ImageLayout,
    response: JungfrauResponse,
    /// Background photons per pixel (frame order), before the per-frame jet fluctuation.
    background: Vec<f32>,
    /// Uniform ice rings of one photon at their peak (frame order); empty when the scene has no ice.
    ice_rings: Vec<f32>,
    hot_pixels: Vec<usize>,
    dead_pixels: Vec<usize>,
    experiment: Experiment,
    /// The same place in the beam as the frame summary reads it (each pixel's resolution).
    diffraction: Diffraction,
    crystal: Crystal,
}

impl RunModel {
    fn new(cfg: &SimConfig) -> Result<RunModel, SimError> {
        let geometry = DetectorGeometry::with_consecutive_ports(&cfg.model, cfg.modules, cfg.first_udp_port)?;
        if geometry.model.det_type != DetectorType::Jungfrau {
            return Err(SimError::NotJungfrau(cfg.model.clone()));
        }
        let m = geometry.model;
        let image = PanelImage::for_geometry(&geometry, true);
        let (module_rows, module_cols) = image.shape();
        let layout = ImageLayout {
            modules: cfg.modules,
            module_rows,
            module_cols,
            modules_per_row: cfg.modules_per_row.clamp(1, cfg.modules),
            gap_rows_px: cfg.module_gap_rows_px,
            gap_cols_px: cfg.module_gap_cols_px,
        };
        let mut rng = Rng::new(cfg.seed, u64::MAX);
        let response = match &cfg.calibration {
            Some(maps) => JungfrauResponse::with_maps(maps.as_ref().clone(), cfg.noise_kev as f32, &mut rng),
            None => {
                JungfrauResponse::new(cfg.modules, m.module_rows(), m.module_cols(), cfg.noise_kev as f32, &mut rng)
            }
        };
        let wavelength_a = crate::detector::HC_KEV_ANGSTROM / cfg.photon_energy_kev;
        let pixel_mm = f64::from(m.pixel_size_um) / 1000.0;
        // Where the config puts it, or a little off the image centre, as it never sits exactly on it.
        let (beam_row, beam_col) = cfg
            .beam_center_px
            .unwrap_or((layout.image_rows() as f64 * 0.5 + 3.3, layout.image_cols() as f64 * 0.5 - 5.7));
        let corner_mm = (beam_row.max(layout.image_rows() as f64 - beam_row))
            .hypot(beam_col.max(layout.image_cols() as f64 - beam_col))
            * pixel_mm;
        let theta_max = 0.5 * (corner_mm / cfg.distance_mm).atan();
        let experiment = Experiment {
            wavelength_a,
            distance_mm: cfg.distance_mm,
            pixel_mm,
            beam_row,
            beam_col,
            d_min_a: wavelength_a / (2.0 * theta_max.sin()),
        };
        let diffraction = Diffraction {
            beam_px: (beam_row, beam_col),
            distance_mm: cfg.distance_mm,
            pixel_mm,
            photon_energy_kev: cfg.photon_energy_kev,
        };
        let module_pixels = m.module_rows() * m.module_cols();
        let sc = &cfg.scene;
        let mut background = vec![0f32; cfg.modules * module_pixels];
        let mut ice_rings = if sc.ice_rate > 0.0 { vec![0f32; background.len()] } else { Vec::new() };
        let (mut scene, mut ice_scene) = (vec![0f32; image.pixels()], vec![0f32; image.pixels()]);
        for (module, raw) in background.chunks_exact_mut(module_pixels).enumerate() {
            let (r0, c0) = layout.module_origin(module);
            for (i, (v, ice)) in scene.iter_mut().zip(ice_scene.iter_mut()).enumerate() {
                let (row, col) = ((r0 + i / module_cols) as f64, (c0 + i % module_cols) as f64);
                let s = diffraction.inverse_d(row, col);
                let (r, c) = (row - beam_row, col - beam_col);
                let ring = (-0.5 * ((s - 1.0 / sc.solvent_ring_d_a) / sc.solvent_ring_width).powi(2)).exp();
                let shade = sc.shadow.map_or(1.0, |sh| {
                    let beyond = c * sh.angle.cos() + r * sh.angle.sin() > sh.offset_px;
                    if beyond { sh.transmission } else { 1.0 }
                });
                *v = ((cfg.air_photons + cfg.solvent_ring_photons * ring) * shade) as f32;
                if !ice_rings.is_empty() {
                    let near = ICE_RINGS_A.iter().map(|d| (-0.5 * ((s - 1.0 / d) / ICE_RING_WIDTH).powi(2)).exp());
                    *ice = (near.sum::<f64>() * shade) as f32;
                }
            }
            image.fold(&scene, raw);
            if let Some(raw_ice) = ice_rings.get_mut(module * module_pixels..(module + 1) * module_pixels) {
                image.fold(&ice_scene, raw_ice);
            }
        }
        let hot_pixels = (0..cfg.modules)
            .flat_map(|m| (0..cfg.hot_pixels_per_module).map(move |_| m))
            .map(|m| m * module_pixels + rng.below(module_pixels))
            .collect();
        let dead_pixels = (0..cfg.modules)
            .flat_map(|m| (0..cfg.dead_pixels_per_module).map(move |_| m))
            .map(|m| m * module_pixels + rng.below(module_pixels))
            .collect();
        Ok(RunModel {
            geometry,
            image,
            layout,
            response,
            background,
            ice_rings,
            hot_pixels,
            dead_pixels,
            experiment,
            diffraction,
            crystal: Crystal::default(),
        })
    }

    /// The raw image of frame `frame_number` and its truth.
    fn frame(&self, cfg: &SimConfig, frame_number: u64, scratch: &mut Vec<Reflection>) -> (Vec<u16>, FrameTruth) {
        let mut rng = Rng::new(cfg.seed, frame_number);
        let dark = frame_number <= cfg.dark_frames;
        let hit = !dark && rng.uniform() < cfg.hit_rate;
        // No beam in a dark frame: no scatter, only what the pixels do by themselves.
        let jet = if dark { 0.0 } else { rng.range(0.8, 1.2) as f32 };
        let mut expected: Vec<f32> = self.background.iter().map(|b| b * jet).collect();
        for &p in &self.hot_pixels {
            expected[p] += 50.0;
        }
        let ice = if dark { Ice::None } else { cfg.scene.ice(&mut rng) };
        match ice {
            Ice::None => {}
            Ice::Uniform(peak) => {
                for (e, ring) in expected.iter_mut().zip(&self.ice_rings) {
                    *e += ring * peak as f32;
                }
            }
            Ice::Spotty(spots) => self.add_ice_spots(&mut expected, cfg, spots, &mut rng),
        }
        let mut truth = FrameTruth {
            frame_number,
            hit,
            mean_reflection_photons: 0.0,
            reflections_on_detector: 0,
            visible_spots: 0,
            detectable_spots: 0,
            bragg_photons: 0.0,
            reflections: Vec::new(),
        };
        if hit {
            let [lo, hi] = cfg.mean_reflection_photons;
            let strength = (lo.ln() + (hi.ln() - lo.ln()) * rng.uniform()).exp();
            truth.mean_reflection_photons = strength;
            let (crystal, experiment) = cfg.scene.crystal(self.crystal, self.experiment, &mut rng);
            let shape = cfg.scene.spot_shape(&mut rng);
            let lattices =
                if cfg.scene.two_lattices_rate > 0.0 && rng.uniform() < cfg.scene.two_lattices_rate { 2 } else { 1 };
            scratch.clear();
            let mut lattice = Vec::new();
            for n in 0..lattices {
                let rotation = random_rotation(&mut rng);
                // A second lattice is a smaller crystal beside the first.
                let share = if n == 0 { 1.0 } else { rng.range(0.2, 1.0) };
                reflections(&crystal, &experiment, &rotation, strength * share, &mut rng, &mut lattice);
                scratch.append(&mut lattice);
            }
            for r in scratch.iter() {
                if let Some((background, block_photons)) = self.add_spot(&mut expected, r, shape) {
                    truth.detectable_spots += u32::from(detectable(block_photons, f64::from(background)));
                    truth.reflections_on_detector += 1;
                    truth.bragg_photons += r.photons;
                    truth.visible_spots += u32::from(r.photons >= VISIBLE_SPOT_PHOTONS);
                    if r.photons >= 1.0 {
                        truth.reflections.push([r.row as f32, r.col as f32, r.photons as f32]);
                    }
                }
            }
        }
        let e = cfg.photon_energy_kev as f32;
        let drift = (cfg.pedestal_drift_adu_per_frame * (frame_number - 1) as f64) as f32;
        let mut raw: Vec<u16> = expected
            .iter()
            .enumerate()
            .map(|(i, &mean)| self.response.encode(i, rng.poisson(mean) as f32 * e, drift, &mut rng))
            .collect();
        // A dead pixel answers its pedestal whatever it is given.
        for &p in &self.dead_pixels {
            raw[p] = self.response.maps.pedestal(0)[p].round().clamp(0.0, 16383.0) as u16;
        }
        (raw, truth)
    }

    /// The hot and dead pixels, as a mask file would flag them.
    fn mask(&self) -> crate::calib::PixelMask {
        let mut mask = crate::calib::PixelMask::none(self.background.len());
        for &p in &self.hot_pixels {
            mask.set(p, crate::calib::mask::HOT);
        }
        for &p in &self.dead_pixels {
            mask.set(p, crate::calib::mask::DEAD);
        }
        mask
    }

    /// Sharp spots of spotty ice: crystallites scattered on the ice rings, at random azimuths.
    fn add_ice_spots(&self, expected: &mut [f32], cfg: &SimConfig, spots: usize, rng: &mut Rng) {
        let e = &self.experiment;
        for _ in 0..spots {
            let d = ICE_RINGS_A[rng.below(ICE_RINGS_A.len())];
            let sin_theta = e.wavelength_a / (2.0 * d);
            if sin_theta >= 0.7 {
                continue;
            }
            let radius_px = e.distance_mm * (2.0 * sin_theta.asin()).tan() / e.pixel_mm;
            let phi = rng.range(0.0, std::f64::consts::TAU);
            let photons = draw_log(rng, cfg.scene.ice_spot_photons);
            let r = Reflection {
                row: e.beam_row + radius_px * phi.sin(),
                col: e.beam_col + radius_px * phi.cos(),
                photons,
                d_spacing_a: d,
            };
            self.add_spot(expected, &r, SpotShape::gaussian(0.5));
        }
    }

    /// Spreads a reflection's photons over the pixels around it, in `shape` streaked across its ring;
    /// the photons a pixel expected where it lands before it came and the photons that land in the
    /// spot's brightest 2 × 2 block, or `None` if its centre misses every module.
    fn add_spot(&self, expected: &mut [f32], r: &Reflection, shape: SpotShape) -> Option<(f32, f64)> {
        let (row, col) = (r.row.round(), r.col.round());
        let background = expected[self.raw_pixel(row, col)?];
        // Along the ring's radius and across it.
        let (dy, dx) = (r.row - self.experiment.beam_row, r.col - self.experiment.beam_col);
        let length = dy.hypot(dx).max(1e-9);
        let mut weights = shape.profile(r.row - row, r.col - col, (dy / length, dx / length));
        let norm: f64 = weights.iter().sum();
        let reach = shape.reach();
        let side = (2 * reach + 1) as usize;
        for (k, weight) in weights.iter_mut().enumerate() {
            let (pr, pc) = (row + (k / side) as f64 - f64::from(reach), col + (k % side) as f64 - f64::from(reach));
            // What falls off the detector is lost, to the spot's brightest block too.
            match self.raw_pixel(pr, pc) {
                Some(raw) => expected[raw] += (r.photons * *weight / norm) as f32,
                None => *weight = 0.0,
            }
        }
        Some((background, r.photons * brightest_block(&weights, side) / norm))
    }

    /// The raw pixel (module after module) that counts what falls on image pixel (`row`, `col`), or
    /// `None` off every module.
    fn raw_pixel(&self, row: f64, col: f64) -> Option<usize> {
        if row < 0.0 || col < 0.0 {
            return None;
        }
        let (module, at) = self.layout.locate(row as usize, col as usize)?;
        let image_cols = self.layout.module_cols;
        let (raw, _) = self.image.source(at / image_cols, at % image_cols)?;
        Some(module * self.image.raw_shape().0 * self.image.raw_shape().1 + raw)
    }
}

/// A simulated detector held in memory: frames on demand, with their truth, and no packets or files
/// (for training data and benchmarks).
pub struct SimulatedDetector {
    model: RunModel,
    cfg: SimConfig,
}

impl SimulatedDetector {
    /// Prepares the detector response, background and geometry of a run.
    ///
    /// # Errors
    /// A non-JUNGFRAU model or an unknown one.
    pub fn new(cfg: &SimConfig) -> Result<SimulatedDetector, SimError> {
        Ok(SimulatedDetector { model: RunModel::new(cfg)?, cfg: cfg.clone() })
    }

    /// The raw pixels (JUNGFRAU encoding, module after module) of frame `frame_number` and its truth;
    /// the same as [`simulate`] writes for that frame with the same configuration.
    pub fn frame(&self, frame_number: u64) -> (Vec<u16>, FrameTruth) {
        self.model.frame(&self.cfg, frame_number, &mut Vec::new())
    }

    /// The per-pixel calibration maps of the simulated modules.
    pub fn calibration(&self) -> &crate::calib::CalibrationMaps {
        &self.model.response.maps
    }

    /// The simulated hot and dead pixels.
    pub fn mask(&self) -> crate::calib::PixelMask {
        self.model.mask()
    }

    pub fn geometry(&self) -> &DetectorGeometry {
        &self.model.geometry
    }

    /// How the modules sit in the assembled image (each module assembled: 514 × 1030).
    pub fn layout(&self) -> &ImageLayout {
        &self.model.layout
    }

    /// A module's assembled image, where truth positions and the beam centre are given.
    pub fn panel_image(&self) -> &PanelImage {
        &self.model.image
    }

    /// Where the beam meets the detector, in image pixels (row, column).
    pub fn beam_center_px(&self) -> (f64, f64) {
        (self.model.experiment.beam_row, self.model.experiment.beam_col)
    }

    /// Where the detector sits in the beam, as the frame summary reads it.
    pub fn diffraction(&self) -> Diffraction {
        self.model.diffraction
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }
}

/// Simulates a run into `out_dir`, calling `progress` with each frame number written.
///
/// # Errors
/// Bad parameters, a non-JUNGFRAU model, or a file that cannot be written.
pub fn simulate(cfg: &SimConfig, out_dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<SimOutputs, SimError> {
    for (name, v) in [
        ("hit_rate", cfg.hit_rate),
        ("faults.loss", cfg.faults.loss),
        ("faults.reorder", cfg.faults.reorder),
        ("faults.duplicate", cfg.faults.duplicate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(SimError::Parameter(format!("{name} = {v} is outside 0..=1")));
        }
    }
    let positive = |v: f64, floor: f64| v.is_finite() && v > floor;
    if cfg.frames == 0
        || !positive(cfg.frame_rate_hz, 0.0)
        || !positive(cfg.distance_mm, 0.0)
        || !positive(cfg.photon_energy_kev, 1.0)
    {
        return Err(SimError::Parameter(
            "frames, frame_rate_hz, distance_mm and photon_energy_kev must be positive".into(),
        ));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimError::Io { path: path.clone(), source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let model = RunModel::new(cfg)?;
    let calibration = out_dir.join("calibration.bin");
    model.response.maps.save(&calibration)?;
    let mask = model.mask();
    let mask_path = out_dir.join("mask.bin");
    mask.save(&mask_path)
        .map_err(|e| SimError::Io { path: mask_path.clone(), source: std::io::Error::other(e.to_string()) })?;
    let ext = if cfg.format == CaptureFileFormat::Pcapng { "pcapng" } else { "pcap" };
    let capture = out_dir.join(format!("run.{ext}"));
    let file = std::fs::File::create(&capture).map_err(io(&capture))?;
    let mut writer = CaptureWriter::new(std::io::BufWriter::with_capacity(1 << 22, file), cfg.format, cfg.framing)
        .map_err(io(&capture))?;
    let mut truth = RunTruth {
        config: cfg.clone(),
        packets_sent: 0,
        packets_lost: 0,
        packets_reordered: 0,
        packets_duplicated: 0,
        frames: Vec::new(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let mut next = 1u64;
    let mut packets = PacketEmitter::new(&model.geometry, cfg.seed, cfg.frame_rate_hz, cfg.faults, cfg.modules_per_row);
    let mut counts = PacketCounts::default();
    while next <= cfg.frames {
        let batch: Vec<u64> = (next..=cfg.frames).take(threads * 2).collect();
        next += batch.len() as u64;
        let frames: Vec<(Vec<u16>, FrameTruth)> = std::thread::scope(|s| {
            let chunks: Vec<_> = batch
                .chunks(batch.len().div_ceil(threads))
                .map(|chunk| {
                    let model = &model;
                    s.spawn(move || {
                        let mut scratch = Vec::new();
                        chunk.iter().map(|&f| model.frame(cfg, f, &mut scratch)).collect::<Vec<_>>()
                    })
                })
                .collect();
            let parts = chunks.into_iter().map(|h| h.join().map_err(|_| SimError::WorkerPanicked));
            parts.collect::<Result<Vec<_>, _>>().map(|p| p.into_iter().flatten().collect())
        })?;
        for (raw, frame_truth) in frames {
            packets.emit(&mut writer, &raw, frame_truth.frame_number, &mut counts).map_err(io(&capture))?;
            progress(frame_truth.frame_number);
            truth.frames.push(frame_truth);
        }
    }
    writer.finish().map_err(io(&capture))?;
    (truth.packets_sent, truth.packets_lost) = (counts.sent, counts.lost);
    (truth.packets_reordered, truth.packets_duplicated) = (counts.reordered, counts.duplicated);
    let truth_path = out_dir.join("truth.json");
    let json = serde_json::to_vec_pretty(&truth).map_err(|e| SimError::Parameter(e.to_string()))?;
    std::fs::write(&truth_path, json).map_err(io(&truth_path))?;
    let replay_config = out_dir.join("replay.toml");
    std::fs::write(&replay_config, replay_toml(cfg, (model.experiment.beam_row, model.experiment.beam_col)))
        .map_err(io(&replay_config))?;
    Ok(SimOutputs { capture, truth: truth_path, calibration, replay_config, truth_summary: truth })
}

fn replay_toml(cfg: &SimConfig, beam: (f64, f64)) -> String {
    format!(
        r#"# Replays the simulated run in this folder (written by `hitgate simulate`).
[detector]
model = "{model}"
modules = {modules}
first_udp_port = {port}
modules_per_row = {per_row}
module_gap_rows_px = {gap_rows}
module_gap_cols_px = {gap_cols}
beam_center_row_px = {beam_row}
beam_center_col_px = {beam_col}
distance_mm = {distance}
photon_energy_kev = {energy}
# The simulator draws each module as built (double-size chip-border pixels); its truth and beam
# centre are in the assembled image, 514 × 1030 a module.
image = "assembled"

[calibration]
file = "calibration.bin"
mask_file = "mask.bin"
dark_frames = {dark}

[trigger]
kind = "spots"

[features.localiser]
# The learned peak localiser refines every spot of an accepted frame ("builtin": compiled into hitgate).
model = "builtin"

[[sink]]
kind = "raw"
dir = "replay/raw"

[[sink]]
kind = "features"
path = "replay/features.jsonl"
"#,
        model = cfg.model,
        modules = cfg.modules,
        port = cfg.first_udp_port,
        per_row = cfg.modules_per_row.clamp(1, cfg.modules),
        gap_rows = cfg.module_gap_rows_px,
        gap_cols = cfg.module_gap_cols_px,
        energy = cfg.photon_energy_kev,
        distance = cfg.distance_mm,
        beam_row = beam.0,
        beam_col = beam.1,
        dark = cfg.dark_frames,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_writes_the_same_run() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cfg = SimConfig {
            frames: 6,
            hit_rate: 0.5,
            faults: PacketFaults { loss: 0.01, reorder: 0.01, duplicate: 0.01 },
            ..SimConfig::default()
        };
        let ra = simulate(&cfg, a.path(), &mut |_| {}).unwrap();
        let rb = simulate(&cfg, b.path(), &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(&ra.capture).unwrap(), std::fs::read(&rb.capture).unwrap());
        assert_eq!(ra.truth_summary, rb.truth_summary);
        let other = simulate(&SimConfig { seed: 2, ..cfg }, b.path(), &mut |_| {}).unwrap();
        assert_ne!(std::fs::read(&ra.capture).unwrap(), std::fs::read(&other.capture).unwrap());
        assert_eq!(ra.truth_summary.packets_sent, 6 * 128);
        assert!(ra.truth_summary.packets_lost > 0);
    }
}
