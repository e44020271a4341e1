//! Packet captures as tcpdump, dumpcap and tshark write them: classic pcap (micro- or nanosecond
//! timestamps, either byte order) and pcapng (several sections and interfaces, `if_tsresol`, enhanced and
//! simple packet blocks). The file is memory-mapped and records are borrowed from the mapping: nothing
//! is copied. A damaged file yields every record before the damage, then one error that says where.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::linklayer::{LinkType, SkipReason, UdpDatagram, decode_udp};

/// Errors in a capture's container structure (not in the packets it holds; those are counted).
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot open capture {path}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("not a pcap or pcapng file (first bytes {magic:02x?})")]
    BadMagic { magic: Vec<u8> },
    #[error("capture truncated at byte {offset}: {what}")]
    Truncated { offset: usize, what: String },
    #[error("capture damaged at byte {offset}: {what}")]
    Damaged { offset: usize, what: String },
}

/// Which container the file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap { nanosecond: bool, big_endian: bool },
    PcapNg,
}

impl std::fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureFormat::Pcap { nanosecond, big_endian } => write!(
                f,
                "pcap ({} timestamps, {})",
                if *nanosecond { "ns" } else { "µs" },
                if *big_endian { "big-endian" } else { "little-endian" }
            ),
            CaptureFormat::PcapNg => write!(f, "pcapng"),
        }
    }
}

/// One captured frame: its time, its link type and its bytes (borrowed from the mapping).
#[derive(Clone, Copy, Debug)]
pub struct CaptureRecord<'a> {
    pub timestamp_ns: u64,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire; more than `data.len()` when the snap length cut the frame.
    pub original_len: usize,
}

impl<'a> CaptureRecord<'a> {
    /// The UDP datagram inside this frame.
    ///
    /// # Errors
    /// Why there is none, for counting.
    pub fn udp(&self) -> Result<UdpDatagram<'a>, SkipReason> {
        decode_udp(self.link, self.data)
    }
}

/// A capture file mapped into memory.
pub struct Capture {
    bytes: CaptureBytes,
    format: CaptureFormat,
}

enum CaptureBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for CaptureBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            CaptureBytes::Mapped(m) => m,
            CaptureBytes::Owned(v) => v,
        }
    }
}

const PCAP_MICRO: u32 = 0xa1b2_c3d4;
const PCAP_NANO: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER: u32 = 0x1a2b_3c4d;

impl Capture {
    /// Maps a capture file and checks its header.
    ///
    /// # Errors
    /// The file cannot be opened or mapped, or is not a pcap/pcapng file.
    pub fn open(path: &Path) -> Result<Capture, PcapError> {
        let open_err = |source| PcapError::Open { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        if len == 0 {
            return Err(PcapError::BadMagic { magic: vec![] });
        }
        // SAFETY: the mapping is read-only and private to this process; a capture being appended to
        // by tcpdump only grows past the mapped length, which we never read. Truncating the file
        // underneath us would fault — the documented hazard of mapping any file, accepted for captures
        // that are finished before replay.
        let map = unsafe { Mmap::map(&file) }.map_err(open_err)?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Self::from_bytes(CaptureBytes::Mapped(map))
    }

    /// A capture held in memory (tests, fuzzing).
    ///
    /// # Errors
    /// Not a pcap/pcapng file.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Capture, PcapError> {
        Self::from_bytes(CaptureBytes::Owned(bytes))
    }

