//! The TOML configuration's root document. Every section belongs to the component that reads it
//! (its struct, defaults, docs and `validate` live there); this module puts them together, parses the
//! file with key paths in every error, takes relative paths from the file's folder, and runs one pass
//! over what no section sees alone ([`checks`]): resources claimed twice and settings that contradict
//! each other. [`Config::validate`] collects *every* problem with its key path.

mod checks;
pub mod edit;
mod errors;
pub mod host;
mod node;
mod sinks;

pub use errors::{ConfigError, ConfigProblem};
pub use sinks::SinkSection;

pub use crate::calib::CalibrationSection;
pub use crate::codec::StoredPixels;
pub use crate::control::ControlSection;
pub use crate::detector::{DetectorSection, GeometryUses, HC_KEV_ANGSTROM, ModuleShare};
pub use crate::features::{FeaturesSection, FinderKind, LocaliseFrames, LocaliserSection};
pub use crate::frame::AssemblerSection;
pub use crate::ingest::{DmaSection, UdpSection};
pub use crate::reduce::{ReducerSection, ReducerSettings};
pub use crate::scaleout::cluster::{ClusterMember, ClusterSection, VerdictRule};
pub use crate::scaleout::forward::ForwardSection;
pub use crate::sink::features::FeaturesSinkSection;
pub use crate::sink::hdf5::Hdf5Section;
pub use crate::sink::null::NullSection;
pub use crate::sink::raw::RawSection;
pub use crate::sink::stream::{StreamSection, StreamSocket};
pub use crate::sink::{Experiment, OnFull, StorageSection};
pub use crate::trigger::fpga::backend::FpgaTriggerSection;
pub use crate::trigger::{RateSection, SpotsTriggerSection, TractTriggerSection, TriggerKind, TriggerSection};

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detector::{DetectorGeometry, GeometryError, ImageLayout, PanelImage};
use crate::frame::AssemblerConfig;
use crate::section::{Problems, resolve};

