//! Frame decoding: link layer, VLAN/MPLS, IP (via etherparse), transport.
//!
//! The link layer walk is done here because it needs things etherparse does
//! not do: more than two VLAN tags, MPLS label stacks, PPPoE, Linux cooked
//! captures v2 and BSD loopback. From the IP header down, etherparse's lax
//! slicer does the work (IPv4 options, IPv6 extension headers, fragments).
//! Transport fields are read at their fixed offsets rather than through a
//! full header parse, so a frame captured with a short snap length still
//! gives its ports and flags.

use etherparse::LaxIpSlice;

use crate::source::LinkType;
use crate::stats::Anomaly;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
/// Deeper label stacks than this are treated as garbage.
const MAX_MPLS_LABELS: usize = 16;
/// Deeper tag stacks than this are treated as garbage.
const MAX_VLAN_TAGS: usize = 8;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// IP fragment information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more: bool,
}

/// ICMP fields the flow engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpFields {
    pub icmp_type: u8,
    pub code: u8,
    /// Echo identifier (bytes 4-5), meaningful for query messages only.
    pub ident: u16,
}

/// What a frame holds, as far as the flow engine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: u16,
    pub inner_vlan: u16,
    /// IPv4 addresses occupy the first four bytes.
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub is_v6: bool,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    /// TCP sequence number (0 when absent).
    pub tcp_seq: u32,
    pub icmp: Option<IcmpFields>,
    /// Set when the frame is an IP fragment (not for atomic fragments).
    pub fragment: Option<Fragment>,
    /// Transport header cut short by the snap length or the packet itself;
    /// whatever fields were present were still read.
    pub l4_truncated: bool,
    /// Transport payload bytes as far as captured.
    pub payload: &'a [u8],
    /// Transport payload length according to the headers (uncaptured bytes
    /// included), used to tell data packets from pure ACKs.
    pub payload_len: u32,
    /// The capture cut the payload short (snap length): `payload` is not
    /// all the packet carried.
    pub payload_cut: bool,
    /// IP bytes: the IP header's length of the whole packet, headers
    /// included (what IPFIX's octetDeltaCount and Zeek's ip_bytes count).
    pub ip_len: u32,
}

/// The result of decoding one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Ip(Packet<'a>),
    /// A frame that carries no IP: counted per ethertype.
    NonIp(u16),
    /// A frame that cannot be decoded: counted per reason.
    Malformed(Anomaly),
}

/// Link-layer facts gathered before the IP header.
/// Why a frame gave no packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    NonIp(u16),
    Malformed(Anomaly),
}

impl Packet<'_> {
    /// A packet with nothing decoded yet.
    pub const EMPTY: Packet<'static> = Packet {
        src_mac: [0; 6],
        dst_mac: [0; 6],
        vlan: 0,
        inner_vlan: 0,
        src_ip: [0; 16],
        dst_ip: [0; 16],
        is_v6: false,
        proto: 0,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        icmp: None,
        fragment: None,
        l4_truncated: false,
        payload: &[],
        payload_len: 0,
        payload_cut: false,
        ip_len: 0,
    };

    /// Keeps the first two non-zero VLAN ids, outer first.
    #[inline]
    fn push_vlan(&mut self, vid: u16) {
        if vid == 0 {
            return;
        }
        if self.vlan == 0 {
            self.vlan = vid;
        } else if self.inner_vlan == 0 {
            self.inner_vlan = vid;
        }
    }
}

#[inline]
fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

#[inline]
fn mac_at(data: &[u8], at: usize) -> [u8; 6] {
    let mut mac = [0u8; 6];
    if let Some(src) = data.get(at..at + 6) {
        mac.copy_from_slice(src);
    }
    mac
}

/// Decodes one frame of the given link type. `vlan_tci` is a tag the
/// capture layer stripped (AF_PACKET rings do).
pub fn decode(link: LinkType, data: &[u8], vlan_tci: Option<u16>) -> Decoded<'_> {
    let mut pkt = Packet::EMPTY;
    match decode_into(link, data, vlan_tci, &mut pkt) {
        Ok(()) => Decoded::Ip(pkt),
        Err(Skip::NonIp(ethertype)) => Decoded::NonIp(ethertype),
        Err(Skip::Malformed(anomaly)) => Decoded::Malformed(anomaly),
    }
}

