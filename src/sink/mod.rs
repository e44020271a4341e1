//! Where frames go once the trigger has spoken. Every sink sees every frame in the order the
//! assembler handed them out; each keeps what it is for (accepted frames, every frame's features).

pub mod bitshuffle;
pub mod features;
pub mod null;
pub mod raw;

use std::path::PathBuf;

use crate::config::SinkSection;
use crate::detector::DetectorGeometry;
use crate::frame::FrameHandle;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink} sink: cannot write {path}")]
    Io { sink: &'static str, path: PathBuf, source: std::io::Error },
}

/// What a sink did over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkReport {
    pub name: &'static str,
    pub frames_written: u64,
    pub bytes_written: u64,
    /// Where it wrote, for the summary.
    pub location: Option<PathBuf>,
}

/// A frame consumer running on the sink thread.
pub trait Sink: Send {
    /// Takes one frame (accepted or not; the sink decides what to keep).
    ///
    /// # Errors
    /// The sink's storage failed.
    fn write(&mut self, frame: &FrameHandle) -> Result<(), SinkError>;

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
pub fn open(section: &SinkSection, geometry: &DetectorGeometry) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match section {
        SinkSection::Raw { dir } => Box::new(raw::RawSink::create(dir, geometry)?),
        SinkSection::Features { path } => Box::new(features::FeaturesSink::create(path)?),
        SinkSection::Null => Box::new(null::NullSink::default()),
    })
}
