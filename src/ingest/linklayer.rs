//! From a captured link-layer frame to the UDP datagram inside it: Ethernet (with any number of
//! 802.1Q / 802.1ad tags), Linux cooked captures v1 and v2 (`tcpdump -i any`), raw IP and BSD loopback;
//! IPv4 and IPv6. UDP checksums are never checked: loopback captures carry bad ones (offload).

/// Link-layer header types (the `LINKTYPE_*` registry) that hitgate decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Null,
    Ethernet,
    Raw,
    LinuxSll,
    LinuxSll2,
    Ipv4,
    Ipv6,
    Other(u32),
}

impl LinkType {
    pub fn from_code(code: u32) -> LinkType {
        match code {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            101 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            other => LinkType::Other(other),
        }
    }

    pub fn code(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Other(c) => c,
        }
    }
}

/// A UDP datagram found in a captured frame; `payload` borrows the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// Why a captured frame carries no usable UDP datagram. Each is counted, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Link type hitgate does not decode.
    UnknownLinkType,
    /// Not IPv4/IPv6 (ARP, LLDP, ...).
    NotIp,
    /// IP but not UDP.
    NotUdp,
    /// A fragment of a larger IP datagram (not reassembled).
    IpFragment,
    /// Headers or payload cut short (snap length, damaged record).
    Truncated,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::UnknownLinkType,
        SkipReason::NotIp,
        SkipReason::NotUdp,
        SkipReason::IpFragment,
        SkipReason::Truncated,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SkipReason::UnknownLinkType => "unknown_link_type",
            SkipReason::NotIp => "not_ip",
            SkipReason::NotUdp => "not_udp",
            SkipReason::IpFragment => "ip_fragment",
            SkipReason::Truncated => "truncated",
        }
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const VLAN_TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const IPPROTO_UDP: u8 = 17;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Finds the UDP datagram in one captured frame.
///
/// # Errors
/// The [`SkipReason`] when there is none.
pub fn decode_udp(link: LinkType, frame: &[u8]) -> Result<UdpDatagram<'_>, SkipReason> {
    let (ethertype, l3) = match link {
        LinkType::Ethernet => {
            let mut at = 12;
            let mut ethertype = be16(frame, at).ok_or(SkipReason::Truncated)?;
            while VLAN_TAGS.contains(&ethertype) {
                at += 4;
                ethertype = be16(frame, at).ok_or(SkipReason::Truncated)?;
            }
            (ethertype, frame.get(at + 2..).ok_or(SkipReason::Truncated)?)
        }
        LinkType::LinuxSll => {
            (be16(frame, 14).ok_or(SkipReason::Truncated)?, frame.get(16..).ok_or(SkipReason::Truncated)?)
        }
        LinkType::LinuxSll2 => {
            (be16(frame, 0).ok_or(SkipReason::Truncated)?, frame.get(20..).ok_or(SkipReason::Truncated)?)
        }
        LinkType::Null => {
            // BSD loopback: the address family in host byte order; 2 is AF_INET everywhere, the
            // IPv6 values differ per OS, so the IP version nibble decides.
            let rest = frame.get(4..).ok_or(SkipReason::Truncated)?;
            (ip_version_ethertype(rest)?, rest)
        }
        LinkType::Raw => (ip_version_ethertype(frame)?, frame),
        LinkType::Ipv4 => (ETHERTYPE_IPV4, frame),
        LinkType::Ipv6 => (ETHERTYPE_IPV6, frame),
        LinkType::Other(_) => return Err(SkipReason::UnknownLinkType),
    };
    let udp = match ethertype {
        ETHERTYPE_IPV4 => ipv4_udp(l3)?,
        ETHERTYPE_IPV6 => ipv6_udp(l3)?,
        _ => return Err(SkipReason::NotIp),
    };
    let src_port = be16(udp, 0).ok_or(SkipReason::Truncated)?;
    let dst_port = be16(udp, 2).ok_or(SkipReason::Truncated)?;
    let udp_len = be16(udp, 4).ok_or(SkipReason::Truncated)? as usize;
    if udp_len < 8 {
        return Err(SkipReason::Truncated);
    }
    // Ethernet may pad short frames: the UDP length says where the payload ends.
    let payload = udp.get(8..udp_len).ok_or(SkipReason::Truncated)?;
    Ok(UdpDatagram { src_port, dst_port, payload })
}

