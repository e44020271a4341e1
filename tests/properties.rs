//! Arbitrary bytes into every parser on the packet path: they return errors or counted drops, never
//! panic, and the assembler's accounting still adds up.

use std::sync::Arc;

use hitgate::detector::DetectorGeometry;
use hitgate::frame::{Assembler, AssemblerConfig, FramePool};
use hitgate::ingest::Capture;
use hitgate::ingest::linklayer::{LinkType, decode_udp};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn capture_reader_survives_any_bytes(prefix in prop::sample::select(vec![
        0xa1b2_c3d4u32.to_le_bytes().to_vec(),
        0xa1b2_3c4du32.to_be_bytes().to_vec(),
        vec![0x0a, 0x0d, 0x0d, 0x0a],
        vec![],
    ]), body in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut bytes = prefix;
        bytes.extend_from_slice(&body);
        if let Ok(cap) = Capture::from_vec(bytes) {
            for rec in cap.records().take(10_000).flatten() {
                let _ = rec.udp();
            }
        }
    }

    #[test]
    fn link_layer_decoder_survives_any_frame(link in prop::sample::select(vec![0u32, 1, 101, 113, 228, 229, 276, 9999]), frame in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(udp) = decode_udp(LinkType::from_code(link), &frame) {
            prop_assert!(udp.payload.len() <= frame.len());
        }
    }

    #[test]
    fn assembler_counts_every_arbitrary_packet_once(packets in prop::collection::vec((prop::sample::select(vec![50011u16, 50012, 50013]), prop::collection::vec(any::<u8>(), 0..64), any::<u64>(), 0u32..80, any::<bool>()), 0..200)) {
        let g = DetectorGeometry::new("eiger-10g-16bit", 1, vec![50011, 50012]).unwrap();
        let pool = FramePool::new(g.frame_bytes(), g.packets_per_frame(), 4, 0).unwrap();
        let mut a = Assembler::new(g, AssemblerConfig { window_frames: 2, ..Default::default() }, Arc::clone(&pool));
        for (i, (port, head, frame, packet, whole)) in packets.iter().enumerate() {
            let mut p = head.clone();
            if *whole {
                // A well-sized packet with an arbitrary (often plausible) header.
                p.resize(4144, 0);
                p[0..8].copy_from_slice(&(frame % 6).to_le_bytes());
                p[12..16].copy_from_slice(&packet.to_le_bytes());
                p[46] = 1;
            }
            let _ = a.push(*port, &p, i as u64 * 1000);
            while a.pop_ready().is_some() {}
        }
        a.flush();
        while a.pop_ready().is_some() {}
        let c = a.counters();
        prop_assert_eq!(c.packets_offered(), packets.len() as u64);
        prop_assert_eq!(pool.free_slots(), 4);
    }
}
