//! A memory-mapped DMA ring as a PCIe card or FPGA fills it, and the card's side for tests.
//!
//! Model: as SLAC's aes-stream-drivers (`datadev`), the DMA buffers are mapped once into the process
//! and each filled buffer is announced by index with its size, flags, error and destination; where
//! `datadev` hands indices over with `read()`/ioctl, here they travel in a descriptor ring inside the
//! same mapping, with a producer index (advanced by the card) and a consumer index (advanced by the
//! host when it is done with buffers), as in XDMA's descriptor rings — so the device can be a real
//! `/dev` node exposing this layout or a plain file shared with an emulated card.
//!
//! Layout (little-endian; offsets in bytes):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | [u8; 8] | magic `HGDMA001` |
//! | 8 | u32 | buffer_count (a power of two) |
//! | 12 | u32 | buffer_bytes |
//! | 16 | u64 | descriptors_offset (4096) |
//! | 24 | u64 | buffers_offset |
//! | 64 | u64 | producer_index: descriptors filled so far (card writes, release) |
//! | 128 | u64 | consumer_index: descriptors the host is done with (host writes, release) |
//! | 192 | u64 | card_dropped: payloads the card dropped for want of a free buffer |
//!
//! Descriptor `i % buffer_count` (16 bytes: size u32, flags u32, error u32, destination u32) describes
//! buffer `i % buffer_count`. The card may fill descriptor `i` only while `i - consumer_index <
//! buffer_count`; the host may read descriptors `consumer_index .. producer_index`. Destination is the
//! UDP port the payload was addressed to, so the assembler places it as it would a datagram.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

const MAGIC: [u8; 8] = *b"HGDMA001";
const DESCRIPTORS_OFFSET: usize = 4096;
const DESCRIPTOR_BYTES: usize = 16;
const PRODUCER_AT: usize = 64;
const CONSUMER_AT: usize = 128;
const DROPPED_AT: usize = 192;
/// Descriptor flag: the card cut the payload to the buffer size.
pub const FLAG_TRUNCATED: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    #[error("cannot open DMA device {path}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a DMA ring: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("invalid DMA ring geometry: {0}")]
    Geometry(String),
}

