//! The one owner of frame memory. `FramePool::new` maps and populates every slot up front (anonymous,
//! page-aligned mappings); afterwards acquiring and releasing a slot is a lock-free queue operation with no
//! allocation. A [`FrameHandle`] owns its slot exclusively — one stage at a time — and gives it back to
//! the pool when dropped, so a slot cannot leak or be shared by accident.

use std::sync::Arc;

use super::features::FrameFeatures;
use crate::sync::BoundedQueue;

/// What is known about a frame besides its pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    pub frame_number: u64,
    /// Order in which the source handed frames on to the reducers (numbered there, so without
    /// holes); the sink thread restores it.
    pub sequence: u64,
    pub bunch_id: u64,
    /// Detector clock (10 MHz) of the first packet that arrived.
    pub detector_timestamp: u64,
    /// Receive time (capture or wall clock, ns) of the first and last packet placed.
    pub first_packet_ns: u64,
    pub last_packet_ns: u64,
    pub packets_received: u32,
    pub packets_expected: u32,
}

impl FrameMeta {
    pub fn is_complete(&self) -> bool {
        self.packets_received == self.packets_expected
    }
}

/// A preallocated frame buffer with its packet mask.
pub struct FrameSlot {
    data: SlotMemory,
    /// One bit per packet of the frame, set when it arrived.
    mask: Box<[u64]>,
    pub meta: FrameMeta,
    /// Filled by the reducer; its spot list is preallocated with the slot.
    features: FrameFeatures,
}

/// Failure to set the pool up.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("frame pool needs at least one slot")]
    Empty,
    #[error("cannot map {bytes} bytes for frame slot {slot}")]
    Map { slot: usize, bytes: usize, source: std::io::Error },
    #[error(
        "{slots} frame slots of {frame_bytes} bytes need {} MiB, but only {} MiB of memory is available; lower assembler.pool_frames",
        slots.saturating_mul(*frame_bytes) >> 20,
        available_bytes >> 20
    )]
    TooLarge { slots: usize, frame_bytes: usize, available_bytes: u64 },
}

/// Memory the kernel says is available for new allocations (`MemAvailable`), where it says so.
pub fn available_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A pool may take at most this share of the available memory: the rest of the process and the
/// page cache the sinks write through need room too.
const MAX_SHARE_OF_AVAILABLE: f64 = 0.75;

/// A slot's pixel memory: a page-aligned anonymous mapping, populated now because a page first
/// touched on the hot path costs a fault and a clear.
#[cfg(not(miri))]
struct SlotMemory(memmap2::MmapMut);