    fn from_bytes(bytes: CaptureBytes) -> Result<Capture, PcapError> {
        let magic: [u8; 4] = match bytes.get(..4) {
            Some(m) => m.try_into().expect("4 bytes"),
            None => {
                return Err(PcapError::BadMagic { magic: bytes.to_vec() });
            }
        };
        let format = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (PCAP_MICRO, _) => CaptureFormat::Pcap { nanosecond: false, big_endian: false },
            (PCAP_NANO, _) => CaptureFormat::Pcap { nanosecond: true, big_endian: false },
            (_, PCAP_MICRO) => CaptureFormat::Pcap { nanosecond: false, big_endian: true },
            (_, PCAP_NANO) => CaptureFormat::Pcap { nanosecond: true, big_endian: true },
            (PCAPNG_SHB, _) => CaptureFormat::PcapNg,
            _ => {
                return Err(PcapError::BadMagic { magic: magic.to_vec() });
            }
        };
        if let CaptureFormat::Pcap { .. } = format
            && bytes.len() < 24
        {
            return Err(PcapError::Truncated { offset: bytes.len(), what: "pcap file header needs 24 bytes".into() });
        }
        Ok(Capture { bytes, format })
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// The whole file; records borrow from it.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Size of the file in bytes.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The captured frames in file order. After an error the iterator ends.
    pub fn records(&self) -> Records<'_> {
        let state = match self.format {
            CaptureFormat::Pcap { nanosecond, big_endian } => {
                let e = Endian(big_endian);
                let link = LinkType::from_code(e.u32(&self.bytes, 20).unwrap_or(0) & 0x03ff_ffff);
                State::Pcap { nanosecond, endian: e, link }
            }
            CaptureFormat::PcapNg => State::PcapNg {
                endian: Endian(false),
                interfaces: Box::new([Interface::default(); MAX_INTERFACES]),
                interface_count: 0,
            },
        };
        let offset = if matches!(self.format, CaptureFormat::Pcap { .. }) { 24 } else { 0 };
        Records { bytes: &self.bytes, offset, state, done: false }
    }
}

#[derive(Clone, Copy, Debug)]
struct Endian(bool);

impl Endian {
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.0 { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) })
    }
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.0 { u16::from_be_bytes(raw) } else { u16::from_le_bytes(raw) })
    }
}

/// Interfaces described in one pcapng section; more than this many is reported as damage.
const MAX_INTERFACES: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    /// Timestamp units per second.
    units_per_second: u64,
}

impl Default for Interface {
    fn default() -> Self {
        Interface { link: LinkType::Other(u32::MAX), snaplen: 0, units_per_second: 1_000_000 }
    }
}

enum State {
    Pcap { nanosecond: bool, endian: Endian, link: LinkType },
    PcapNg { endian: Endian, interfaces: Box<[Interface; MAX_INTERFACES]>, interface_count: usize },
}

/// Iterator over a capture's frames.
pub struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
    state: State,
    done: bool,
}

