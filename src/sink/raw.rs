//! Accepted frames, raw, with an index. In the sink's folder:
//!
//! - `frames.raw`: the accepted (and audit) frames back to back, each exactly `frame_bytes` long, in the frame
//!   memory layout of `detector::geometry` (ports' images module-major; missing packets read as 0).
//! - `frames.idx`: one 64-byte little-endian [`IndexRecord`] per frame in `frames.raw`, same order.
//! - `run.json`: detector model, modules, UDP ports, `frame_bytes`, pixel format and the index layout.
//!
//! Frame `i` of the index starts at byte `offset` of `frames.raw` (always `i * frame_bytes`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use zerocopy::little_endian::{F32, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use serde::{Deserialize, Serialize};

use super::{Experiment, FrameRecord, Frames, Interest, Payload, Sink, SinkConfig, SinkError, SinkReport};
use crate::detector::DetectorGeometry;
use crate::section::{Claim, Problems, Resource, key};

/// `kind = "raw"`: accepted frames, raw, with an index.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSection {
    /// Folder for `frames.raw`, `frames.idx` and `run.json`.
    pub dir: PathBuf,
}

impl SinkConfig for RawSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if self.dir.as_os_str().is_empty() {
            problems.bad(key(path, "dir"), "an empty path");
        }
    }

    fn claims(&self, path: &str) -> Vec<Claim> {
        vec![Claim::new(key(path, "dir"), Resource::Output(self.dir.clone()))]
    }

    fn output_mut(&mut self) -> Option<&mut PathBuf> {
        Some(&mut self.dir)
    }

    fn open(&self, experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(RawSink::create(&self.dir, &experiment.geometry)?))
    }
}

/// One entry of `frames.idx`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct IndexRecord {
    pub frame_number: U64,
    /// Order in which frames left assembly.
    pub sequence: U64,
    /// Byte offset of the frame in `frames.raw`.
    pub offset: U64,
    pub bunch_id: U64,
    /// Detector clock (10 MHz).
    pub detector_timestamp: U64,
    pub score: F32,
    /// Bit 0: partial (packets missing, see the features record's mask); bit 1: an audit frame.
    pub flags: U32,
    pub packets_received: U32,
    pub packets_expected: U32,
    pub spots_found: U32,
    pub reserved: U32,
}

const _: () = assert!(std::mem::size_of::<IndexRecord>() == 64);

pub const FLAG_PARTIAL: u32 = 1;
/// A rejected frame kept for the audit stream.
pub const FLAG_AUDIT: u32 = 2;

pub struct RawSink {
    dir: PathBuf,
    frames: BufWriter<File>,
    index: BufWriter<File>,
    frame_bytes: u64,
    written: u64,
}

impl RawSink {
    /// Creates the folder and its files (replacing earlier ones).
    ///
    /// # Errors
    /// The folder or a file cannot be created.
    pub fn create(dir: &Path, geometry: &DetectorGeometry) -> Result<RawSink, SinkError> {
        let err = |path: PathBuf| move |source| SinkError::Io { sink: "raw", path, source };
        std::fs::create_dir_all(dir).map_err(err(dir.into()))?;
        let run = serde_json::json!({
            "format": "hitgate-raw-1",
            "detector_model": geometry.model.name,
            "modules": geometry.modules,
            "udp_ports": geometry.udp_ports,
            "ports_per_module": geometry.model.ports_per_module,
            "port_rows": geometry.model.port_rows,
            "port_cols": geometry.model.port_cols,
            "bits_per_pixel": geometry.model.bits_per_pixel,
            "pixel_format": "little-endian unsigned",
            "frame_bytes": geometry.frame_bytes(),
            "packets_per_frame": geometry.packets_per_frame(),
            "index_record_bytes": 64,
            "index_fields": ["frame_number u64", "sequence u64", "offset u64", "bunch_id u64", "detector_timestamp u64", "score f32", "flags u32 (bit 0: partial)", "packets_received u32", "packets_expected u32", "spots_found u32", "reserved u32"],
        });
        let run_path = dir.join("run.json");
        let text = serde_json::to_vec_pretty(&run).map_err(|e| SinkError::Format {
            sink: "raw",
            path: run_path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&run_path, text).map_err(err(run_path))?;
        let open = |name: &str| {
            let path = dir.join(name);
            File::create(&path).map(|f| BufWriter::with_capacity(1 << 20, f)).map_err(err(path))
        };
        Ok(RawSink {
            dir: dir.into(),
            frames: open("frames.raw")?,
            index: open("frames.idx")?,
            frame_bytes: geometry.frame_bytes() as u64,
            written: 0,
        })
    }

    fn io(&self, name: &str) -> impl FnOnce(std::io::Error) -> SinkError {
        let path = self.dir.join(name);
        move |source| SinkError::Io { sink: "raw", path, source }
    }
}

impl Sink for RawSink {
    fn interest(&self) -> Interest {
        Interest { frames: Frames::Kept, payload: Payload::FrameBytes, payload_bytes: self.frame_bytes as usize }
    }

    fn write(&mut self, frame: &FrameRecord) -> Result<(), SinkError> {
        let features = &frame.features;
        let meta = &frame.meta;
        let record = IndexRecord {
            frame_number: meta.frame_number.into(),
            sequence: meta.sequence.into(),
            offset: (self.written * self.frame_bytes).into(),
            bunch_id: meta.bunch_id.into(),
            detector_timestamp: meta.detector_timestamp.into(),
            score: features.score.into(),
            flags: ((if meta.is_complete() { 0 } else { FLAG_PARTIAL })
                | (if features.audit { FLAG_AUDIT } else { 0 }))
            .into(),
            packets_received: meta.packets_received.into(),
            packets_expected: meta.packets_expected.into(),
            spots_found: features.spots_found.into(),
            reserved: 0.into(),
        };
        self.frames.write_all(&frame.payload).map_err(self.io("frames.raw"))?;
        self.index.write_all(record.as_bytes()).map_err(self.io("frames.idx"))?;
        self.written += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        self.frames.flush().map_err(self.io("frames.raw"))?;
        self.index.flush().map_err(self.io("frames.idx"))?;
        Ok(SinkReport {
            name: "raw",
            frames_written: self.written,
            bytes_written: self.written * (self.frame_bytes + 64),
            location: Some(self.dir.clone()),
            ..SinkReport::default()
        })
    }
}

/// Reads `frames.idx` back.
///
/// # Errors
/// The file cannot be read or is not whole records.
pub fn read_index(path: &Path) -> std::io::Result<Vec<IndexRecord>> {
    let bytes = std::fs::read(path)?;
    if bytes.len() % 64 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} bytes is not whole 64-byte records", bytes.len()),
        ));
    }
    Ok(bytes.chunks_exact(64).filter_map(|c| IndexRecord::read_from_bytes(c).ok()).collect())
}
