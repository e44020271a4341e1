//! Encoding shared by the reducers and the sinks: bitshuffle-LZ4 chunks as HDF5 filter 32008 and the
//! DECTRIS `bslz4` tag store them, a whole frame encoded as one chunk in the pixels the storing
//! sinks take, and the monitor's PNG pictures. No I/O: bytes in, bytes out.

pub mod bitshuffle;
pub mod chunk;
pub mod png;

pub use chunk::{FLAGGED_U32, FrameEncoder, StoredPixels, chunk_bound, stored_element_size, stored_frame_bytes};
