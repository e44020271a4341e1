//! Receiving into frame slots gives what copying gives: the same datagrams, received in the same
//! batches by a model of `recvmmsg` (which scatters each datagram over its iovecs as the kernel
//! does), and pushed one by one into a second assembler, come out as the same frames, pixels and
//! counts, whatever is lost, repeated, reordered, damaged or starved of slots on the way.

use std::sync::Arc;

use zerocopy::IntoBytes;

use super::*;
use crate::detector::{DetectorGeometry, SlsDetectorHeader};
use crate::frame::{AssemblerConfig, FrameHandle, FramePool, PartialPolicy};
use crate::rng::Rng;

/// `recvmmsg` as far as these tests need it: each queued datagram scattered over its message's
/// iovecs in order, cut (and flagged) where they end.
fn kernel<'a>(queued: &'a [Vec<u8>]) -> impl FnOnce(&mut [libc::mmsghdr]) -> io::Result<usize> + 'a {
    move |messages| {
        let n = queued.len().min(messages.len());
        for (m, datagram) in messages.iter_mut().zip(queued) {
            // SAFETY: `receive_with` set `msg_iov` to its own array of `msg_iovlen` iovecs, alive
            // and unaliased for this call.
            let iovecs = unsafe { std::slice::from_raw_parts(m.msg_hdr.msg_iov, m.msg_hdr.msg_iovlen) };
            let mut at = 0;
            for v in iovecs {
                let take = (datagram.len() - at).min(v.iov_len);
                // SAFETY: each iovec is `iov_len` writable bytes (the contract this models); `take`
                // is at most that and at most what is left of the datagram.
                unsafe { std::ptr::copy_nonoverlapping(datagram.as_ptr().add(at), v.iov_base.cast::<u8>(), take) };
                at += take;
            }
            m.msg_len = at as u32;
            m.msg_hdr.msg_flags = if at < datagram.len() { libc::MSG_TRUNC } else { 0 };
        }
        Ok(n)
    }
}

fn packet(model: &DetectorGeometry, frame: u64, packet_number: u32, seed: u64) -> Vec<u8> {
    let header = SlsDetectorHeader {
        frame_number: frame.into(),
        packet_number: packet_number.into(),
        bunch_id: (frame * 3).into(),
        det_type: model.model.det_type.code(),
        version: 2,
        ..Default::default()
    };
    // Every packet's payload its own: a fill of its own and its numbers at both ends (cheap enough
    // for Miri).
    let mut p = header.as_bytes().to_vec();
    let tag = seed ^ frame.wrapping_mul(7919) ^ u64::from(packet_number) << 32;
    p.resize(HEADER_BYTES + model.model.payload_bytes, (tag % 251) as u8);
    p[HEADER_BYTES..HEADER_BYTES + 8].copy_from_slice(&tag.to_le_bytes());
    let end = p.len() - 8;
    p[end..].copy_from_slice(&(!tag).to_le_bytes());
    p
}

