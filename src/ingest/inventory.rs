//! What is in a capture, for `hitgate inspect`: link types, UDP ports, and per port the detector
//! packets seen — which model they fit, frame range, frames, packets lost, duplicated or malformed.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::linklayer::SkipReason;
use super::pcap::Capture;
use crate::detector::{DetectorModel, MODELS, SlsDetectorHeader};

/// One UDP destination port's traffic.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PortInventory {
    pub udp_port: u16,
    pub datagrams: u64,
    /// Most common payload size and how many datagrams had it.
    pub payload_bytes: usize,
    pub payload_bytes_count: u64,
    /// Detector type code (header `detType`) seen most.
    pub det_type: u8,
    /// Table entries whose packet size and type fit.
    pub models: Vec<&'static str>,
    pub first_frame: u64,
    pub last_frame: u64,
    pub frames: u64,
    pub frames_complete: u64,
    pub packets_expected: u64,
    pub packets_unique: u64,
    pub packets_duplicate: u64,
    /// Datagrams whose size fits no model or that are too short for the header.
    pub datagrams_malformed: u64,
}

impl PortInventory {
    pub fn packets_missing(&self) -> u64 {
        self.packets_expected.saturating_sub(self.packets_unique)
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CaptureInventory {
    pub format: String,
    pub bytes: u64,
    pub records: u64,
    pub first_timestamp_ns: u64,
    pub last_timestamp_ns: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub ports: Vec<PortInventory>,
    /// Set when the file ends in damage.
    pub error: Option<String>,
}

#[derive(Default)]
struct PortTally {
    datagrams: u64,
    sizes: HashMap<usize, u64>,
    det_types: HashMap<u8, u64>,
    malformed: u64,
    packets: HashSet<(u64, u32)>,
    duplicates: u64,
}

/// Reads the whole capture and tallies it.
pub fn inventory(capture: &Capture) -> CaptureInventory {
    let mut inv = CaptureInventory {
        format: capture.format().to_string(),
        bytes: capture.len_bytes() as u64,
        ..Default::default()
    };
    let mut ports: BTreeMap<u16, PortTally> = BTreeMap::new();
    let mut skipped: HashMap<SkipReason, u64> = HashMap::new();
    for record in capture.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                inv.error = Some(e.to_string());
                break;
            }
        };
        inv.records += 1;
        if inv.first_timestamp_ns == 0 {
            inv.first_timestamp_ns = record.timestamp_ns;
        }
        inv.last_timestamp_ns = inv.last_timestamp_ns.max(record.timestamp_ns);
        let udp = match record.udp() {
            Ok(u) => u,
            Err(reason) => {
                *skipped.entry(reason).or_default() += 1;
                continue;
            }
        };
        let t = ports.entry(udp.dst_port).or_default();
        t.datagrams += 1;
        *t.sizes.entry(udp.payload.len()).or_default() += 1;
        match SlsDetectorHeader::split(udp.payload) {
            Ok((h, _)) if MODELS.iter().any(|m| m.packet_bytes() == udp.payload.len()) => {
                *t.det_types.entry(h.det_type).or_default() += 1;
                if !t.packets.insert((h.frame_number.get(), h.packet_number.get())) {
                    t.duplicates += 1;
                }
            }
            _ => t.malformed += 1,
        }
    }
    inv.skipped = SkipReason::ALL.iter().map(|r| (r.label(), skipped.get(r).copied().unwrap_or(0))).collect();
    for (udp_port, t) in ports {
        let (payload_bytes, payload_bytes_count) =
            t.sizes.iter().max_by_key(|(size, n)| (**n, **size)).map(|(s, n)| (*s, *n)).unwrap_or((0, 0));
        let det_type = t.det_types.iter().max_by_key(|(_, n)| **n).map(|(d, _)| *d).unwrap_or(0);
        let fits: Vec<&DetectorModel> =
            MODELS.iter().filter(|m| m.packet_bytes() == payload_bytes && m.det_type.code() == det_type).collect();
        let mut per_frame: BTreeMap<u64, u64> = BTreeMap::new();
        for (frame, _) in &t.packets {
            *per_frame.entry(*frame).or_default() += 1;
        }
        // Models that share a packet size differ in packets per frame; the most packets seen in one
        // frame tells them apart (the smallest fitting count wins).
        let most = per_frame.values().copied().max().unwrap_or(0);
        let per_port = fits.iter().map(|m| m.packets_per_port() as u64).filter(|&n| n >= most).min().unwrap_or(most);
        let frames = per_frame.len() as u64;
        inv.ports.push(PortInventory {
            udp_port,
            datagrams: t.datagrams,
            payload_bytes,
            payload_bytes_count,
            det_type,
            models: fits.iter().filter(|m| m.packets_per_port() as u64 == per_port).map(|m| m.name).collect(),
            first_frame: per_frame.keys().next().copied().unwrap_or(0),
            last_frame: per_frame.keys().next_back().copied().unwrap_or(0),
            frames,
            frames_complete: per_frame.values().filter(|&&n| n == per_port).count() as u64,
            packets_expected: frames * per_port,
            packets_unique: t.packets.len() as u64,
            packets_duplicate: t.duplicates,
            datagrams_malformed: t.malformed,
        });
    }
    inv
}
