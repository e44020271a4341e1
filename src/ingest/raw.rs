//! A run as slsReceiver stores it on disk (master file versions 7.x), read in place and replayed as
//! the packets it was made of, so that it goes through the assembler's accounting like any source.
//!
//! `<name>_master_<run>.json` describes the run: the detector type, the UDP interfaces (JUNGFRAU) or
//! the dynamic range and link (EIGER), the ports' geometry, the image size a port and the frames a
//! file. Each port `d` has files `<name>_d<d>_f<file>_<run>.raw`, each holding up to "Max Frames Per
//! File" frames of a 112-byte header — the 48-byte `sls_detector_header` with its packet number
//! replaced by the count of packets caught, then a 64-byte mask with one bit a packet caught — and the
//! port's image. A frame is replayed as the packets its mask says were caught (their headers with
//! their own packet numbers again, their payloads cut from the image); the others are missing, and the
//! assembler counts them lost.

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::Deserialize;
use zerocopy::IntoBytes;

use crate::detector::{DetectorModel, HEADER_BYTES, SlsDetectorHeader};

/// Bytes before each frame's image in a raw file: the detector header and the packets-caught mask.
pub const FRAME_HEADER_BYTES: usize = HEADER_BYTES + 64;

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an slsReceiver master file: {reason}")]
    Master { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

/// The parts of a master file a replay needs (version 7.x).
#[derive(Debug, Deserialize)]
struct MasterFile {
    #[serde(rename = "Version")]
    version: f64,
    #[serde(rename = "Detector Type")]
    detector_type: String,
    #[serde(rename = "Geometry")]
    geometry: Xy,
    #[serde(rename = "Image Size in bytes")]
    image_bytes: usize,
    #[serde(rename = "Max Frames Per File")]
    frames_per_file: usize,
    #[serde(rename = "Total Frames")]
    total_frames: usize,
    #[serde(rename = "Number of UDP Interfaces", default)]
    interfaces: Option<usize>,
    #[serde(rename = "Dynamic Range", default)]
    dynamic_range: Option<usize>,
    #[serde(rename = "Ten Giga", default)]
    ten_giga: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct Xy {
    x: usize,
    y: usize,
}

/// An slsReceiver run on disk, its files mapped.
pub struct RawRun {
    master: PathBuf,
    model: &'static DetectorModel,
    ports: usize,
    image_bytes: usize,
    frames_per_file: usize,
    total_frames: usize,
    /// Per port, its files in order.
    files: Vec<Vec<Mmap>>,
    bytes: usize,
}

/// What a replay of a raw run saw of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawProgress {
    /// Frames read of every port.
    pub frames: u64,
    /// Bytes of raw files read.
    pub bytes: u64,
}

impl RawRun {
    /// Whether `path` names an slsReceiver master file (`…_master_<run>.json`).
    pub fn is_master(path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.ends_with(".json") && name.contains("_master_")
    }

    /// Opens the run `master` describes and maps its files.
    ///
    /// # Errors
    /// The master cannot be read or is not one hitgate knows, or a port's first file is missing.
    pub fn open(master: &Path) -> Result<RawRun, RawError> {
        let bad = |reason: String| RawError::Master { path: master.into(), reason };
        let text = std::fs::read_to_string(master).map_err(|source| RawError::Read { path: master.into(), source })?;
        let m: MasterFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if !(7.0..8.0).contains(&m.version) {
            return Err(bad(format!("version {}, hitgate reads 7.x", m.version)));
        }
        let ports = m.geometry.x * m.geometry.y;
        let name = match (m.detector_type.as_str(), m.interfaces, m.dynamic_range, m.ten_giga) {
            ("Jungfrau", Some(1) | None, _, _) => "jungfrau-1if".to_string(),
            ("Jungfrau", Some(2), _, _) => "jungfrau-2if".to_string(),
            ("Eiger", _, Some(dr), Some(1)) => format!("eiger-10g-{dr}bit"),
            ("Eiger", _, Some(dr), _) => format!("eiger-1g-{dr}bit"),
            (other, interfaces, _, _) => {
                return Err(bad(format!("a {other} run with {interfaces:?} interfaces is not one hitgate reads")));
            }
        };
        let model = DetectorModel::by_name(&name).ok_or_else(|| bad(format!("no detector model {name}")))?;
        if m.image_bytes != model.port_image_bytes() {
            return Err(bad(format!(
                "images of {} bytes a port, a {name} port's are {}",
                m.image_bytes,
                model.port_image_bytes()
            )));
        }
        if ports == 0 || !ports.is_multiple_of(model.ports_per_module) || m.frames_per_file == 0 {
            return Err(bad(format!("{ports} ports, {} frames a file", m.frames_per_file)));
        }
        let (stem, run) = stem_and_run(master).ok_or_else(|| bad("not named …_master_<run>.json".into()))?;
        let frame_bytes = FRAME_HEADER_BYTES + m.image_bytes;
        let file_count = m.total_frames.div_ceil(m.frames_per_file).max(1);
        let mut files = Vec::with_capacity(ports);
        let mut bytes = 0;
        for d in 0..ports {
            let mut port_files = Vec::new();
            for f in 0..file_count {
                let path = stem.with_file_name(format!(
                    "{}_d{d}_f{f}_{run}.raw",
                    stem.file_name().and_then(|n| n.to_str()).unwrap_or("")
                ));
                let file = match std::fs::File::open(&path) {
                    Ok(file) => file,
                    // A run cut short: the files it has are read, and the summary says so.
                    Err(_) if f > 0 => break,
                    Err(source) => return Err(RawError::Read { path, source }),
                };
                // SAFETY: the file is mapped read-only and only read as bytes; a file another process
                // shortens while it is mapped is the one hazard, as for any mapped capture, and
                // slsReceiver's files are written once and closed before they are replayed.
                let map =
                    unsafe { Mmap::map(&file) }.map_err(|source| RawError::Read { path: path.clone(), source })?;
                if !map.len().is_multiple_of(frame_bytes) {
                    return Err(RawError::Damaged {
                        path,
                        reason: format!("{} bytes, not a whole number of {frame_bytes}-byte frames", map.len()),
                    });
                }
                bytes += map.len();
                port_files.push(map);
            }
            files.push(port_files);
        }
        Ok(RawRun {
            master: master.into(),
            model,
            ports,
            image_bytes: m.image_bytes,
            frames_per_file: m.frames_per_file,
            total_frames: m.total_frames,
            files,
            bytes,
        })
    }

    /// The detector model the run is of.
    pub fn model(&self) -> &'static DetectorModel {
        self.model
    }

    /// UDP ports (interfaces, or EIGER half-module ports) of the run.
    pub fn ports(&self) -> usize {
        self.ports
    }

    /// Frames the master says the run holds.
    pub fn total_frames(&self) -> usize {
        self.total_frames
    }

    /// Bytes of raw files.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// The master file.
    pub fn master(&self) -> &Path {
        &self.master
    }

    /// Frame `k` of port `d`: its header, caught-packets mask and image; `None` past the port's files.
    fn frame(&self, d: usize, k: usize) -> Option<(&[u8], &[u8])> {
        let frame_bytes = FRAME_HEADER_BYTES + self.image_bytes;
        let file = self.files.get(d)?.get(k / self.frames_per_file)?;
        let at = (k % self.frames_per_file) * frame_bytes;
        let frame = file.get(at..at + frame_bytes)?;
        Some(frame.split_at(FRAME_HEADER_BYTES))
    }

    /// Replays the run packet by packet, frame after frame, every port of a frame before the next:
    /// `packet(port_index, packet, timestamp_ns)` gets each caught packet as the detector sent it
    /// (header and payload) and may stop the replay by returning false. Returns what was read, and
    /// the error that cut the run short when one did.
    pub fn replay(&self, mut packet: impl FnMut(usize, &[u8], u64) -> bool) -> (RawProgress, Option<RawError>) {
        let payload = self.model.payload_bytes;
        let per_port = self.model.packets_per_port();
        let mut scratch = vec![0u8; HEADER_BYTES + payload];
        let mut progress = RawProgress::default();
        for k in 0..self.total_frames {
            for d in 0..self.ports {
                let Some((head, image)) = self.frame(d, k) else {
                    let reason = format!("port {d} ends after {k} of {} frames", self.total_frames);
                    return (progress, Some(RawError::Damaged { path: self.master.clone(), reason }));
                };
                progress.bytes += (head.len() + image.len()) as u64;
                let Ok((header, mask)) = SlsDetectorHeader::split(head) else { continue };
                // Padding slsReceiver wrote for a frame that never came: nothing was caught.
                if header.frame_number.get() == 0 {
                    continue;
                }
                let mut h = *header;
                let timestamp_ns = header.timestamp.get().saturating_mul(100);
                for n in (0..per_port).filter(|&n| mask.get(n / 8).is_some_and(|b| b & (1 << (n % 8)) != 0)) {
                    h.packet_number = (n as u32).into();
                    scratch[..HEADER_BYTES].copy_from_slice(h.as_bytes());
                    scratch[HEADER_BYTES..].copy_from_slice(&image[n * payload..(n + 1) * payload]);
                    if !packet(d, &scratch, timestamp_ns) {
                        return (progress, None);
                    }
                }
            }
            progress.frames += 1;
        }
        (progress, None)
    }
}

/// `dir/name` and the run index of `dir/name_master_<run>.json`.
fn stem_and_run(master: &Path) -> Option<(PathBuf, String)> {
    let name = master.file_name()?.to_str()?.strip_suffix(".json")?;
    let (stem, run) = name.rsplit_once("_master_")?;
    Some((master.with_file_name(stem), run.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_master_and_odd_masters_are_refused() {
        let (stem, run) = stem_and_run(Path::new("/d/jf_master_3.json")).unwrap();
        assert_eq!((stem, run.as_str()), (PathBuf::from("/d/jf"), "3"));
        assert!(RawRun::is_master(Path::new("x/run_master_0.json")) && !RawRun::is_master(Path::new("run.pcap")));
        let dir = tempfile::tempdir().unwrap();
        let master = dir.path().join("r_master_0.json");
        std::fs::write(&master, r#"{"Version": 6.1}"#).unwrap();
        assert!(matches!(RawRun::open(&master), Err(RawError::Master { .. })));
    }
}
