//! Bitshuffle + LZ4 chunks, as HDF5 filter 32008 stores them (the compression DECTRIS and PSI detector
//! files use, read by h5py with hdf5plugin, DIALS, CrystFEL, XDS-Durin, albula, silx).
//!
//! A chunk is a 12-byte big-endian header — the uncompressed size (`u64`) and the block size in bytes
//! (`u32`) — then, block by block, a big-endian `u32` compressed length and an LZ4 block holding the
//! block's bit planes: for each byte of an element (memory order) and each bit of that byte (least
//! significant first), one bit per element, element 0 in the lowest bit of the first byte. Blocks hold
//! 8192 bytes' worth of elements; the last one the rest, rounded down to a multiple of 8 elements; the
//! fewer than 8 elements left over follow as they are. Compression runs where the frame is (the
//! reducer or sink thread), so the HDF5 library only writes finished chunks.

/// The library's target block size, in bytes.
const TARGET_BLOCK_BYTES: usize = 8192;
/// Blocks hold a multiple of this many elements.
const BLOCKED_MULT: usize = 8;
/// The smallest block the library recommends, in elements.
const MIN_BLOCK_ELEMENTS: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BitshuffleError {
    #[error("element size {0} bytes: must be 1 to 8")]
    ElementSize(usize),
    #[error("chunk of {len} bytes is damaged: {reason}")]
    Damaged { len: usize, reason: String },
}

/// The size of one element in bytes, 1 to 8: checked once, so that compressing cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementSize(usize);

impl ElementSize {
    /// # Errors
    /// `bytes` is outside 1..=8.
    pub fn new(bytes: usize) -> Result<ElementSize, BitshuffleError> {
        if (1..=8).contains(&bytes) { Ok(ElementSize(bytes)) } else { Err(BitshuffleError::ElementSize(bytes)) }
    }

    pub fn bytes(self) -> usize {
        self.0
    }
}

/// Elements per block for an element size: the library's default.
pub fn block_elements(elem_size: usize) -> usize {
    (TARGET_BLOCK_BYTES / elem_size / BLOCKED_MULT * BLOCKED_MULT).max(MIN_BLOCK_ELEMENTS)
}

/// The most bytes a chunk of `data_len` bytes can compress to (incompressible data grows a little).
pub fn max_compressed_len(data_len: usize, elem_size: usize) -> usize {
    let elem_size = elem_size.clamp(1, 8);
    let block = block_elements(elem_size) * elem_size;
    let blocks = data_len.div_ceil(block);
    12 + blocks * 4 + blocks * lz4_flex::block::get_maximum_output_size(block) + elem_size * BLOCKED_MULT
}

/// Reusable buffers for compressing chunks (one per thread).
#[derive(Debug, Default)]
pub struct ChunkCompressor {
    shuffled: Vec<u8>,
}

impl ChunkCompressor {
    /// Makes room for one block's bit planes now rather than on the first chunk.
    pub fn reserve(&mut self) {
        self.shuffled.reserve(TARGET_BLOCK_BYTES);
    }