#[cfg(not(miri))]
impl SlotMemory {
    fn new(bytes: usize) -> std::io::Result<SlotMemory> {
        memmap2::MmapOptions::new().len(bytes.max(1)).populate().map_anon().map(SlotMemory)
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Miri cannot map memory: under it a slot is a heap allocation aligned for 64-bit words, so the
/// rest of the pool runs unchanged.
#[cfg(miri)]
struct SlotMemory(Box<[u64]>);

#[cfg(miri)]
impl SlotMemory {
    fn new(bytes: usize) -> std::io::Result<SlotMemory> {
        Ok(SlotMemory(vec![0u64; bytes.max(1).div_ceil(8)].into_boxed_slice()))
    }

    fn bytes(&self) -> &[u8] {
        zerocopy::IntoBytes::as_bytes(&self.0[..])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        zerocopy::IntoBytes::as_mut_bytes(&mut self.0[..])
    }
}

/// Fixed set of frame buffers shared by all stages.
pub struct FramePool {
    free: BoundedQueue<Box<FrameSlot>>,
    capacity: usize,
    frame_bytes: usize,
    packets_per_frame: usize,
}

impl FramePool {
    /// Maps `slots` buffers of `frame_bytes` each, each with room for `spots_per_frame` spots.
    ///
    /// # Errors
    /// Zero slots, or the memory cannot be mapped.
    pub fn new(
        frame_bytes: usize,
        packets_per_frame: usize,
        slots: usize,
        spots_per_frame: usize,
    ) -> Result<Arc<FramePool>, PoolError> {
        FramePool::with_chunk_room(frame_bytes, packets_per_frame, slots, spots_per_frame, 0)
    }

    /// As [`FramePool::new`], each slot also holding room for a compressed copy of its frame of up
    /// to `chunk_bytes` (see `FrameFeatures::chunk`).
    ///
    /// # Errors
    /// Zero slots, or the memory cannot be mapped.
    pub fn with_chunk_room(
        frame_bytes: usize,
        packets_per_frame: usize,
        slots: usize,
        spots_per_frame: usize,
        chunk_bytes: usize,
    ) -> Result<Arc<FramePool>, PoolError> {
        if slots == 0 {
            return Err(PoolError::Empty);
        }
        // Slots are populated at once: asking for more than there is would wake the OOM killer
        // instead of returning an error.
        if let Some(available_bytes) = available_memory_bytes()
            && (slots as f64) * ((frame_bytes + chunk_bytes) as f64) > MAX_SHARE_OF_AVAILABLE * available_bytes as f64
        {
            return Err(PoolError::TooLarge { slots, frame_bytes: frame_bytes + chunk_bytes, available_bytes });
        }
        let free = BoundedQueue::new(slots);
        for slot in 0..slots {
            let data =
                SlotMemory::new(frame_bytes).map_err(|source| PoolError::Map { slot, bytes: frame_bytes, source })?;
            let mask = vec![0u64; packets_per_frame.div_ceil(64)].into_boxed_slice();
            let mut features = FrameFeatures::with_capacity(spots_per_frame);
            // Touched now, like the pixels: otherwise each slot's chunk room is faulted in the first
            // time a kept frame lands in it, on the hot path, and the process grows for as long as
            // slots are still meeting their first kept frame.
            features.chunk.resize(chunk_bytes, 0);
            features.chunk.clear();
            let pushed = free.push(Box::new(FrameSlot { data, mask, meta: FrameMeta::default(), features }));
            debug_assert!(pushed.is_ok(), "queue sized for every slot");
        }
        Ok(Arc::new(FramePool { free, capacity: slots, frame_bytes, packets_per_frame }))
    }

    /// Takes a free slot, cleared of its previous frame's mask and metadata; `None` when all are in use.
    pub fn try_acquire(self: &Arc<Self>) -> Option<FrameHandle> {
        let mut slot = self.free.pop()?;
        slot.mask.fill(0);
        slot.features.clear();
        slot.meta = FrameMeta { packets_expected: self.packets_per_frame as u32, ..FrameMeta::default() };
        Some(FrameHandle { slot: Some(slot), pool: Arc::clone(self) })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    pub fn packets_per_frame(&self) -> usize {
        self.packets_per_frame
    }
}

/// Exclusive ownership of one pool slot; returns it to the pool on drop.
pub struct FrameHandle {
    slot: Option<Box<FrameSlot>>,
    pool: Arc<FramePool>,
}

impl FrameHandle {
    fn slot(&self) -> &FrameSlot {
        self.slot.as_ref().expect("slot present until drop")
    }

    fn slot_mut(&mut self) -> &mut FrameSlot {
        self.slot.as_mut().expect("slot present until drop")
    }

    pub fn meta(&self) -> &FrameMeta {
        &self.slot().meta
    }

    pub fn meta_mut(&mut self) -> &mut FrameMeta {
        &mut self.slot_mut().meta
    }

    /// The frame's bytes (see the layout in `detector::geometry`).
    pub fn data(&self) -> &[u8] {
        &self.slot().data.bytes()[..self.pool.frame_bytes]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        let n = self.pool.frame_bytes;
        &mut self.slot_mut().data.bytes_mut()[..n]
    }

    /// The frame's pixels as little-endian 16-bit words (JUNGFRAU, EIGER 16-bit).
    pub fn pixels_u16(&self) -> &[u16] {
        // Slots are page-aligned mappings of an even length, so the view always succeeds.
        zerocopy::FromBytes::ref_from_bytes(self.data()).unwrap_or(&[])
    }

    pub fn features(&self) -> &FrameFeatures {
        &self.slot().features
    }

    /// The pixels to read and the features to fill, borrowed together.
    pub fn pixels_and_features(&mut self) -> (&[u16], &mut FrameFeatures) {
        let n = self.pool.frame_bytes;
        let slot = self.slot.as_mut().expect("slot present until drop");
        let pixels = zerocopy::FromBytes::ref_from_bytes(&slot.data.bytes()[..n]).unwrap_or(&[][..]);
        (pixels, &mut slot.features)
    }

    /// One bit per packet, set where the packet arrived.
    pub fn packet_mask(&self) -> &[u64] {
        &self.slot().mask
    }

    /// Records packet `index` as arrived; returns false if it already was.
    pub fn mark_packet(&mut self, index: usize) -> bool {
        let word = &mut self.slot_mut().mask[index / 64];
        let bit = 1u64 << (index % 64);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }

    /// Takes back a mark set by [`FrameHandle::mark_packet`] for a packet that was not placed after all.
    pub fn unmark_packet(&mut self, index: usize) {
        self.slot_mut().mask[index / 64] &= !(1u64 << (index % 64));
    }

    /// Where the frame's bytes start, as an address: to tell whether a place was this frame's.
    pub fn data_address(&self) -> usize {
        self.data().as_ptr() as usize
    }

    /// The frame's bytes as a raw pointer, for a receive that writes straight into the slot. The
    /// pointer stays valid for as long as this handle exists (the slot's memory never moves); writing
    /// through it is the caller's `unsafe` to justify.
    pub fn data_ptr(&mut self) -> *mut u8 {
        self.data_mut().as_mut_ptr()
    }

    pub fn has_packet(&self, index: usize) -> bool {
        self.slot().mask[index / 64] & (1u64 << (index % 64)) != 0
    }
}

impl Drop for FrameHandle {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // The queue holds every slot the pool made, so there is always room to give one back.
            let returned = self.pool.free.push(slot);
            debug_assert!(returned.is_ok());
        }
    }
}
