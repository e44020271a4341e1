//! One record per frame, accepted or not, as JSON lines (one object a line, append-only, loads
//! straight into pandas/polars): frame number, order, verdict, score, packet accounting and the mask of
//! missing packets, pixels flagged this frame (saturated, invalid, lost), spot count and the recorded
//! spots.
//!
//! ```json
//! {"frame_number":12,"sequence":11,"bunch_id":0,"detector_timestamp":4413000,
//!  "first_packet_ns":1764523000000000000,"last_packet_ns":1764523000000190000,"accepted":true,"audit":false,"score":23.0,"complete":false,"packets_received":126,
//!  "packets_expected":128,"missing_packets":[40,41],"pixels_flagged":2051,"spots_found":23,
//!  "spots":[{"panel":0,"row":101.2,"col":77.9,"photons":88.1,"pixels":6,"peak":30.2,"snr":41.0,
//!  "image_row":101.2,"image_col":77.9,"refined":[101.31,77.84]}],"reduce_us":412.0}
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Experiment, FrameRecord, Frames, Interest, Payload, Sink, SinkConfig, SinkError, SinkReport};
use crate::frame::Spot;
use crate::section::{Claim, Problems, Resource, key};

/// `kind = "features"`: one record per frame, accepted or not, as JSON lines.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeaturesSinkSection {
    pub path: PathBuf,
}

impl SinkConfig for FeaturesSinkSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if self.path.as_os_str().is_empty() {
            problems.bad(key(path, "path"), "an empty path");
        }
    }

    fn claims(&self, path: &str) -> Vec<Claim> {
        vec![Claim::new(key(path, "path"), Resource::Output(self.path.clone()))]
    }

    fn output_mut(&mut self) -> Option<&mut PathBuf> {
        Some(&mut self.path)
    }

    fn open(&self, _experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(FeaturesSink::create(&self.path)?))
    }
}

/// A line that is not a features record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a features record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("missing packets outside the {0} expected")]
    MissingOutside(u32),
}

#[derive(Serialize)]
struct Record<'a> {
    frame_number: u64,
    sequence: u64,
    bunch_id: u64,
    detector_timestamp: u64,
    first_packet_ns: u64,
    last_packet_ns: u64,
    accepted: bool,
    audit: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    trigger_failed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fallback: bool,
    score: f32,
    dark: bool,
    complete: bool,
    packets_received: u32,
    packets_expected: u32,
    missing_packets: &'a [u32],
    pixels_flagged: u32,
    #[serde(skip_serializing_if = "is_zero")]
    persistent_blocks_ignored: u32,
    spots_found: u32,
    spots: &'a [Spot],
    reduce_us: f64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub struct FeaturesSink {
    path: PathBuf,
    out: BufWriter<File>,
    missing: Vec<u32>,
    /// One line, reused so records cost no allocation once it has grown.
    line: Vec<u8>,
    written: u64,
    bytes: u64,
}

impl FeaturesSink {
    /// Creates (replaces) the file.
    ///
    /// # Errors
    /// The file or its folder cannot be created.
    pub fn create(path: &Path) -> Result<FeaturesSink, SinkError> {
        let err = |source| SinkError::Io { sink: "features", path: path.into(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(err)?);
        Ok(FeaturesSink {
            path: path.into(),
            out,
            missing: Vec::new(),
            line: Vec::with_capacity(4096),
            written: 0,
            bytes: 0,
        })
    }
}

impl Sink for FeaturesSink {
    fn interest(&self) -> Interest {
        Interest { frames: Frames::Every, payload: Payload::Nothing, payload_bytes: 0 }
    }

