//! Assembler throughput on a JUNGFRAU 4M stream (8 modules, 1024 packets of 8240 bytes per frame)
//! held in memory, beside the limit measured in the same run: copying the same payloads to the same
//! places in as many frame buffers as the pool has, without any assembly (the one copy the assembler
//! must do anyway).
//!
//! `cargo bench --bench assembler`

#[path = "common.rs"]
mod common;

use std::hint::black_box;

use hitgate::detector::{DetectorGeometry, DetectorType, SlsDetectorHeader};
use hitgate::frame::{Assembler, AssemblerConfig, FramePool};
use zerocopy::IntoBytes;

fn main() {
    let g = DetectorGeometry::with_consecutive_ports("jungfrau-1if", 8, 50001).unwrap();
    let frames = 24u64;
    let ppp = g.model.packets_per_port();
    // Packets in the order modules send them: ports interleaved packet by packet.
    let mut packets: Vec<(u16, Vec<u8>)> = Vec::new();
    for f in 1..=frames {
        for n in 0..ppp {
            for port in 0..g.ports() {
                let h = SlsDetectorHeader {
                    frame_number: f.into(),
                    packet_number: (n as u32).into(),
                    det_type: DetectorType::Jungfrau.code(),
                    ..Default::default()
                };
                let mut p = h.as_bytes().to_vec();
                p.resize(g.model.packet_bytes(), (f as u8).wrapping_add(n as u8));
                packets.push((g.udp_ports[port], p));
            }
        }
    }
    let bytes: usize = packets.iter().map(|(_, p)| p.len()).sum();
    let pool = FramePool::new(g.frame_bytes(), g.packets_per_frame(), 16, 0).unwrap();
    // The limit writes into as many frame buffers as the pool has, in turn, as the assembler does.
    let mut limit_buffers: Vec<Vec<u8>> = (0..16).map(|_| vec![1u8; g.frame_bytes()]).collect();
    let rounds = 12;
    let (mut assemble, mut limit) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut a = Assembler::new(g.clone(), AssemblerConfig::default(), pool.clone());
        let (_, t) = common::time(|| {
            for (port, p) in &packets {
                let _ = a.push(*port, p, 0);
                while let Some(frame) = a.pop_ready() {
                    black_box(frame.meta().frame_number);
                }
            }
        });
        assert_eq!(a.counters().frames_complete, frames, "round {round}");
        assemble.push(t);
        let (_, t) = common::time(|| {
            for (port, p) in &packets {
                let port_index = usize::from(*port - 50001);
                let frame = u64::from_le_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]) as usize;
                let n = u32::from_le_bytes([p[12], p[13], p[14], p[15]]) as usize;
                let at = g.packet_range(port_index, n);
                limit_buffers[frame % 16][at].copy_from_slice(&p[48..]);
            }
            black_box(&limit_buffers);
        });
        limit.push(t);
    }
    let (a50, _) = common::percentiles(assemble);
    let (l50, _) = common::percentiles(limit);
    let n = packets.len() as f64;
    println!(
        "assembler, JUNGFRAU 4M, {frames} frames ({} packets, {:.0} MB) × {rounds} rounds, medians",
        packets.len(),
        bytes as f64 / 1e6
    );
    println!(
        "limit: copy payloads into place   {:6.1} ms  {:5.2} M packets/s  {:5.2} GB/s",
        a_ms(l50),
        n / l50.as_secs_f64() / 1e6,
        bytes as f64 / l50.as_secs_f64() / 1e9
    );
    println!(
        "assembler                         {:6.1} ms  {:5.2} M packets/s  {:5.2} GB/s  ratio to limit {:.2}",
        a_ms(a50),
        n / a50.as_secs_f64() / 1e6,
        bytes as f64 / a50.as_secs_f64() / 1e9,
        a50.as_secs_f64() / l50.as_secs_f64()
    );
}

fn a_ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