/// One mapped ring; the host side reads from it, the card side writes into it.
pub struct DmaRing {
    map: MmapMut,
    buffer_count: u64,
    buffer_bytes: usize,
    buffers_offset: usize,
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl DmaRing {
    /// Creates a ring file of `buffer_count` buffers of `buffer_bytes` (what a driver would set up).
    ///
    /// # Errors
    /// A count that is not a power of two, a buffer size of 0, or a file that cannot be made.
    pub fn create(path: &Path, buffer_count: u32, buffer_bytes: u32) -> Result<DmaRing, DmaError> {
        if !buffer_count.is_power_of_two() || buffer_bytes == 0 {
            return Err(DmaError::Geometry(format!(
                "{buffer_count} buffers of {buffer_bytes} bytes: the count must be a power of two, the size above 0"
            )));
        }
        let buffers_offset = (DESCRIPTORS_OFFSET + buffer_count as usize * DESCRIPTOR_BYTES).next_multiple_of(4096);
        let total = buffers_offset + buffer_count as usize * buffer_bytes as usize;
        let open = |source| DmaError::Open { path: path.into(), source };
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(open)?;
        file.set_len(total as u64).map_err(open)?;
        // SAFETY: the file was just created at its full length and is shared only with processes
        // following this layout; the fields written concurrently are accessed only as atomics.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(open)?;
        map[..8].copy_from_slice(&MAGIC);
        map[8..12].copy_from_slice(&buffer_count.to_le_bytes());
        map[12..16].copy_from_slice(&buffer_bytes.to_le_bytes());
        map[16..24].copy_from_slice(&(DESCRIPTORS_OFFSET as u64).to_le_bytes());
        map[24..32].copy_from_slice(&(buffers_offset as u64).to_le_bytes());
        map.flush().map_err(open)?;
        Ok(DmaRing { map, buffer_count: u64::from(buffer_count), buffer_bytes: buffer_bytes as usize, buffers_offset })
    }

    /// Maps an existing ring (a device node or a file) and checks its layout.
    ///
    /// # Errors
    /// It cannot be opened or mapped, or its header does not describe a consistent ring.
    pub fn open(path: &Path) -> Result<DmaRing, DmaError> {
        let open = |source| DmaError::Open { path: path.into(), source };
        let layout = |reason: String| DmaError::Layout { path: path.into(), reason };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(open)?;
        // SAFETY: as in `create`; the length is checked against the header before any access.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(open)?;
        if map.len() < DESCRIPTORS_OFFSET || map[..8] != MAGIC {
            return Err(layout("no HGDMA001 header".into()));
        }
        let (count, bytes) = (read_u32(&map, 8), read_u32(&map, 12));
        let (desc, buffers) = (read_u64(&map, 16) as usize, read_u64(&map, 24) as usize);
        let need = buffers as u128 + u128::from(count) * u128::from(bytes);
        if !count.is_power_of_two()
            || bytes == 0
            || desc != DESCRIPTORS_OFFSET
            || buffers < desc + count as usize * DESCRIPTOR_BYTES
            || need > map.len() as u128
        {
            return Err(layout(format!(
                "{count} buffers of {bytes} bytes at {buffers} do not fit {} bytes",
                map.len()
            )));
        }
        Ok(DmaRing { map, buffer_count: u64::from(count), buffer_bytes: bytes as usize, buffers_offset: buffers })
    }

    fn index(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is one of the 8-aligned header offsets below DESCRIPTORS_OFFSET, inside the
        // page-aligned mapping; AtomicU64 has the size and alignment of u64, and every process touches
        // these words only atomically.
        unsafe { &*(self.map.as_ptr().add(at) as *const AtomicU64) }
    }

    pub fn buffer_count(&self) -> usize {
        self.buffer_count as usize
    }

    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// Payloads the card dropped because every buffer was still held by the host.
    pub fn card_dropped(&self) -> u64 {
        self.index(DROPPED_AT).load(Ordering::Relaxed)
    }

    /// Host side: hands every filled buffer (up to `max`) to `take` as (destination, payload,
    /// truncated), then returns the buffers to the card. Returns how many were taken.
    pub fn consume(&mut self, max: usize, mut take: impl FnMut(u16, &[u8], bool)) -> usize {
        let produced = self.index(PRODUCER_AT).load(Ordering::Acquire);
        let consumed = self.index(CONSUMER_AT).load(Ordering::Relaxed);
        // A producer index behind ours or too far ahead is a broken card: nothing is read.
        let available = produced.wrapping_sub(consumed);
        if available == 0 || available > self.buffer_count {
            return 0;
        }
        let n = available.min(max as u64);
        // The indices count for ever and wrap at 2^64: the ring's slots follow them round.
        for k in 0..n {
            let slot = (consumed.wrapping_add(k) % self.buffer_count) as usize;
            let d = DESCRIPTORS_OFFSET + slot * DESCRIPTOR_BYTES;
            let (size, flags, dest) =
                (read_u32(&self.map, d) as usize, read_u32(&self.map, d + 4), read_u32(&self.map, d + 12));
            let start = self.buffers_offset + slot * self.buffer_bytes;
            let payload = &self.map[start..start + size.min(self.buffer_bytes)];
            take(dest as u16, payload, flags & FLAG_TRUNCATED != 0);
        }
        self.index(CONSUMER_AT).store(consumed.wrapping_add(n), Ordering::Release);
        n as usize
    }

    /// Card side: fills the next buffer with `payload` for `destination`. False when every buffer is
    /// still held by the host (the caller waits or drops; [`DmaRing::count_drop`] records a drop).
    pub fn produce(&mut self, destination: u16, payload: &[u8]) -> bool {
        let produced = self.index(PRODUCER_AT).load(Ordering::Relaxed);
        let consumed = self.index(CONSUMER_AT).load(Ordering::Acquire);
        // Wrapping: a host that wrote nonsense must not make the card panic, only stall.
        if produced.wrapping_sub(consumed) >= self.buffer_count {
            return false;
        }
        let slot = (produced % self.buffer_count) as usize;
        let size = payload.len().min(self.buffer_bytes);
        let start = self.buffers_offset + slot * self.buffer_bytes;
        self.map[start..start + size].copy_from_slice(&payload[..size]);
        let d = DESCRIPTORS_OFFSET + slot * DESCRIPTOR_BYTES;
        let flags = if size < payload.len() { FLAG_TRUNCATED } else { 0 };
        for (k, v) in [size as u32, flags, 0, u32::from(destination)].into_iter().enumerate() {
            self.map[d + 4 * k..d + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
        }
        self.index(PRODUCER_AT).store(produced.wrapping_add(1), Ordering::Release);
        true
    }

    /// Card side: records a payload dropped for want of a buffer.
    pub fn count_drop(&self) {
        self.index(DROPPED_AT).fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_and_a_slow_host_in_two_threads_wrap_around_many_times_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut card = DmaRing::create(&path, 8, 64).unwrap();
        let mut host = DmaRing::open(&path).unwrap();
        let total = 5000u32;
        let producer = std::thread::spawn(move || {
            for i in 0..total {
                let payload: Vec<u8> = (0..(i % 60) as u8 + 4).map(|k| k ^ i as u8).collect();
                while !card.produce(50_000 + (i % 3) as u16, &payload) {
                    std::thread::yield_now();
                }
            }
        });
        let mut seen = 0u32;
        while seen < total {
            let n = host.consume(5, |dest, data, truncated| {
                assert_eq!(dest, 50_000 + (seen % 3) as u16);
                let want: Vec<u8> = (0..(seen % 60) as u8 + 4).map(|k| k ^ seen as u8).collect();
                assert_eq!(data, &want[..], "descriptor {seen}");
                assert!(!truncated);
                seen += 1;
            });
            if n == 0 {
                // A slow host: the card finds the ring full and waits.
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
        producer.join().unwrap();
        assert_eq!(host.consume(100, |_, _, _| panic!("nothing more")), 0);
    }

    #[test]
    fn a_full_ring_refuses_and_counts_drops_and_long_payloads_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut card = DmaRing::create(&path, 2, 16).unwrap();
        assert!(card.produce(1, &[1; 20]));
        assert!(card.produce(2, &[2; 4]));
        assert!(!card.produce(3, &[3; 4]));
        card.count_drop();
        let mut host = DmaRing::open(&path).unwrap();
        assert_eq!(host.card_dropped(), 1);
        let mut got = Vec::new();
        host.consume(10, |d, data, t| got.push((d, data.len(), t)));
        assert_eq!(got, vec![(1, 16, true), (2, 4, false)]);
        assert!(card.produce(3, &[3; 4]), "buffers returned to the card");
    }

    #[test]
    fn broken_layouts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        assert!(matches!(DmaRing::open(&path), Err(DmaError::Layout { .. })));
        assert!(matches!(DmaRing::open(&dir.path().join("missing")), Err(DmaError::Open { .. })));
        assert!(matches!(DmaRing::create(&path, 6, 16), Err(DmaError::Geometry(_))));
        DmaRing::create(&path, 4, 16).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(DmaRing::open(&path), Err(DmaError::Layout { .. })));
    }
}
