//! The assembler on hand-made packets: placement, partial frames, timeouts, duplicates, late and
//! out-of-window packets, jumps in the frame number.

use super::*;
use crate::detector::DetectorType;
use zerocopy::IntoBytes;

fn packet(frame: u64, packet_number: u32, fill: u8) -> Vec<u8> {
    let header = SlsDetectorHeader {
        frame_number: frame.into(),
        packet_number: packet_number.into(),
        det_type: DetectorType::Jungfrau.code(),
        version: 2,
        ..Default::default()
    };
    let mut p = header.as_bytes().to_vec();
    p.resize(48 + 8192, fill);
    p
}

fn jf2() -> (Assembler, Arc<FramePool>) {
    let g = DetectorGeometry::new("jungfrau-2if", 1, vec![50001, 50002]).unwrap();
    let pool = FramePool::new(g.frame_bytes(), g.packets_per_frame(), 4, 0).unwrap();
    let config = AssemblerConfig { window_frames: 2, frame_timeout_ns: 1000, ..Default::default() };
    (Assembler::new(g, config, Arc::clone(&pool)), pool)
}

fn send_frame(a: &mut Assembler, frame: u64, skip: &[u32]) {
    for port in [50001, 50002] {
        for n in 0..64 {
            if !(port == 50002 && skip.contains(&n)) {
                a.push(port, &packet(frame, n, (frame + n as u64) as u8), frame * 100).unwrap();
            }
        }
    }
}

#[test]
fn a_complete_frame_leaves_at_once_with_its_packets_in_place() {
    let (mut a, _pool) = jf2();
    send_frame(&mut a, 1, &[]);
    let f = a.pop_ready().expect("complete");
    assert!(f.meta().is_complete());
    assert_eq!(f.meta().frame_number, 1);
    // port 1 (second half), packet 3 starts at (64 + 3) * 8192
    assert_eq!(f.data()[(64 + 3) * 8192], 4);
    assert_eq!(a.counters().frames_complete, 1);
    assert_eq!(a.counters().packets_placed, 128);
}

#[test]
fn partial_frames_leave_on_timeout_blanked_and_counted() {
    let (mut a, _pool) = jf2();
    send_frame(&mut a, 7, &[]);
    drop(a.pop_ready());
    // Reuse the same slot with packets missing: stale bytes must not show through.
    send_frame(&mut a, 8, &[5, 6]);
    assert!(a.pop_ready().is_none());
    a.poll_timeouts(8 * 100 + 999);
    assert!(a.pop_ready().is_none(), "not yet");
    a.poll_timeouts(8 * 100 + 1000);
    let f = a.pop_ready().expect("timed out");
    assert_eq!(f.meta().packets_received, 126);
    assert!(!f.has_packet(64 + 5) && f.has_packet(64 + 7));
    assert!(f.data()[(64 + 5) * 8192..(64 + 7) * 8192].iter().all(|&b| b == 0));
    assert_eq!((a.counters().frames_partial, a.counters().packets_lost), (1, 2));
    a.push(50002, &packet(8, 5, 1), 2000).unwrap_err();
    assert_eq!(a.counters().dropped(PacketDrop::Late), 1);
}

#[test]
fn the_window_moving_on_pushes_partial_frames_out() {
    let (mut a, _pool) = jf2();
    send_frame(&mut a, 1, &[0]);
    send_frame(&mut a, 2, &[]);
    assert_eq!(a.pop_ready().unwrap().meta().frame_number, 2);
    send_frame(&mut a, 3, &[]);
    let out: Vec<u64> = std::iter::from_fn(|| a.pop_ready()).map(|f| f.meta().frame_number).collect();
    assert_eq!(out, vec![1, 3], "frame 1 left when frame 3 moved the 2-frame window");
}

