//! Packet sources. Each reads packets from its medium and hands them on without copying them more
//! than once; the assembler takes them from there. The other way round, [`send`] puts a capture's
//! packets on the wire, paced and optionally damaged, for tests and replays.

pub mod direct;
pub mod dma;
pub mod inventory;
pub mod linklayer;
pub mod pcap;
pub mod raw;
pub mod section;
pub mod send;
pub mod udp;
pub mod uring;

pub use linklayer::{LinkType, SkipReason, UdpDatagram};
pub use pcap::{Capture, CaptureFormat, CaptureRecord, PcapError};
pub use section::{DmaSection, ReceiveWait, UdpBackend, UdpSection};

use std::path::Path;

/// What a replay reads: a packet capture, or a run as slsReceiver stored it on disk.
pub enum Recording {
    Capture(Capture),
    Raw(raw::RawRun),
}

/// Why a recording cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Capture { path: std::path::PathBuf, source: PcapError },
    #[error(transparent)]
    Raw(#[from] raw::RawError),
}

impl Recording {
    /// Opens `path`: an slsReceiver master file (`…_master_<run>.json`) as its run, anything else as a
    /// capture.
    ///
    /// # Errors
    /// The file cannot be read, or is neither.
    pub fn open(path: &Path) -> Result<Recording, RecordingError> {
        Ok(if raw::RawRun::is_master(path) {
            Recording::Raw(raw::RawRun::open(path)?)
        } else {
            Recording::Capture(
                Capture::open(path).map_err(|source| RecordingError::Capture { path: path.to_path_buf(), source })?,
            )
        })
    }
}
