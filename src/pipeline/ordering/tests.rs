//! The ordering stage on frames made by hand, with a sink that records what reaches it: order
//! restored, verdicts counted, rejected frames sampled for the audit stream and compressed for the
//! sinks that store chunks, the pedestal measured on dark frames and published.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::*;
use crate::calib::{CalibrationMaps, PhotonConverter};
use crate::codec::StoredPixels;
use crate::detector::DetectorGeometry;
use crate::sink::{FrameRecord, Frames, Interest, Sink, SinkError};
use crate::trigger::{RateSection, SpotsTriggerSection, TriggerKind, TriggerSection};

/// What a recording sink saw: frame number, accepted, audit, payload bytes.
type Seen = Arc<Mutex<Vec<(u64, bool, bool, usize)>>>;

struct Recorder {
    seen: Seen,
    payload: Payload,
}

impl Sink for Recorder {
    fn interest(&self) -> Interest {
        Interest { frames: Frames::Kept, payload: self.payload, payload_bytes: 1 << 20 }
    }

    fn write(&mut self, r: &FrameRecord) -> Result<(), SinkError> {
        let f = &r.features;
        self.seen.lock().unwrap().push((r.meta.frame_number, f.accepted, f.audit, r.payload.len()));
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        let n = self.seen.lock().unwrap().len() as u64;
        Ok(SinkReport { name: "recorder", frames_written: n, ..SinkReport::default() })
    }
}

fn recorder(payload: Payload) -> (SinkLane, Seen) {
    let seen = Seen::default();
    let sink = Recorder { seen: Arc::clone(&seen), payload };
    (SinkLane::start(Box::new(sink), "recorder", 64, 16, 2).unwrap(), seen)
}

fn geometry() -> DetectorGeometry {
    DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap()
}

fn pool(slots: usize) -> Arc<FramePool> {
    let g = geometry();
    FramePool::with_chunk_room(g.frame_bytes(), g.packets_per_frame(), slots, 16, 1 << 20).unwrap()
}

/// A judged frame: its sequence, its score (spots found) and whether the reducer accepted it.
fn judged(pool: &Arc<FramePool>, sequence: u64, spots: u32, accepted: bool) -> FrameHandle {
    let mut f = pool.try_acquire().unwrap();
    f.meta_mut().sequence = sequence;
    f.meta_mut().frame_number = sequence + 1;
    f.data_mut().fill(0);
    let features = f.pixels_and_features().1;
    (features.spots_found, features.score, features.accepted) = (spots, spots as f32, accepted);
    f
}

fn spots_trigger(audit_every: u64) -> Trigger {
    Trigger::from_config(&TriggerSection {
        kind: TriggerKind::Spots,
        spots: SpotsTriggerSection { min_spots: 5, ..SpotsTriggerSection::default() },
        rate: RateSection { audit_every, ..RateSection::default() },
        ..TriggerSection::default()
    })
    .unwrap()
}

#[test]
fn frames_handed_back_out_of_order_leave_in_order() {
    let pool = pool(8);
    let mut order = ReorderBuffer::new(pool.capacity());
    let mut out = Vec::new();
    for sequence in [2u64, 0, 3, 1, 6, 4] {
        order.insert(judged(&pool, sequence, 0, false));
        out.extend(std::iter::from_fn(|| order.pop_next()).map(|f| f.meta().sequence));
    }
    assert_eq!(out, vec![0, 1, 2, 3, 4]);
    assert_eq!(order.released(), 5);
    let rest: Vec<u64> = order.into_rest().iter().map(|f| f.meta().sequence).collect();
    assert_eq!(rest, vec![6], "a frame after a hole is still handed on at the end");
}