#[test]
fn one_corrupted_frame_number_does_not_make_the_frames_after_it_late() {
    let (mut a, _pool) = jf2();
    send_frame(&mut a, 1, &[]);
    // A bit flipped in frame 2's number (2 + 65536), then the genuine stream goes on.
    assert_eq!(a.push(50001, &packet(2 + (1 << 16), 5, 0), 150), Ok(()), "held, not yet judged");
    let mut out = vec![a.pop_ready().unwrap().meta().frame_number];
    for frame in 2..=6 {
        send_frame(&mut a, frame, &[]);
        out.extend(std::iter::from_fn(|| a.pop_ready()).map(|f| f.meta().frame_number));
    }
    assert_eq!(out, vec![1, 2, 3, 4, 5, 6]);
    let c = a.counters();
    assert_eq!((c.frames_complete, c.packets_placed, c.packets_lost), (6, 6 * 128, 0));
    assert_eq!(c.dropped(PacketDrop::OutOfWindow), 1, "the corrupted packet, once given up");
    assert_eq!(c.dropped(PacketDrop::Late), 0);
    assert_eq!(c.packets_offered(), 6 * 128 + 1);
}

#[test]
fn a_genuine_jump_is_followed_at_its_second_packet() {
    let (mut a, _pool) = jf2();
    send_frame(&mut a, 1, &[]);
    // The detector restarted its numbering far ahead (or a long burst was lost).
    let mut out = vec![a.pop_ready().unwrap().meta().frame_number];
    for frame in [500_000, 500_001] {
        send_frame(&mut a, frame, &[]);
        out.extend(std::iter::from_fn(|| a.pop_ready()).map(|f| f.meta().frame_number));
    }
    assert_eq!(out, vec![1, 500_000, 500_001]);
    assert_eq!((a.counters().frames_complete, a.counters().packets_dropped.iter().sum::<u64>()), (3, 0));
    let first = a.push(50001, &packet(900_000, 0, 0), 0);
    a.flush();
    assert_eq!(first, Ok(()));
    assert_eq!(a.counters().dropped(PacketDrop::OutOfWindow), 1, "a lone jump at the end is given up");
}

#[test]
fn every_bad_packet_has_its_reason() {
    let (mut a, _pool) = jf2();
    let good = packet(1, 0, 0);
    assert_eq!(a.push(40000, &good, 0), Err(PacketDrop::Foreign));
    assert_eq!(a.push(50001, &good[..100], 0), Err(PacketDrop::Truncated));
    assert_eq!(a.push(50001, &good[..10], 0), Err(PacketDrop::Truncated));
    let mut big = good.clone();
    big.push(0);
    assert_eq!(a.push(50001, &big, 0), Err(PacketDrop::Oversized));
    let mut eiger = good.clone();
    eiger[46] = DetectorType::Eiger.code();
    assert_eq!(a.push(50001, &eiger, 0), Err(PacketDrop::Foreign));
    assert_eq!(a.push(50001, &packet(0, 0, 0), 0), Err(PacketDrop::BadHeader));
    assert_eq!(a.push(50001, &packet(1, 64, 0), 0), Err(PacketDrop::BadHeader));
    assert_eq!(a.push(50001, &good, 0), Ok(()));
    assert_eq!(a.push(50001, &good, 0), Err(PacketDrop::Duplicate));
    assert_eq!(a.push(50001, &packet(5_000_000, 0, 0), 0), Err(PacketDrop::OutOfWindow));
    assert_eq!(a.push(50001, &packet(u64::MAX, 0, 0), 0), Err(PacketDrop::OutOfWindow));
    assert_eq!(a.counters().packets_offered(), 11);
}

#[test]
fn an_empty_pool_drops_the_frame_and_counts_all_its_packets() {
    let (mut a, pool) = jf2();
    let held: Vec<_> = (0..4).map(|_| pool.try_acquire().unwrap()).collect();
    for port in [50001, 50002] {
        for n in 0..64 {
            assert_eq!(a.push(port, &packet(1, n, 0), 0), Err(PacketDrop::NoSlot));
        }
    }
    assert_eq!(a.counters().frames_no_slot, 1);
    assert_eq!(a.counters().dropped(PacketDrop::NoSlot), 128);
    drop(held);
    send_frame(&mut a, 2, &[]);
    assert_eq!(a.counters().frames_complete, 1);
}