impl<'a> Records<'a> {
    /// Byte offset of the next record: progress through the file.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn fail<T>(&mut self, err: PcapError) -> Option<Result<T, PcapError>> {
        self.done = true;
        Some(Err(err))
    }

    fn next_pcap(
        &mut self,
        nanosecond: bool,
        e: Endian,
        link: LinkType,
    ) -> Option<Result<CaptureRecord<'a>, PcapError>> {
        let at = self.offset;
        let left = self.bytes.len() - at;
        if left == 0 {
            return None;
        }
        if left < 16 {
            return self
                .fail(PcapError::Truncated { offset: at, what: format!("record header needs 16 bytes, {left} left") });
        }
        let field = |i: usize| e.u32(self.bytes, at + 4 * i).unwrap_or(0);
        let (secs, frac, incl, orig) = (field(0), field(1), field(2) as usize, field(3) as usize);
        let data = match self.bytes.get(at + 16..at + 16 + incl) {
            Some(d) => d,
            None => {
                return self.fail(PcapError::Truncated {
                    offset: at,
                    what: format!("record of {incl} bytes, {} left", left - 16),
                });
            }
        };
        self.offset = at + 16 + incl;
        let frac_ns = if nanosecond { u64::from(frac) } else { u64::from(frac) * 1000 };
        let timestamp_ns = u64::from(secs) * 1_000_000_000 + frac_ns;
        Some(Ok(CaptureRecord { timestamp_ns, link, data, original_len: orig.max(incl) }))
    }

    fn next_pcapng(&mut self) -> Option<Result<CaptureRecord<'a>, PcapError>> {
        loop {
            let at = self.offset;
            let left = self.bytes.len() - at;
            if left == 0 {
                return None;
            }
            if left < 12 {
                return self.fail(PcapError::Truncated {
                    offset: at,
                    what: format!("block header needs 12 bytes, {left} left"),
                });
            }
            let raw_type = u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"));
            if raw_type == PCAPNG_SHB {
                // A new section: its own byte order, its own interfaces.
                let big = match self.bytes.get(at + 8..at + 12) {
                    Some(b) if u32::from_le_bytes(b.try_into().expect("4")) == PCAPNG_BYTE_ORDER => false,
                    Some(b) if u32::from_be_bytes(b.try_into().expect("4")) == PCAPNG_BYTE_ORDER => true,
                    _ => {
                        return self.fail(PcapError::Damaged {
                            offset: at,
                            what: "section header has no byte-order magic".into(),
                        });
                    }
                };
                self.state = State::PcapNg {
                    endian: Endian(big),
                    interfaces: Box::new([Interface::default(); MAX_INTERFACES]),
                    interface_count: 0,
                };
            }
            let State::PcapNg { endian, interfaces, interface_count } = &mut self.state else {
                return None;
            };
            let e = *endian;
            let block_type = e.u32(self.bytes, at).unwrap_or(0);
            let total = e.u32(self.bytes, at + 4).unwrap_or(0) as usize;
            if total < 12 || !total.is_multiple_of(4) {
                return self.fail(PcapError::Damaged {
                    offset: at,
                    what: format!("block length {total} is not a multiple of 4 of at least 12"),
                });
            }
            if total > left {
                return self
                    .fail(PcapError::Truncated { offset: at, what: format!("block of {total} bytes, {left} left") });
            }
            let body = &self.bytes[at + 8..at + total - 4];
            self.offset = at + total;
            match block_type {
                // Interface description block.
                1 => {
                    if *interface_count == MAX_INTERFACES {
                        return self.fail(PcapError::Damaged {
                            offset: at,
                            what: format!("more than {MAX_INTERFACES} interfaces"),
                        });
                    }
                    let Some(link) = e.u16(body, 0) else {
                        return self.fail(PcapError::Damaged { offset: at, what: "interface block too short".into() });
                    };
                    let mut iface = Interface {
                        link: LinkType::from_code(u32::from(link)),
                        snaplen: e.u32(body, 4).unwrap_or(0),
                        units_per_second: 1_000_000,
                    };
                    if let Some(res) = find_option(body.get(8..).unwrap_or(&[]), e, 9).and_then(|o| o.first().copied())
                    {
                        let exp = u32::from(res & 0x7f);
                        let base: u64 = if res & 0x80 != 0 { 2 } else { 10 };
                        match base.checked_pow(exp) {
                            Some(units) if units > 0 => iface.units_per_second = units,
                            _ => {
                                return self.fail(PcapError::Damaged {
                                    offset: at,
                                    what: format!("if_tsresol {res:#x} out of range"),
                                });
                            }
                        }
                    }
                    interfaces[*interface_count] = iface;
                    *interface_count += 1;
                }
                // Enhanced packet block.
                6 => {
                    let (Some(id), Some(hi), Some(lo), Some(cap), Some(orig)) =
                        (e.u32(body, 0), e.u32(body, 4), e.u32(body, 8), e.u32(body, 12), e.u32(body, 16))
                    else {
                        return self.fail(PcapError::Damaged { offset: at, what: "packet block too short".into() });
                    };
                    let Some(iface) = interfaces[..*interface_count].get(id as usize) else {
                        return self.fail(PcapError::Damaged {
                            offset: at,
                            what: format!("packet on undeclared interface {id}"),
                        });
                    };
                    let Some(data) = body.get(20..20 + cap as usize) else {
                        return self.fail(PcapError::Damaged {
                            offset: at,
                            what: format!("packet of {cap} bytes overruns its block"),
                        });
                    };
                    let ticks = (u64::from(hi) << 32) | u64::from(lo);
                    let timestamp_ns = (u128::from(ticks) * 1_000_000_000 / u128::from(iface.units_per_second)) as u64;
                    return Some(Ok(CaptureRecord {
                        timestamp_ns,
                        link: iface.link,
                        data,
                        original_len: (orig as usize).max(data.len()),
                    }));
                }
                // Simple packet block: interface 0, no timestamp.
                3 => {
                    let Some(iface) = interfaces[..*interface_count].first() else {
                        return self.fail(PcapError::Damaged {
                            offset: at,
                            what: "simple packet block before any interface".into(),
                        });
                    };
                    let Some(orig) = e.u32(body, 0).map(|n| n as usize) else {
                        return self.fail(PcapError::Damaged {
                            offset: at,
                            what: "simple packet block too short for its packet length".into(),
                        });
                    };
                    let snap = if iface.snaplen == 0 { usize::MAX } else { iface.snaplen as usize };
                    let cap = orig.min(snap).min(body.len() - 4);
                    let data = &body[4..4 + cap];
                    return Some(Ok(CaptureRecord { timestamp_ns: 0, link: iface.link, data, original_len: orig }));
                }
                // Section header, statistics, name resolution, custom blocks: nothing to replay.
                _ => {}
            }
        }
    }
}