/// Like [`decode`], into a packet the caller owns: the hot path, where
/// returning a packet by value through three functions cost more than the
/// decoding. `pkt` must start as [`Packet::EMPTY`].
#[inline]
pub fn decode_into<'a>(
    link: LinkType,
    data: &'a [u8],
    vlan_tci: Option<u16>,
    pkt: &mut Packet<'a>,
) -> Result<(), Skip> {
    if let Some(tci) = vlan_tci {
        pkt.push_vlan(tci & 0x0fff);
    }
    let (ethertype, rest) = match link {
        LinkType::Ethernet => {
            if data.len() < 14 {
                return Err(Skip::Malformed(Anomaly::TruncatedLink));
            }
            pkt.dst_mac = mac_at(data, 0);
            pkt.src_mac = mac_at(data, 6);
            (u16::from_be_bytes([data[12], data[13]]), &data[14..])
        }
        LinkType::LinuxSll => {
            if data.len() < 16 {
                return Err(Skip::Malformed(Anomaly::TruncatedLink));
            }
            if be16(data, 4) == Some(6) {
                pkt.src_mac = mac_at(data, 6);
            }
            (be16(data, 14).unwrap_or(0), &data[16..])
        }
        LinkType::LinuxSll2 => {
            if data.len() < 20 {
                return Err(Skip::Malformed(Anomaly::TruncatedLink));
            }
            if data[11] == 6 {
                pkt.src_mac = mac_at(data, 12);
            }
            (be16(data, 0).unwrap_or(0), &data[20..])
        }
        LinkType::RawIp => match data.first().map(|b| b >> 4) {
            Some(4) => (ETHERTYPE_IPV4, data),
            Some(6) => (ETHERTYPE_IPV6, data),
            Some(_) => return Err(Skip::Malformed(Anomaly::BadIpVersion)),
            None => return Err(Skip::Malformed(Anomaly::TruncatedIp)),
        },
        LinkType::Ipv4 => (ETHERTYPE_IPV4, data),
        LinkType::Ipv6 => (ETHERTYPE_IPV6, data),
        LinkType::Null => {
            let Some(family) = data.get(..4) else {
                return Err(Skip::Malformed(Anomaly::TruncatedLink));
            };
            let le = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let be = u32::from_be_bytes([family[0], family[1], family[2], family[3]]);
            let family = if le < 256 { le } else { be };
            match family {
                2 => (ETHERTYPE_IPV4, &data[4..]),
                10 | 24 | 28 | 30 => (ETHERTYPE_IPV6, &data[4..]),
                _ => return Err(Skip::NonIp(0)),
            }
        }
    };
    decode_ethertype(ethertype, rest, pkt)
}

#[inline]
fn decode_ethertype<'a>(
    mut ethertype: u16,
    mut rest: &'a [u8],
    pkt: &mut Packet<'a>,
) -> Result<(), Skip> {
    let mut tags = 0;
    loop {
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return decode_ip(ethertype, rest, pkt),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(Skip::Malformed(Anomaly::TooManyTags));
                }
                let (Some(tci), Some(next)) = (be16(rest, 0), be16(rest, 2)) else {
                    return Err(Skip::Malformed(Anomaly::TruncatedVlan));
                };
                pkt.push_vlan(tci & 0x0fff);
                ethertype = next;
                rest = &rest[4..];
            }
            ETHERTYPE_PPPOE_SESSION => {
                let Some(ppp) = be16(rest, 6) else {
                    return Err(Skip::Malformed(Anomaly::TruncatedLink));
                };
                rest = &rest[8..];
                ethertype = match ppp {
                    0x0021 => ETHERTYPE_IPV4,
                    0x0057 => ETHERTYPE_IPV6,
                    _ => return Err(Skip::NonIp(ETHERTYPE_PPPOE_SESSION)),
                };
            }
            ETHERTYPE_MPLS | ETHERTYPE_MPLS_MC => {
                return match skip_mpls(rest) {
                    Ok((ethertype, ip)) => decode_ip(ethertype, ip, pkt),
                    Err(anomaly) => Err(Skip::Malformed(anomaly)),
                };
            }
            other => return Err(Skip::NonIp(other)),
        }
    }
}

