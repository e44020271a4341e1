//! Every sink on its own thread behind a bounded queue, so storage that stalls never stalls the
//! ordering thread, the reducers or the receivers.
//!
//! A lane owns `depth` records allocated when it starts; a record travels to the sink thread full and
//! comes back empty. A frame the sink takes is copied into a free record; when none is free the sink
//! is behind by `depth` frames, and the frame is not queued: it is counted as dropped for that sink
//! (`hitgate_sink_dropped_total{sink, reason="queue_full"}`), the lane's alarm gauge
//! (`hitgate_sink_behind{sink}`) goes to 1, and the caller learns it (to raise the trigger's cut, when
//! that is the policy). Memory is bounded by the records, whatever the storage does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam::channel::{Receiver, Sender, bounded};
use metrics::{Counter, Gauge, counter, gauge};

use serde::{Deserialize, Serialize};

use super::{FrameRecord, Interest, Sink, SinkError, SinkReport};
use crate::frame::FrameHandle;
use crate::section::{Problems, key};
use crate::telemetry;

/// `[storage]`: sink queues and the policy when storage cannot keep up.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Frames each sink may have waiting (memory: this many frame copies per frame-storing sink).
    pub queue_frames: usize,
    /// `auto` (the default): `wait` for a capture replayed as fast as possible (a file can wait, so
    /// the replay is lossless), `drop_newest` for live and paced sources; `wait`: the ordering
    /// thread waits for the sink (a live source then drops at its own full queue, counted);
    /// `drop_newest`: a frame that finds a sink's queue full is not written there, counted and
    /// alarmed; `raise_threshold`: the same, and the trigger's cut rises until storage keeps up.
    pub on_full: OnFull,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { queue_frames: 64, on_full: OnFull::Auto }
    }
}

impl StorageSection {
    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        problems.outside(key(path, "queue_frames"), self.queue_frames, (1, 65_536));
    }

    /// Whether the ordering thread waits for a sink that is behind rather than drop the frame there;
    /// `can_wait` says whether the source loses nothing by waiting (a file read as fast as possible).
    pub fn sinks_wait(&self, can_wait: bool) -> bool {
        match self.on_full {
            OnFull::Wait => true,
            OnFull::Auto => can_wait,
            OnFull::DropNewest | OnFull::RaiseThreshold => false,
        }
    }
}

/// What to do when a sink's queue is full.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    #[default]
    Auto,
    Wait,
    DropNewest,
    RaiseThreshold,
}

/// What became of a frame offered to a lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// The sink does not take this frame.
    NotTaken,
    Queued,
    /// The sink's queue was full: the frame is dropped for this sink and counted.
    Full,
}

pub struct SinkLane {
    name: &'static str,
    interest: Interest,
    depth: usize,
    work: Option<Sender<Box<FrameRecord>>>,
    free: Receiver<Box<FrameRecord>>,
    failed: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<SinkReport, SinkError>>>,
    offered: u64,
    dropped: u64,
    dropped_counter: Counter,
    behind: Gauge,
}

