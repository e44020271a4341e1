//! The bodies of the fuzz targets: each takes arbitrary bytes, drives one parser the way the product
//! does, and asserts what must hold whatever the input. A panic is a finding. `fuzz/` runs them
//! under libFuzzer (`cargo +nightly fuzz run TARGET`, which builds with `--cfg fuzzing`); [`smoke`]
//! runs them with the unit tests over their seeds and generated inputs, and replays every crash kept
//! in `fuzz/regressions/`. Compiled only for those two: the product never carries them.

#[cfg(test)]
mod smoke;

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

use crate::detector::{DetectorGeometry, SlsDetectorHeader};
use crate::frame::{Assembler, AssemblerConfig, FramePool};
use crate::ingest::Capture;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name `fuzz/` gives it.
pub const TARGETS: &[(&str, Target)] = &[
    ("packet", packet),
    ("capture", capture),
    ("assembler", assembler),
    ("config", config),
    ("dma", dma),
    ("calibration", calibration),
    ("forward", forward),
    ("cluster_message", cluster_message),
];

/// A detector packet: the header is read or refused by its size, and the geometry places the
/// packet inside the frame or refuses its port and number.
pub fn packet(data: &[u8]) {
    let Some((&selector, packet)) = data.split_first() else { return };
    let models = ["jungfrau-1if", "jungfrau-2if", "eiger-10g-16bit", "eiger-10g-32bit"];
    let model = models[selector as usize % models.len()];
    let Ok(g) = DetectorGeometry::with_consecutive_ports(model, 1 + (selector as usize >> 4) % 4, 50001) else {
        return;
    };
    let Ok((header, payload)) = SlsDetectorHeader::split(packet) else { return };
    assert!(payload.len() + std::mem::size_of::<SlsDetectorHeader>() == packet.len());
    let port = 50001u16.wrapping_add(u16::from(header.storage_cell()) % 8);
    if let Some(slot) = g.slot_of_udp_port(port) {
        let number = header.packet_number.get() as usize;
        if number < g.model.packets_per_port() {
            let range = g.packet_range(slot.port_index, number);
            assert!(range.end <= g.frame_bytes(), "packet {number} of port {port} lands past the frame");
            assert!(g.packet_index(slot.port_index, number) < g.packets_per_frame());
        }
    }
}

/// A capture file: records are read or the rest is refused, and each record's UDP datagram lies
/// inside it.
pub fn capture(data: &[u8]) {
    let Ok(cap) = Capture::from_vec(data.to_vec()) else { return };
    for record in cap.records().take(100_000) {
        let Ok(record) = record else { break };
        if let Ok(udp) = record.udp() {
            assert!(udp.payload.len() <= record.data.len());
        }
    }
}

/// An arbitrary packet sequence into the assembler: every packet is counted exactly once under one
/// reason, no frame is handed out twice, frames in flight stay within the window, and every pool
/// slot comes back.
pub fn assembler(data: &[u8]) {
    const SLOTS: usize = 6;
    let g = DetectorGeometry::new("eiger-10g-16bit", 1, vec![50011, 50012]).expect("a known model");
    let pool = FramePool::new(g.frame_bytes(), g.packets_per_frame(), SLOTS, 0).expect("a small pool");
    let config = AssemblerConfig { window_frames: 3, ..Default::default() };
    let mut a = Assembler::new(g, config, Arc::clone(&pool));
    let mut handed_out = HashSet::new();
    let mut offered = 0u64;
    let mut packet = vec![0u8; 4200];
    // Six bytes a packet: port and shape, frame, packet number (two bytes), clock.
    for (i, c) in data.chunks_exact(6).enumerate() {
        let port = if c[0] & 1 == 0 { 50011 } else { 50012 };
        let len = match c[0] >> 5 {
            0 => usize::from(c[1]),
            1 => 4143,
            2 => 4145,
            _ => 4144,
        };
        packet.clear();
        packet.resize(len, c[5]);
        if len >= 48 {
            let frame = if c[0] & 0x10 != 0 { u64::from(c[1]) << 20 } else { u64::from(c[1] % 16) };
            packet[0..8].copy_from_slice(&frame.to_le_bytes());
            packet[12..16].copy_from_slice(&u32::from(u16::from_le_bytes([c[2], c[3]]) % 300).to_le_bytes());
            packet[46] = if c[0] & 0x08 != 0 { c[4] } else { 1 };
        }
        let _ = a.push(port, &packet, i as u64 * 50_000 + u64::from(c[4]) * 1000);
        offered += 1;
        while let Some(frame) = a.pop_ready() {
            assert!(
                handed_out.insert(frame.meta().frame_number),
                "frame {} handed out twice",
                frame.meta().frame_number
            );
        }
        assert!(a.in_flight() <= 3, "{} frames in flight past a window of 3", a.in_flight());
    }
    a.flush();
    while let Some(frame) = a.pop_ready() {
        assert!(handed_out.insert(frame.meta().frame_number), "frame {} handed out twice", frame.meta().frame_number);
    }
    assert_eq!(a.counters().packets_offered(), offered, "every packet counted once");
    drop(a);
    assert_eq!(pool.free_slots(), SLOTS, "every slot back");
}