fn skip_mpls(mut rest: &[u8]) -> Result<(u16, &[u8]), Anomaly> {
    for _ in 0..MAX_MPLS_LABELS {
        let Some(label) = rest.get(..4) else {
            return Err(Anomaly::TruncatedMpls);
        };
        let bottom_of_stack = label[2] & 0x01 != 0;
        rest = &rest[4..];
        if bottom_of_stack {
            return match rest.first().map(|b| b >> 4) {
                Some(4) => Ok((ETHERTYPE_IPV4, rest)),
                Some(6) => Ok((ETHERTYPE_IPV6, rest)),
                Some(_) => Err(Anomaly::MplsNotIp),
                None => Err(Anomaly::TruncatedMpls),
            };
        }
    }
    Err(Anomaly::TooManyTags)
}

/// IP protocol number of the IPv4 authentication header, which the fast
/// path leaves to etherparse's full parser.
const IP_AUTH: u8 = 51;

#[inline]
fn decode_ip<'a>(ethertype: u16, bytes: &'a [u8], pkt: &mut Packet<'a>) -> Result<(), Skip> {
    let version = bytes.first().map(|b| b >> 4);
    let expected = if ethertype == ETHERTYPE_IPV4 { 4 } else { 6 };
    match version {
        None => return Err(Skip::Malformed(Anomaly::TruncatedIp)),
        Some(v) if v != expected => return Err(Skip::Malformed(Anomaly::BadIpVersion)),
        _ => {}
    }
    if expected == 4 && bytes.get(9).is_some_and(|&p| p != IP_AUTH) {
        return decode_ipv4(bytes, pkt);
    }
    if expected == 6 && decode_ipv6_plain(bytes, pkt).is_some() {
        return Ok(());
    }
    decode_ip_lax(bytes, pkt)
}

/// IPv4 without an authentication header, read at the header's fixed
/// offsets: the checks and payload bounds of etherparse's
/// `Ipv4HeaderSlice` and `LaxIpv4Slice`, without building either (this is
/// most of the traffic, and the slices cost a third of the decode).
#[inline]
fn decode_ipv4<'a>(bytes: &'a [u8], pkt: &mut Packet<'a>) -> Result<(), Skip> {
    let Some(h) = bytes.first_chunk::<20>() else {
        return Err(Skip::Malformed(Anomaly::TruncatedIp));
    };
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(Skip::Malformed(Anomaly::BadIpHeader));
    }
    if bytes.len() < header_len {
        return Err(Skip::Malformed(Anomaly::TruncatedIp));
    }
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    // A total length below the header's (TSO captures write 0): what came.
    let (payload, incomplete) = if total_len < header_len {
        pkt.ip_len = bytes.len() as u32;
        (&bytes[header_len..], false)
    } else if total_len > bytes.len() {
        pkt.ip_len = total_len as u32;
        (&bytes[header_len..], true)
    } else {
        pkt.ip_len = total_len as u32;
        (&bytes[header_len..total_len], false)
    };
    pkt.src_ip[..4].copy_from_slice(&h[12..16]);
    pkt.dst_ip[..4].copy_from_slice(&h[16..20]);
    let flags_offset = u16::from_be_bytes([h[6], h[7]]);
    let offset = flags_offset & 0x1fff;
    let more = flags_offset & 0x2000 != 0;
    if offset != 0 || more {
        pkt.fragment = Some(Fragment {
            id: u32::from(u16::from_be_bytes([h[4], h[5]])),
            offset,
            more,
        });
    }
    pkt.proto = h[9];
    if offset != 0 {
        pkt.payload = payload;
        return Ok(());
    }
    read_transport(pkt, payload, incomplete);
    uncut_payload_len(pkt, bytes.len());
    Ok(())
}

