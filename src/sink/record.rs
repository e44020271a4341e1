//! What a sink thread receives: a copy of one frame's facts, and for sinks that store frames, its
//! bytes or its compressed chunk. Records are allocated once per queue place and reused, so handing a
//! frame to a sink costs copies, never an allocation, and the frame's pool slot is free at once.

use super::{Interest, Payload};
use crate::features::FrameFeatures;
use crate::frame::{FrameHandle, FrameMeta};

pub struct FrameRecord {
    pub meta: FrameMeta,
    /// The frame's features, without the compressed chunk (that is the payload when asked for).
    pub features: FrameFeatures,
    /// One bit per packet, set where the packet arrived.
    pub packet_mask: Vec<u64>,
    /// The frame's bytes or its chunk, as the sink's [`Interest`] says; empty otherwise.
    pub payload: Vec<u8>,
}

impl FrameRecord {
    /// A record with room for `spots` spots, `mask_words` mask words and `payload_bytes` of payload.
    pub fn with_capacity(spots: usize, mask_words: usize, payload_bytes: usize) -> FrameRecord {
        // Touched now, so its pages are in place before the first frame.
        let mut payload = vec![0; payload_bytes];
        payload.clear();
        FrameRecord {
            meta: FrameMeta::default(),
            features: FrameFeatures::with_capacity(spots),
            packet_mask: Vec::with_capacity(mask_words),
            payload,
        }
    }

    /// A record of `frame` as a sink with `interest` would receive it (allocating; for tests and
    /// one-off writes).
    pub fn of(frame: &FrameHandle, interest: Interest) -> FrameRecord {
        let mut record = FrameRecord::with_capacity(frame.features().spots.len(), frame.packet_mask().len(), 0);
        record.capture(frame, interest.payload);
        record
    }

    /// Becomes a copy of `frame`, with the payload asked for.
    pub fn capture(&mut self, frame: &FrameHandle, payload: Payload) {
        self.meta = *frame.meta();
        self.features.copy_without_chunk(frame.features());
        self.packet_mask.clear();
        self.packet_mask.extend_from_slice(frame.packet_mask());
        self.payload.clear();
        match payload {
            Payload::Nothing => {}
            Payload::FrameBytes => self.payload.extend_from_slice(frame.data()),
            Payload::Chunk => self.payload.extend_from_slice(&frame.features().chunk),
        }
    }

    /// Indices of the packets that never arrived.
    pub fn missing_packets(&self) -> impl Iterator<Item = u32> + '_ {
        let mask = &self.packet_mask;
        (0..self.meta.packets_expected)
            .filter(move |&i| mask.get(i as usize / 64).is_none_or(|w| w & (1 << (i % 64)) == 0))
    }
}
