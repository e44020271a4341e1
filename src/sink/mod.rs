//! Where frames go once the trigger has spoken. Every sink sees every frame in the order the
//! assembler handed them out; each keeps what it is for (accepted frames, every frame's features).

pub mod backpressure;
pub mod bitshuffle;
pub mod encode;
pub mod features;
#[cfg(feature = "hdf5")]
pub mod hdf5;
pub mod jetstream;
pub mod lanes;
pub mod null;
pub mod raw;
pub mod record;
pub mod stream;

pub use record::FrameRecord;

use std::path::PathBuf;

use crate::config::SinkSection;
use crate::detector::DetectorGeometry;

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

/// Opens the sink a config section describes.
///
/// # Errors
/// Its output cannot be created.
pub fn open(
    section: &SinkSection,
    config: &crate::config::Config,
    geometry: &DetectorGeometry,
) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match section {
        SinkSection::Raw { dir } => Box::new(raw::RawSink::create(dir, geometry)?),
        SinkSection::Features { path } => Box::new(features::FeaturesSink::create(path)?),
        #[cfg(feature = "hdf5")]
        SinkSection::Hdf5(h) => Box::new(hdf5::Hdf5Sink::create(h, config, geometry)?),
        #[cfg(not(feature = "hdf5"))]
        SinkSection::Hdf5(h) => {
            return Err(SinkError::Format {
                sink: "hdf5",
                path: h.dir.clone(),
                reason: "this hitgate was built without HDF5 (cargo feature `hdf5`)".into(),
            });
        }
        SinkSection::Null { write_delay_us } => Box::new(null::NullSink::new(*write_delay_us)),
        SinkSection::Stream(st) => Box::new(stream::StreamSink::create(st, config, geometry)?),
        SinkSection::Jetstream(f) => Box::new(jetstream::JetstreamSink::create(f, geometry)?),
    })
}
