//! IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) export over UDP.
//!
//! IPFIX carries each flow as one biflow record (RFC 5103): the forward
//! counters are the initiator's, the reverse ones (the same element numbers
//! with the enterprise bit and PEN 29305) the responder's. NetFlow v9 has no
//! biflows: each flow becomes one record per direction that carried packets.
//! Octet counts are IP bytes, as RFC 7012 defines octetDeltaCount (and v9
//! IN_BYTES); the frame bytes go as layer2OctetDeltaCount (IPFIX only).
//! Each tap is an observation domain of its own (its id a hash of the tap
//! id, the same across restarts; sequence numbers and templates are per
//! domain), and IPFIX records carry the tap id as observationDomainName
//! (300, variable length). An options record would name the domain once,
//! but nfcapd and Wireshark disagree on whether it counts in the sequence
//! numbers, so one of them would report a sequence failure each time it
//! went. NetFlow v9 puts the domain in its source id.
//! Templates go out with the first message and again every
//! `template_interval` (UDP collectors learn them only from the wire).
//! Hand-written: the Rust IPFIX crates are parsers for collectors, and the
//! encoding is a few fixed-size big-endian fields.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pitap_wire::{has_ports, EndReason, FlowRecord};

use super::Exporter;
use crate::flow::StoredFlow;

/// Messages stay below this size (an Ethernet MTU with room for tunnels).
pub const MAX_MESSAGE: usize = 1400;
const TEMPLATE_V4: u16 = 256;
const TEMPLATE_V6: u16 = 257;
/// RFC 5103's enterprise number for reverse information elements.
pub const REVERSE_PEN: u32 = 29305;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Ipfix,
    NetflowV9,
}

/// (element id, length, enterprise number of an enterprise-specific one).
type Element = (u16, u16, Option<u32>);
const REVERSE: Option<u32> = Some(REVERSE_PEN);
/// The Community ID's element number under the PEN the collector is given
/// (`[export] ipfix_community_id_pen`): IANA has none for it.
const COMMUNITY_ID_IE: u16 = 1;
/// "1:" and the base64 of a SHA-1.
const COMMUNITY_ID_LEN: u16 = 30;
/// A variable-length element (RFC 7011 7): a length byte, then the value.
const VARIABLE: u16 = 0xffff;

fn ipfix_elements(v6: bool, community_pen: Option<u32>) -> Vec<Element> {
    let (src, dst, icmp) = if v6 { (27, 28, 139) } else { (8, 12, 32) };
    let a = if v6 { 16 } else { 4 };
    let mut elements = vec![
        (152, 8, None),        // flowStartMilliseconds
        (153, 8, None),        // flowEndMilliseconds
        (src, a, None),        // sourceIPv{4,6}Address
        (dst, a, None),        // destinationIPv{4,6}Address
        (7, 2, None),          // sourceTransportPort
        (11, 2, None),         // destinationTransportPort
        (4, 1, None),          // protocolIdentifier
        (6, 2, None),          // tcpControlBits
        (2, 8, None),          // packetDeltaCount
        (1, 8, None),          // octetDeltaCount (IP bytes)
        (352, 8, None),        // layer2OctetDeltaCount (frame bytes)
        (6, 2, REVERSE),       // reverse tcpControlBits
        (2, 8, REVERSE),       // reversePacketDeltaCount
        (1, 8, REVERSE),       // reverseOctetDeltaCount
        (352, 8, REVERSE),     // reverseLayer2OctetDeltaCount
        (56, 6, None),         // sourceMacAddress
        (80, 6, None),         // destinationMacAddress
        (58, 2, None),         // vlanId
        (icmp, 2, None),       // icmpTypeCodeIPv{4,6}
        (136, 1, None),        // flowEndReason
        (239, 1, None),        // biflowDirection
        (300, VARIABLE, None), // observationDomainName: the tap id
    ];
    if let Some(pen) = community_pen {
        elements.push((COMMUNITY_ID_IE, COMMUNITY_ID_LEN, Some(pen)));
    }
    elements
}

