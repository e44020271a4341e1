//! `[detector]`: which detector sends, on which UDP ports, how its modules sit in the assembled image
//! and where the beam meets it. A cluster node's share of a larger detector ([`ModuleShare`]) is set
//! from the command line, never read from a file.

use serde::{Deserialize, Serialize};

use super::geometry::{DetectorGeometry, DetectorModel, GeometryError, MODELS};
use super::layout::ImageLayout;
use crate::section::{Claim, Problems, Resource, key};

/// The first UDP port when neither `udp_ports` nor `first_udp_port` is given.
pub const DEFAULT_FIRST_UDP_PORT: u16 = 50001;

/// What detector sends, and on which UDP ports.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    /// A name from the geometry table, e.g. `jungfrau-1if`, `jungfrau-2if`, `eiger-10g-16bit`.
    pub model: String,
    /// Modules (EIGER: half-modules) of that model in the detector.
    #[serde(default = "one")]
    pub modules: usize,
    /// Destination UDP port of every module port, module-major. Either this or `first_udp_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_ports: Option<Vec<u16>>,
    /// First of consecutive destination UDP ports, one per module port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_udp_port: Option<u16>,
    /// Modules side by side in one row of the assembled image.
    #[serde(default = "one")]
    pub modules_per_row: usize,
    /// Blank pixels between modules in the assembled image, vertically and horizontally.
    #[serde(default)]
    pub module_gap_rows_px: usize,
    #[serde(default)]
    pub module_gap_cols_px: usize,
    /// Where the direct beam meets the assembled image (pixels); the image centre when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam_center_row_px: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam_center_col_px: Option<f64>,
}

fn one() -> usize {
    1
}

/// A cluster node's part of the whole detector: which modules of the calibration and mask files
/// it uses, and where its panels sit in the whole detector's image.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleShare {
    /// The files' modules, in this node's order.
    pub modules: Vec<usize>,
    /// Modules the files hold: the whole detector's.
    pub of: usize,
    /// Each of this node's panels' first pixel in the whole detector's image (row, column).
    pub panel_origins: Vec<(usize, usize)>,
    /// The beam centre in the whole detector's image (row, column).
    pub beam_center_px: (f64, f64),
}

impl DetectorSection {
    /// One module of `model` on consecutive ports from the default first port.
    pub fn single(model: &str) -> DetectorSection {
        DetectorSection {
            model: model.into(),
            modules: 1,
            udp_ports: None,
            first_udp_port: Some(DEFAULT_FIRST_UDP_PORT),
            modules_per_row: 1,
            module_gap_rows_px: 0,
            module_gap_cols_px: 0,
            beam_center_row_px: None,
            beam_center_col_px: None,
        }
    }

    /// The model from the geometry table, when the name is known.
    pub fn detector_model(&self) -> Option<&'static DetectorModel> {
        DetectorModel::by_name(&self.model)
    }

    /// The detector geometry this section describes.
    ///
    /// # Errors
    /// As [`DetectorGeometry::new`]; [`DetectorSection::validate`] reports the same with key paths.
    pub fn geometry(&self) -> Result<DetectorGeometry, GeometryError> {
        match (&self.udp_ports, self.first_udp_port) {
            (Some(ports), _) => DetectorGeometry::new(&self.model, self.modules, ports.clone()),
            (None, first) => DetectorGeometry::with_consecutive_ports(
                &self.model,
                self.modules,
                first.unwrap_or(DEFAULT_FIRST_UDP_PORT),
            ),
        }
    }

    /// How modules sit in the assembled image.
    pub fn image_layout(&self) -> Option<ImageLayout> {
        let model = self.detector_model()?;
        Some(ImageLayout {
            modules: self.modules,
            module_rows: model.module_rows(),
            module_cols: model.module_cols(),
            modules_per_row: self.modules_per_row.clamp(1, self.modules.max(1)),
            gap_rows_px: self.module_gap_rows_px,
            gap_cols_px: self.module_gap_cols_px,
        })
    }

    /// Where each panel's first pixel sits in the assembled image (row, column); a cluster node's
    /// panels where they sit in the whole detector's (`share`).
    pub fn panel_origins(&self, geometry: &DetectorGeometry, share: Option<&ModuleShare>) -> Vec<(usize, usize)> {
        let (panels, rows, _) = geometry.panels();
        if let Some(share) = share
            && share.panel_origins.len() == panels
        {
            return share.panel_origins.clone();
        }
        let layout = self.image_layout();
        (0..panels).map(|p| layout.as_ref().map_or((p * rows, 0), |l| geometry.panel_origin(p, l))).collect()
    }

    /// The beam centre in image pixels (row, column): as configured, else the image's centre; a
    /// cluster node's in the whole detector's image (`share`).
    pub fn beam_center_px(&self, share: Option<&ModuleShare>) -> (f64, f64) {
        if let Some(share) = share {
            return share.beam_center_px;
        }
        let layout = self.image_layout();
        let (rows, cols) = layout.map_or((0.0, 0.0), |l| (l.image_rows() as f64, l.image_cols() as f64));
        (self.beam_center_row_px.unwrap_or(rows / 2.0), self.beam_center_col_px.unwrap_or(cols / 2.0))
    }

    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        match self.detector_model() {
            None => problems.bad(
                k("model"),
                format!(
                    "unknown model {:?}; known: {}",
                    self.model,
                    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(model) => {
                let need = self.modules * model.ports_per_module;
                match (&self.udp_ports, self.first_udp_port) {
                    (Some(_), Some(_)) => {
                        problems.bad(k("first_udp_port"), "give either udp_ports or first_udp_port, not both")
                    }
                    (Some(ports), None) => {
                        if ports.len() != need {
                            problems.bad(
                                k("udp_ports"),
                                format!(
                                    "{} modules × {} ports need {need} ports, {} given",
                                    self.modules,
                                    model.ports_per_module,
                                    ports.len()
                                ),
                            );
                        }
                        for (i, port) in ports.iter().enumerate() {
                            if *port == 0 {
                                problems.bad(format!("{}[{i}]", k("udp_ports")), "port 0 cannot be received on");
                            }
                        }
                    }
                    (None, first) => {
                        let first = first.unwrap_or(DEFAULT_FIRST_UDP_PORT);
                        if first == 0 || usize::from(first) + need > 65536 {
                            problems.bad(
                                k("first_udp_port"),
                                format!("{need} consecutive ports from {first} do not fit in 1..=65535"),
                            );
                        }
                    }
                }
            }
        }
        problems.outside(k("modules"), self.modules, (1, 64));
        problems.outside(k("modules_per_row"), self.modules_per_row, (1, self.modules.max(1)));
    }

    /// The UDP ports the detector's packets arrive on, each claimed by its key.
    pub fn claims(&self, path: &str) -> Vec<Claim> {
        match (&self.udp_ports, self.first_udp_port) {
            (Some(ports), _) => ports
                .iter()
                .enumerate()
                .filter(|(_, p)| **p != 0)
                .map(|(i, p)| Claim::new(format!("{}[{i}]", key(path, "udp_ports")), Resource::UdpPort(*p)))
                .collect(),
            // Consecutive ports cannot repeat among themselves; they can only clash with others' claims.
            (None, _) => Vec::new(),
        }
    }
}
