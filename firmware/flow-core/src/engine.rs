//! The flow engine: frames in, flow records out. Decoding, the flow table,
//! fragments, timeouts and eviction, with no I/O and no allocation after
//! `new`. Time is the packets' own, so a replay gives the same records every
//! time.

use pitap_wire::{EndReason, FlowSink, Text};

use crate::apps::{dhcp, dhcp6, dns, http, tls, AppError};
use crate::decode::{decode_into, Packet, Skip, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::enrich::{AppInfo, AppSlab, Leases, NameCache};
use crate::flow::Flow;
use crate::fragments::FragmentCache;
use crate::key::key_of;
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
        }
    }
}

pub struct FlowEngine {
    config: EngineConfig,
    table: FlowTable,
    names: NameCache,
    leases: Leases,
    apps: AppSlab,
    fragments: FragmentCache,
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
            names: NameCache::new(config.name_cache),
            leases: Leases::new(config.leases),
            apps: AppSlab::new(config.app_flows, config.reassembly_buffers),
            fragments: FragmentCache::new(config.fragment_slots, config.hash_seed),
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

    /// Names in the DNS cache now, and its fixed capacity.
    pub fn name_cache_fill(&self) -> (usize, usize) {
        (self.names.len(self.clock_us), self.names.capacity())
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
                self.emit(s, reason, sink);
                self.remove_flow(s);
                slot = None;
            } else if frame.ts_us.saturating_sub(flow.part_start_us)
                >= self.config.active_timeout_us
            {
                self.emit(s, EndReason::Active, sink);
                let drops = self.ring_drops;
                self.table.get_mut(s).start_continuation(frame.ts_us, drops);
            }
        }

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
            self.inspect(slot, &pkt, reversed, now);
        }
        let flow = self.table.get(slot);
        let list = if flow.tcp_ended().is_some() {
            List::Ended
        } else if flow.answered() {
            List::Open
        } else {
            List::Embryonic
        };
        self.table.touch(slot, list);
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
                let reason = flow.tcp_ended().unwrap_or(EndReason::Idle);
                self.emit(slot, reason, sink);
                self.remove_flow(slot);
            }
        }
        self.stats.active_flows = self.table.len() as u64;
    }

    /// Ends every flow (end of a capture, shutdown).
    pub fn flush<S: FlowSink + ?Sized>(&mut self, sink: &mut S) {
        for list in [List::Ended, List::Embryonic, List::Open] {
            while let Some(slot) = self.table.oldest(list) {
                let reason = self
                    .table
                    .get(slot)
                    .tcp_ended()
                    .unwrap_or(EndReason::Shutdown);
                self.emit(slot, reason, sink);
                self.remove_flow(slot);
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
            let reason = self
                .table
                .get(slot)
                .tcp_ended()
                .unwrap_or(EndReason::TcpClose);
            self.emit(slot, reason, sink);
            self.remove_flow(slot);
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
            self.remove_flow(slot);
            self.stats.evictions += 1;
            self.stats.evictions_embryonic += u64::from(unanswered);
        }
    }

    fn emit<S: FlowSink + ?Sized>(&mut self, slot: u32, reason: EndReason, sink: &mut S) {
        self.stats.records += 1;
        let flow = self.table.get(slot);
        let mut record = flow.record(reason, self.ring_drops);
        if let Some(info) = flow.app.and_then(|i| self.apps.get(i)) {
            record.names.sni = info.sni;
            record.names.alpn = info.alpn;
            record.names.http_host = info.http_host;
            record.names.http_request = info.http_request;
        }
        let now = self.clock_us;
        if let Some(name) = self.names.lookup(&ip16(record.dst.addr), now) {
            record.names.responder_name = *name;
        }
        if let Some((_, host)) = self.leases.lookup(&ip16(record.src.addr), now) {
            record.names.client_hostname = *host;
        }
        sink.emit(&record);
    }

    /// Takes a flow out of the table with what it holds elsewhere.
    fn remove_flow(&mut self, slot: u32) {
        let flow = self.table.remove(slot);
        if let Some(i) = flow.app {
            self.apps.release(i);
        }
        if let Some(b) = flow.join {
            self.apps.end_join(b);
        }
    }

    /// Learns from a payload: DNS answers, DHCP leases, and a flow's first
    /// client bytes (TLS ClientHello, HTTP request).
    fn inspect(&mut self, slot: u32, pkt: &Packet<'_>, reversed: bool, now: u64) {
        let a = &mut self.stats.apps;
        match pkt.proto {
            17 if matches!(pkt.src_port, 53 | 5353) => match dns::parse_response(pkt.payload) {
                Ok(resp) => {
                    a.dns_responses += 1;
                    let (names, qname) = (&mut self.names, resp.qname);
                    let learned = resp.answers(|ans| match ans {
                        dns::Answer::A { addr, ttl, .. } => {
                            let mut a16 = [0u8; 16];
                            a16[..4].copy_from_slice(&addr);
                            names.insert(a16, &qname, ttl, now);
                        }
                        dns::Answer::Aaaa { addr, ttl, .. } => names.insert(addr, &qname, ttl, now),
                        _ => {}
                    });
                    if learned.is_err() {
                        a.dns_malformed += 1;
                    }
                }
                // mDNS queries leave from port 5353 too: not malformed.
                Err(AppError::Unexpected) => {}
                Err(_) => a.dns_malformed += 1,
            },
            17 if matches!(pkt.dst_port, 67 | 68) => match dhcp::parse(pkt.payload) {
                Ok(d) => {
                    a.dhcp_messages += 1;
                    let v4 = |a: [u8; 4]| {
                        let mut b = [0u8; 16];
                        b[..4].copy_from_slice(&a);
                        b
                    };
                    match d.msg_type {
                        Some(dhcp::ACK) => {
                            self.leases.update(v4(d.yiaddr), d.chaddr, d.hostname, now)
                        }
                        Some(dhcp::REQUEST) | Some(dhcp::DISCOVER) => {
                            if let Some(h) = d.hostname {
                                self.leases.announce(d.chaddr, h, now);
                            }
                            let addr = d.requested.unwrap_or(d.ciaddr);
                            if addr != [0; 4] && d.hostname.is_some() {
                                self.leases.update(v4(addr), d.chaddr, d.hostname, now);
                            }
                        }
                        _ => {}
                    }
                }
                Err(_) => a.dhcp_malformed += 1,
            },
            17 if matches!(pkt.dst_port, 546 | 547) => match dhcp6::parse(pkt.payload) {
                Ok(d) => {
                    a.dhcp_messages += 1;
                    let host = d.fqdn.as_ref().map(|n| n.as_bytes());
                    if let Some(mac) = d.mac {
                        match (d.msg_type, d.addr) {
                            (dhcp6::REPLY, Some(addr)) => self.leases.update(addr, mac, host, now),
                            (dhcp6::SOLICIT | dhcp6::REQUEST, _) => {
                                if let Some(h) = host {
                                    self.leases.announce(mac, h, now);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Err(AppError::Unexpected) => {}
                Err(_) => a.dhcp_malformed += 1,
            },
            6 => self.inspect_client_bytes(slot, pkt, reversed),
            _ => {}
        }
    }

    /// The first payload the initiator sends on a TCP flow (joined with the
    /// next when a ClientHello spans segments).
    fn inspect_client_bytes(&mut self, slot: u32, pkt: &Packet<'_>, reversed: bool) {
        let flow = self.table.get(slot);
        if flow.app_done || !flow.from_initiator(reversed) {
            return;
        }
        let join = flow.join;
        let mut info = AppInfo::default();
        let mut keep = false;
        let mut done = true;
        let mut new_join = None;
        let a = &mut self.stats.apps;
        let parsed = match join {
            Some(b) => self
                .apps
                .join(b, pkt.payload)
                .map(|joined| (tls::parse_client_hello(joined), true)),
            None => Some((tls::parse_client_hello(pkt.payload), false)),
        };
        match parsed {
            Some((Ok(tls::Outcome::Hello(h)), joined)) => {
                a.tls_hellos += 1;
                a.tls_joined += u64::from(joined);
                info.sni = h.sni.map(Text::from_bytes).unwrap_or_default();
                let mut alpn = [0u8; 32];
                let mut n = 0;
                for p in h.alpn_protocols() {
                    let sep = usize::from(n > 0);
                    if n + sep + p.len() > alpn.len() {
                        break;
                    }
                    if sep == 1 {
                        alpn[n] = b',';
                    }
                    alpn[n + sep..n + sep + p.len()].copy_from_slice(p);
                    n += sep + p.len();
                }
                info.alpn = Text::from_bytes(&alpn[..n]);
                keep = true;
            }
            Some((Ok(tls::Outcome::NeedMore(_)), true)) => done = false,
            Some((Ok(tls::Outcome::NeedMore(_)), false)) => {
                new_join = self.apps.start_join(pkt.payload);
                done = new_join.is_none();
            }
            Some((Ok(tls::Outcome::NotTls), false)) => match http::parse_request(pkt.payload) {
                Ok(Some(r)) => {
                    a.http_requests += 1;
                    info.http_host = r.host.map(Text::from_bytes).unwrap_or_default();
                    let mut line = [0u8; 128];
                    let m = r.method.len().min(line.len());
                    line[..m].copy_from_slice(&r.method[..m]);
                    let mut n = m;
                    if n < line.len() {
                        line[n] = b' ';
                        n += 1;
                    }
                    let t = r.target.len().min(line.len() - n);
                    line[n..n + t].copy_from_slice(&r.target[..t]);
                    info.http_request = Text::from_bytes(&line[..n + t]);
                    keep = true;
                }
                Ok(None) => {}
                Err(_) => a.http_malformed += 1,
            },
            Some((Ok(tls::Outcome::NotTls), true)) | None => {}
            Some((Err(_), _)) => a.tls_malformed += 1,
        }
        if done {
            if let Some(b) = join {
                self.apps.end_join(b);
            }
        }
        let slot_app = if keep {
            match self.apps.take() {
                Some(i) => {
                    if let Some(e) = self.apps.get_mut(i) {
                        *e = info;
                    }
                    Some(i)
                }
                None => {
                    self.stats.apps.slab_full += 1;
                    None
                }
            }
        } else {
            None
        };
        let flow = self.table.get_mut(slot);
        if slot_app.is_some() {
            flow.app = slot_app;
        }
        flow.app_done = done;
        flow.join = if done { None } else { new_join.or(join) };
    }

    fn count(&mut self, anomaly: Anomaly) {
        self.stats.anomalies[anomaly as usize] += 1;
    }
}

/// An address as the caches key it: IPv4 in the first four bytes.
fn ip16(addr: core::net::IpAddr) -> [u8; 16] {
    match addr {
        core::net::IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        core::net::IpAddr::V6(a) => a.octets(),
    }
}
