//! The flow engine: frames in, flow records out. Decoding, the flow table,
//! fragments, timeouts and eviction, with no I/O and no allocation after
//! `new`. Time is the packets' own, so a replay gives the same records every
//! time.

use pitap_wire::{EndReason, FlowSink};

use crate::apps::learn::Learned;
use crate::decode::{decode_into, Packet, Skip, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::files::{head::looks_like_request, FileConfig, FileTracker, Segment};
use crate::flow::{FileSlot, Flow};
use crate::fragments::FragmentCache;
use crate::key::key_of;
use crate::ring::{PacketRing, RingConfig};
use crate::source::Frame;
use crate::stats::{Anomaly, EngineStats};
use crate::table::{FlowTable, List};

/// What goes when the table is full and a new flow arrives (after TCP
/// flows that already ended, which always go first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Flows nobody answered first (half-open SYNs, scans, spoofed
    /// sources), least recently seen first; answered flows only when none
    /// is left. A flood then costs only other unanswered flows.
    #[default]
    UnansweredFirst,
    /// Plain least recently seen, whatever the flow (for comparison).
    LeastRecent,
}

/// Engine settings; every field has a default suited to a Pi.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Flows the table holds; memory for all of them is taken at start-up.
    pub capacity: usize,
    /// A flow without packets for this long ends (`idle`).
    pub idle_timeout_us: u64,
    /// A flow older than this is reported and continues in a new part.
    pub active_timeout_us: u64,
    /// How long a TCP flow ended by FIN/FIN or RST waits for stragglers
    /// (last ACKs, retransmitted RSTs) before it is reported. Zeek's
    /// `tcp_close_delay` is 5 s too.
    pub tcp_linger_us: u64,
    /// First-fragment cache size.
    pub fragment_slots: usize,
    /// Hash key; pass something random on a live tap.
    pub hash_seed: u64,
    pub eviction: Eviction,
    /// Addresses whose DNS name is remembered (0: no DNS names).
    pub name_cache: usize,
    /// DHCP leases remembered.
    pub leases: usize,
    /// Flows at once whose TLS/HTTP info is kept.
    pub app_flows: usize,
    /// ClientHellos joined across segments at once.
    pub reassembly_buffers: usize,
    /// HTTP bodies followed and hashed.
    pub files: FileConfig,
    /// The packet ring (`bytes: 0`: none, the default here; the live tap
    /// sets one up).
    pub ring: RingConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            capacity: 65_536,
            idle_timeout_us: 60_000_000,
            active_timeout_us: 300_000_000,
            tcp_linger_us: 5_000_000,
            fragment_slots: 1024,
            hash_seed: 0x5049_5441_5000_0001,
            eviction: Eviction::UnansweredFirst,
            name_cache: 8192,
            leases: 1024,
            app_flows: 4096,
            reassembly_buffers: 32,
            files: FileConfig::default(),
            ring: RingConfig {
                bytes: 0,
                ..RingConfig::default()
            },
        }
    }
}

pub struct FlowEngine {
    config: EngineConfig,
    table: FlowTable,
    /// DNS names, DHCP leases, per-flow TLS/HTTP info.
    learned: Learned,
    fragments: FragmentCache,
    files: FileTracker,
    ring: Option<PacketRing>,
    stats: EngineStats,
    /// The latest packet time seen; time never runs backwards for timeouts.
    clock_us: u64,
    /// Timeouts are checked when packet time passes this (every millisecond
    /// of packet time, not every packet: a flow ends at most 1 ms late).
    next_expiry_us: u64,
    /// Frames the capture dropped so far (wrapping): each flow keeps the
    /// value at its start, so a record says how many were dropped while its
    /// flow was open without the engine visiting every flow on a drop.
    ring_drops: u32,
}

/// How often packet time checks the timeouts.
const EXPIRY_STEP_US: u64 = 1_000;

