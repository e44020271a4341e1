//! Packet sources. Each reads packets from its medium and hands them on without copying them more
//! than once; the assembler takes them from there. The other way round, [`send`] puts a capture's
//! packets on the wire, paced and optionally damaged, for tests and replays.

pub mod dma;
pub mod inventory;
pub mod linklayer;
pub mod pcap;
pub mod section;
pub mod send;
pub mod udp;

pub use linklayer::{LinkType, SkipReason, UdpDatagram};
pub use pcap::{Capture, CaptureFormat, CaptureRecord, PcapError};
pub use section::{DmaSection, UdpSection};
