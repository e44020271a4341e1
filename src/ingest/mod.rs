//! Packet sources. Each reads packets from its medium and hands them on without copying them more
//! than once; the assembler takes them from there.

pub mod dma;
pub mod inventory;
pub mod linklayer;
pub mod pcap;
pub mod udp;

pub use linklayer::{LinkType, SkipReason, UdpDatagram};
pub use pcap::{Capture, CaptureFormat, CaptureRecord, PcapError};
