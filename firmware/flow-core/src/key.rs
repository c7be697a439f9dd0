//! Flow keys: one key for both directions of a conversation.

use crate::decode::{IcmpFields, Packet};

/// VLANs + protocol + the two (address, port) ends in canonical order, so a
/// packet and its reply find the same flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowKey {
    /// `(address, port)` ends, the smaller first.
    pub addrs: [[u8; 16]; 2],
    pub ports: [u16; 2],
    /// Outer VLAN in the high half, inner in the low half.
    pub vlans: u32,
    pub proto: u8,
    pub is_v6: bool,
    /// Distinguishes ICMP conversations: the query type for echo-like
    /// messages, type and code for the rest.
    pub icmp_class: u16,
}

impl FlowKey {
    /// The key as six words: what the hash reads (a derived `Hash` writes
    /// every field and array length on its own, four times the work).
    #[inline]
    pub fn words(&self) -> [u64; 6] {
        let w = |a: &[u8; 16], half: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&a[half * 8..half * 8 + 8]);
            u64::from_ne_bytes(b)
        };
        [
            w(&self.addrs[0], 0),
            w(&self.addrs[0], 1),
            w(&self.addrs[1], 0),
            w(&self.addrs[1], 1),
            u64::from(self.ports[0])
                | u64::from(self.ports[1]) << 16
                | u64::from(self.icmp_class) << 32
                | u64::from(self.proto) << 48
                | u64::from(self.is_v6) << 56,
            u64::from(self.vlans),
        ]
    }
}

impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        for w in self.words() {
            state.write_u64(w);
        }
    }
}

/// ICMP query types and the reply type that answers each (v4, then v6).
const ICMP_QUERIES: [(u8, u8, u8); 6] = [
    (1, 8, 0),      // echo
    (1, 13, 14),    // timestamp
    (1, 15, 16),    // information
    (1, 17, 18),    // address mask
    (58, 128, 129), // echo
    (58, 139, 140), // node information
];

/// For query/reply ICMP messages: the query type and whether this message
/// is the reply.
fn icmp_query(proto: u8, icmp_type: u8) -> Option<(u8, bool)> {
    ICMP_QUERIES.iter().find_map(|&(p, query, reply)| {
        (p == proto && (icmp_type == query || icmp_type == reply))
            .then_some((query, icmp_type == reply))
    })
}

/// The key of a packet, and whether the packet travels from the key's
/// second end to its first.
#[inline]
pub fn key_of(pkt: &Packet<'_>, ports: (u16, u16)) -> (FlowKey, bool) {
    let (mut sport, mut dport) = ports;
    let mut icmp_class = 0;
    if let Some(IcmpFields {
        icmp_type,
        code,
        ident,
    }) = pkt.icmp
    {
        match icmp_query(pkt.proto, icmp_type) {
            Some((query, _)) => {
                // Request and reply share the identifier: same flow.
                icmp_class = 0x8000 | u16::from(query);
                sport = ident;
                dport = ident;
            }
            None => {
                icmp_class = u16::from_be_bytes([icmp_type, code]);
                sport = 0;
                dport = 0;
            }
        }
    }
    // Canonical order: the smaller (address, port) first.
    // As big-endian integers: the same order as the bytes', in two compares.
    let (src, dst) = (
        u128::from_be_bytes(pkt.src_ip),
        u128::from_be_bytes(pkt.dst_ip),
    );
    let reversed = match src.cmp(&dst) {
        core::cmp::Ordering::Greater => true,
        core::cmp::Ordering::Less => false,
        core::cmp::Ordering::Equal => sport > dport,
    };
    let (lo, hi) = if reversed {
        ((pkt.dst_ip, dport), (pkt.src_ip, sport))
    } else {
        ((pkt.src_ip, sport), (pkt.dst_ip, dport))
    };
    let key = FlowKey {
        addrs: [lo.0, hi.0],
        ports: [lo.1, hi.1],
        vlans: (u32::from(pkt.vlan) << 16) | u32::from(pkt.inner_vlan),
        proto: pkt.proto,
        is_v6: pkt.is_v6,
        icmp_class,
    };
    (key, reversed)
}

/// Whether an ICMP message is the reply of a query/reply pair: the side that
/// sent it is the responder even when the query was not seen.
pub fn is_icmp_reply(proto: u8, icmp: Option<IcmpFields>) -> bool {
    icmp.and_then(|i| icmp_query(proto, i.icmp_type))
        .is_some_and(|(_, reply)| reply)
}