/// IPv6 extension headers etherparse's lax slicer walks: a packet whose
/// first next header is none of them goes the short way.
const IPV6_EXTENSIONS: [u8; 5] = [0, 43, 44, 51, 60];

/// IPv6 with no extension header (nearly all of it), read at fixed offsets
/// with the payload bounds of etherparse's `LaxIpv6Slice`; `None` leaves
/// the packet to the lax slicer.
#[inline]
fn decode_ipv6_plain<'a>(bytes: &'a [u8], pkt: &mut Packet<'a>) -> Option<()> {
    let h = bytes.first_chunk::<40>()?;
    let next = h[6];
    if IPV6_EXTENSIONS.contains(&next) {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let rest = &bytes[40..];
    // Payload length 0 is a jumbogram (or TSO): what came.
    let (payload, incomplete) = if payload_len == 0 {
        pkt.ip_len = bytes.len() as u32;
        (rest, false)
    } else if payload_len > rest.len() {
        pkt.ip_len = 40 + payload_len as u32;
        (rest, true)
    } else {
        pkt.ip_len = 40 + payload_len as u32;
        (&rest[..payload_len], false)
    };
    pkt.is_v6 = true;
    pkt.src_ip.copy_from_slice(&h[8..24]);
    pkt.dst_ip.copy_from_slice(&h[24..40]);
    pkt.proto = next;
    read_transport(pkt, payload, incomplete);
    uncut_payload_len(pkt, bytes.len());
    Some(())
}

/// A payload the capture cut: its length by the IP header (the headers
/// are what was captured before the payload).
#[inline]
fn uncut_payload_len(pkt: &mut Packet<'_>, captured: usize) {
    if pkt.payload_cut {
        let headers = captured.saturating_sub(pkt.payload.len()) as u32;
        pkt.payload_len = pkt.payload_len.max(pkt.ip_len.saturating_sub(headers));
    }
}

/// Addresses and fragment fields of an IPv4 header, for the lax path.
#[inline]
fn ipv4_fields(h: &etherparse::Ipv4HeaderSlice<'_>, pkt: &mut Packet<'_>) {
    pkt.src_ip[..4].copy_from_slice(&h.source());
    pkt.dst_ip[..4].copy_from_slice(&h.destination());
    let offset = h.fragments_offset().value();
    if offset != 0 || h.more_fragments() {
        pkt.fragment = Some(Fragment {
            id: u32::from(h.identification()),
            offset,
            more: h.more_fragments(),
        });
    }
}

/// IPv6 (extension headers, fragments) and IPv4 with an authentication
/// header, through etherparse's lax slices.
fn decode_ip_lax<'a>(bytes: &'a [u8], pkt: &mut Packet<'a>) -> Result<(), Skip> {
    let ip = match LaxIpSlice::from_slice(bytes) {
        Ok((ip, _ext_err)) => ip,
        Err(etherparse::err::ip::LaxHeaderSliceError::Len(_)) => {
            return Err(Skip::Malformed(Anomaly::TruncatedIp))
        }
        Err(etherparse::err::ip::LaxHeaderSliceError::Content(_)) => {
            return Err(Skip::Malformed(Anomaly::BadIpHeader))
        }
    };
    match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let total = u32::from(h.total_len());
            pkt.ip_len = if total < h.slice().len() as u32 {
                bytes.len() as u32
            } else {
                total
            };
            ipv4_fields(&h, pkt)
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            // Payload length 0 is a jumbogram (or TSO): what came.
            pkt.ip_len = match h.payload_length() {
                0 => bytes.len() as u32,
                n => 40 + u32::from(n),
            };
            pkt.is_v6 = true;
            pkt.src_ip = h.source();
            pkt.dst_ip = h.destination();
            let exts = v6.extensions();
            if let Some(first) = exts.first_header() {
                pkt.fragment = ipv6_fragment(first.0, exts.slice());
            }
        }
    }
    let payload = ip.payload();
    pkt.proto = payload.ip_number.0;
    let l4 = payload.payload;
    if pkt.fragment.is_some_and(|f| f.offset != 0) {
        pkt.payload = l4;
        return Ok(());
    }
    read_transport(pkt, l4, payload.incomplete);
    uncut_payload_len(pkt, bytes.len());
    Ok(())
}