impl SinkLane {
    /// Starts `sink` on its own thread with `depth` records, each with room for `spots` spots and
    /// `mask_words` packet-mask words.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(
        sink: Box<dyn Sink>,
        name: &'static str,
        depth: usize,
        spots: usize,
        mask_words: usize,
    ) -> Result<SinkLane, SinkError> {
        let interest = sink.interest();
        let depth = depth.max(1);
        // Records are touched when made: more than there is would wake the OOM killer.
        let bytes = (depth as u64).saturating_mul(interest.payload_bytes as u64);
        if let Some(available) = crate::frame::pool::available_memory_bytes()
            && bytes > available / 2
        {
            return Err(SinkError::QueueTooLarge { sink: name, frames: depth, bytes, available });
        }
        let (work, queued) = bounded::<Box<FrameRecord>>(depth);
        let (give_back, free) = bounded::<Box<FrameRecord>>(depth);
        for _ in 0..depth {
            let record = Box::new(FrameRecord::with_capacity(spots, mask_words, interest.payload_bytes));
            // The channel holds `depth`, and `depth` records are made.
            let _ = give_back.send(record);
        }
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name(format!("hg-sink-{name}"))
            .spawn(move || drain(sink, &queued, &give_back, &flag))
            .map_err(|source| SinkError::Thread { sink: name, source })?;
        Ok(SinkLane {
            name,
            interest,
            depth,
            work: Some(work),
            free,
            failed,
            thread: Some(thread),
            offered: 0,
            dropped: 0,
            dropped_counter: counter!(telemetry::SINK_DROPPED, "sink" => name, "reason" => "queue_full"),
            behind: gauge!(telemetry::SINK_BEHIND, "sink" => name),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn interest(&self) -> Interest {
        self.interest
    }

    /// Copies what the sink takes of `frame` into its queue, without waiting.
    pub fn offer(&mut self, frame: &FrameHandle) -> Offer {
        self.offer_or_wait(frame, false)
    }

    /// Copies what the sink takes of `frame` into its queue; with `wait`, waits for the sink to free
    /// a record rather than drop the frame (the sink thread gives every record back, written or
    /// not, so the wait ends unless that thread is gone — then the frame is dropped and counted).
    pub fn offer_or_wait(&mut self, frame: &FrameHandle, wait: bool) -> Offer {
        if !self.interest.takes(frame.features()) {
            return Offer::NotTaken;
        }
        self.offered += 1;
        let free = if wait { self.free.recv().map_err(|_| ()) } else { self.free.try_recv().map_err(|_| ()) };
        match free {
            Ok(mut record) => {
                record.capture(frame, self.interest.payload);
                if let Some(work) = &self.work {
                    // Only `depth` records exist and the queue holds `depth`: this never waits.
                    let _ = work.send(record);
                }
                if self.backlog() * 2 <= self.depth {
                    self.behind.set(0.0);
                }
                Offer::Queued
            }
            Err(_) => {
                self.dropped += 1;
                self.dropped_counter.increment(1);
                self.behind.set(1.0);
                Offer::Full
            }
        }
    }

    /// Records waiting for or in the sink.
    pub fn backlog(&self) -> usize {
        self.depth - self.free.len()
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether the sink's storage failed (it takes nothing more; the run should stop).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Frames the sink should have taken and did not, for a full queue.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Frames offered that the sink takes (queued or dropped).
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Closes the queue, waits for the sink to write everything queued and close, and reports.
    ///
    /// # Errors
    /// The sink failed while writing or closing, or its thread panicked.
    pub fn finish(mut self) -> Result<SinkReport, SinkError> {
        self.work = None;
        let thread = self.thread.take().ok_or(SinkError::Panicked(self.name))?;
        let mut report = thread.join().map_err(|_| SinkError::Panicked(self.name))??;
        report.frames_dropped_queue_full = self.dropped;
        self.behind.set(0.0);
        Ok(report)
    }
}

impl Drop for SinkLane {
    fn drop(&mut self) {
        // A lane dropped without `finish` (a failed start) still lets its thread end.
        self.work = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sink thread: writes records in the order they come and gives each back. After a failure it
/// keeps giving records back unwritten, so the ordering thread never waits on it.
fn drain(
    mut sink: Box<dyn Sink>,
    queued: &Receiver<Box<FrameRecord>>,
    give_back: &Sender<Box<FrameRecord>>,
    failed: &AtomicBool,
) -> Result<SinkReport, SinkError> {
    let mut error = None;
    for record in queued.iter() {
        if error.is_none()
            && let Err(e) = sink.write(&record)
        {
            error = Some(e);
            failed.store(true, Ordering::Relaxed);
        }
        let _ = give_back.send(record);
    }
    let closed = sink.finish();
    match error {
        Some(e) => Err(e),
        None => closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FramePool;
    use crate::sink::{Frames, Payload};
    use std::sync::Mutex;
    use std::time::Duration;

    type Written = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

    /// Records what it is given, slowly when told to, failing on a given frame number.
    struct Recorder {
        seen: Written,
        gate: Receiver<()>,
        fail_on: Option<u64>,
    }

    impl Sink for Recorder {
        fn interest(&self) -> Interest {
            Interest { frames: Frames::Kept, payload: Payload::FrameBytes, payload_bytes: 64 }
        }

        fn write(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
            let _ = self.gate.recv_timeout(Duration::from_secs(5));
            if Some(record.meta.frame_number) == self.fail_on {
                return Err(SinkError::Io { sink: "test", path: "x".into(), source: std::io::Error::other("disk") });
            }
            self.seen.lock().unwrap().push((record.meta.frame_number, record.payload.clone()));
            Ok(())
        }

        fn finish(&mut self) -> Result<SinkReport, SinkError> {
            let n = self.seen.lock().unwrap().len() as u64;
            Ok(SinkReport { name: "test", frames_written: n, ..SinkReport::default() })
        }
    }

    fn frame(pool: &Arc<FramePool>, number: u64, accepted: bool) -> FrameHandle {
        let mut f = pool.try_acquire().unwrap();
        f.meta_mut().frame_number = number;
        f.data_mut().fill(number as u8);
        f.pixels_and_features().1.accepted = accepted;
        f
    }

    #[test]
    fn a_stalled_sink_costs_counted_drops_never_a_wait_and_keeps_what_it_queued() {
        let pool = FramePool::new(64, 1, 4, 0).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (open_gate, gate) = bounded(0);
        let sink = Recorder { seen: Arc::clone(&seen), gate, fail_on: None };
        let mut lane = SinkLane::start(Box::new(sink), "test", 3, 0, 1).unwrap();
        let mut outcomes = Vec::new();
        for n in 0..10 {
            // The sink is stuck on the gate: after it holds one and three wait, the rest drop.
            let f = frame(&pool, n, n != 5);
            outcomes.push(lane.offer(&f));
        }
        assert_eq!(outcomes[5], Offer::NotTaken);
        let queued = outcomes.iter().filter(|o| **o == Offer::Queued).count() as u64;
        assert_eq!(lane.offered(), 9);
        assert_eq!(lane.dropped(), 9 - queued);
        assert!((3..=4).contains(&queued), "queued {queued}");
        std::thread::spawn(move || while open_gate.send(()).is_ok() {});
        let report = lane.finish().unwrap();
        assert_eq!(report.frames_written, queued);
        assert_eq!(report.frames_dropped_queue_full, 9 - queued);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], (0, vec![0u8; 64]), "bytes copied whole");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    }

    #[test]
    fn a_queue_larger_than_memory_is_refused_before_it_is_made() {
        let Some(available) = crate::frame::pool::available_memory_bytes() else { return };
        struct Huge;
        impl Sink for Huge {
            fn interest(&self) -> Interest {
                Interest { frames: Frames::Kept, payload: Payload::FrameBytes, payload_bytes: 64 << 20 }
            }
            fn write(&mut self, _: &FrameRecord) -> Result<(), SinkError> {
                Ok(())
            }
            fn finish(&mut self) -> Result<SinkReport, SinkError> {
                Ok(SinkReport::default())
            }
        }
        let depth = (available / (64 << 20)) as usize;
        let err = SinkLane::start(Box::new(Huge), "huge", depth, 0, 1).err().expect("refused");
        assert!(err.to_string().contains("lower storage.queue_frames"), "{err}");
    }

    #[test]
    fn a_failing_sink_is_reported_and_never_blocks_the_offers() {
        let pool = FramePool::new(64, 1, 2, 0).unwrap();
        let (open_gate, gate) = bounded(1000);
        for _ in 0..1000 {
            open_gate.send(()).unwrap();
        }
        let sink = Recorder { seen: Arc::default(), gate, fail_on: Some(0) };
        let mut lane = SinkLane::start(Box::new(sink), "test", 2, 0, 1).unwrap();
        for n in 0..200 {
            let f = frame(&pool, n, true);
            lane.offer(&f);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !lane.failed() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lane.failed());
        let err = lane.finish().unwrap_err();
        assert!(err.to_string().contains("cannot write"), "{err}");
    }
}