    fn write(&mut self, frame: &FrameRecord) -> Result<(), SinkError> {
        let err = |source| SinkError::Io { sink: "features", path: self.path.clone(), source };
        encode_line(frame, &mut self.missing, &mut self.line).map_err(|e| err(std::io::Error::other(e)))?;
        self.out.write_all(&self.line).map_err(err)?;
        self.bytes += self.line.len() as u64;
        self.written += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        self.out.flush().map_err(|source| SinkError::Io { sink: "features", path: self.path.clone(), source })?;
        Ok(SinkReport {
            name: "features",
            frames_written: self.written,
            bytes_written: self.bytes,
            location: Some(self.path.clone()),
            ..SinkReport::default()
        })
    }
}

/// Writes `frame`'s record into `line` (cleared first), one JSON object and its newline; `missing`
/// is room for the missing packets' list.
///
/// # Errors
/// A value JSON cannot hold (never for a record the pipeline made).
pub fn encode_line(frame: &FrameRecord, missing: &mut Vec<u32>, line: &mut Vec<u8>) -> serde_json::Result<()> {
    let meta = &frame.meta;
    let features = &frame.features;
    missing.clear();
    if !meta.is_complete() {
        missing.extend(frame.missing_packets());
    }
    let record = Record {
        frame_number: meta.frame_number,
        sequence: meta.sequence,
        bunch_id: meta.bunch_id,
        detector_timestamp: meta.detector_timestamp,
        first_packet_ns: meta.first_packet_ns,
        last_packet_ns: meta.last_packet_ns,
        accepted: features.accepted,
        audit: features.audit,
        trigger_failed: features.trigger_failed,
        fallback: features.fallback,
        score: features.score,
        dark: features.dark,
        complete: meta.is_complete(),
        packets_received: meta.packets_received,
        packets_expected: meta.packets_expected,
        missing_packets: missing,
        pixels_flagged: features.pixels_flagged,
        persistent_blocks_ignored: features.persistent_ignored,
        spots_found: features.spots_found,
        spots: &features.spots,
        reduce_us: features.reduce_ns as f64 / 1000.0,
    };
    line.clear();
    serde_json::to_writer(&mut *line, &record)?;
    line.push(b'\n');
    Ok(())
}

/// A record as read back, every field owned.
#[derive(serde::Deserialize)]
struct OwnedRecord {
    frame_number: u64,
    sequence: u64,
    // Records written before these were recorded read as 0.
    #[serde(default)]
    bunch_id: u64,
    #[serde(default)]
    detector_timestamp: u64,
    #[serde(default)]
    first_packet_ns: u64,
    #[serde(default)]
    last_packet_ns: u64,
    accepted: bool,
    audit: bool,
    #[serde(default)]
    trigger_failed: bool,
    #[serde(default)]
    fallback: bool,
    score: f32,
    dark: bool,
    packets_received: u32,
    packets_expected: u32,
    missing_packets: Vec<u32>,
    // Records written before pixels were flagged per frame read as none.
    #[serde(default)]
    pixels_flagged: u32,
    #[serde(default)]
    persistent_blocks_ignored: u32,
    spots_found: u32,
    spots: Vec<Spot>,
    reduce_us: f64,
}

/// Reads a record back as the frame record a sink receives, without payload: writing it again with
/// [`encode_line`] gives the same line.
///
/// # Errors
/// The line is not a record, or its missing packets lie past the packets expected.
pub fn decode_line(line: &[u8]) -> Result<FrameRecord, RecordError> {
    let r: OwnedRecord = serde_json::from_slice(line)?;
    if r.packets_expected > 1 << 20 || r.missing_packets.iter().any(|&m| m >= r.packets_expected) {
        return Err(RecordError::MissingOutside(r.packets_expected));
    }
    let mut frame = FrameRecord::with_capacity(r.spots.len(), r.packets_expected.div_ceil(64) as usize, 0);
    frame.meta = crate::frame::FrameMeta {
        frame_number: r.frame_number,
        sequence: r.sequence,
        bunch_id: r.bunch_id,
        detector_timestamp: r.detector_timestamp,
        first_packet_ns: r.first_packet_ns,
        last_packet_ns: r.last_packet_ns,
        packets_received: r.packets_received,
        packets_expected: r.packets_expected,
    };
    frame.packet_mask.resize(r.packets_expected.div_ceil(64) as usize, u64::MAX);
    for m in r.missing_packets {
        frame.packet_mask[m as usize / 64] &= !(1 << (m % 64));
    }
    let f = &mut frame.features;
    (f.accepted, f.audit, f.trigger_failed, f.score, f.dark) = (r.accepted, r.audit, r.trigger_failed, r.score, r.dark);
    f.fallback = r.fallback;
    f.spots_found = r.spots_found;
    (f.pixels_flagged, f.persistent_ignored) = (r.pixels_flagged, r.persistent_blocks_ignored);
    f.spots = r.spots;
    f.reduce_ns = (r.reduce_us * 1000.0).round() as u64;
    Ok(frame)
}

/// Reads every record of a features file as `T` (the fields it names), line by line.
///
/// # Errors
/// The file cannot be read, or a line is not such a record (the error names the line).
fn read_records<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Vec<T>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str::<T>(line)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Reads the verdicts back from a features file: frame number → accepted.
///
/// # Errors
/// The file cannot be read, or a line is not a record.
pub fn read_verdicts(path: &Path) -> std::io::Result<std::collections::HashMap<u64, bool>> {
    #[derive(serde::Deserialize)]
    struct Verdict {
        frame_number: u64,
        accepted: bool,
    }
    Ok(read_records::<Verdict>(path)?.into_iter().map(|v| (v.frame_number, v.accepted)).collect())
}

/// Reads back which frames a run kept for its audit stream (rejected frames, sampled evenly): their
/// frame numbers.
///
/// # Errors
/// The file cannot be read, or a line is not a record.
pub fn read_audit_frames(path: &Path) -> std::io::Result<std::collections::HashSet<u64>> {
    #[derive(serde::Deserialize)]
    struct Audit {
        frame_number: u64,
        audit: bool,
    }
    Ok(read_records::<Audit>(path)?.into_iter().filter(|a| a.audit).map(|a| a.frame_number).collect())
}

/// Reads the trigger's scores back from a features file: frame number → score, for every judged
/// (not dark) frame.
///
/// # Errors
/// The file cannot be read, or a line is not a record.
pub fn read_scores(path: &Path) -> std::io::Result<std::collections::HashMap<u64, f32>> {
    #[derive(serde::Deserialize)]
    struct Scored {
        frame_number: u64,
        score: f32,
        #[serde(default)]
        dark: bool,
    }
    Ok(read_records::<Scored>(path)?.into_iter().filter(|r| !r.dark).map(|r| (r.frame_number, r.score)).collect())
}

/// A recorded spot as read back: its centre of mass and, when the localiser refined it, its learned
/// centre, both in the assembled detector image (row, column).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
pub struct RecordedSpot {
    #[serde(rename = "image_row")]
    pub row: f32,
    #[serde(rename = "image_col")]
    pub col: f32,
    #[serde(default)]
    pub refined: Option<[f32; 2]>,
}

/// Recorded spots per frame number.
pub type SpotsByFrame = std::collections::HashMap<u64, Vec<RecordedSpot>>;

/// Reads the recorded spots back from a features file.
///
/// # Errors
/// The file cannot be read, or a line is not a record.
pub fn read_spots(path: &Path) -> std::io::Result<SpotsByFrame> {
    #[derive(serde::Deserialize)]
    struct Record {
        frame_number: u64,
        spots: Vec<RecordedSpot>,
    }
    Ok(read_records::<Record>(path)?.into_iter().map(|r| (r.frame_number, r.spots)).collect())
}
