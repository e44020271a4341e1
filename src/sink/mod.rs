//! Where frames go once the trigger has spoken. Every sink sees every frame in the order the
//! assembler handed them out; each keeps what it is for (accepted frames, every frame's features).
//!
//! A sink is one file: its config section (a [`SinkConfig`]: validate, the resources it claims,
//! `open`) and the [`Sink`] it opens, which runs on its own thread behind a bounded queue
//! ([`lanes`], fed as `[storage]` says). `crate::config::SinkSection` lists the kinds.

pub mod backpressure;
pub mod features;
pub mod hdf5;
pub mod lanes;
pub mod null;
pub mod raw;
pub mod record;
pub mod stream;

pub use lanes::{OnFull, StorageSection};
pub use record::FrameRecord;

use std::path::PathBuf;

use crate::calib::CalibrationSection;
use crate::codec::StoredPixels;
use crate::detector::DetectorGeometry;
use crate::section::{Claim, Problems};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink} sink: cannot write {path}")]
    Io { sink: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{sink} sink: {path}: {reason}")]
    Format { sink: &'static str, path: PathBuf, reason: String },
    #[error(
        "the {sink} sink's queue of {frames} frames needs {} MiB, but only {} MiB of memory is available; lower storage.queue_frames",
        bytes >> 20,
        available >> 20
    )]
    QueueTooLarge { sink: &'static str, frames: usize, bytes: u64, available: u64 },
    #[error("cannot start the {sink} sink's thread")]
    Thread { sink: &'static str, source: std::io::Error },
    #[error("the {0} sink's thread panicked")]
    Panicked(&'static str),
    #[error("{sink} sink: {endpoint}: {reason}")]
    Network { sink: &'static str, endpoint: String, reason: String },
}

/// Which frames a sink takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frames {
    /// Every judged frame.
    Every,
    /// Accepted frames and audit frames.
    Kept,
}

/// What of a frame a sink needs besides its facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    Nothing,
    /// The frame's bytes as assembled.
    FrameBytes,
    /// The frame compressed for storage (`FrameFeatures::chunk`).
    Chunk,
}

/// A sink's needs, fixed when it opens: the ordering thread copies just this into its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub frames: Frames,
    pub payload: Payload,
    /// Payload bytes each queue place reserves.
    pub payload_bytes: usize,
}

impl Interest {
    pub fn takes(&self, features: &crate::features::FrameFeatures) -> bool {
        match self.frames {
            Frames::Every => true,
            Frames::Kept => features.is_kept(),
        }
    }
}

/// What a sink did over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkReport {
    pub name: &'static str,
    pub frames_written: u64,
    pub bytes_written: u64,
    /// Where it wrote, for the summary.
    pub location: Option<PathBuf>,
    /// Frames it should have taken that found its queue full (filled in by its lane).
    pub frames_dropped_queue_full: u64,
    /// Frames it took that its destination did not (a stream no consumer read in time).
    pub frames_not_sent: u64,
}

/// A frame consumer running on its own thread, fed in frame order.
pub trait Sink: Send {
    /// Which frames it takes and what of them.
    fn interest(&self) -> Interest;

    /// Takes one frame it asked for.
    ///
    /// # Errors
    /// The sink's storage failed.
    fn write(&mut self, record: &FrameRecord) -> Result<(), SinkError>;

    /// Flushes and closes; the outputs are complete afterwards.
    ///
    /// # Errors
    /// The final flush failed.
    fn finish(&mut self) -> Result<SinkReport, SinkError>;
}

/// What the sinks describe of a run besides its frames: the detector and where its panels sit, the
/// beam, the calibration (pixel mask) and the trigger that judged.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub geometry: DetectorGeometry,
    /// How each panel's raw pixels make its image (a JUNGFRAU module assembled, unless configured raw).
    pub panel_image: crate::detector::PanelImage,
    /// Each panel's first pixel in the assembled image (row, column).
    pub panel_origins: Vec<(usize, usize)>,
    /// The beam centre in the assembled image (row, column).
    pub beam_center_px: (f64, f64),
    /// Sample to detector distance.
    pub distance_mm: f64,
    pub photon_energy_kev: f64,
    pub calibration: CalibrationSection,
    /// The trigger's kind, as configs name it.
    pub trigger: &'static str,
}

impl Experiment {
    /// The incident wavelength the photon energy makes.
    pub fn wavelength_angstrom(&self) -> f64 {
        crate::detector::HC_KEV_ANGSTROM / self.photon_energy_kev
    }

    /// What a stored frame of `pixels` holds, as its description must say: the panel image, and the
    /// beam centre in it. Photons are in the detector's image. Raw values are as the detector sent
    /// them: where the image is assembled, each module is then described without its chip gaps, each
    /// panel where its assembled image starts, and the beam where its raw pixels put it along each axis
    /// of the first panel (exact there, up to the 6 gap pixels off across the far chips).
    pub fn stored(&self, pixels: crate::codec::StoredPixels) -> (crate::detector::PanelImage, (f64, f64)) {
        let image = pixels.image(&self.panel_image);
        if image == self.panel_image {
            return (image, self.beam_center_px);
        }
        let (r0, c0) = self.panel_origins.first().copied().unwrap_or((0, 0));
        let (row, col) = self.beam_center_px;
        let (raw_row, raw_col) = self.panel_image.raw_position(row - r0 as f64, col - c0 as f64);
        (image, (raw_row + r0 as f64, raw_col + c0 as f64))
    }
}

/// A sink's config section: what `[[sink]]` holds for one kind.
pub trait SinkConfig {
    /// Every problem of the section, with its key path under `path` (`sink[i]`).
    fn validate(&self, path: &str, problems: &mut Problems);

    /// The resources it takes for itself (an output path, an endpoint it binds).
    fn claims(&self, _path: &str) -> Vec<Claim> {
        Vec::new()
    }

    /// The file or folder it writes, when it writes one: relative to the config file's folder, and
    /// with `{node}` standing for a cluster node's name.
    fn output_mut(&mut self) -> Option<&mut PathBuf> {
        None
    }

    /// The pixels it stores compressed, when it takes compressed frames (every such sink of a run
    /// takes the same: frames are compressed once, by the reducers).
    fn stored_pixels(&self) -> Option<StoredPixels> {
        None
    }

    /// Opens the sink.
    ///
    /// # Errors
    /// Its output cannot be created or its endpoint bound.
    fn open(&self, experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError>;
}