    /// Compresses `data` (elements of `elem_size` bytes) into `out` (replaced) as one chunk.
    pub fn compress(&mut self, data: &[u8], elem_size: ElementSize, out: &mut Vec<u8>) {
        let elem_size = elem_size.bytes();
        let block = block_elements(elem_size) * elem_size;
        out.clear();
        out.extend_from_slice(&(data.len() as u64).to_be_bytes());
        out.extend_from_slice(&(block as u32).to_be_bytes());
        let elements = data.len() / elem_size;
        let blocked = elements / BLOCKED_MULT * BLOCKED_MULT * elem_size;
        for piece in data[..blocked].chunks(block) {
            self.shuffled.resize(piece.len(), 0);
            shuffle(piece, elem_size, &mut self.shuffled);
            let at = out.len();
            out.resize(at + 4 + lz4_flex::block::get_maximum_output_size(piece.len()), 0);
            // The buffer was sized for the worst case, so the encoder cannot run out of room.
            let n = lz4_flex::block::compress_into(&self.shuffled, &mut out[at + 4..]).unwrap_or(0);
            out[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
            out.truncate(at + 4 + n);
        }
        out.extend_from_slice(&data[blocked..]);
    }
}

/// Restores a chunk's bytes (for reading files back and for tests).
///
/// # Errors
/// An element size outside 1..=8, or a chunk that does not decode to its stated size.
pub fn decompress(chunk: &[u8], elem_size: usize) -> Result<Vec<u8>, BitshuffleError> {
    if !(1..=8).contains(&elem_size) {
        return Err(BitshuffleError::ElementSize(elem_size));
    }
    let damaged = |reason: &str| BitshuffleError::Damaged { len: chunk.len(), reason: reason.into() };
    let header: [u8; 12] = chunk.get(..12).and_then(|h| h.try_into().ok()).ok_or_else(|| damaged("no header"))?;
    let total = u64::from_be_bytes(header[..8].try_into().unwrap_or_default()) as usize;
    let block = u32::from_be_bytes(header[8..].try_into().unwrap_or_default()) as usize;
    if block == 0 || !block.is_multiple_of(elem_size) || total > (1 << 34) {
        return Err(damaged("bad block or total size"));
    }
    let blocked = total / elem_size / BLOCKED_MULT * BLOCKED_MULT * elem_size;
    let mut out = Vec::with_capacity(total);
    let mut plain = vec![0u8; block];
    let mut pos = 12;
    while out.len() < blocked {
        let size = block.min(blocked - out.len());
        let len_bytes: [u8; 4] =
            chunk.get(pos..pos + 4).and_then(|b| b.try_into().ok()).ok_or_else(|| damaged("cut short"))?;
        let n = u32::from_be_bytes(len_bytes) as usize;
        let compressed = chunk.get(pos + 4..pos + 4 + n).ok_or_else(|| damaged("cut short"))?;
        let got =
            lz4_flex::block::decompress_into(compressed, &mut plain[..size]).map_err(|e| damaged(&e.to_string()))?;
        if got != size {
            return Err(damaged("a block decodes to the wrong size"));
        }
        let at = out.len();
        out.resize(at + size, 0);
        unshuffle(&plain[..size], elem_size, &mut out[at..]);
        pos += 4 + n;
    }
    let rest = chunk.get(pos..).unwrap_or(&[]);
    if rest.len() != total - blocked {
        return Err(damaged("trailing bytes do not match the stated size"));
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// Transposes an 8 × 8 bit matrix held in a `u64` (byte k is row k, bit j of it column j): afterwards
/// byte j holds bit j of every original byte, original byte k at bit k.
fn transpose8(mut x: u64) -> u64 {
    let mut t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// Bit planes of `block` (a multiple of 8 elements) into `out` (same length).
fn shuffle(block: &[u8], elem_size: usize, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if (elem_size == 2 || elem_size == 4) && (block.len() / elem_size).is_multiple_of(16) {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every CPU this code is built for has it.
        return unsafe { shuffle_sse2(block, elem_size, out) };
    }
    let n = block.len() / elem_size;
    let row = n / 8;
    for (g, group) in block.chunks_exact(8 * elem_size).enumerate() {
        for b in 0..elem_size {
            let mut x = 0u64;
            for k in 0..8 {
                x |= u64::from(group[k * elem_size + b]) << (8 * k);
            }
            let planes = transpose8(x).to_le_bytes();
            for (j, &p) in planes.iter().enumerate() {
                out[(b * 8 + j) * row + g] = p;
            }
        }
    }
}

/// [`shuffle`] for 16- and 32-bit elements, 16 at a time with SSE2 (part of every x86-64 CPU, so no
/// run-time check): each byte of the 16 elements is gathered into one vector by masking, shifting and
/// packing, and each bit plane is read off with one `movemask` (the top bit of every byte) while the
/// bytes are doubled to bring the next bit up. Every intrinsic here is a safe function where SSE2 is
/// enabled, as it is on x86-64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn shuffle_sse2(block: &[u8], elem_size: usize, out: &mut [u8]) {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_packs_epi32, _mm_packus_epi16, _mm_set1_epi16, _mm_set1_epi32, _mm_srli_epi16,
        _mm_srli_epi32,
    };
    let row = block.len() / elem_size / 8;
    if elem_size == 2 {
        let low = _mm_set1_epi16(0x00ff);
        for (g, group) in block.chunks_exact(32).enumerate() {
            let (a, b) = (load16(&group[..16]), load16(&group[16..]));
            bit_rows(_mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)), 0, g, row, out);
            bit_rows(_mm_packus_epi16(_mm_srli_epi16::<8>(a), _mm_srli_epi16::<8>(b)), 1, g, row, out);
        }
        return;
    }
    let low = _mm_set1_epi32(0xff);
    for (g, group) in block.chunks_exact(64).enumerate() {
        let v = [load16(&group[..16]), load16(&group[16..32]), load16(&group[32..48]), load16(&group[48..])];
        // Byte `k` of every element as 16 bytes in element order (values ≤ 255 pack unchanged).
        let pack = |f: &dyn Fn(std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i| {
            _mm_packus_epi16(_mm_packs_epi32(f(v[0]), f(v[1])), _mm_packs_epi32(f(v[2]), f(v[3])))
        };
        bit_rows(pack(&|x| _mm_and_si128(x, low)), 0, g, row, out);
        bit_rows(pack(&|x| _mm_and_si128(_mm_srli_epi32::<8>(x), low)), 1, g, row, out);
        bit_rows(pack(&|x| _mm_and_si128(_mm_srli_epi32::<16>(x), low)), 2, g, row, out);
        bit_rows(pack(&|x| _mm_srli_epi32::<24>(x)), 3, g, row, out);
    }
}

/// Sixteen bytes as a vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn load16(b: &[u8]) -> std::arch::x86_64::__m128i {
    let word = |at: usize| {
        i64::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]])
    };
    std::arch::x86_64::_mm_set_epi64x(word(8), word(0))
}