/// Per port, the datagrams a detector sends for `frames` frames, with the damage `rng` deals at
/// rate `damage` (loss, repeats, swaps, frame-number jumps, cut, long or foreign datagrams).
fn streams(g: &DetectorGeometry, frames: u64, damage: f64, rng: &mut Rng) -> Vec<Vec<Vec<u8>>> {
    let per_port = g.model.packets_per_port() as u32;
    (0..g.udp_ports.len())
        .map(|_| {
            let mut out: Vec<Vec<u8>> = Vec::new();
            for frame in 1..=frames {
                for n in 0..per_port {
                    let mut p = packet(g, frame, n, 11);
                    if rng.uniform() >= damage {
                        out.push(p);
                        continue;
                    }
                    match rng.below(7) {
                        0 => {}
                        1 => {
                            out.push(p.clone());
                            out.push(p);
                        }
                        2 => {
                            let at = out.len().saturating_sub(1 + rng.below(3));
                            out.insert(at, p);
                        }
                        3 => {
                            p[..8].copy_from_slice(&(frame + 2 + rng.below(12) as u64).to_le_bytes());
                            out.push(p);
                        }
                        4 => {
                            p.truncate(rng.below(p.len()));
                            out.push(p);
                        }
                        5 => {
                            p.push(0);
                            out.push(p);
                        }
                        _ => {
                            p[43] ^= 0x55;
                            out.push(p);
                        }
                    }
                }
            }
            out
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct Left {
    meta: crate::frame::FrameMeta,
    mask: Vec<u64>,
    data: Vec<u8>,
}

fn left(f: &FrameHandle) -> Left {
    Left { meta: *f.meta(), mask: f.packet_mask().to_vec(), data: f.data().to_vec() }
}

struct Run {
    frames: Vec<Left>,
    counters: crate::frame::AssemblyCounters,
    free_after: usize,
}

/// One replay's setting: the detector model, each port's datagrams, the assembler, the pool's
/// slots, the batch sizes taken in turn, and how many frames are kept out of the pool at a time
/// to starve it.
struct Case<'a> {
    model: &'a str,
    streams: &'a [Vec<Vec<u8>>],
    config: AssemblerConfig,
    slots: usize,
    batches: &'a [usize],
    hold: usize,
}

/// Replays the case's streams round by round (each port in turn, up to a batch each), into frame
/// slots (`direct`) or by copying.
fn replay(case: &Case<'_>, direct: bool) -> Run {
    let Case { model, streams, config, slots, batches, hold } = *case;
    let g = DetectorGeometry::new(model, 1, (0..streams.len() as u16).map(|i| 50001 + i).collect()).unwrap();
    let pool = FramePool::new(g.frame_bytes(), g.packets_per_frame(), slots, 0).unwrap();
    let mut a = Assembler::new(g, config, Arc::clone(&pool));
    let mut batch = DirectBatch::new(batches.iter().copied().max().unwrap_or(1), &a);
    let mut next = vec![0; streams.len()];
    let (mut round, mut frames, mut held) = (0usize, Vec::new(), std::collections::VecDeque::new());
    while next.iter().zip(streams).any(|(n, s)| *n < s.len()) {
        let now = round as u64 * 40;
        for (port, stream) in streams.iter().enumerate() {
            let take = batches[(round + port) % batches.len()].min(stream.len() - next[port]);
            let queued = &stream[next[port]..next[port] + take];
            next[port] += take;
            let udp = 50001 + port as u16;
            if direct {
                let got = batch.receive_with(&mut a, udp, || now, kernel(queued)).unwrap();
                assert_eq!(got.datagrams, take);
            } else {
                for d in queued {
                    let _ = a.push(udp, d, now);
                }
            }
            while let Some(f) = a.pop_ready() {
                frames.push(left(&f));
                held.push_back(f);
                if held.len() > hold {
                    held.pop_front();
                }
            }
        }
        a.poll_timeouts(now);
        round += 1;
    }
    a.flush();
    drop(held);
    while let Some(f) = a.pop_ready() {
        frames.push(left(&f));
    }
    Run { frames, counters: *a.counters(), free_after: pool.free_slots() }
}

fn same_as_copying(case: &Case<'_>) -> crate::frame::AssemblyCounters {
    let copied = replay(case, false);
    let landed = replay(case, true);
    assert_eq!(copied.frames.len(), landed.frames.len(), "frames that left");
    for (c, l) in copied.frames.iter().zip(&landed.frames) {
        assert_eq!(c.meta, l.meta);
        assert_eq!(c.mask, l.mask, "packet mask of frame {}", c.meta.frame_number);
        assert!(c.data == l.data, "pixels of frame {} differ", c.meta.frame_number);
    }
    let mut counted = landed.counters;
    assert_eq!(copied.counters.packets_misplaced, 0);
    counted.packets_misplaced = 0;
    assert_eq!(copied.counters, counted);
    assert_eq!((copied.free_after, landed.free_after), (case.slots, case.slots), "every slot back in the pool");
    landed.counters
}

#[test]
fn an_undamaged_stream_lands_in_place_after_its_first_batch() {
    let g = DetectorGeometry::new("jungfrau-1if", 1, vec![50001]).unwrap();
    let s = streams(&g, 6, 0.0, &mut Rng::new(1, 1));
    let case = Case {
        model: "jungfrau-1if",
        streams: &s,
        config: AssemblerConfig::default(),
        slots: 4,
        batches: &[64],
        hold: 0,
    };
    let c = same_as_copying(&case);
    assert_eq!((c.frames_complete, c.packets_placed), (6, 6 * 128));
    assert_eq!(c.packets_misplaced, 64, "only the first batch, with nothing to predict from, is copied");
}

#[test]
fn a_lost_packet_costs_copies_for_the_rest_of_its_batch_only() {
    let g = DetectorGeometry::new("jungfrau-1if", 1, vec![50001]).unwrap();
    let mut s = streams(&g, 4, 0.0, &mut Rng::new(1, 1));
    // Packet 10 of frame 2 (the 138th datagram) never comes.
    s[0].remove(128 + 10);
    let case = Case {
        model: "jungfrau-1if",
        streams: &s,
        config: AssemblerConfig::default(),
        slots: 4,
        batches: &[32],
        hold: 0,
    };
    let c = same_as_copying(&case);
    assert_eq!((c.frames_complete, c.frames_partial, c.packets_lost), (3, 1, 1));
    // 32 datagrams of the first batch; the loss falls in the batch of datagrams 128..160: its 11th
    // (packet 11, where packet 10 was expected) and the 21 after it are copied.
    assert_eq!(c.packets_misplaced, 32 + 22);
}

/// Small enough for Miri, which checks every write through a predicted place (`scripts/miri`).
#[test]
fn direct_receive_model_matches_copying_under_damage() {
    for (seed, damage) in [(2, 0.05), (3, 0.2)] {
        let g = DetectorGeometry::new("eiger-1g-4bit", 1, vec![50001, 50002]).unwrap();
        let s = streams(&g, 3, damage, &mut Rng::new(seed, 2));
        let config =
            AssemblerConfig { window_frames: 2, frame_timeout_ns: 100, max_frame_jump: 8, ..Default::default() };
        same_as_copying(&Case {
            model: "eiger-1g-4bit",
            streams: &s,
            config,
            slots: 3,
            batches: &[16, 5, 40],
            hold: 1,
        });
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any stream, batching, window, timeout, pool size and partial-frame policy.
        #[test]
        fn direct_receive_matches_copying(
            seed in any::<u64>(),
            damage in prop::sample::select(vec![0.0, 0.002, 0.02, 0.1, 0.4]),
            two_ports in any::<bool>(),
            slots in 1usize..6,
            hold in 0usize..4,
            window in 1usize..5,
            timeout in prop::sample::select(vec![30u64, 200, 100_000]),
            drop_partial in any::<bool>(),
            batches in proptest::collection::vec(1usize..90, 1..4),
        ) {
            let model = if two_ports { "jungfrau-2if" } else { "jungfrau-1if" };
            let ports: Vec<u16> = (0..if two_ports { 2 } else { 1 }).map(|i| 50001 + i).collect();
            let g = DetectorGeometry::new(model, 1, ports).unwrap();
            let s = streams(&g, 5, damage, &mut crate::rng::Rng::new(seed, 3));
            let config = AssemblerConfig {
                window_frames: window,
                frame_timeout_ns: timeout,
                max_frame_jump: 10,
                partial_policy: if drop_partial { PartialPolicy::Drop } else { PartialPolicy::KeepFlagged },
            };
            same_as_copying(&Case { model, streams: &s, config, slots, batches: &batches, hold });
        }
    }
}