fn ip_version_ethertype(l3: &[u8]) -> Result<u16, SkipReason> {
    match l3.first().map(|b| b >> 4) {
        Some(4) => Ok(ETHERTYPE_IPV4),
        Some(6) => Ok(ETHERTYPE_IPV6),
        Some(_) => Err(SkipReason::NotIp),
        None => Err(SkipReason::Truncated),
    }
}

fn ipv4_udp(ip: &[u8]) -> Result<&[u8], SkipReason> {
    let first = *ip.first().ok_or(SkipReason::Truncated)?;
    if first >> 4 != 4 {
        return Err(SkipReason::NotIp);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || ip.len() < header_len {
        return Err(SkipReason::Truncated);
    }
    let total_len = be16(ip, 2).ok_or(SkipReason::Truncated)? as usize;
    let flags_fragment = be16(ip, 6).ok_or(SkipReason::Truncated)?;
    if ip[9] != IPPROTO_UDP {
        return Err(SkipReason::NotUdp);
    }
    let more_fragments = flags_fragment & 0x2000 != 0;
    if more_fragments || flags_fragment & 0x1fff != 0 {
        return Err(SkipReason::IpFragment);
    }
    // A total length of 0 appears with TCP segmentation offload captures; trust the capture then.
    let end = if total_len == 0 { ip.len() } else { total_len };
    ip.get(header_len..end).ok_or(SkipReason::Truncated)
}

fn ipv6_udp(ip: &[u8]) -> Result<&[u8], SkipReason> {
    if ip.len() < 40 {
        return Err(SkipReason::Truncated);
    }
    if ip[0] >> 4 != 6 {
        return Err(SkipReason::NotIp);
    }
    match ip[6] {
        IPPROTO_UDP => {}
        44 => return Err(SkipReason::IpFragment),
        _ => return Err(SkipReason::NotUdp),
    }
    let payload_len = be16(ip, 4).ok_or(SkipReason::Truncated)? as usize;
    ip.get(40..40 + payload_len).ok_or(SkipReason::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp_packet(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        p.extend_from_slice(&1234u16.to_be_bytes());
        p.extend_from_slice(&dst_port.to_be_bytes());
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0xde, 0xad]); // a wrong checksum, as loopback captures have
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ethernet_with_two_vlan_tags_and_padding() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        f.extend(ipv4_udp_packet(50001, b"abc"));
        f.extend_from_slice(&[0u8; 20]); // Ethernet padding
        let d = decode_udp(LinkType::Ethernet, &f).unwrap();
        assert_eq!((d.src_port, d.dst_port, d.payload), (1234, 50001, &b"abc"[..]));
    }

    #[test]
    fn cooked_captures_v1_and_v2() {
        let ip = ipv4_udp_packet(50002, b"xyz");
        let mut v1 = vec![0u8; 14];
        v1.extend_from_slice(&[0x08, 0x00]);
        v1.extend_from_slice(&ip);
        assert_eq!(decode_udp(LinkType::LinuxSll, &v1).unwrap().dst_port, 50002);
        let mut v2 = vec![0x08, 0x00];
        v2.extend_from_slice(&[0u8; 18]);
        v2.extend_from_slice(&ip);
        assert_eq!(decode_udp(LinkType::LinuxSll2, &v2).unwrap().payload, b"xyz");
        assert_eq!(decode_udp(LinkType::Raw, &ip).unwrap().payload, b"xyz");
    }

    #[test]
    fn every_prefix_of_a_frame_is_counted_not_a_panic() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend(ipv4_udp_packet(50001, &[7u8; 40]));
        for cut in 0..f.len() {
            assert!(decode_udp(LinkType::Ethernet, &f[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_udp(LinkType::Ethernet, &f).is_ok());
    }

    #[test]
    fn foreign_traffic_is_skipped_with_its_reason() {
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 0]);
        assert_eq!(decode_udp(LinkType::Ethernet, &arp), Err(SkipReason::NotIp));
        let mut tcp = ipv4_udp_packet(1, b"");
        tcp[9] = 6;
        assert_eq!(decode_udp(LinkType::Raw, &tcp), Err(SkipReason::NotUdp));
        let mut frag = ipv4_udp_packet(1, b"");
        frag[6] = 0x20;
        assert_eq!(decode_udp(LinkType::Raw, &frag), Err(SkipReason::IpFragment));
        assert_eq!(decode_udp(LinkType::Other(147), &frag), Err(SkipReason::UnknownLinkType));
    }
}