/// The eight bit rows of byte `byte` for element group `g` (16 elements): 2 bytes in each row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn bit_rows(mut v: std::arch::x86_64::__m128i, byte: usize, g: usize, row: usize, out: &mut [u8]) {
    use std::arch::x86_64::{_mm_add_epi8, _mm_movemask_epi8};
    for bit in (0..8).rev() {
        let mask = (_mm_movemask_epi8(v) as u16).to_le_bytes();
        let at = (byte * 8 + bit) * row + 2 * g;
        out[at..at + 2].copy_from_slice(&mask);
        v = _mm_add_epi8(v, v);
    }
}

/// The inverse of [`shuffle`].
fn unshuffle(planes: &[u8], elem_size: usize, out: &mut [u8]) {
    let n = planes.len() / elem_size;
    let row = n / 8;
    for g in 0..row {
        for b in 0..elem_size {
            let mut x = 0u64;
            for j in 0..8 {
                x |= u64::from(planes[(b * 8 + j) * row + g]) << (8 * j);
            }
            for (k, &v) in transpose8(x).to_le_bytes().iter().enumerate() {
                out[(8 * g + k) * elem_size + b] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bit planes the slow, obvious way.
    fn shuffle_bit_by_bit(block: &[u8], elem_size: usize) -> Vec<u8> {
        let n = block.len() / elem_size;
        let mut out = vec![0u8; block.len()];
        for i in 0..n {
            for b in 0..elem_size {
                for j in 0..8 {
                    let bit = (block[i * elem_size + b] >> j) & 1;
                    let r = b * 8 + j;
                    out[r * (n / 8) + i / 8] |= bit << (i % 8);
                }
            }
        }
        out
    }

    #[test]
    fn full_blocks_of_u16_and_u32_shuffle_as_defined() {
        // 8192 bytes: the vector paths on x86-64.
        for (elem, mult, shift) in [(2, 2_654_435_761u32, 13), (4, 2_246_822_519, 11)] {
            let block: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(mult) >> shift) as u8).collect();
            let mut fast = vec![0u8; block.len()];
            shuffle(&block, elem, &mut fast);
            assert_eq!(fast, shuffle_bit_by_bit(&block, elem), "{elem}-byte elements");
        }
    }

    #[test]
    fn block_sizes_are_the_librarys() {
        assert_eq!(block_elements(2), 4096);
        assert_eq!(block_elements(4), 2048);
        assert_eq!(block_elements(1), 8192);
    }

    #[test]
    fn header_and_layout() {
        let data: Vec<u8> = (0..(6144 * 2 + 6)).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        ChunkCompressor::default().compress(&data, ElementSize::new(2).unwrap(), &mut out);
        assert_eq!(u64::from_be_bytes(out[..8].try_into().unwrap()), data.len() as u64);
        assert_eq!(u32::from_be_bytes(out[8..12].try_into().unwrap()), 8192);
        // 3 elements (6 bytes) are left over after the last multiple of 8: stored as they are.
        assert_eq!(&out[out.len() - 6..], &data[data.len() - 6..]);
        assert_eq!(decompress(&out, 2).unwrap(), data);
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let data = vec![5u8; 4096];
        let mut out = Vec::new();
        ChunkCompressor::default().compress(&data, ElementSize::new(2).unwrap(), &mut out);
        for cut in [0, 5, 12, 15, out.len() - 1] {
            assert!(decompress(&out[..cut], 2).is_err(), "cut at {cut}");
        }
        let mut bad = out.clone();
        bad[0] = 0xff;
        assert!(decompress(&bad, 2).is_err());
        assert_eq!(decompress(&out, 9), Err(BitshuffleError::ElementSize(9)));
    }

    proptest! {
        #[test]
        fn shuffle_matches_the_definition(words in proptest::collection::vec(any::<u8>(), 8..512), size in 1usize..=4) {
            let n = words.len() / (8 * size) * 8;
            prop_assume!(n > 0);
            let block = &words[..n * size];
            let mut fast = vec![0u8; block.len()];
            shuffle(block, size, &mut fast);
            prop_assert_eq!(&fast, &shuffle_bit_by_bit(block, size));
            let mut back = vec![0u8; block.len()];
            unshuffle(&fast, size, &mut back);
            prop_assert_eq!(&back, block);
        }

        #[test]
        fn chunks_round_trip(data in proptest::collection::vec(any::<u8>(), 0..40_000), size in prop::sample::select(vec![1usize, 2, 4])) {
            let data = &data[..data.len() / size * size];
            let mut out = Vec::new();
            ChunkCompressor::default().compress(data, ElementSize::new(size).unwrap(), &mut out);
            // Random bytes do not compress: the bound the pool reserves must still hold them.
            prop_assert!(out.len() <= max_compressed_len(data.len(), size));
            prop_assert_eq!(decompress(&out, size).unwrap(), data);
        }
    }
}
