//! Writes UDP datagrams as a capture file the way tcpdump or dumpcap would record them: classic pcap
//! with micro- or nanosecond timestamps, or pcapng; Ethernet (optionally 802.1Q-tagged) or Linux cooked
//! v1/v2 framing. IPv4 headers carry a correct checksum; UDP checksums are 0 ("none"), as detector
//! firmware sends them.

use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureFileFormat {
    /// Classic pcap, microsecond timestamps (tcpdump's default).
    Pcap,
    /// Classic pcap, nanosecond timestamps (`tcpdump --time-stamp-precision=nano`).
    PcapNs,
    /// pcapng with nanosecond resolution (dumpcap's default container).
    Pcapng,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkFraming {
    Ethernet,
    /// Ethernet with an 802.1Q VLAN tag.
    Vlan,
    /// Linux cooked v1 (`tcpdump -i any`).
    Sll,
    /// Linux cooked v2 (`tcpdump -i any -y LINUX_SLL2`).
    Sll2,
}

impl LinkFraming {
    fn linktype(self) -> u32 {
        match self {
            LinkFraming::Ethernet | LinkFraming::Vlan => 1,
            LinkFraming::Sll => 113,
            LinkFraming::Sll2 => 276,
        }
    }
}

pub struct CaptureWriter<W: Write> {
    out: W,
    format: CaptureFileFormat,
    framing: LinkFraming,
    ip_id: u16,
    frame: Vec<u8>,
}

const SNAPLEN: u32 = 262_144;

impl<W: Write> CaptureWriter<W> {
    /// Starts a capture: writes the file header.
    ///
    /// # Errors
    /// Writing fails.
    pub fn new(mut out: W, format: CaptureFileFormat, framing: LinkFraming) -> io::Result<Self> {
        match format {
            CaptureFileFormat::Pcap | CaptureFileFormat::PcapNs => {
                let magic: u32 = if format == CaptureFileFormat::Pcap { 0xa1b2_c3d4 } else { 0xa1b2_3c4d };
                out.write_all(&magic.to_le_bytes())?;
                out.write_all(&2u16.to_le_bytes())?;
                out.write_all(&4u16.to_le_bytes())?;
                out.write_all(&[0u8; 8])?;
                out.write_all(&SNAPLEN.to_le_bytes())?;
                out.write_all(&framing.linktype().to_le_bytes())?;
            }
            CaptureFileFormat::Pcapng => {
                // Section header block: byte-order magic, version 1.0, unknown section length.
                let mut shb = Vec::new();
                shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
                shb.extend_from_slice(&1u16.to_le_bytes());
                shb.extend_from_slice(&0u16.to_le_bytes());
                shb.extend_from_slice(&(-1i64).to_le_bytes());
                write_block(&mut out, 0x0a0d_0d0a, &shb)?;
                // Interface description block with if_tsresol = 9 (nanoseconds).
                let mut idb = Vec::new();
                idb.extend_from_slice(&(framing.linktype() as u16).to_le_bytes());
                idb.extend_from_slice(&0u16.to_le_bytes());
                idb.extend_from_slice(&SNAPLEN.to_le_bytes());
                idb.extend_from_slice(&9u16.to_le_bytes());
                idb.extend_from_slice(&1u16.to_le_bytes());
                idb.extend_from_slice(&[9, 0, 0, 0]);
                idb.extend_from_slice(&[0, 0, 0, 0]);
                write_block(&mut out, 1, &idb)?;
            }
        }
        Ok(CaptureWriter { out, format, framing, ip_id: 0, frame: Vec::with_capacity(9100) })
    }

    /// Records one UDP datagram from 127.0.0.1:`src_port` to 127.0.0.1:`dst_port` at `timestamp_ns`.
    ///
    /// # Errors
    /// Writing fails, or the payload does not fit one IPv4 datagram.
    pub fn write_udp(&mut self, timestamp_ns: u64, src_port: u16, dst_port: u16, payload: &[u8]) -> io::Result<()> {
        let ip_total = 20 + 8 + payload.len();
        if ip_total > usize::from(u16::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} bytes do not fit one IPv4 datagram", payload.len()),
            ));
        }
        let f = &mut self.frame;
        f.clear();
        match self.framing {
            LinkFraming::Ethernet | LinkFraming::Vlan => {
                f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02]);
                if self.framing == LinkFraming::Vlan {
                    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
                }
                f.extend_from_slice(&[0x08, 0x00]);
            }
            LinkFraming::Sll => {
                f.extend_from_slice(&[0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 0x02, 0, 0, 0x08, 0x00]);
            }
            LinkFraming::Sll2 => {
                f.extend_from_slice(&[0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 0x02, 0, 0]);
            }
        }
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&(ip_total as u16).to_be_bytes());
        f.extend_from_slice(&self.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let checksum = ipv4_checksum(&f[ip_start..ip_start + 20]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&checksum.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        f.extend_from_slice(&src_port.to_be_bytes());
        f.extend_from_slice(&dst_port.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        let len = f.len() as u32;
        match self.format {
            CaptureFileFormat::Pcap | CaptureFileFormat::PcapNs => {
                let secs = (timestamp_ns / 1_000_000_000) as u32;
                let sub = timestamp_ns % 1_000_000_000;
                let frac = if self.format == CaptureFileFormat::Pcap { sub / 1000 } else { sub } as u32;
                for v in [secs, frac, len, len] {
                    self.out.write_all(&v.to_le_bytes())?;
                }
                self.out.write_all(&self.frame)
            }
            CaptureFileFormat::Pcapng => {
                let mut epb = Vec::with_capacity(20 + self.frame.len() + 3);
                epb.extend_from_slice(&0u32.to_le_bytes());
                epb.extend_from_slice(&((timestamp_ns >> 32) as u32).to_le_bytes());
                epb.extend_from_slice(&(timestamp_ns as u32).to_le_bytes());
                epb.extend_from_slice(&len.to_le_bytes());
                epb.extend_from_slice(&len.to_le_bytes());
                epb.extend_from_slice(&self.frame);
                write_block(&mut self.out, 6, &epb)
            }
        }
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    /// Flushing fails.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_block<W: Write>(out: &mut W, block_type: u32, body: &[u8]) -> io::Result<()> {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    out.write_all(&block_type.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&[0u8; 3][..padded - body.len()])?;
    out.write_all(&total.to_le_bytes())
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes whole frames as the detector `geometry` sends them, every packet of every port, into a
/// nanosecond pcap at `path`: frame numbers (and bunch ids) from 1, a frame every `period_ns`. A frame
/// is its buffer as assembled (one port's image after another). Returns the frames written.
///
/// # Errors
/// The file cannot be written, or a frame is not `geometry.frame_bytes()` long.
pub fn write_frames_capture(
    path: &std::path::Path,
    geometry: &crate::detector::DetectorGeometry,
    frames: impl IntoIterator<Item = Vec<u8>>,
    period_ns: u64,
) -> io::Result<u64> {
    use crate::detector::SlsDetectorHeader;
    use zerocopy::IntoBytes;
    let g = geometry;
    let file = io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = CaptureWriter::new(file, CaptureFileFormat::PcapNs, LinkFraming::Ethernet)?;
    let mut packet = Vec::with_capacity(g.model.packet_bytes());
    let mut written = 0u64;
    for frame in frames {
        if frame.len() != g.frame_bytes() {
            let reason = format!("a frame of {} bytes, not {}", frame.len(), g.frame_bytes());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, reason));
        }
        written += 1;
        let at = 1_700_000_000_000_000_000 + (written - 1) * period_ns;
        for port in 0..g.ports() {
            for n in 0..g.model.packets_per_port() {
                let header = SlsDetectorHeader {
                    frame_number: written.into(),
                    packet_number: (n as u32).into(),
                    bunch_id: written.into(),
                    timestamp: ((written - 1) * period_ns / 100).into(),
                    mod_id: ((port / g.model.ports_per_module) as u16).into(),
                    det_type: g.model.det_type.code(),
                    version: 2,
                    ..Default::default()
                };
                packet.clear();
                packet.extend_from_slice(header.as_bytes());
                packet.extend_from_slice(&frame[g.packet_range(port, n)]);
                w.write_udp(at, 32000 + port as u16, g.udp_ports[port], &packet)?;
            }
        }
    }
    w.finish()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Capture;

    #[test]
    fn every_format_and_framing_reads_back() {
        for format in [CaptureFileFormat::Pcap, CaptureFileFormat::PcapNs, CaptureFileFormat::Pcapng] {
            for framing in [LinkFraming::Ethernet, LinkFraming::Vlan, LinkFraming::Sll, LinkFraming::Sll2] {
                let mut w = CaptureWriter::new(Vec::new(), format, framing).unwrap();
                w.write_udp(1_700_000_000_123_456_789, 9, 50001, b"first").unwrap();
                w.write_udp(1_700_000_000_223_456_789, 9, 50002, b"second!").unwrap();
                let cap = Capture::from_vec(w.finish().unwrap()).unwrap();
                let recs: Vec<_> = cap.records().map(|r| r.unwrap()).collect();
                assert_eq!(recs.len(), 2, "{format:?} {framing:?}");
                let udp = recs[1].udp().unwrap();
                assert_eq!((udp.dst_port, udp.payload), (50002, &b"second!"[..]), "{format:?} {framing:?}");
                let want = if format == CaptureFileFormat::Pcap {
                    1_700_000_000_123_456_000
                } else {
                    1_700_000_000_123_456_789
                };
                assert_eq!(recs[0].timestamp_ns, want, "{format:?}");
            }
        }
    }

    #[test]
    fn ip_checksum_verifies() {
        let h = [0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }
}
