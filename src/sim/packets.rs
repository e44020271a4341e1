//! The simulated run as the modules would send it: each frame cut into packets, ports interleaved
//! packet by packet on a 10 GbE wire at the frame rate, then lost, reordered and duplicated as the
//! faults ask, written to the capture; the truth counts every packet.

use std::io::Write;

use zerocopy::IntoBytes;

use serde::{Deserialize, Serialize};

use super::capture_writer::CaptureWriter;
use crate::detector::{DetectorGeometry, SlsDetectorHeader};
use crate::rng::Rng;

/// Damage done to the packet stream on its way, as fractions of packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PacketFaults {
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
}

/// What was done to the packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounts {
    pub sent: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
}

/// Cuts frames into packets the way the modules send them: ports interleaved packet by packet, each
/// packet on the wire 10 GbE apart, frames at the frame rate; then loses, reorders and duplicates.
pub(super) struct PacketEmitter {
    geometry: DetectorGeometry,
    seed: u64,
    frame_rate_hz: f64,
    faults: PacketFaults,
    modules_per_row: usize,
    order: Vec<(usize, usize)>,
}

impl PacketEmitter {
    pub fn new(
        geometry: &DetectorGeometry,
        seed: u64,
        frame_rate_hz: f64,
        faults: PacketFaults,
        modules_per_row: usize,
    ) -> PacketEmitter {
        PacketEmitter {
            geometry: geometry.clone(),
            seed,
            frame_rate_hz,
            faults,
            modules_per_row: modules_per_row.max(1),
            order: Vec::new(),
        }
    }

    pub fn emit<W: Write>(
        &mut self,
        w: &mut CaptureWriter<W>,
        raw: &[u16],
        frame_number: u64,
        counts: &mut PacketCounts,
    ) -> std::io::Result<()> {
        let g = &self.geometry;
        let ppp = g.model.packets_per_port();
        self.order.clear();
        for n in 0..ppp {
            for port in 0..g.ports() {
                self.order.push((port, n));
            }
        }
        let mut rng = Rng::new(self.seed ^ 0x5eed_fa17, frame_number);
        let len = self.order.len();
        for i in 0..len {
            if rng.uniform() < self.faults.reorder {
                let j = (i + 1 + rng.below(8)).min(len - 1);
                self.order.swap(i, j);
                counts.reordered += 1;
            }
        }
        let frame_start_ns = 1_700_000_000_000_000_000 + ((frame_number - 1) as f64 * 1e9 / self.frame_rate_hz) as u64;
        let wire_ns = (g.model.packet_bytes() + 42) as u64 * 8 / 10;
        let bytes = raw.as_bytes();
        let mut packet = vec![0u8; g.model.packet_bytes()];
        for (k, &(port, n)) in self.order.iter().enumerate() {
            counts.sent += 1;
            if rng.uniform() < self.faults.loss {
                counts.lost += 1;
                continue;
            }
            let module = port / g.model.ports_per_module;
            let header = SlsDetectorHeader {
                frame_number: frame_number.into(),
                exp_length: 0.into(),
                packet_number: (n as u32).into(),
                bunch_id: frame_number.into(),
                timestamp: (((frame_number as f64) * 1e7 / self.frame_rate_hz).round() as u64).into(),
                mod_id: (module as u16).into(),
                row: (((module / self.modules_per_row) * g.model.ports_per_module + port % g.model.ports_per_module)
                    as u16)
                    .into(),
                column: ((module % self.modules_per_row) as u16).into(),
                det_type: g.model.det_type.code(),
                version: 2,
                ..Default::default()
            };
            packet[..48].copy_from_slice(header.as_bytes());
            packet[48..].copy_from_slice(&bytes[g.packet_range(port, n)]);
            let ts = frame_start_ns + (k / g.ports()) as u64 * wire_ns;
            w.write_udp(ts, 32000 + port as u16, g.udp_ports[port], &packet)?;
            if rng.uniform() < self.faults.duplicate {
                counts.duplicated += 1;
                w.write_udp(ts + 1, 32000 + port as u16, g.udp_ports[port], &packet)?;
            }
        }
        Ok(())
    }
}