#[test]
fn verdicts_are_counted_and_rejected_frames_sampled_for_the_audit_stream_compressed() {
    let pool = pool(16);
    let trigger = spots_trigger(2);
    let (lane, seen) = recorder(Payload::Chunk);
    let (abort, progress) = (AtomicBool::new(false), Progress::default());
    let maps = CalibrationMaps::uniform(1, 512, 1024, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
    let photons = Photons::Integrating(SharedConverter::new(PhotonConverter::new(&maps, 12.4)));
    let encoder = FrameEncoder::new(
        StoredPixels::Raw,
        &geometry(),
        &crate::detector::PanelImage::for_geometry(&geometry(), true),
    )
    .unwrap();
    let mut delivery = Delivery::new(DeliverySetup {
        lanes: vec![lane],
        sinks_wait: true,
        live: false,
        pedestal: None,
        rate: Some(RateFollower {
            trigger: &trigger,
            tracker: RateTracker::new(100, 10),
            fallback_tracker: None,
            backpressure: None,
            familiar: None,
        }),
        encoder: Some(LateEncoder { encoder, photons: &photons, packets_present: Vec::new() }),
        monitor: None,
        abort: &abort,
        progress: &progress,
    });
    // Accepted, rejected, rejected (the second rejected: audited), accepted, rejected, rejected (audited).
    for (sequence, (spots, accepted)) in
        [(9, true), (1, false), (2, false), (7, true), (0, false), (3, false)].into_iter().enumerate()
    {
        let mut frame = judged(&pool, sequence as u64, spots, accepted);
        if accepted {
            // The reducer compressed what it kept; the ordering thread only what it chose itself.
            frame.pixels_and_features().1.chunk.extend_from_slice(b"kept by the reducer");
        }
        delivery.deliver(frame);
    }
    let outcome = delivery.finish().unwrap();
    assert_eq!((outcome.accepted, outcome.rejected, outcome.audited), (2, 4, 2));
    assert_eq!(progress.frames_done.load(Ordering::Relaxed), 6);
    let seen = seen.lock().unwrap().clone();
    let frames: Vec<(u64, bool, bool)> = seen.iter().map(|s| (s.0, s.1, s.2)).collect();
    assert_eq!(frames, vec![(1, true, false), (3, false, true), (4, true, false), (6, false, true)]);
    assert_eq!(seen[0].3, "kept by the reducer".len());
    let chunk_bound = crate::codec::chunk_bound(
        StoredPixels::Raw,
        &geometry(),
        &crate::detector::PanelImage::for_geometry(&geometry(), true),
    );
    assert!(seen[1].3 > 12 && seen[1].3 <= chunk_bound, "the audit frame was compressed here: {seen:?}");
    assert_eq!(outcome.reports[0].frames_written, 4);
}

#[test]
fn the_pedestal_measured_on_dark_frames_is_published_for_the_frames_after_them() {
    let pool = pool(4);
    let maps = CalibrationMaps::uniform(1, 512, 1024, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
    let converter = SharedConverter::new(PhotonConverter::new(&maps, 12.4));
    let tracker = PedestalTracker::new(maps.gain(0), 12.4, 2, 100);
    let (abort, progress) = (AtomicBool::new(false), Progress::default());
    let (lane, _) = recorder(Payload::Nothing);
    let mut delivery = Delivery::new(DeliverySetup {
        lanes: vec![lane],
        sinks_wait: true,
        live: false,
        pedestal: Some(PedestalFollower::new(tracker, &converter, 10)),
        rate: None,
        encoder: None,
        monitor: None,
        abort: &abort,
        progress: &progress,
    });
    for sequence in 0..2 {
        let mut dark = judged(&pool, sequence, 0, false);
        dark.data_mut().chunks_exact_mut(2).for_each(|p| p.copy_from_slice(&3100u16.to_le_bytes()));
        dark.pixels_and_features().1.dark = true;
        assert_eq!(converter.epoch(), 0, "no pedestal before the last dark frame");
        delivery.deliver(dark);
    }
    assert_eq!(converter.epoch(), 1, "published once the dark frames are in");
    let mut out = [0f32; 1];
    converter.current().jungfrau_photons(&[3100 + 496], 0, &mut out);
    assert!((out[0] - 1.0).abs() < 1e-3, "one photon above the measured pedestal: {out:?}");
    delivery.finish().unwrap();
}

#[test]
fn the_ordering_thread_drains_its_ring_in_order_and_closes_the_sinks() {
    let pool = pool(8);
    let trigger = spots_trigger(0);
    let (to_reducers, to_sinks) = (Ring::new(8), Ring::new(8));
    let (lane, seen) = recorder(Payload::Nothing);
    let (abort, progress) = (AtomicBool::new(false), Progress::default());
    for sequence in [1u64, 0, 3, 2, 4] {
        assert!(to_sinks.try_push(judged(&pool, sequence, 9, true)).is_ok());
    }
    to_sinks.close();
    let delivery = Delivery::new(DeliverySetup {
        lanes: vec![lane],
        sinks_wait: true,
        live: false,
        pedestal: None,
        rate: None,
        encoder: None,
        monitor: None,
        abort: &abort,
        progress: &progress,
    });
    let levels = Levels { to_reducers: &to_reducers, to_sinks: &to_sinks, pool: &pool, trigger: &trigger };
    let outcome = run_ordering(&to_sinks, delivery, None, &levels).unwrap();
    assert_eq!(outcome.accepted, 5);
    let order: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.0).collect();
    assert_eq!(order, vec![1, 2, 3, 4, 5]);
    assert_eq!(pool.free_slots(), pool.capacity(), "every slot back in the pool");
}
