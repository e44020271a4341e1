//! The assembler's running counts as metrics: turned into counter increments once per batch, never
//! per packet.

use metrics::{Counter, counter};

use crate::frame::{AssemblyCounters, PacketDrop};
use crate::telemetry::{
    BYTES_RECEIVED, FRAMES, PACKETS_DROPPED, PACKETS_LOST, PACKETS_MISPLACED, PACKETS_PLACED, PACKETS_RECEIVED,
    describe,
};

/// Turns an assembler's running counts into metric increments, once per batch.
pub struct AssemblyFlusher {
    last: AssemblyCounters,
    last_records: u64,
    last_bytes: u64,
    received: Counter,
    bytes: Counter,
    placed: Counter,
    misplaced: Counter,
    lost: Counter,
    dropped: Vec<Counter>,
    complete: Counter,
    partial: Counter,
    partial_dropped: Counter,
    no_slot: Counter,
    queue_full: Counter,
    last_queue_full: u64,
}

impl Default for AssemblyFlusher {
    fn default() -> Self {
        Self::new()
    }
}

impl AssemblyFlusher {
    pub fn new() -> AssemblyFlusher {
        describe();
        AssemblyFlusher {
            last: AssemblyCounters::default(),
            last_records: 0,
            last_bytes: 0,
            received: counter!(PACKETS_RECEIVED),
            bytes: counter!(BYTES_RECEIVED),
            placed: counter!(PACKETS_PLACED),
            misplaced: counter!(PACKETS_MISPLACED),
            lost: counter!(PACKETS_LOST),
            dropped: PacketDrop::ALL.iter().map(|r| counter!(PACKETS_DROPPED, "reason" => r.label())).collect(),
            complete: counter!(FRAMES, "outcome" => "complete"),
            partial: counter!(FRAMES, "outcome" => "partial"),
            partial_dropped: counter!(FRAMES, "outcome" => "partial_dropped"),
            no_slot: counter!(FRAMES, "outcome" => "dropped_no_slot"),
            queue_full: counter!(FRAMES, "outcome" => "dropped_queue_full"),
            last_queue_full: 0,
        }
    }

    /// Adds what changed since the last flush.
    pub fn flush(&mut self, now: &AssemblyCounters, records: u64, bytes: u64) {
        let l = &self.last;
        self.received.increment(records - self.last_records);
        self.bytes.increment(bytes - self.last_bytes);
        self.placed.increment(now.packets_placed - l.packets_placed);
        self.misplaced.increment(now.packets_misplaced - l.packets_misplaced);
        self.lost.increment(now.packets_lost - l.packets_lost);
        for (i, c) in self.dropped.iter().enumerate() {
            c.increment(now.packets_dropped[i] - l.packets_dropped[i]);
        }
        self.complete.increment(now.frames_complete - l.frames_complete);
        self.partial.increment(now.frames_partial - l.frames_partial);
        self.partial_dropped.increment(now.frames_partial_dropped - l.frames_partial_dropped);
        self.no_slot.increment(now.frames_no_slot - l.frames_no_slot);
        self.last = *now;
        self.last_records = records;
        self.last_bytes = bytes;
    }

    /// Adds the frames a live source dropped because the reducers' queue was full, `total` so far.
    pub fn flush_queue_full(&mut self, total: u64) {
        self.queue_full.increment(total - self.last_queue_full);
        self.last_queue_full = total;
    }
}
