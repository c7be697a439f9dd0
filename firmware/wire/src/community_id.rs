//! Community ID v1 (Corelight's flow hash, as Zeek, Suricata, Arkime,
//! Elastic and Wireshark compute it): SHA-1 over a seed, both addresses,
//! the protocol and both ports (ICMP's type and its counterpart), ordered
//! so both directions of a conversation hash alike; "1:" and the digest
//! in base64. Follows the reference implementation (the `communityid`
//! Python package), against which the tests check it.

use core::net::IpAddr;

use sha1::{Digest, Sha1};

use crate::record::{proto, FlowRecord};

/// A flow's Community ID as text: "1:" and 28 characters of base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommunityId([u8; 30]);

impl CommunityId {
    /// The ID of `r` with `seed` (0 unless the deployment chose another).
    pub fn of(r: &FlowRecord, seed: u16) -> CommunityId {
        let (mut sport, mut dport, one_way) = match (r.proto, r.icmp) {
            (proto::ICMP, Some((t, c))) => icmp_ports(t, c, ICMP4_PAIRS),
            (proto::ICMPV6, Some((t, c))) => icmp_ports(t, c, ICMP6_PAIRS),
            _ => (r.src.port, r.dst.port, false),
        };
        let (mut saddr, mut daddr) = (r.src.addr, r.dst.addr);
        let ordered = one_way || octets_lt(&saddr, &daddr) || (saddr == daddr && sport < dport);
        if !ordered {
            core::mem::swap(&mut saddr, &mut daddr);
            core::mem::swap(&mut sport, &mut dport);
        }
        let mut h = Sha1::new();
        h.update(seed.to_be_bytes());
        for a in [saddr, daddr] {
            match a {
                IpAddr::V4(a) => h.update(a.octets()),
                IpAddr::V6(a) => h.update(a.octets()),
            }
        }
        h.update([r.proto, 0]);
        if matches!(
            r.proto,
            proto::TCP | proto::UDP | proto::SCTP | proto::ICMP | proto::ICMPV6
        ) {
            h.update(sport.to_be_bytes());
            h.update(dport.to_be_bytes());
        }
        let digest: [u8; 20] = h.finalize().into();
        let mut text = [b'='; 30];
        text[0] = b'1';
        text[1] = b':';
        base64(&digest, &mut text[2..]);
        CommunityId(text)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into it.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl core::fmt::Display for CommunityId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ICMP request/response types and their counterparts (Zeek's mapping,
/// which the reference mirrors); other types are one-way.
const ICMP4_PAIRS: &[(u8, u8)] = &[(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)];
const ICMP6_PAIRS: &[(u8, u8)] = &[
    (128, 129),
    (130, 131),
    (133, 134),
    (135, 136),
    (139, 140),
    (144, 145),
];

fn icmp_ports(t: u8, code: u8, pairs: &[(u8, u8)]) -> (u16, u16, bool) {
    let other = pairs.iter().find_map(|&(a, b)| match t {
        _ if t == a => Some(b),
        _ if t == b => Some(a),
        _ => None,
    });
    match other {
        Some(o) => (t.into(), o.into(), false),
        None => (t.into(), code.into(), true),
    }
}

fn octets_lt(a: &IpAddr, b: &IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() < b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() < b.octets(),
        // A record has one family; order by it if not.
        (IpAddr::V4(_), IpAddr::V6(_)) => true,
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

/// Standard base64 of 20 bytes into 28 characters (the last one stays
/// the '=' of padding). Hand-written: 12 lines for one fixed length.
fn base64(digest: &[u8; 20], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (i, chunk) in digest.chunks(3).enumerate() {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..=chunk.len() {
            out[i * 4 + k] = ALPHABET[(n >> (18 - 6 * k) & 63) as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Endpoint;

    fn flow(p: u8, src: &str, sport: u16, dst: &str, dport: u16) -> FlowRecord {
        FlowRecord {
            proto: p,
            src: Endpoint {
                addr: src.parse().unwrap(),
                port: sport,
                ..Endpoint::default()
            },
            dst: Endpoint {
                addr: dst.parse().unwrap(),
                port: dport,
                ..Endpoint::default()
            },
            ..FlowRecord::default()
        }
    }

    /// The specification's own examples (community-id-spec, baseline).
    #[test]
    fn the_specification_examples() {
        let tcp = flow(6, "128.232.110.120", 34855, "66.35.250.204", 80);
        assert_eq!(
            CommunityId::of(&tcp, 0).as_str(),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            CommunityId::of(&tcp, 1).as_str(),
            "1:3V71V58M3Ksw/yuFALMcW0LAHvc="
        );
        let back = flow(6, "66.35.250.204", 80, "128.232.110.120", 34855);
        assert_eq!(CommunityId::of(&back, 0), CommunityId::of(&tcp, 0));
        let mut echo = flow(1, "192.168.0.89", 0, "192.168.0.1", 0);
        echo.icmp = Some((8, 0));
        assert_eq!(
            CommunityId::of(&echo, 0).as_str(),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        let mut reply = flow(1, "192.168.0.1", 0, "192.168.0.89", 0);
        reply.icmp = Some((0, 0));
        assert_eq!(CommunityId::of(&reply, 0), CommunityId::of(&echo, 0));
    }
}