#[test]
fn drop_policy_gives_partial_slots_back() {
    let g = DetectorGeometry::new("jungfrau-2if", 1, vec![50001, 50002]).unwrap();
    let pool = FramePool::new(g.frame_bytes(), g.packets_per_frame(), 2, 0).unwrap();
    let config = AssemblerConfig { partial_policy: PartialPolicy::Drop, ..Default::default() };
    let mut a = Assembler::new(g, config, Arc::clone(&pool));
    send_frame(&mut a, 1, &[9]);
    a.flush();
    assert!(a.pop_ready().is_none());
    assert_eq!((a.counters().frames_partial_dropped, a.counters().packets_lost), (1, 1));
    assert_eq!(pool.free_slots(), 2);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Any sequence of (possibly damaged) packets: every packet counted once, no frame leaves
        /// twice, each frame's packet accounting adds up, and the pool gets every slot back.
        #[test]
        fn accounting_holds_for_any_packet_sequence(
            ops in proptest::collection::vec((0u64..12, 0u32..70, 0u8..8, 0u64..3000), 0..600)
        ) {
            let g = DetectorGeometry::new("jungfrau-2if", 1, vec![50001, 50002]).unwrap();
            let pool = FramePool::new(g.frame_bytes(), g.packets_per_frame(), 3, 0).unwrap();
            let config = AssemblerConfig { window_frames: 3, frame_timeout_ns: 500, max_frame_jump: 6, ..Default::default() };
            let mut a = Assembler::new(g, config, Arc::clone(&pool));
            let mut now = 0;
            let mut left = Vec::new();
            let mut received_in_left = 0u64;
            for (frame, packet_number, damage, dt) in ops {
                now += dt;
                let mut p = packet(frame, packet_number, 1);
                let port = match damage { 0 => 40000, 1 => { p.truncate(4000); 50001 }, 2 => { p.push(0); 50002 }, 3 | 4 => 50001, _ => 50002 };
                let _ = a.push(port, &p, now);
                a.poll_timeouts(now);
                while let Some(f) = a.pop_ready() {
                    prop_assert!(!left.contains(&f.meta().frame_number), "frame left twice");
                    left.push(f.meta().frame_number);
                    received_in_left += u64::from(f.meta().packets_received);
                }
            }
            a.flush();
            while let Some(f) = a.pop_ready() {
                prop_assert!(!left.contains(&f.meta().frame_number));
                left.push(f.meta().frame_number);
                received_in_left += u64::from(f.meta().packets_received);
            }
            let c = *a.counters();
            prop_assert_eq!(c.packets_placed, received_in_left);
            prop_assert_eq!(c.frames_complete + c.frames_partial, left.len() as u64);
            prop_assert_eq!(c.packets_placed + c.packets_lost, 128 * (c.frames_complete + c.frames_partial));
            prop_assert_eq!(pool.free_slots(), 3);
        }
    }
}

#[test]
fn a_slot_taken_ahead_is_kept_between_frames_and_given_back_when_the_detector_goes_quiet() {
    let (mut a, pool) = jf2();
    send_frame(&mut a, 1, &[]);
    drop(a.pop_ready());
    let mut landings = [Landing::NOWHERE; 4];
    // Frame 2's first packets are predicted into a slot taken ahead.
    assert_eq!(a.predict(50001, &mut landings), 4);
    assert_eq!(pool.free_slots(), 3);
    // Within a frame timeout of the last packet it is kept: the stream is between frames.
    a.poll_timeouts(100 + 999);
    assert_eq!(pool.free_slots(), 3);
    // A frame timeout without a packet: the detector is idle, the pool full, nothing taken ahead.
    a.poll_timeouts(100 + 1000);
    assert_eq!(pool.free_slots(), 4);
    assert_eq!(a.predict(50001, &mut landings), 0);
    assert_eq!(pool.free_slots(), 4);
    // The next packet wakes it: frame 2's later packets are predicted again.
    a.push(50001, &packet(2, 0, 2), 5000).unwrap();
    assert_eq!(a.predict(50001, &mut landings), 4);
}