/// The value of option `code` in a pcapng options list.
fn find_option(mut options: &[u8], e: Endian, code: u16) -> Option<&[u8]> {
    while options.len() >= 4 {
        let (c, len) = (e.u16(options, 0)?, e.u16(options, 2)? as usize);
        if c == 0 {
            return None;
        }
        let value = options.get(4..4 + len)?;
        if c == code {
            return Some(value);
        }
        options = options.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<CaptureRecord<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.state {
            State::Pcap { nanosecond, endian, link } => self.next_pcap(nanosecond, endian, link),
            State::PcapNg { .. } => self.next_pcapng(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_with(records: &[(&[u8], u32)]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_MICRO.to_le_bytes());
        f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0]);
        for (i, (data, usec)) in records.iter().enumerate() {
            f.extend_from_slice(&(i as u32 + 10).to_le_bytes());
            f.extend_from_slice(&usec.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn garbage_is_refused_at_open() {
        assert!(matches!(Capture::from_vec(b"hello world, not a capture".to_vec()), Err(PcapError::BadMagic { .. })));
        assert!(matches!(Capture::from_vec(vec![]), Err(PcapError::BadMagic { .. })));
        assert!(matches!(Capture::from_vec(PCAP_MICRO.to_le_bytes().to_vec()), Err(PcapError::Truncated { .. })));
    }

    #[test]
    fn a_truncated_file_yields_what_came_before_then_says_where() {
        let mut f = pcap_with(&[(b"first", 5), (b"second", 6)]);
        f.truncate(f.len() - 3);
        let cap = Capture::from_vec(f).unwrap();
        let out: Vec<_> = cap.records().collect();
        assert_eq!(out.len(), 2);
        let first = out[0].as_ref().unwrap();
        assert_eq!((first.data, first.timestamp_ns), (&b"first"[..], 10_000_005_000));
        let err = out[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("truncated at byte 45"), "{err}");
    }

    #[test]
    fn every_cut_of_a_file_ends_cleanly() {
        let f = pcap_with(&[(b"first", 5), (b"second", 6)]);
        for cut in 0..f.len() {
            if let Ok(cap) = Capture::from_vec(f[..cut].to_vec()) {
                let n = cap.records().count();
                assert!(n <= 3);
            }
        }
    }
}
