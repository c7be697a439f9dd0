//! What the engine learns from payloads, glued to the parsers beside this
//! module: DNS answers into the name cache, DHCP and DHCPv6 messages into
//! the leases, a flow's first client bytes (a TLS ClientHello, joined over
//! segments when it spans them, or an HTTP request) into its app info; and,
//! when a flow ends, what its record says of who was behind it.

use core::net::IpAddr;

use pitap_wire::{FlowRecord, Text};

use super::{dhcp, dhcp6, dns, http, tls, AppError};
use crate::decode::Packet;
use crate::enrich::{AppInfo, AppSlab, Leases, NameCache};
use crate::stats::AppStats;

/// A flow's progress through its client's first bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientBytes {
    /// Its application info in the slab, if any.
    pub app: Option<u32>,
    /// A ClientHello being joined in this reassembly buffer.
    pub join: Option<u16>,
    /// The client's first payload has been looked at.
    pub done: bool,
}

/// The caches the engine fills from payloads, in fixed memory.
pub struct Learned {
    names: NameCache,
    leases: Leases,
    apps: AppSlab,
}

/// An address as the caches key it: IPv4 in the first four bytes.
pub fn addr_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => v4_key(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

fn v4_key(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&a);
    b
}

impl Learned {
    /// Room for `names` DNS names, `leases` leases, the info of
    /// `app_flows` flows and `buffers` ClientHellos being joined.
    pub fn new(names: usize, leases: usize, app_flows: usize, buffers: usize) -> Learned {
        Learned {
            names: NameCache::new(names),
            leases: Leases::new(leases),
            apps: AppSlab::new(app_flows, buffers),
        }
    }

    /// Names in the DNS cache now, and its fixed capacity.
    pub fn name_cache_fill(&self, now_us: u64) -> (usize, usize) {
        (self.names.len(now_us), self.names.capacity())
    }

    /// A UDP payload: DNS answers (from port 53 or mDNS's 5353), DHCP
    /// (to 67/68) and DHCPv6 (to 546/547).
    pub fn from_udp(&mut self, pkt: &Packet<'_>, now: u64, a: &mut AppStats) {
        match (pkt.src_port, pkt.dst_port) {
            (53 | 5353, _) => self.dns(pkt.payload, now, a),
            (_, 67 | 68) => self.dhcp(pkt.payload, now, a),
            (_, 546 | 547) => self.dhcp6(pkt.payload, now, a),
            _ => {}
        }
    }

    fn dns(&mut self, payload: &[u8], now: u64, a: &mut AppStats) {
        match dns::parse_response(payload) {
            Ok(resp) => {
                a.dns_responses += 1;
                let (names, qname) = (&mut self.names, &resp.qname);
                let learned = resp.answers(|ans| match ans {
                    dns::Answer::A { addr, ttl, .. } => names.insert(v4_key(addr), qname, ttl, now),
                    dns::Answer::Aaaa { addr, ttl, .. } => names.insert(addr, qname, ttl, now),
                    _ => {}
                });
                if learned.is_err() {
                    a.dns_malformed += 1;
                }
            }
            // mDNS queries leave from port 5353 too: not malformed.
            Err(AppError::Unexpected) => {}
            Err(_) => a.dns_malformed += 1,
        }
    }

    fn dhcp(&mut self, payload: &[u8], now: u64, a: &mut AppStats) {
        let Ok(d) = dhcp::parse(payload) else {
            a.dhcp_malformed += 1;
            return;
        };
        a.dhcp_messages += 1;
        match d.msg_type {
            Some(dhcp::ACK) => self
                .leases
                .update(v4_key(d.yiaddr), d.chaddr, d.hostname, now),
            Some(dhcp::REQUEST) | Some(dhcp::DISCOVER) => {
                if let Some(h) = d.hostname {
                    self.leases.announce(d.chaddr, h, now);
                }
                let addr = d.requested.unwrap_or(d.ciaddr);
                if addr != [0; 4] && d.hostname.is_some() {
                    self.leases.update(v4_key(addr), d.chaddr, d.hostname, now);
                }
            }
            _ => {}
        }
    }

    fn dhcp6(&mut self, payload: &[u8], now: u64, a: &mut AppStats) {
        match dhcp6::parse(payload) {
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
        }
    }

    /// A payload the initiator sent on a TCP flow: the first one (joined
    /// with the next when a ClientHello spans segments) is looked at.
    pub fn from_client(&mut self, flow: &mut ClientBytes, payload: &[u8], a: &mut AppStats) {
        if flow.done {
            return;
        }
        let join = flow.join;
        let mut info = AppInfo::default();
        let mut keep = false;
        let mut done = true;
        let mut new_join = None;
        let parsed = match join {
            Some(b) => self
                .apps
                .join(b, payload)
                .map(|joined| (tls::parse_client_hello(joined), true)),
            None => Some((tls::parse_client_hello(payload), false)),
        };
        match parsed {
            Some((Ok(tls::Outcome::Hello(h)), joined)) => {
                a.tls_hellos += 1;
                a.tls_joined += u64::from(joined);
                info.sni = h.sni.map(Text::from_bytes).unwrap_or_default();
                info.alpn = h.alpn_list();
                keep = true;
            }
            Some((Ok(tls::Outcome::NeedMore(_)), true)) => done = false,
            Some((Ok(tls::Outcome::NeedMore(_)), false)) => {
                new_join = self.apps.start_join(payload);
                done = new_join.is_none();
            }
            Some((Ok(tls::Outcome::NotTls), false)) => match http::parse_request(payload) {
                Ok(Some(r)) => {
                    a.http_requests += 1;
                    info.http_host = r.host.map(Text::from_bytes).unwrap_or_default();
                    info.http_request = r.line();
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
        if keep {
            match self.apps.take() {
                Some(i) => {
                    if let Some(e) = self.apps.get_mut(i) {
                        *e = info;
                    }
                    flow.app = Some(i);
                }
                None => a.slab_full += 1,
            }
        }
        flow.done = done;
        flow.join = if done { None } else { new_join.or(join) };
    }

    /// Gives back what a flow held (it left the table).
    pub fn release(&mut self, flow: &ClientBytes) {
        if let Some(i) = flow.app {
            self.apps.release(i);
        }
        if let Some(b) = flow.join {
            self.apps.end_join(b);
        }
    }

    /// Fills in what is known of who is behind a record's flow.
    pub fn name(&self, record: &mut FlowRecord, flow: &ClientBytes, now: u64) {
        if let Some(info) = flow.app.and_then(|i| self.apps.get(i)) {
            record.names.sni = info.sni;
            record.names.alpn = info.alpn;
            record.names.http_host = info.http_host;
            record.names.http_request = info.http_request;
        }
        if let Some(name) = self.names.lookup(&addr_key(record.dst.addr), now) {
            record.names.responder_name = *name;
        }
        if let Some((_, host)) = self.leases.lookup(&addr_key(record.dst.addr), now) {
            record.names.server_hostname = *host;
        }
        if let Some((_, host)) = self.leases.lookup(&addr_key(record.src.addr), now) {
            record.names.client_hostname = *host;
        } else if record.proto == pitap_wire::proto::UDP
            && matches!(record.src.port, 68 | 546)
            && record.src.mac != [0; 6]
        {
            // A DHCP client's own exchange: it asked from no address yet
            // (or a link-local one), under its MAC. A scan of the leases,
            // but only for these flows.
            if let Some(host) = self.leases.hostname_of(&record.src.mac, now) {
                record.names.client_hostname = *host;
            }
        }
    }
}