impl FlowEngine {
    pub fn new(config: EngineConfig) -> Self {
        FlowEngine {
            table: FlowTable::new(config.capacity, config.hash_seed),
            learned: Learned::new(
                config.name_cache,
                config.leases,
                config.app_flows,
                config.reassembly_buffers,
            ),
            fragments: FragmentCache::new(config.fragment_slots, config.hash_seed),
            files: FileTracker::new(config.files),
            ring: (config.ring.bytes > 0).then(|| PacketRing::new(config.ring)),
            config,
            stats: EngineStats::default(),
            clock_us: 0,
            next_expiry_us: 0,
            ring_drops: 0,
        }
    }

    /// The packet source dropped `frames` frames (a full ring): every flow
    /// open now may miss some, and its record will say so.
    pub fn note_ring_drops(&mut self, frames: u64) {
        self.ring_drops = self
            .ring_drops
            .wrapping_add(frames.min(u64::from(u32::MAX)) as u32);
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The packet ring, if there is one.
    pub fn ring(&self) -> Option<&PacketRing> {
        self.ring.as_ref()
    }

    pub fn ring_mut(&mut self) -> Option<&mut PacketRing> {
        self.ring.as_mut()
    }

    /// What the file tracker did.
    pub fn file_stats(&self) -> &crate::files::FileStats {
        self.files.stats()
    }

    /// Names in the DNS cache now, and its fixed capacity.
    pub fn name_cache_fill(&self) -> (usize, usize) {
        self.learned.name_cache_fill(self.clock_us)
    }

    /// The latest packet (or expiry) time the engine has seen, µs.
    pub fn clock_us(&self) -> u64 {
        self.clock_us
    }

    /// Flows in the table now.
    pub fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// Puts one frame through decoding and into its flow. Records of flows
    /// that ended on the way go to `sink`.
    pub fn process<S: FlowSink + ?Sized>(&mut self, frame: &Frame<'_>, sink: &mut S) {
        self.stats.frames += 1;
        self.stats.bytes += u64::from(frame.orig_len);
        let now = self.clock_us.max(frame.ts_us);
        if now >= self.next_expiry_us {
            self.expire(now, sink);
            self.next_expiry_us = now.saturating_add(EXPIRY_STEP_US);
        } else {
            self.clock_us = now;
        }

        let mut pkt = Packet::EMPTY;
        match decode_into(frame.link, frame.data, frame.vlan_tci, &mut pkt) {
            Ok(()) => {}
            Err(Skip::NonIp(ethertype)) => {
                self.stats.non_ip.count(ethertype);
                return;
            }
            Err(Skip::Malformed(anomaly)) => {
                self.count(anomaly);
                return;
            }
        }
        self.stats.ip_frames += 1;
        if pkt.l4_truncated {
            self.count(Anomaly::TruncatedL4Kept);
        }

        let mut ports = (pkt.src_port, pkt.dst_port);
        if let Some(frag) = pkt.fragment {
            if frag.offset == 0 {
                self.fragments.remember(&pkt, frag.id, now);
            } else if let Some(first) = self.fragments.ports(&pkt, frag.id, now) {
                ports = first;
            } else {
                self.count(Anomaly::FragmentWithoutFirstKept);
            }
        }

        let (key, reversed) = key_of(&pkt, ports);
        let hash = self.table.hash(&key);
        let mut slot = self.table.find(hash, &key);

        if let Some(s) = slot {
            let flow = self.table.get(s);
            let pure_syn = pkt.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN;
            if let (Some(reason), true) = (flow.tcp_ended(), pure_syn) {
                // A new connection reuses the ports of one that ended.
                self.end(s, reason, sink);
                slot = None;
            } else if frame.ts_us.saturating_sub(flow.part_start_us)
                >= self.config.active_timeout_us
            {
                self.emit(s, EndReason::Active, sink);
                let drops = self.ring_drops;
                self.table.get_mut(s).start_continuation(frame.ts_us, drops);
            }
        }

        let created = slot.is_none();
        let slot = match slot {
            Some(s) => s,
            None => {
                self.make_room(sink);
                let flow = Flow::start(key, &pkt, reversed, frame.ts_us, self.ring_drops);
                let Some(s) = self.table.insert(hash, flow, List::Embryonic) else {
                    // make_room always frees a slot; this is unreachable but
                    // must not panic on a tap.
                    return;
                };
                self.stats.flows_created += 1;
                s
            }
        };

        let flow = self.table.get_mut(slot);
        flow.update(&pkt, reversed, frame.ts_us, frame.orig_len, frame.port);
        if !pkt.payload.is_empty() && pkt.fragment.is_none_or(|f| f.offset == 0) {
            match pkt.proto {
                17 => self.learned.from_udp(&pkt, now, &mut self.stats.apps),
                6 if flow.from_initiator(reversed) => {
                    let client = &mut self.table.get_mut(slot).client;
                    self.learned
                        .from_client(client, pkt.payload, &mut self.stats.apps);
                }
                _ => {}
            }
        }
        if pkt.proto == 6 && pkt.fragment.is_none() {
            self.follow_http(slot, &pkt, reversed, frame.ts_us, sink);
        }
        if let Some(ring) = &mut self.ring {
            let from_initiator = self.table.get(slot).from_initiator(reversed);
            ring.offer(&key, created, from_initiator, pkt.payload_len, frame);
        }
        let flow = self.table.get(slot);
        let list = if flow.tcp_ended().is_some() {
            List::Ended
        } else if flow.answered() {
            List::Open
        } else {
            List::Embryonic
        };
        self.table.touch_at(slot, list, now);
        self.stats.active_flows = self.table.len() as u64;
    }

    /// Ends the flows whose time is up at `now_us`. A live tap calls this on
    /// a timer too, so flows end while the link is quiet.
    pub fn expire<S: FlowSink + ?Sized>(&mut self, now_us: u64, sink: &mut S) {
        self.clock_us = self.clock_us.max(now_us);
        let now = self.clock_us;
        for (list, timeout) in [
            (List::Open, self.config.idle_timeout_us),
            (List::Embryonic, self.config.idle_timeout_us),
            (List::Ended, self.config.tcp_linger_us),
        ] {
            while let Some(slot) = self.table.oldest(list) {
                let flow = self.table.get(slot);
                if flow.last_us.saturating_add(timeout) > now {
                    break;
                }
                self.end(slot, EndReason::Idle, sink);
            }
        }
        self.stats.active_flows = self.table.len() as u64;
    }

    /// Ends every flow (end of a capture, shutdown).
    pub fn flush<S: FlowSink + ?Sized>(&mut self, sink: &mut S) {
        for list in [List::Ended, List::Embryonic, List::Open] {
            while let Some(slot) = self.table.oldest(list) {
                self.end(slot, EndReason::Shutdown, sink);
            }
        }
        self.stats.active_flows = 0;
    }

    /// Frees a slot when the table is full: a TCP flow that already ended
    /// goes first (it is done anyway), then the least recently seen flow
    /// nobody answered (half-open, one-way: what a flood is made of), and
    /// only then the least recently seen answered flow. Evicted flows are
    /// reported as such.
    fn make_room<S: FlowSink + ?Sized>(&mut self, sink: &mut S) {
        if !self.table.is_full() {
            return;
        }
        if let Some(slot) = self.table.oldest(List::Ended) {
            self.end(slot, EndReason::TcpClose, sink);
            return;
        }
        let victim = match self.config.eviction {
            Eviction::UnansweredFirst => self
                .table
                .oldest(List::Embryonic)
                .map(|s| (s, true))
                .or_else(|| self.table.oldest(List::Open).map(|s| (s, false))),
            Eviction::LeastRecent => {
                // The older of the two lists' tails.
                let tail = |list| {
                    self.table
                        .oldest(list)
                        .map(|s| (s, self.table.get(s).last_us))
                };
                match (tail(List::Embryonic), tail(List::Open)) {
                    (Some(e), Some(o)) => Some(if e.1 <= o.1 {
                        (e.0, true)
                    } else {
                        (o.0, false)
                    }),
                    (Some(e), None) => Some((e.0, true)),
                    (None, Some(o)) => Some((o.0, false)),
                    (None, None) => None,
                }
            }
        };
        if let Some((slot, unanswered)) = victim {
            self.emit(slot, EndReason::Evicted, sink);
            self.remove_flow(slot, sink);
            self.stats.evictions += 1;
            self.stats.evictions_embryonic += u64::from(unanswered);
        }
    }

    /// Ends a flow: its record goes out, with how its TCP connection ended
    /// if it did, else `otherwise`; the flow leaves the table.
    fn end<S: FlowSink + ?Sized>(&mut self, slot: u32, otherwise: EndReason, sink: &mut S) {
        let reason = self.table.get(slot).tcp_ended().unwrap_or(otherwise);
        self.emit(slot, reason, sink);
        self.remove_flow(slot, sink);
    }

    fn emit<S: FlowSink + ?Sized>(&mut self, slot: u32, reason: EndReason, sink: &mut S) {
        self.stats.records += 1;
        let flow = self.table.get(slot);
        let mut record = flow.record(reason, self.ring_drops);
        self.learned.name(&mut record, &flow.client, self.clock_us);
        sink.emit(&record);
    }

    /// Hands a TCP segment to the file tracker: the first client payload
    /// that is an HTTP request makes the connection followed.
    fn follow_http<S: FlowSink + ?Sized>(
        &mut self,
        slot: u32,
        pkt: &Packet<'_>,
        reversed: bool,
        ts_us: u64,
        sink: &mut S,
    ) {
        let flow = self.table.get_mut(slot);
        let from_initiator = flow.from_initiator(reversed);
        let stream = match flow.files {
            FileSlot::Followed(s)
                if from_initiator
                    && !pkt.payload.is_empty()
                    && !self.files.client_started(s)
                    && !looks_like_request(pkt.payload) =>
            {
                // Opened on the server's bytes, but the client speaks
                // something else.
                let (last, start) = (flow.last_us, flow.part_start_us);
                flow.files = FileSlot::Never;
                self.files.close(s, last, start, sink);
                return;
            }
            FileSlot::Followed(s) => s,
            FileSlot::Untried if !pkt.payload.is_empty() => {
                // The client's first bytes decide; a response that came
                // before its request (the rings of two ports are read in
                // turns) opens the stream too, and waits there.
                let http = if from_initiator {
                    looks_like_request(pkt.payload)
                } else if pkt.payload.starts_with(b"HTTP/1.")
                    || matches!(flow.ends().dst.1, 80 | 8000 | 8080)
                {
                    // An HTTP/0.9 response has no status line: the port
                    // alone says what it may be.
                    true
                } else {
                    return;
                };
                let ends = flow.ends();
                let opened = http.then(|| self.files.open(ends)).flatten();
                let flow = self.table.get_mut(slot);
                flow.files = opened.map_or(FileSlot::Never, FileSlot::Followed);
                match opened {
                    Some(s) => s,
                    None => return,
                }
            }
            _ => return,
        };
        let flow = self.table.get(slot);
        let seg = Segment {
            from_initiator,
            seq: pkt.tcp_seq,
            payload: pkt.payload,
            cut: pkt.payload_cut,
            fin: pkt.tcp_flags & TCP_FIN != 0,
            now_us: ts_us,
            part_start_us: flow.part_start_us,
        };
        if !seg.payload.is_empty() || seg.fin {
            self.files.segment(stream, &seg, sink);
            if self.files.finished(stream) {
                // Closed both ways: the slot serves another connection
                // while this flow lingers in the table.
                let (last, start) = (flow.last_us, flow.part_start_us);
                self.files.close(stream, last, start, sink);
                self.table.get_mut(slot).files = FileSlot::Never;
            }
        }
    }

    /// Takes a flow out of the table with what it holds elsewhere; its
    /// followed HTTP bodies end with it.
    fn remove_flow<S: FlowSink + ?Sized>(&mut self, slot: u32, sink: &mut S) {
        let flow = self.table.remove(slot);
        if let FileSlot::Followed(s) = flow.files {
            self.files.close(s, flow.last_us, flow.part_start_us, sink);
        }
        self.learned.release(&flow.client);
    }

    fn count(&mut self, anomaly: Anomaly) {
        self.stats.anomalies[anomaly as usize] += 1;
    }
}
