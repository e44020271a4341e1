//! `[detector]`: which detector sends, on which UDP ports, how its modules sit in the assembled image
//! and where the beam meets it. A cluster node's share of a larger detector ([`ModuleShare`]) is set
//! from the command line, never read from a file.

use serde::{Deserialize, Serialize};

use super::DetectorType;
use super::geometry::{DetectorGeometry, DetectorModel, GeometryError, MODELS};
use super::layout::ImageLayout;
use super::panel_image::PanelImage;
use crate::section::{Claim, Problems, Resource, key};

/// The first UDP port when neither `udp_ports` nor `first_udp_port` is given.
pub const DEFAULT_FIRST_UDP_PORT: u16 = 50001;
/// Sample-to-detector distance assumed where `distance_mm` is not given (and said so).
pub const DEFAULT_DISTANCE_MM: f64 = 100.0;
/// Photon energy assumed where `photon_energy_kev` is not given (and said so).
pub const DEFAULT_PHOTON_ENERGY_KEV: f64 = 12.4;
/// h·c in keV·Å: a photon of E keV has a wavelength of `HC_KEV_ANGSTROM / E` Å.
pub const HC_KEV_ANGSTROM: f64 = 12.398_419_843;

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
    /// Sample to detector distance (NeXus geometry, the stream's start message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_mm: Option<f64>,
    /// The beam's photon energy: JUNGFRAU's conversion to photons, and the wavelength in NeXus and
    /// the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photon_energy_kev: Option<f64>,
    /// The module image that spots, summaries and stored photons live in: `"assembled"` (a JUNGFRAU
    /// module as PSI's tools show it, 514 × 1030 with its chip-border pixels split; the default for
    /// JUNGFRAU) or `"raw"` (the pixels as the detector sends them; the only choice for EIGER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ModuleImage>,
}

/// Which image of a module the reducer and the stored photons use (`[detector] image`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModuleImage {
    Assembled,
    Raw,
}

/// What a run uses the detector's geometry and beam for, to say which defaults matter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeometryUses {
    /// Converting raw values to photons (an integrating detector).
    pub photons: bool,
    /// Rings around the beam: peakfinder8's background, the learned trigger's summary.
    pub rings: bool,
    /// Describing the experiment: NeXus files, the live stream's start message.
    pub description: bool,
    /// Each pixel's resolution (beam centre, distance, energy): the learned trigger's summary.
    pub resolution: bool,
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
            distance_mm: None,
            photon_energy_kev: None,
            image: None,
        }
    }

    /// Whether a JUNGFRAU's chip-border pixels are split into the assembled module image.
    pub fn splits_chip_borders(&self) -> bool {
        let jungfrau = self.detector_model().is_some_and(|m| m.det_type == DetectorType::Jungfrau);
        jungfrau && self.image.unwrap_or(ModuleImage::Assembled) == ModuleImage::Assembled
    }

    /// How each panel's raw pixels make its image.
    pub fn panel_image(&self, geometry: &DetectorGeometry) -> PanelImage {
        PanelImage::for_geometry(geometry, self.splits_chip_borders())
    }

    /// The sample-to-detector distance, or the default.
    pub fn distance_mm(&self) -> f64 {
        self.distance_mm.unwrap_or(DEFAULT_DISTANCE_MM)
    }

    /// The photon energy, or the default.
    pub fn photon_energy_kev(&self) -> f64 {
        self.photon_energy_kev.unwrap_or(DEFAULT_PHOTON_ENERGY_KEV)
    }

    /// The incident wavelength the photon energy makes.
    pub fn wavelength_angstrom(&self) -> f64 {
        HC_KEV_ANGSTROM / self.photon_energy_kev()
    }

    /// What is assumed for values not given that `uses` needs, each said in a sentence naming the
    /// key (a default that changes results is never silent).
    pub fn defaults_assumed(&self, path: &str, uses: GeometryUses, share: Option<&ModuleShare>) -> Vec<String> {
        let mut said = Vec::new();
        let mut needs = Vec::new();
        if uses.rings {
            needs.push("the rings around the beam (peakfinder8, the learned trigger's resolution shells)");
        }
        if uses.description {
            needs.push("the experiment's description (NeXus, the stream)");
        }
        let beam_missing = self.beam_center_row_px.is_none() || self.beam_center_col_px.is_none();
        if share.is_none() && beam_missing && !needs.is_empty() {
            let (row, col) = self.beam_center_px(None);
            said.push(format!(
                "{}/{} not given: the image's centre ({row:.1}, {col:.1}) is assumed as the beam centre for {}",
                key(path, "beam_center_row_px"),
                "beam_center_col_px",
                needs.join(" and ")
            ));
        }
        if self.distance_mm.is_none() && (uses.description || uses.resolution) {
            let what = match (uses.description, uses.resolution) {
                (true, true) => {
                    "the experiment's description (NeXus, the stream) and the learned trigger's resolution shells"
                }
                (true, false) => "the experiment's description (NeXus, the stream)",
                _ => "the learned trigger's resolution shells",
            };
            said.push(format!(
                "{} not given: {DEFAULT_DISTANCE_MM} mm is assumed for {what}",
                key(path, "distance_mm")
            ));
        }
        if self.photon_energy_kev.is_none() && (uses.photons || uses.description || uses.resolution) {
            let what = match (uses.photons, uses.description || uses.resolution) {
                (true, true) => "the conversion to photons and the wavelength",
                (true, false) => "the conversion to photons",
                _ => "the wavelength",
            };
            said.push(format!(
                "{} not given: {DEFAULT_PHOTON_ENERGY_KEV} keV is assumed for {what}",
                key(path, "photon_energy_kev")
            ));
        }
        if self.image.is_none() && self.splits_chip_borders() {
            said.push(format!(
                "{} not given: each JUNGFRAU module is assembled as PSI's tools show it (514 × 1030, chip-border \
                 pixels split); spot positions, the beam centre and stored photons are in that image",
                key(path, "image")
            ));
        }
        said
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
        let (module_rows, module_cols) =
            PanelImage::new(model.module_rows(), model.module_cols(), self.splits_chip_borders()).shape();
        Some(ImageLayout {
            modules: self.modules,
            module_rows,
            module_cols,
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
        if let Some(d) = self.distance_mm
            && !(d.is_finite() && d > 0.0)
        {
            problems.bad(k("distance_mm"), format!("{d} must be a positive distance"));
        }
        if let Some(e) = self.photon_energy_kev
            && !(1.0..=200.0).contains(&e)
        {
            problems.bad(k("photon_energy_kev"), format!("{e} is outside 1..=200 keV"));
        }
        if self.image == Some(ModuleImage::Assembled)
            && let Some(model) = self.detector_model()
            && model.det_type != DetectorType::Jungfrau
        {
            problems
                .bad(k("image"), format!("\"assembled\" splits JUNGFRAU chip borders; {} takes \"raw\"", model.name));
        }
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
