//! The 48-byte little-endian `sls_detector_header`, read in place with zerocopy: no copy, no byte
//! shuffling, and no way to read past the end of a short packet.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the header that precedes every payload.
pub const HEADER_BYTES: usize = 48;

/// The header exactly as the detector puts it on the wire.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct SlsDetectorHeader {
    /// Frame index; starts at 1 (0 is not a frame).
    pub frame_number: U64,
    /// Exposure length, or EIGER's sub-frame number.
    pub exp_length: U32,
    /// Packet index inside the frame, counted per UDP port.
    pub packet_number: U32,
    /// Bunch id (detSpec1).
    pub bunch_id: U64,
    /// Detector clock, 10 MHz.
    pub timestamp: U64,
    pub mod_id: U16,
    pub row: U16,
    pub column: U16,
    /// detSpec2, reserved.
    pub reserved: U16,
    /// detSpec3: JUNGFRAU puts the storage cell in bits 11–8.
    pub debug: U32,
    /// detSpec4.
    pub round_robin: U16,
    pub det_type: u8,
    pub version: u8,
}

const _: () = assert!(std::mem::size_of::<SlsDetectorHeader>() == HEADER_BYTES);

/// The `detType` codes of the family that hitgate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorType {
    Eiger,
    Jungfrau,
}

impl DetectorType {
    /// The code carried in the header's `detType` byte.
    pub const fn code(self) -> u8 {
        match self {
            DetectorType::Eiger => 1,
            DetectorType::Jungfrau => 3,
        }
    }
}

/// Why a packet's header could not be read.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    #[error("packet of {len} bytes is shorter than the {HEADER_BYTES}-byte header")]
    Truncated { len: usize },
}

impl SlsDetectorHeader {
    /// Views the header at the start of `packet` and returns it with the payload that follows.
    ///
    /// # Errors
    /// [`HeaderError::Truncated`] when the packet is shorter than the header.
    pub fn split(packet: &[u8]) -> Result<(&SlsDetectorHeader, &[u8]), HeaderError> {
        SlsDetectorHeader::ref_from_prefix(packet).map_err(|_| HeaderError::Truncated { len: packet.len() })
    }

    /// JUNGFRAU's storage cell (bits 11–8 of `detSpec3`).
    pub fn storage_cell(&self) -> u8 {
        ((self.debug.get() >> 8) & 0xf) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_at_the_documented_offsets() {
        let mut bytes = [0u8; 60];
        bytes[0..8].copy_from_slice(&7u64.to_le_bytes());
        bytes[12..16].copy_from_slice(&93u32.to_le_bytes());
        bytes[24..32].copy_from_slice(&0x1122_3344_5566u64.to_le_bytes());
        bytes[32..34].copy_from_slice(&1234u16.to_le_bytes());
        bytes[34..36].copy_from_slice(&1u16.to_le_bytes());
        bytes[40..44].copy_from_slice(&0x0000_0a00u32.to_le_bytes());
        bytes[46] = 3;
        bytes[47] = 2;
        let (h, payload) = SlsDetectorHeader::split(&bytes).unwrap();
        assert_eq!(h.frame_number.get(), 7);
        assert_eq!(h.packet_number.get(), 93);
        assert_eq!(h.timestamp.get(), 0x1122_3344_5566);
        assert_eq!(h.mod_id.get(), 1234);
        assert_eq!(h.row.get(), 1);
        assert_eq!(h.storage_cell(), 10);
        assert_eq!(h.det_type, DetectorType::Jungfrau.code());
        assert_eq!(h.version, 2);
        assert_eq!(payload.len(), 12);
        assert_eq!(h.as_bytes(), &bytes[..48]);
    }

    #[test]
    fn short_packets_are_an_error_not_a_panic() {
        for len in 0..HEADER_BYTES {
            let bytes = vec![0u8; len];
            assert_eq!(SlsDetectorHeader::split(&bytes).unwrap_err(), HeaderError::Truncated { len });
        }
    }
}