/// A whole hitgate configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub detector: DetectorSection,
    #[serde(default)]
    pub assembler: AssemblerSection,
    #[serde(default)]
    pub reducer: ReducerSection,
    #[serde(default)]
    pub udp: UdpSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub dma: DmaSection,
    #[serde(default)]
    pub calibration: CalibrationSection,
    #[serde(default)]
    pub features: FeaturesSection,
    #[serde(default)]
    pub trigger: TriggerSection,
    /// Where results go; each entry is one sink.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkSection>,
    /// How sinks are fed: their queues and what happens when storage falls behind.
    #[serde(default)]
    pub storage: StorageSection,
    /// Several nodes sharing the detector, with a trigger event builder (off unless `nats` is set).
    #[serde(default)]
    pub cluster: ClusterSection,
}

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for the schema, or fails validation (all problems).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config = Self::parse(&text).map_err(|e| e.in_file(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolved_against(base).validated().map_err(|e| e.in_file(path))
    }

    /// Parses TOML text without validating it.
    ///
    /// # Errors
    /// Syntax errors, unknown keys and wrong types, with the key path where it can be told.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| errors::parse_error(text, &e))
    }

    /// Checks the whole config and returns it, or every problem found.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing each problem with its key path.
    pub fn validated(self) -> Result<Config, ConfigError> {
        let problems = self.validate();
        if problems.is_empty() { Ok(self) } else { Err(ConfigError::Invalid { file: None, problems }) }
    }

    /// Every problem in the config, each with its key path; empty when it is sound.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        let d = &self.detector;
        d.validate("detector", &mut p);
        self.assembler.validate("assembler", &mut p);
        self.reducer.validate("reducer", &mut p);
        self.udp.validate("udp", d.modules, &mut p);
        let packet = d.detector_model().map(|m| (m.name, m.packet_bytes()));
        self.dma.validate("dma", packet, &mut p);
        let module_pixels = d.detector_model().map(|m| m.module_rows() * m.module_cols());
        self.calibration.validate("calibration", module_pixels.map(|px| (d.modules, px)), &mut p);
        self.features.validate("features", &mut p);
        self.trigger.validate("trigger", &mut p);
        self.storage.validate("storage", &mut p);
        self.control.validate("control", &mut p);
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.config().validate(&format!("sink[{i}]"), &mut p);
        }
        // A node's config has its own modules only; the cluster describes the whole detector.
        let whole = self.calibration.share.as_ref().map_or(d.modules, |s| s.of);
        self.cluster.validate("cluster", whole, &mut p);
        checks::cross_check(self, &mut p);
        p.into_vec()
    }

    /// The built-in default: one JUNGFRAU module on one interface, raw and feature sinks under `out`.
    pub fn default_for(out: &Path) -> Config {
        Config {
            detector: DetectorSection::single("jungfrau-1if"),
            assembler: AssemblerSection::default(),
            udp: UdpSection::default(),
            control: ControlSection::default(),
            dma: DmaSection::default(),
            reducer: ReducerSection::default(),
            calibration: CalibrationSection::default(),
            features: FeaturesSection::default(),
            trigger: TriggerSection::default(),
            storage: StorageSection::default(),
            cluster: ClusterSection::default(),
            sinks: vec![
                SinkSection::Raw(RawSection { dir: out.join("raw") }),
                SinkSection::Features(FeaturesSinkSection { path: out.join("features.jsonl") }),
            ],
        }
    }

    /// Whether the configured trigger has a cut to tune (`accept_all` has none).
    pub fn trigger_has_cut(&self) -> bool {
        self.trigger.has_cut()
    }

    /// Relative paths in the config are taken from the config file's folder.
    pub fn resolved_against(mut self, base: &Path) -> Config {
        self.calibration.resolve_paths(base);
        self.dma.resolve_paths(base);
        self.control.resolve_paths(base);
        self.trigger.resolve_paths(base);
        self.features.localiser.resolve_paths(base);
        for path in self.sinks.iter_mut().filter_map(|s| s.config_mut().output_mut()) {
            resolve(path, base);
        }
        self
    }

    /// The detector geometry this config describes.
    ///
    /// # Errors
    /// As [`DetectorGeometry::new`]; [`Config::validate`] reports the same with key paths.
    pub fn geometry(&self) -> Result<DetectorGeometry, GeometryError> {
        self.detector.geometry()
    }

    /// How modules sit in the assembled image.
    pub fn image_layout(&self) -> Option<ImageLayout> {
        self.detector.image_layout()
    }

    /// Where each panel's first pixel sits in the assembled image (row, column); a cluster node's
    /// panels where they sit in the whole detector's.
    pub fn panel_origins(&self, geometry: &DetectorGeometry) -> Vec<(usize, usize)> {
        self.detector.panel_origins(geometry, self.calibration.share.as_ref())
    }

    /// The beam centre in image pixels (row, column); a cluster node's in the whole detector's image.
    pub fn beam_center_px(&self) -> (f64, f64) {
        self.detector.beam_center_px(self.calibration.share.as_ref())
    }

    pub fn assembler_config(&self) -> AssemblerConfig {
        self.assembler.assembler_config()
    }

    /// How each panel's raw pixels make its image (a JUNGFRAU module assembled, unless configured raw).
    pub fn panel_image(&self, geometry: &DetectorGeometry) -> PanelImage {
        self.detector.panel_image(geometry)
    }

    /// The pixels frames are compressed as for storage, when a sink stores compressed frames.
    pub fn stored_pixels(&self) -> Option<StoredPixels> {
        self.sinks.iter().find_map(|s| s.config().stored_pixels())
    }

    /// What the sinks describe of the run besides its frames.
    pub fn experiment(&self, geometry: &DetectorGeometry) -> Experiment {
        Experiment {
            geometry: geometry.clone(),
            panel_image: self.detector.panel_image(geometry),
            panel_origins: self.panel_origins(geometry),
            beam_center_px: self.beam_center_px(),
            distance_mm: self.detector.distance_mm(),
            photon_energy_kev: self.detector.photon_energy_kev(),
            calibration: self.calibration.clone(),
            trigger: self.trigger.kind.name(),
        }
    }

    /// What the reducers are prepared from.
    pub fn reducer_settings<'a>(&'a self, geometry: &'a DetectorGeometry) -> ReducerSettings<'a> {
        ReducerSettings {
            geometry,
            calibration: &self.calibration,
            features: &self.features,
            trigger: &self.trigger,
            panel_image: self.detector.panel_image(geometry),
            panel_origins: self.panel_origins(geometry),
            beam_center_px: self.beam_center_px(),
            photon_energy_kev: self.detector.photon_energy_kev() as f32,
            diffraction: crate::features::summary::Diffraction {
                beam_px: self.beam_center_px(),
                distance_mm: self.detector.distance_mm(),
                pixel_mm: f64::from(geometry.model.pixel_size_um) / 1000.0,
                photon_energy_kev: self.detector.photon_energy_kev(),
            },
            stored_pixels: self.stored_pixels(),
        }
    }

    /// What the run uses the detector's geometry and beam for.
    pub fn geometry_uses(&self) -> GeometryUses {
        let integrating = self.detector.detector_model().is_some_and(|m| m.bits_per_pixel == 16)
            && self.detector.model.starts_with("jungfrau");
        GeometryUses {
            photons: integrating,
            rings: self.features.finder == FinderKind::Peakfinder8 || self.trigger.backend().reads_summary(),
            description: self.sinks.iter().any(|s| matches!(s, SinkSection::Hdf5(_) | SinkSection::Stream(_))),
            resolution: self.trigger.backend().reads_summary(),
        }
    }

    /// What is assumed for the detector's geometry and beam where the config does not say and the
    /// run needs it, and for its pixel mask where the learned trigger reads the frames, each a
    /// sentence naming the key.
    pub fn defaults_assumed(&self) -> Vec<String> {
        let mut said =
            self.detector.defaults_assumed("detector", self.geometry_uses(), self.calibration.share.as_ref());
        // An unmasked hot pixel reads to the learned trigger as a reflection. The built-in model,
        // trained on masked detectors, then keeps every frame with its inputs familiar
        // (models/README.md), so no alarm would say so later; only leaving out what stands out in
        // most frames keeps it from doing so, once that has been seen.
        if self.trigger.backend().reads_summary() && self.calibration.mask_file.is_none() {
            let hot = if self.trigger.inputs.ignore_persistent_excess {
                format!(
                    "in the first {} frames each reducer worker sees (then trigger.inputs.ignore_persistent_excess \
                     leaves out what stands out in most frames)",
                    crate::features::persistent::PERSISTENT_SCORE - 1
                )
            } else {
                "in every frame (trigger.inputs.ignore_persistent_excess = false)".to_string()
            };
            said.push(format!(
                "calibration.mask_file not given: no pixel is masked, and the learned trigger reads a hot pixel as \
                 a reflection {hot}; the built-in model, trained on masked detectors, can then keep every frame"
            ));
        }
        said
    }
}

#[cfg(test)]
mod tests;