// Always: one copy in each IP path keeps the packet's fields in registers
// (out of line it cost a tenth of the decode in calls and spills).
/// The fragment header among IPv6 extension headers `exts` (the first
/// one `first`), if the packet is a fragment. Walked here with checked
/// bounds: etherparse 0.21's extension iterator trusts the slice its lax
/// parser returns, and reads past it when that parser stopped early (an
/// authentication header followed by a misplaced hop-by-hop header), which
/// a random header found (`fast_paths_agree_with_etherparse`).
fn ipv6_fragment(first: u8, mut exts: &[u8]) -> Option<Fragment> {
    let mut next = first;
    loop {
        let len = match next {
            // Hop-by-hop, routing, destination options: 8-byte units.
            0 | 43 | 60 => (usize::from(*exts.get(1)?) + 1) * 8,
            // Authentication: 4-byte units, less two.
            51 => (usize::from(*exts.get(1)?) + 2) * 4,
            44 => {
                let h = exts.get(..8)?;
                let field = u16::from_be_bytes([h[2], h[3]]);
                let (offset, more) = (field >> 3, field & 1 != 0);
                if offset != 0 || more {
                    return Some(Fragment {
                        id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        offset,
                        more,
                    });
                }
                8
            }
            _ => return None,
        };
        next = *exts.first()?;
        exts = exts.get(len..)?;
    }
}