fn v9_elements(v6: bool) -> Vec<Element> {
    let (src, dst) = if v6 { (27, 28) } else { (8, 12) };
    let a = if v6 { 16 } else { 4 };
    vec![
        (src, a, None), // IPV{4,6}_SRC_ADDR
        (dst, a, None), // IPV{4,6}_DST_ADDR
        (7, 2, None),   // L4_SRC_PORT
        (11, 2, None),  // L4_DST_PORT
        (4, 1, None),   // PROTOCOL
        (6, 1, None),   // TCP_FLAGS
        (2, 8, None),   // IN_PKTS
        (1, 8, None),   // IN_BYTES (IP bytes)
        (22, 4, None),  // FIRST_SWITCHED (ms of sysUptime)
        (21, 4, None),  // LAST_SWITCHED
        (56, 6, None),  // IN_SRC_MAC
        (80, 6, None),  // IN_DST_MAC
        (58, 2, None),  // SRC_VLAN
        (32, 2, None),  // ICMP_TYPE (type * 256 + code)
    ]
}

/// A record's length with `name` as its variable-length value.
fn record_len(elements: &[Element], name: &str) -> usize {
    elements
        .iter()
        .map(|e| match e.1 {
            VARIABLE => 1 + name.len().min(254),
            n => usize::from(n),
        })
        .sum()
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

/// An IPv4-mapped address exported as IPv4, like the tap saw it on the wire.
fn family_v6(r: &FlowRecord) -> bool {
    r.src.addr.is_ipv6() || r.dst.addr.is_ipv6()
}

fn end_reason(r: &FlowRecord) -> u8 {
    // RFC 5102 flowEndReason: 1 idle, 2 active, 3 end of flow, 4 forced, 5 lack of resources.
    match r.end_reason {
        EndReason::Idle => 1,
        EndReason::Active => 2,
        EndReason::TcpClose | EndReason::TcpReset => 3,
        EndReason::Shutdown => 4,
        EndReason::Evicted => 5,
    }
}

/// A side's IP bytes. Records of taps from before IP bytes were counted
/// carry none: their frame bytes less an Ethernet header a packet.
pub fn ip_octets(c: &pitap_wire::SideCounters) -> u64 {
    if c.ip_bytes == 0 && c.bytes > 0 {
        c.bytes.saturating_sub(14 * c.packets)
    } else {
        c.ip_bytes
    }
}

fn icmp_type_code(r: &FlowRecord) -> u16 {
    r.icmp.map_or(0, |(t, c)| u16::from(t) << 8 | u16::from(c))
}

/// One IPFIX biflow record's bytes (template 256 or 257 order), with the
/// Community ID last if the template has it.
pub fn ipfix_record(r: &FlowRecord, tap: &str, community_id: bool, out: &mut Vec<u8>) {
    let ports = has_ports(r.proto);
    out.extend_from_slice(&r.start_ms.to_be_bytes());
    out.extend_from_slice(&r.end_ms.to_be_bytes());
    put_addr(out, r.src.addr);
    put_addr(out, r.dst.addr);
    out.extend_from_slice(&(if ports { r.src.port } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(if ports { r.dst.port } else { 0 }).to_be_bytes());
    out.push(r.proto);
    out.extend_from_slice(&u16::from(r.src.counters.tcp_flags).to_be_bytes());
    out.extend_from_slice(&r.src.counters.packets.to_be_bytes());
    out.extend_from_slice(&ip_octets(&r.src.counters).to_be_bytes());
    out.extend_from_slice(&r.src.counters.bytes.to_be_bytes());
    out.extend_from_slice(&u16::from(r.dst.counters.tcp_flags).to_be_bytes());
    out.extend_from_slice(&r.dst.counters.packets.to_be_bytes());
    out.extend_from_slice(&ip_octets(&r.dst.counters).to_be_bytes());
    out.extend_from_slice(&r.dst.counters.bytes.to_be_bytes());
    out.extend_from_slice(&r.src.mac);
    out.extend_from_slice(&r.dst.mac);
    out.extend_from_slice(&r.vlan.to_be_bytes());
    out.extend_from_slice(&icmp_type_code(r).to_be_bytes());
    out.push(end_reason(r));
    out.push(1); // biflowDirection: the source is the initiator
                 // Tap ids are at most 32 bytes: one length byte.
    let name = &tap.as_bytes()[..tap.len().min(254)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    if community_id {
        let id = pitap_wire::community_id::CommunityId::of(r, 0);
        let mut bytes = [0u8; COMMUNITY_ID_LEN as usize];
        let text = id.as_str().as_bytes();
        let n = text.len().min(bytes.len());
        bytes[..n].copy_from_slice(&text[..n]);
        out.extend_from_slice(&bytes);
    }
}

/// NetFlow v9 records for one flow: initiator->responder, and the reverse
/// if the responder sent anything. Times relative to `base_ms` (sysUptime 0).
pub fn v9_records(r: &FlowRecord, base_ms: u64, out: &mut Vec<u8>) -> usize {
    let ports = has_ports(r.proto);
    let rel = |t: u64| (t.saturating_sub(base_ms)).min(u64::from(u32::MAX)) as u32;
    let mut n = 0;
    for (a, b) in [(&r.src, &r.dst), (&r.dst, &r.src)] {
        if n == 1 && a.counters.packets == 0 {
            break;
        }
        put_addr(out, a.addr);
        put_addr(out, b.addr);
        out.extend_from_slice(&(if ports { a.port } else { 0 }).to_be_bytes());
        out.extend_from_slice(&(if ports { b.port } else { 0 }).to_be_bytes());
        out.push(r.proto);
        out.push(a.counters.tcp_flags);
        out.extend_from_slice(&a.counters.packets.to_be_bytes());
        out.extend_from_slice(&ip_octets(&a.counters).to_be_bytes());
        out.extend_from_slice(&rel(r.start_ms).to_be_bytes());
        out.extend_from_slice(&rel(r.end_ms).to_be_bytes());
        out.extend_from_slice(&a.mac);
        out.extend_from_slice(&b.mac);
        out.extend_from_slice(&r.vlan.to_be_bytes());
        out.extend_from_slice(&(if n == 0 { icmp_type_code(r) } else { 0 }).to_be_bytes());
        n += 1;
    }
    n
}

fn template_set(protocol: Protocol, community_pen: Option<u32>) -> Vec<u8> {
    let mut set = Vec::new();
    let set_id: u16 = if protocol == Protocol::Ipfix { 2 } else { 0 };
    set.extend_from_slice(&set_id.to_be_bytes());
    set.extend_from_slice(&[0, 0]);
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let elements = match protocol {
            Protocol::Ipfix => ipfix_elements(v6, community_pen),
            Protocol::NetflowV9 => v9_elements(v6),
        };
        set.extend_from_slice(&id.to_be_bytes());
        set.extend_from_slice(&(elements.len() as u16).to_be_bytes());
        for (ie, len, pen) in elements {
            match pen {
                Some(pen) => {
                    set.extend_from_slice(&(ie | 0x8000).to_be_bytes());
                    set.extend_from_slice(&len.to_be_bytes());
                    set.extend_from_slice(&pen.to_be_bytes());
                }
                None => {
                    set.extend_from_slice(&ie.to_be_bytes());
                    set.extend_from_slice(&len.to_be_bytes());
                }
            }
        }
    }
    let len = set.len() as u16;
    set[2..4].copy_from_slice(&len.to_be_bytes());
    set
}

/// A tap's observation domain id: the first 31 bits of the SHA-1 of its
/// id (never 0), so restarts and other collectors give it the same.
pub fn domain_of(tap: &str) -> u32 {
    use sha1::{Digest, Sha1};
    let d: [u8; 20] = Sha1::digest(tap.as_bytes()).into();
    (u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff).max(1)
}

/// Builds messages: the header, optionally the templates, then data sets.
pub struct Encoder {
    pub protocol: Protocol,
    pub domain: u32,
    /// The domain's name (the tap id), in every IPFIX record.
    name: Option<String>,
    /// IPFIX: data records sent so far; v9: messages sent so far.
    sequence: u32,
    /// Where IPFIX records carry the Community ID: its enterprise number.
    community_pen: Option<u32>,
}

impl Encoder {
    pub fn new(protocol: Protocol, domain: u32) -> Encoder {
        Encoder {
            protocol,
            domain,
            name: None,
            sequence: 0,
            community_pen: None,
        }
    }

    /// IPFIX records carry the Community ID as element 1 of `pen`.
    pub fn with_community_id(mut self, pen: Option<u32>) -> Encoder {
        self.community_pen = pen.filter(|_| self.protocol == Protocol::Ipfix);
        self
    }

    fn tap(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// The encoder of a tap's own domain, named by the tap id.
    pub fn for_tap(protocol: Protocol, tap: &str) -> Encoder {
        Encoder {
            name: Some(tap.to_string()),
            ..Encoder::new(protocol, domain_of(tap))
        }
    }

    /// Encodes flows into as many messages as needed; `templates` puts the
    /// template set at the head of the first. `now_ms` is the export time.
    pub fn encode(&mut self, flows: &[&FlowRecord], templates: bool, now_ms: u64) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        let mut rest: Vec<&FlowRecord> = flows.to_vec();
        let mut with_templates = templates;
        while !rest.is_empty() || with_templates {
            let (msg, used) = self.message(&rest, with_templates, now_ms);
            messages.push(msg);
            with_templates = false;
            rest.drain(..used);
            if used == 0 && !rest.is_empty() {
                break; // cannot happen: a record is far smaller than a message
            }
        }
        messages
    }

    fn elements(&self, v6: bool) -> Vec<Element> {
        match self.protocol {
            Protocol::Ipfix => ipfix_elements(v6, self.community_pen),
            Protocol::NetflowV9 => v9_elements(v6),
        }
    }

    /// One message from the head of `flows` (sorted by family): as many
    /// records as fit in MAX_MESSAGE and, for v9, in one sysUptime span
    /// (u32 milliseconds: about 49 days between the earliest start and the
    /// export time). Returns the message and the flows it holds.
    fn message(&mut self, flows: &[&FlowRecord], templates: bool, now_ms: u64) -> (Vec<u8>, usize) {
        let v9 = self.protocol == Protocol::NetflowV9;
        let header_len = if v9 { 20 } else { 16 };
        let templates_set = if templates {
            template_set(self.protocol, self.community_pen)
        } else {
            Vec::new()
        };
        let mut size = header_len + templates_set.len();
        let mut chosen = 0;
        let mut family = None;
        let (mut first, mut last) = (u64::MAX, 0u64);
        for r in flows {
            let v6 = family_v6(r);
            let records = if v9 { 2 } else { 1 };
            // A new set: its header and up to 3 bytes of padding.
            let set_cost = if family != Some(v6) { 4 + 3 } else { 0 };
            let cost = set_cost + records * record_len(&self.elements(v6), self.tap());
            if size + cost > MAX_MESSAGE {
                break;
            }
            if v9 {
                let (f, l) = (first.min(r.start_ms), last.max(r.end_ms));
                if l.div_ceil(1000) * 1000 - f.saturating_sub(1000) > u64::from(u32::MAX)
                    && chosen > 0
                {
                    break;
                }
                (first, last) = (f, l);
            }
            size += cost;
            family = Some(v6);
            chosen += 1;
        }
        let chosen_flows = &flows[..chosen];
        // v9 times are relative to sysUptime; the export time is the latest
        // flow end (replayed flows keep their own times) and sysUptime 0 is a
        // second before the first flow (nfdump reads FIRST_SWITCHED 0 as unset).
        let export_ms = if v9 && chosen > 0 {
            last.div_ceil(1000) * 1000
        } else {
            now_ms
        };
        let base_ms = if chosen > 0 {
            first.min(export_ms).saturating_sub(1000)
        } else {
            export_ms
        };
        let mut body = templates_set;
        let mut count: u16 = if templates { 2 } else { 0 };
        let mut records = 0u32;
        for v6 in [false, true] {
            let group: Vec<&&FlowRecord> =
                chosen_flows.iter().filter(|r| family_v6(r) == v6).collect();
            if group.is_empty() {
                continue;
            }
            let id = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
            let mut set = Vec::new();
            set.extend_from_slice(&id.to_be_bytes());
            set.extend_from_slice(&[0, 0]);
            for r in group {
                if v9 {
                    let n = v9_records(r, base_ms, &mut set);
                    count += n as u16;
                    records += n as u32;
                } else {
                    let community_id = self.community_pen.is_some();
                    ipfix_record(r, self.tap(), community_id, &mut set);
                    records += 1;
                }
            }
            while set.len() % 4 != 0 {
                set.push(0); // padding to 32 bits (optional in IPFIX, usual in v9)
            }
            let len = set.len() as u16;
            set[2..4].copy_from_slice(&len.to_be_bytes());
            body.extend(set);
        }
        let mut msg = Vec::with_capacity(header_len + body.len());
        if v9 {
            msg.extend_from_slice(&9u16.to_be_bytes());
            msg.extend_from_slice(&count.to_be_bytes());
            msg.extend_from_slice(
                &((export_ms - base_ms).min(u64::from(u32::MAX)) as u32).to_be_bytes(),
            );
            msg.extend_from_slice(&((export_ms / 1000) as u32).to_be_bytes());
            msg.extend_from_slice(&self.sequence.to_be_bytes());
            msg.extend_from_slice(&self.domain.to_be_bytes());
            self.sequence = self.sequence.wrapping_add(1);
        } else {
            msg.extend_from_slice(&10u16.to_be_bytes());
            msg.extend_from_slice(&((16 + body.len()) as u16).to_be_bytes());
            msg.extend_from_slice(&((now_ms / 1000) as u32).to_be_bytes());
            msg.extend_from_slice(&self.sequence.to_be_bytes());
            msg.extend_from_slice(&self.domain.to_be_bytes());
            self.sequence = self.sequence.wrapping_add(records);
        }
        msg.extend(body);
        (msg, chosen)
    }
}

pub struct FlowExporter {
    socket: UdpSocket,
    to: SocketAddr,
    protocol: Protocol,
    /// One encoder per tap (its observation domain), with the time its
    /// templates last went out.
    domains: std::collections::BTreeMap<String, (Encoder, Option<Instant>)>,
    interval: Duration,
    pacer: super::Pacer,
    community_pen: Option<u32>,
    sent: u64,
    errors: u64,
}

impl FlowExporter {
    pub fn new(
        to: SocketAddr,
        protocol: Protocol,
        interval: Duration,
        per_s: u32,
        community_pen: Option<u32>,
    ) -> Result<Self, String> {
        Ok(FlowExporter {
            socket: super::udp_to(to)?,
            to,
            protocol,
            domains: Default::default(),
            interval,
            pacer: super::Pacer::new(per_s),
            community_pen,
            sent: 0,
            errors: 0,
        })
    }
}

impl Exporter for FlowExporter {
    fn export(&mut self, flows: &[StoredFlow]) {
        // Each tap's flows in its own domain; records of one family
        // together (fewer sets per message), in time order (v9 messages
        // span at most 49 days of sysUptime).
        let mut by_tap: std::collections::BTreeMap<&str, Vec<&FlowRecord>> = Default::default();
        for f in flows {
            by_tap.entry(f.tap.as_str()).or_default().push(&f.record);
        }
        for tap in by_tap.keys() {
            if !self.domains.contains_key(*tap) {
                let encoder =
                    Encoder::for_tap(self.protocol, tap).with_community_id(self.community_pen);
                self.domains.insert(tap.to_string(), (encoder, None));
            }
        }
        let now = crate::search::now_ms();
        for (tap, (encoder, last_templates)) in &mut self.domains {
            let mut records = by_tap.remove(tap.as_str()).unwrap_or_default();
            let templates = last_templates.is_none_or(|t| t.elapsed() >= self.interval);
            if records.is_empty() && !templates {
                continue;
            }
            if templates {
                *last_templates = Some(Instant::now());
            }
            records.sort_by_key(|r| (family_v6(r), r.start_ms));
            for msg in encoder.encode(&records, templates, now) {
                self.pacer.wait();
                match self.socket.send(&msg) {
                    Ok(_) => self.sent += 1,
                    Err(_) => self.errors += 1,
                }
            }
        }
    }

    fn counts(&self) -> (u64, u64) {
        (self.sent, self.errors)
    }

    fn describe(&self) -> String {
        let name = match self.protocol {
            Protocol::Ipfix => "IPFIX",
            Protocol::NetflowV9 => "NetFlow v9",
        };
        format!("{name} to {}", self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lengths_match_the_templates() {
        for (pen, extra) in [(None, 0), (Some(99), 30)] {
            for v6 in [false, true] {
                let elements = ipfix_elements(v6, pen);
                let expect = extra + if v6 { 128 } else { 104 };
                assert_eq!(record_len(&elements, "edge"), expect);
                let mut r = FlowRecord::default();
                if v6 {
                    r.src.addr = "2001:db8::1".parse().unwrap();
                    r.dst.addr = "2001:db8::2".parse().unwrap();
                }
                let mut out = Vec::new();
                ipfix_record(&r, "edge", pen.is_some(), &mut out);
                assert_eq!(out.len(), expect, "{pen:?} {v6}");
            }
            let set = template_set(Protocol::Ipfix, pen);
            assert_eq!(u16::from_be_bytes([set[2], set[3]]) as usize, set.len());
        }
    }
}