/// A config file: it loads, or every problem names its key; a loaded config validates without
/// panicking, and one that validates gives its geometry.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match crate::config::Config::parse(&text) {
        Ok(c) => {
            if let Ok(c) = c.validated()
                && let Ok(g) = c.geometry()
            {
                let _ = c.panel_origins(&g);
                let _ = c.beam_center_px();
            }
        }
        Err(e) => assert!(!e.problems().is_empty(), "a refused config names its problem"),
    }
}

/// A scratch file of this process and thread, for the targets whose parsers read files.
fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "hitgate-fuzz-{}-{:?}-{name}",
        std::process::id(),
        std::thread::current().id()
    ));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(bytes));
    assert!(written.is_ok(), "the scratch file {} cannot be written", path.display());
    path
}

/// A DMA ring whose header, descriptors and indices are arbitrary: it is refused, or reading it
/// hands out only payloads inside its buffers, at most one ring's worth at a time.
pub fn dma(data: &[u8]) {
    let mut bytes = data.to_vec();
    // The header's magic is given, the rest is not: most inputs get past the first check.
    if bytes.len() >= 8 {
        bytes[..8].copy_from_slice(b"HGDMA001");
    }
    let path = scratch("dma", &bytes);
    if let Ok(mut ring) = crate::ingest::dma::DmaRing::open(&path) {
        let (count, size) = (ring.buffer_count(), ring.buffer_bytes());
        for _ in 0..3 {
            let mut taken = 0;
            let n = ring.consume(usize::MAX, |_, payload, _| {
                assert!(payload.len() <= size);
                taken += 1;
            });
            assert!(n == taken && n <= count);
        }
    }
    let _ = std::fs::remove_file(path);
}

/// Calibration and mask files of any content: loaded, or refused with a reason.
pub fn calibration(data: &[u8]) {
    let Some((&pixels, body)) = data.split_first() else { return };
    let pixels = 1 + usize::from(pixels) * 3;
    let mut bytes = b"HGCALIB1".to_vec();
    bytes.extend_from_slice(body);
    let path = scratch("calib", &bytes);
    if let Ok(maps) = crate::calib::maps::CalibrationMaps::load(&path, pixels) {
        assert_eq!(maps.pedestal(0).len() % pixels, 0);
    }
    let _ = crate::calib::mask::PixelMask::load(&path, pixels);
    let path = scratch("mask", body);
    let _ = crate::calib::mask::PixelMask::load(&path, pixels);
    let _ = std::fs::remove_file(path);
}

/// Forward messages as a consumer reads them: subjects, headers and payloads of any content are
/// taken, counted as malformed or dropped, and never hand on a frame whose chunk is not whole.
pub fn forward(data: &[u8]) {
    use crate::scaleout::forward::protocol::{self, ForwardSubjects};
    use crate::scaleout::forward::reassemble::Reassembler;
    let section = crate::config::ForwardSection::to("nats://127.0.0.1:4222");
    let subjects = ForwardSubjects::of(&section.subject, "a");
    let mut r = Reassembler::new(8);
    let mut out = Vec::new();
    let mut rest = data;
    while let [kind, header, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        let subject = [&subjects.frame, &subjects.features, &subjects.end, "x"][usize::from(*kind) % 4];
        let mut headers = async_nats::HeaderMap::new();
        // What a client reads off the wire: header values never hold line breaks.
        let value: String =
            String::from_utf8_lossy(&payload[..n.min(12)]).chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        for (i, name) in [protocol::SERIES, protocol::SEQUENCE, protocol::PART, protocol::PARTS, protocol::BYTES]
            .into_iter()
            .enumerate()
        {
            let v = match (header >> i) & 1 {
                0 => (header % 4).to_string(),
                _ => value.clone(),
            };
            if header & 0x80 == 0 || i != 2 {
                headers.insert(name, if i == 2 { format!("{}/{}", 1 + header % 3, 1 + header % 4) } else { v });
            }
        }
        let kind = protocol::kind(&subjects, subject, Some(&headers));
        r.add(kind, bytes::Bytes::copy_from_slice(payload), &mut out);
    }
    r.flush(&mut out);
    for frame in &out {
        assert!(!frame.chunk_missing || frame.record.payload.is_empty());
    }
    let s = r.stats();
    assert_eq!(s.frames, out.len() as u64);
}

