//! What defines a simulated run: [`SimConfig`], built-in or the detector a config describes.

use serde::{Deserialize, Serialize};

use super::capture_writer::{CaptureFileFormat, LinkFraming};
use super::error::SimError;
use super::packets::PacketFaults;
use super::scene::Scene;
use crate::detector::DetectorType;

/// Everything that defines a simulated run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// A JUNGFRAU entry of the geometry table.
    pub model: String,
    pub modules: usize,
    pub modules_per_row: usize,
    pub module_gap_rows_px: usize,
    pub module_gap_cols_px: usize,
    pub first_udp_port: u16,
    pub frames: u64,
    /// Fraction of frames with a crystal in the beam.
    pub hit_rate: f64,
    pub seed: u64,
    pub photon_energy_kev: f64,
    pub distance_mm: f64,
    /// Frame rate of the recorded pace (capture timestamps).
    pub frame_rate_hz: f64,
    /// Crystal strength: mean photons of a fully excited low-resolution reflection, log-uniform in range.
    pub mean_reflection_photons: [f64; 2],
    /// Solvent ring peak and flat air scatter, photons per pixel per frame.
    pub solvent_ring_photons: f64,
    pub air_photons: f64,
    pub hot_pixels_per_module: usize,
    /// Pixels that never respond (stuck at their pedestal).
    #[serde(default)]
    pub dead_pixels_per_module: usize,
    /// Frames at the start without beam (for measuring pedestals), as a pedestal run takes them.
    #[serde(default)]
    pub dark_frames: u64,
    /// G0 pedestal drift per frame, ADU (the calibration file keeps the pedestal of frame 1).
    #[serde(default)]
    pub pedestal_drift_adu_per_frame: f64,
    pub faults: PacketFaults,
    #[serde(skip, default = "default_format")]
    pub format: CaptureFileFormat,
    #[serde(skip, default = "default_framing")]
    pub framing: LinkFraming,
    /// Where the beam meets the assembled image (row, column); a little off the image's centre when
    /// not given.
    #[serde(default)]
    pub beam_center_px: Option<(f64, f64)>,
    /// Electronic noise of G0 as energy (keV): 0.58 keV is the 24 ADU a real module's dark frames
    /// show at its 41 ADU/keV.
    #[serde(default = "default_noise_kev")]
    pub noise_kev: f64,
    /// The scene besides the detector: solvent ring, shadow, ice, crystals and their spots.
    #[serde(default)]
    pub scene: Scene,
    /// The detector's own pedestals and gains (a config's calibration files); drawn around typical
    /// values when not given.
    #[serde(skip)]
    pub calibration: Option<std::sync::Arc<crate::calib::CalibrationMaps>>,
}

fn default_noise_kev() -> f64 {
    0.58
}

fn default_format() -> CaptureFileFormat {
    CaptureFileFormat::Pcap
}

fn default_framing() -> LinkFraming {
    LinkFraming::Ethernet
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "jungfrau-1if".into(),
            modules: 1,
            modules_per_row: 1,
            module_gap_rows_px: 36,
            module_gap_cols_px: 8,
            first_udp_port: 50001,
            frames: 200,
            hit_rate: 0.25,
            seed: 1,
            photon_energy_kev: 12.4,
            distance_mm: 100.0,
            frame_rate_hz: 1000.0,
            mean_reflection_photons: [2.0, 400.0],
            solvent_ring_photons: 0.15,
            air_photons: 0.01,
            hot_pixels_per_module: 5,
            dead_pixels_per_module: 5,
            dark_frames: 0,
            pedestal_drift_adu_per_frame: 0.0,
            faults: PacketFaults::default(),
            format: CaptureFileFormat::Pcap,
            framing: LinkFraming::Ethernet,
            beam_center_px: None,
            noise_kev: default_noise_kev(),
            scene: Scene::default(),
            calibration: None,
        }
    }
}

impl SimConfig {
    /// A run of the detector a config describes: its model, modules and their placement, ports, beam
    /// centre, distance and energy (`[detector]`), and its pedestals and gains when `[calibration]`
    /// names files; everything else as [`SimConfig::default`].
    ///
    /// # Errors
    /// Not a JUNGFRAU; ports that are not consecutive; calibration files that cannot be read.
    pub fn for_detector(
        detector: &crate::detector::DetectorSection,
        calibration: &crate::calib::CalibrationSection,
    ) -> Result<SimConfig, SimError> {
        let geometry = detector.geometry()?;
        if geometry.model.det_type != DetectorType::Jungfrau {
            return Err(SimError::NotJungfrau(detector.model.clone()));
        }
        let first_udp_port = match &detector.udp_ports {
            Some(ports) if ports.windows(2).any(|w| u32::from(w[1]) != u32::from(w[0]) + 1) => {
                return Err(SimError::Parameter(
                    "the simulator sends on consecutive ports; detector.udp_ports are not".into(),
                ));
            }
            Some(ports) => ports.first().copied().unwrap_or(crate::detector::section::DEFAULT_FIRST_UDP_PORT),
            None => detector.first_udp_port.unwrap_or(crate::detector::section::DEFAULT_FIRST_UDP_PORT),
        };
        let has_files = calibration.file.is_some() || !calibration.pedestal_files.is_empty();
        let maps = has_files
            .then(|| calibration.maps(detector.modules, geometry.model.module_rows(), geometry.model.module_cols()))
            .transpose()?;
        // Where the config puts the beam, or assumes it (and says so): what its runs will use.
        let beam = detector.beam_center_px(None);
        Ok(SimConfig {
            model: detector.model.clone(),
            modules: detector.modules,
            modules_per_row: detector.modules_per_row.clamp(1, detector.modules.max(1)),
            module_gap_rows_px: detector.module_gap_rows_px,
            module_gap_cols_px: detector.module_gap_cols_px,
            first_udp_port,
            photon_energy_kev: detector.photon_energy_kev(),
            distance_mm: detector.distance_mm(),
            beam_center_px: Some(beam),
            calibration: maps.map(std::sync::Arc::new),
            ..SimConfig::default()
        })
    }
}
