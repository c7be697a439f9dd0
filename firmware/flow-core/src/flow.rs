//! One conversation's state, and the record it becomes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pitap_wire::{proto, EndReason, Endpoint, FlowRecord, SideCounters, TapPort};

use crate::apps::learn::ClientBytes;
use crate::decode::{Packet, TCP_ACK, TCP_SYN};
use crate::key::{is_icmp_reply, FlowKey};
use crate::tcp::{HistoryTracker, TcpTracker};

/// A flow's state. Index 0 of the per-side arrays is the initiator.
///
/// Laid out for the cache: `repr(C)` keeps the key and what every packet
/// updates (last time, counters) at the front, and the 64-byte alignment
/// keeps a flow from straddling more cache lines than it must. The lookup's
/// key comparison then brings in the line the update needs.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Flow {
    pub key: FlowKey,
    /// Which end of the key (0 or 1) is the initiator.
    initiator_end: u8,
    /// The responder has sent at least one packet (kept across parts).
    responder_seen: bool,
    ingress: TapPort,
    continuation: bool,
    /// Last packet, microseconds.
    pub last_us: u64,
    sides: [SideCounters; 2],
    pub tcp: TcpTracker,
    history: HistoryTracker,
    /// Start of the current part (the flow's start unless an active timeout
    /// split it), microseconds.
    pub part_start_us: u64,
    macs: [[u8; 6]; 2],
    icmp: Option<(u8, u8)>,
    /// How far the client's first bytes were looked at, and what came of it.
    pub client: ClientBytes,
    /// The engine's ring-drop count when this part started: what it counts
    /// past this, the rings dropped while the flow was open.
    pub drops_at_start: u32,
    /// Whether the file tracker follows this connection's HTTP bodies.
    pub files: FileSlot,
}

/// A flow's place in the file tracker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileSlot {
    /// No client payload seen yet.
    #[default]
    Untried,
    /// The first client payload was not HTTP (or no slot was free).
    Never,
    Followed(u16),
}

impl Flow {
    /// Starts a flow from its first packet. The initiator is the side that
    /// sent the first SYN, or else the sender of the first packet; a first
    /// packet that can only be an answer (SYN-ACK, ICMP echo reply) makes its
    /// receiver the initiator, noted `^` in the history as Zeek does.
    pub fn start(
        key: FlowKey,
        pkt: &Packet<'_>,
        reversed: bool,
        ts_us: u64,
        drops_now: u32,
    ) -> Flow {
        let sender_end = u8::from(reversed);
        let is_answer = if pkt.proto == proto::TCP {
            pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
        } else {
            is_icmp_reply(pkt.proto, pkt.icmp)
        };
        let mut flow = Flow {
            key,
            initiator_end: if is_answer {
                1 - sender_end
            } else {
                sender_end
            },
            part_start_us: ts_us,
            last_us: ts_us,
            icmp: pkt.icmp.map(|i| (i.icmp_type, i.code)),
            drops_at_start: drops_now,
            ..Flow::default()
        };
        if is_answer {
            flow.history.flipped();
        }
        flow
    }

    /// Whether a packet travelling in this direction comes from the initiator.
    #[inline]
    pub fn from_initiator(&self, reversed: bool) -> bool {
        u8::from(reversed) == self.initiator_end
    }

    /// Accounts one packet to the flow.
    #[inline]
    pub fn update(
        &mut self,
        pkt: &Packet<'_>,
        reversed: bool,
        ts_us: u64,
        wire_len: u32,
        port: TapPort,
    ) {
        let from_initiator = self.from_initiator(reversed);
        let side = usize::from(!from_initiator);
        self.responder_seen |= side == 1;
        let counters = &mut self.sides[side];
        counters.packets += 1;
        counters.bytes += u64::from(wire_len);
        counters.ip_bytes += u64::from(pkt.ip_len);
        counters.payload_bytes += u64::from(pkt.payload_len);
        counters.tcp_flags |= pkt.tcp_flags;
        if self.macs[side] == [0; 6] {
            self.macs[side] = pkt.src_mac;
        }
        // The other side's MAC as the frame addressed it: a multicast or
        // broadcast group, or a peer that never answers, still has one.
        if self.macs[1 - side] == [0; 6] {
            self.macs[1 - side] = pkt.dst_mac;
        }
        if from_initiator && self.ingress == TapPort::Unknown {
            self.ingress = port;
        }
        self.last_us = self.last_us.max(ts_us);
        if pkt.proto == proto::TCP && pkt.fragment.is_none_or(|f| f.offset == 0) {
            self.tcp.update(
                &mut self.history,
                from_initiator,
                pkt.tcp_flags,
                pkt.tcp_seq,
                pkt.payload_len,
            );
        } else {
            self.history.note_datagram(
                from_initiator,
                pkt.payload_len.max(u32::from(pkt.fragment.is_some())),
            );
        }
    }

    /// Whether the responder has sent anything.
    #[inline]
    pub fn answered(&self) -> bool {
        self.responder_seen
    }

    /// How the TCP connection ended, if it did.
    #[inline]
    pub fn tcp_ended(&self) -> Option<EndReason> {
        if self.key.proto == proto::TCP {
            self.tcp.ended()
        } else {
            None
        }
    }

    /// Begins a new part after an active timeout: counters restart, the
    /// connection state goes on.
    pub fn start_continuation(&mut self, ts_us: u64, drops_now: u32) {
        self.drops_at_start = drops_now;
        self.sides = [SideCounters::default(); 2];
        self.tcp.gaps.restart_count();
        self.part_start_us = ts_us;
        self.last_us = ts_us;
        self.continuation = true;
    }

    fn addr(&self, end: usize) -> IpAddr {
        let a = self.key.addrs[end];
        if self.key.is_v6 {
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        }
    }

    /// The flow's ends, initiator first, as its record names them.
    pub fn ends(&self) -> crate::files::FlowEnds {
        let i = usize::from(self.initiator_end);
        crate::files::FlowEnds {
            src: (self.addr(i), self.key.ports[i]),
            dst: (self.addr(1 - i), self.key.ports[1 - i]),
        }
    }

    /// The flow's record as it stands; `drops_now` is the engine's
    /// ring-drop count.
    pub fn record(&self, end_reason: EndReason, drops_now: u32) -> FlowRecord {
        let ends = [
            usize::from(self.initiator_end),
            usize::from(1 - self.initiator_end),
        ];
        let port = |i: usize| match self.icmp {
            // ICMP "ports" are type and code, as in Zeek's conn.log.
            Some((t, c)) => u16::from(if i == 0 { t } else { c }),
            None => self.key.ports[ends[i]],
        };
        let endpoint = |i: usize| Endpoint {
            addr: self.addr(ends[i]),
            port: port(i),
            mac: self.macs[i],
            counters: self.sides[i],
        };
        FlowRecord {
            start_ms: self.part_start_us / 1000,
            end_ms: self.last_us / 1000,
            proto: self.key.proto,
            src: endpoint(0),
            dst: endpoint(1),
            vlan: (self.key.vlans >> 16) as u16,
            inner_vlan: self.key.vlans as u16,
            conn_state: if self.key.proto == proto::TCP {
                self.tcp.conn_state(&self.history.text)
            } else {
                pitap_wire::ConnState::OTH
            },
            history: self.history.text,
            end_reason,
            continuation: self.continuation,
            ingress: self.ingress,
            icmp: self.icmp,
            names: Default::default(),
            clock: Default::default(),
            ring_drops: drops_now.wrapping_sub(self.drops_at_start),
            missed_bytes: self.tcp.gaps.missed(),
        }
    }
}