#[inline(always)]
fn read_transport<'a>(pkt: &mut Packet<'a>, l4: &'a [u8], ip_incomplete: bool) {
    let ports = || Some((be16(l4, 0)?, be16(l4, 2)?));
    match pkt.proto {
        6 => {
            if let Some((s, d)) = ports() {
                pkt.src_port = s;
                pkt.dst_port = d;
            }
            if let Some(seq) = l4.get(4..8) {
                pkt.tcp_seq = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
            }
            match (l4.get(12), l4.get(13)) {
                (Some(&off), Some(&flags)) => {
                    pkt.tcp_flags = flags;
                    let header_len = usize::from(off >> 4) * 4;
                    if header_len < 20 || l4.len() < header_len {
                        pkt.l4_truncated = true;
                    }
                    pkt.payload = l4.get(header_len..).unwrap_or(&[]);
                }
                _ => pkt.l4_truncated = true,
            }
        }
        17 | 132 | 33 | 136 => {
            match ports() {
                Some((s, d)) => {
                    pkt.src_port = s;
                    pkt.dst_port = d;
                }
                None => pkt.l4_truncated = true,
            }
            let header_len = if pkt.proto == 132 { 12 } else { 8 };
            if l4.len() < header_len {
                pkt.l4_truncated = true;
            }
            pkt.payload = l4.get(header_len..).unwrap_or(&[]);
        }
        1 | 58 => match (l4.first(), l4.get(1)) {
            (Some(&icmp_type), Some(&code)) => {
                pkt.icmp = Some(IcmpFields {
                    icmp_type,
                    code,
                    ident: be16(l4, 4).unwrap_or(0),
                });
                if l4.len() < 8 {
                    pkt.l4_truncated = true;
                }
                pkt.payload = l4.get(8..).unwrap_or(&[]);
            }
            _ => pkt.l4_truncated = true,
        },
        _ => pkt.payload = l4,
    }
    pkt.payload_len = pkt.payload.len() as u32;
    pkt.payload_cut = ip_incomplete;
    if pkt.proto == 6 && ip_incomplete {
        // The capture cut the packet: the IP header still tells how much
        // payload there was, which is what tells data from a pure ACK.
        pkt.payload_len = pkt.payload_len.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_frame(payload: usize, v6: bool) -> std::vec::Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]);
        let b = if v6 {
            b.ipv6([1; 16], [2; 16], 64)
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let mut out = std::vec::Vec::new();
        let _ = b
            .tcp(1000, 80, 1, 64_000)
            .ack(1)
            .write(&mut out, &vec![7u8; payload]);
        out
    }

    fn v6_with_exts(first: u8, exts: &[u8], payload: &[u8]) -> std::vec::Vec<u8> {
        let mut b = vec![0x60, 0, 0, 0];
        b.extend_from_slice(&((exts.len() + payload.len()) as u16).to_be_bytes());
        b.push(first);
        b.push(64);
        b.extend_from_slice(&[0xfd; 32]);
        b.extend_from_slice(exts);
        b.extend_from_slice(payload);
        b
    }

    /// A fragment header behind a destination-options header is found,
    /// with its offset, flag and identification.
    #[test]
    fn ipv6_fragment_header_is_found_behind_other_headers() {
        let dest_opts = [44, 0, 1, 4, 0, 0, 0, 0];
        // UDP, offset 185 (x 8 bytes), more fragments, id 0x01020304.
        let frag = [
            17,
            0,
            (185u16 << 3 | 1).to_be_bytes()[0],
            (185u16 << 3 | 1).to_be_bytes()[1],
            1,
            2,
            3,
            4,
        ];
        let exts: std::vec::Vec<u8> = dest_opts.iter().chain(&frag).copied().collect();
        let b = v6_with_exts(60, &exts, &[0; 16]);
        let mut p = Packet::EMPTY;
        assert_eq!(decode_ip(ETHERTYPE_IPV6, &b, &mut p), Ok(()));
        assert_eq!(
            p.fragment,
            Some(Fragment {
                id: 0x0102_0304,
                offset: 185,
                more: true
            })
        );
        assert_eq!(p.proto, 17);
    }

    /// An authentication header followed by a hop-by-hop header (which may
    /// only come first) once made etherparse's extension iterator read past
    /// its slice; now the packet decodes and nothing is read out of bounds
    /// (debug builds check the bounds etherparse leaves unchecked).
    #[test]
    fn ipv6_hop_by_hop_after_auth_reads_nothing_out_of_bounds() {
        let mut auth = [0u8; 160];
        auth[1] = 38; // (38 + 2) * 4 bytes; next header 0, hop-by-hop
        let b = v6_with_exts(51, &auth, &[0; 40]);
        let mut p = Packet::EMPTY;
        assert_eq!(decode_ip(ETHERTYPE_IPV6, &b, &mut p), Ok(()));
        assert_eq!(p.fragment, None);
    }

    /// What IPv4 took before the fixed-offset path: etherparse's header
    /// slice (the reference the fast path must equal).
    fn reference_ipv4<'a>(bytes: &'a [u8], pkt: &mut Packet<'a>) -> Result<(), Skip> {
        use etherparse::err::ipv4::HeaderSliceError;
        let h = match etherparse::Ipv4HeaderSlice::from_slice(bytes) {
            Ok(h) => h,
            Err(HeaderSliceError::Len(_)) => return Err(Skip::Malformed(Anomaly::TruncatedIp)),
            Err(HeaderSliceError::Content(_)) => return Err(Skip::Malformed(Anomaly::BadIpHeader)),
        };
        let header_len = h.slice().len();
        let total_len = usize::from(h.total_len());
        // A total length below the header's (TSO captures write 0): what came.
        pkt.ip_len = (if total_len < header_len {
            bytes.len()
        } else {
            total_len
        }) as u32;
        let (payload, incomplete) = if total_len < header_len {
            (&bytes[header_len..], false)
        } else if total_len > bytes.len() {
            (&bytes[header_len..], true)
        } else {
            (&bytes[header_len..total_len], false)
        };
        ipv4_fields(&h, pkt);
        pkt.proto = h.protocol().0;
        if pkt.fragment.is_some_and(|f| f.offset != 0) {
            pkt.payload = payload;
            return Ok(());
        }
        read_transport(pkt, payload, incomplete);
        uncut_payload_len(pkt, bytes.len());
        Ok(())
    }

    /// The fixed-offset IPv4 and IPv6 paths give exactly what etherparse's
    /// slices gave them, on headers with every length, flag and truncation
    /// a random walk finds (lengths that lie, options, cut captures).
    #[test]
    fn fast_paths_agree_with_etherparse() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let protos = [6u8, 17, 1, 58, 132, 33, 47, 50, 0, 43, 44, 51, 60, 59];
        let (mut fast, mut v4, mut v6) = (0, 0, 0);
        for _ in 0..200_000 {
            let r = next();
            let is_v6 = r & 1 == 1;
            let mut b = std::vec::Vec::new();
            let body = (next() % 1600) as usize;
            let proto = protos[(next() % protos.len() as u64) as usize];
            if is_v6 {
                b.extend_from_slice(&[0x60, 0, 0, 0]);
                let len = match next() % 4 {
                    0 => 0,
                    1 => (next() % 2000) as u16,
                    _ => body as u16,
                };
                b.extend_from_slice(&len.to_be_bytes());
                b.push(proto);
                b.push(64);
                for _ in 0..32 {
                    b.push(next() as u8);
                }
            } else {
                let ihl = if next() % 4 == 0 {
                    (next() % 16) as u8
                } else {
                    5
                };
                b.push(0x40 | ihl);
                b.push(0);
                let hl = usize::from(ihl.max(5)) * 4;
                let total = match next() % 4 {
                    0 => (next() % 2000) as u16,
                    1 => 0,
                    _ => (hl + body) as u16,
                };
                b.extend_from_slice(&total.to_be_bytes());
                b.extend_from_slice(&(next() as u16).to_be_bytes());
                let frag = match next() % 4 {
                    0 => next() as u16,
                    1 => 0x2000,
                    _ => 0x4000,
                };
                b.extend_from_slice(&frag.to_be_bytes());
                b.push(64);
                b.push(proto);
                b.extend_from_slice(&[0, 0]);
                for _ in 0..(hl - 12) {
                    b.push(next() as u8);
                }
            }
            for _ in 0..body {
                b.push(next() as u8);
            }
            let cut = if next() % 3 == 0 {
                (next() as usize) % (b.len() + 1)
            } else {
                b.len()
            };
            let bytes = &b[..cut];
            let ethertype = if is_v6 {
                ETHERTYPE_IPV6
            } else {
                ETHERTYPE_IPV4
            };
            let mut a = Packet::EMPTY;
            let ra = decode_ip(ethertype, bytes, &mut a);
            let mut e = Packet::EMPTY;
            let re = if is_v6 || bytes.get(9) == Some(&IP_AUTH) || bytes.len() < 10 {
                decode_ip_lax(bytes, &mut e)
            } else {
                reference_ipv4(bytes, &mut e)
            };
            assert_eq!(ra, re, "{bytes:02x?}");
            assert_eq!(a, e, "{bytes:02x?}");
            if ra.is_ok() {
                fast += 1;
                if is_v6 {
                    v6 += 1;
                } else {
                    v4 += 1;
                }
            }
        }
        // The walk reached both paths' decoded cases, not only errors.
        assert!(
            fast > 100_000 && v4 > 40_000 && v6 > 40_000,
            "{fast} {v4} {v6}"
        );
    }

    /// IP bytes and payload length come from the headers, also when the
    /// capture cut the packet after its TCP header (`tcpdump -s 54`).
    #[test]
    fn ip_and_payload_lengths_survive_a_cut() {
        for v6 in [false, true] {
            let ip_header = if v6 { 40 } else { 20 };
            let full = tcp_frame(1_000, v6);
            for captured in [full.len(), 14 + ip_header + 20, 14 + ip_header + 20 + 10] {
                let Decoded::Ip(p) = decode(LinkType::Ethernet, &full[..captured], None) else {
                    panic!("v6 {v6}, {captured} bytes: not IP");
                };
                assert_eq!(
                    p.ip_len,
                    (ip_header + 20 + 1_000) as u32,
                    "v6 {v6} {captured}"
                );
                assert_eq!(p.payload_len, 1_000, "v6 {v6} {captured}");
                assert_eq!(p.payload_cut, captured < full.len());
            }
        }
    }
}