/// A cluster message of any content is read or refused.
pub fn cluster_message(data: &[u8]) {
    let _ = serde_json::from_slice::<crate::scaleout::cluster::NodeMessage>(data);
    let _ = serde_json::from_slice::<crate::scaleout::cluster::Verdict>(data);
    if let Ok(record) = crate::sink::features::decode_line(data) {
        assert!(record.missing_packets().count() <= record.meta.packets_expected as usize);
    }
}

/// Inputs each target starts from: well-formed examples of what it parses, so that mutations explore
/// near the real formats. `tests/fuzz_smoke.rs` writes them to a libFuzzer corpus folder on request.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "packet" => {
            let mut p = vec![0u8; 1 + 48 + 8192];
            p[1..9].copy_from_slice(&7u64.to_le_bytes());
            p[13..17].copy_from_slice(&5u32.to_le_bytes());
            p[47] = 3;
            let mut eiger = vec![0x12u8; 1 + 48 + 4096];
            eiger[13..17].copy_from_slice(&63u32.to_le_bytes());
            vec![p, eiger]
        }
        "capture" => [crate::sim::capture_writer::CaptureFileFormat::Pcap, crate::sim::capture_writer::CaptureFileFormat::Pcapng]
            .into_iter()
            .filter_map(|format| {
                let framing = crate::sim::capture_writer::LinkFraming::Ethernet;
                let mut w = crate::sim::capture_writer::CaptureWriter::new(Vec::new(), format, framing).ok()?;
                w.write_udp(1_000, 40001, 50001, &[1u8; 96]).ok()?;
                w.write_udp(2_000, 40001, 50002, &[2u8; 48]).ok()?;
                w.finish().ok()
            })
            .collect(),
        "assembler" => {
            // Two whole frames on both ports, then a few late and duplicate packets.
            let mut s = Vec::new();
            for frame in 0..2u8 {
                for port in 0..2u8 {
                    for packet in 0..64u16 {
                        let [lo, hi] = packet.to_le_bytes();
                        s.extend_from_slice(&[0xe0 | port, frame, lo, hi, packet as u8, 0]);
                    }
                }
            }
            s.extend_from_slice(&[0xe0, 0, 3, 0, 9, 0, 0x20, 0, 3, 0, 9, 0, 0xe1, 9, 0, 1, 0, 0]);
            vec![s]
        }
        "config" => vec![
            include_bytes!("../../configs/jungfrau-4m-cluster.toml").to_vec(),
            include_bytes!("../../configs/fpga-trigger.toml").to_vec(),
            b"[detector]\nmodel = \"jungfrau-1if\"\n[[sink]]\nkind = \"null\"\n".to_vec(),
        ],
        "dma" => {
            let path = scratch("dma-seed", &[]);
            let ring = crate::ingest::dma::DmaRing::create(&path, 4, 64).ok().map(|mut ring| {
                ring.produce(50001, &[7u8; 40]);
                ring.produce(50002, &[8u8; 100]);
            });
            let bytes = ring.and_then(|()| std::fs::read(&path).ok()).unwrap_or_default();
            let _ = std::fs::remove_file(path);
            vec![bytes]
        }
        "calibration" => {
            // 1 module of 2 × 2 pixels, 3 gain stages: pedestal and gain, 24 values.
            let mut s = vec![1u8];
            for v in [1u32, 2, 2, 3] {
                s.extend_from_slice(&v.to_le_bytes());
            }
            for i in 0..24 {
                s.extend_from_slice(&(i as f32 * 10.0).to_le_bytes());
            }
            vec![s]
        }
        "forward" => vec![vec![0, 2, 4, b'1', b'/', b'2', b'9', 1, 3, 2, b'{', b'}', 2, 0, 0]],
        "cluster_message" => vec![
            br#"{"kind":"frame","node":"a","frame_number":3,"spots_found":12,"score":1.5,"accepted":true,"packets_received":128,"packets_expected":128}"#.to_vec(),
            br#"{"frame_number":3,"keep":true,"score":2.0,"nodes":3,"complete":true}"#.to_vec(),
            br#"{"frame_number":12,"sequence":11,"accepted":true,"audit":false,"score":23.0,"dark":false,"complete":false,"packets_received":126,"packets_expected":128,"missing_packets":[40,41],"spots_found":0,"spots":[],"reduce_us":412.5}"#.to_vec(),
        ],
        _ => Vec::new(),
    }
}
