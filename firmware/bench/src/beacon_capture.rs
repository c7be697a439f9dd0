//! The beacon corpus ([`crate::beacons`]) written as a capture, so it runs
//! through `pitapd --read` and the collector like traffic off a cable. Each
//! series is one source calling one destination: series `i` goes from
//! [`endpoints`]`(i).0` to `.1`. A TCP call is a whole conversation
//! (handshake, the source's bytes, the answer, FIN each way); a call with
//! continuation parts is one long connection with a keep-alive a minute,
//! which the tap's active timeout cuts into parts; DNS and NTP are a query
//! and its answer. TCP data is cut at the headers as `tcpdump -s 54` would
//! write it (the wire length stays), and a connection's data is written up
//! to [`MAX_CONNECTION_BYTES`] (a nightly backup's gigabyte is its
//! regularity to the score, not its size).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;

use etherparse::PacketBuilder;

use crate::beacons::{Kind, Series};

/// The most data one connection carries in the capture.
pub const MAX_CONNECTION_BYTES: u64 = 4 << 20;
/// The capture's first day: 2026-11-02 00:00 UTC, in µs.
pub const BASE_US: u64 = 1_793_577_600_000_000;
/// TCP payload per segment (as a sender's segmentation offload hands
/// the kernel one, and a capture on that host shows it).
const SEGMENT: u64 = 64_000;
/// The server's answer to a call.
const ANSWER_BYTES: u64 = 180;

/// Source and destination of series `i` (at most 131,072 series: the
/// destinations are 198.18.0.0/15, the benchmarking range).
pub fn endpoints(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let i = i as u32;
    (
        Ipv4Addr::from(0x0a00_0000 + i + 1),
        Ipv4Addr::from(0xc612_0000 + (i & 0x1_ffff)),
    )
}

/// Frames of calls under way, earliest first: (time µs, order written,
/// length on the wire, bytes captured).
type Pending = BinaryHeap<Reverse<(u64, u64, u32, Vec<u8>)>>;

/// What was written.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureSummary {
    pub packets: u64,
    pub connections: u64,
    /// Bytes the frames had on the wire.
    pub wire_bytes: u64,
}

/// Writes `series` as a pcap at `path`, packets in time order.
pub fn write(path: &std::path::Path, series: &[Series]) -> std::io::Result<CaptureSummary> {
    assert!(series.len() <= 1 << 17, "more series than destinations");
    // Every call (a first part with the continuation parts after it) as
    // (start ms, series, first connection, parts).
    let mut calls: Vec<(u64, u32, u32, u32)> = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let mut k = 0;
        while k < s.connections.len() {
            let parts = 1 + s.connections[k + 1..].iter().take_while(|c| c.2).count();
            calls.push((s.connections[k].0, i as u32, k as u32, parts as u32));
            k += parts;
        }
    }
    calls.sort_unstable();
    let mut summary = CaptureSummary::default();
    let mut pending = Pending::new();
    let mut order = 0u64;
    crate::http::write_pcap_cut(path, |emit| {
        let mut flush_before =
            |until_us: u64, pending: &mut Pending, summary: &mut CaptureSummary| {
                while pending.peek().is_some_and(|Reverse(f)| f.0 < until_us) {
                    if let Some(Reverse((ts, _, wire, bytes))) = pending.pop() {
                        emit(ts, wire, &bytes);
                        summary.packets += 1;
                        summary.wire_bytes += u64::from(wire);
                    }
                }
            };
        for &(start_ms, i, k, parts) in &calls {
            let t = BASE_US + start_ms * 1_000;
            flush_before(t, &mut pending, &mut summary);
            let s = &series[i as usize];
            let (src, dst) = endpoints(i as usize);
            let call = Call {
                src,
                dst,
                sport: 20_000 + (k % 40_000) as u16,
                dport: s.dst_port,
                start_us: t,
            };
            let mut push = |ts: u64, wire: u32, bytes: Vec<u8>| {
                order += 1;
                pending.push(Reverse((ts, order, wire, bytes)));
            };
            let (_, bytes, _) = s.connections[k as usize];
            match (s.proto, s.kind) {
                (17, Kind::Ntp) => call.udp(&ntp(false), &ntp(true), &mut push),
                (17, _) => call.udp(&dns(k, false), &dns(k, true), &mut push),
                _ => {
                    let last = s.connections[(k + parts - 1) as usize].0;
                    let open_us = if parts > 1 {
                        (last - start_ms) * 1_000 + 60_000_000
                    } else {
                        0
                    };
                    call.tcp(bytes.min(MAX_CONNECTION_BYTES), open_us, &mut push);
                }
            }
            summary.connections += 1;
        }
        flush_before(u64::MAX, &mut pending, &mut summary);
    })?;
    Ok(summary)
}

struct Call {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    start_us: u64,
}

fn mac(a: Ipv4Addr) -> [u8; 6] {
    let o = a.octets();
    [2, 0, o[0], o[1], o[2], o[3]]
}

impl Call {
    /// A query and its answer 5 ms later.
    fn udp(&self, query: &[u8], answer: &[u8], push: &mut dyn FnMut(u64, u32, Vec<u8>)) {
        for (up, at, payload) in [(true, 0, query), (false, 5_000, answer)] {
            let (s, d, sp, dp) = self.oriented(up);
            let mut out = Vec::with_capacity(64 + payload.len());
            // Cannot fail: the builder sizes its own headers.
            let _ = PacketBuilder::ethernet2(mac(s), mac(d))
                .ipv4(s.octets(), d.octets(), 64)
                .udp(sp, dp)
                .write(&mut out, payload);
            push(self.start_us + at, out.len() as u32, out);
        }
    }

    fn oriented(&self, from_source: bool) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
        if from_source {
            (self.src, self.dst, self.sport, self.dport)
        } else {
            (self.dst, self.src, self.dport, self.sport)
        }
    }

    /// A TCP conversation: the source sends `up` bytes; open for `open_us`
    /// more with a keep-alive each way a minute, when it has parts.
    fn tcp(&self, up: u64, open_us: u64, push: &mut dyn FnMut(u64, u32, Vec<u8>)) {
        let (mut c, mut s) = (1_000u32, 50_000u32);
        let mut t = self.start_us;
        let mut seg = |t: u64, from_source: bool, seq: u32, ack: u32, flags: &str, len: u64| {
            let (src, dst, sp, dp) = self.oriented(from_source);
            let mut b = PacketBuilder::ethernet2(mac(src), mac(dst))
                .ipv4(src.octets(), dst.octets(), 64)
                .tcp(sp, dp, seq, 64_000);
            for f in flags.chars() {
                b = match f {
                    'S' => b.syn(),
                    'A' => b.ack(ack),
                    'F' => b.fin(),
                    'P' => b.psh(),
                    _ => b,
                };
            }
            let mut out = Vec::with_capacity(64);
            // Cannot fail: the builder sizes its own headers.
            let _ = b.write(&mut out, &[]);
            cut_payload(&mut out, len);
            push(t, out.len() as u32 + len as u32, out);
        };
        seg(t, true, c, 0, "S", 0);
        seg(t + 10_000, false, s, c + 1, "SA", 0);
        c += 1;
        s += 1;
        t += 20_000;
        let mut left = up;
        while left > 0 {
            let n = left.min(SEGMENT);
            seg(t, true, c, s, "AP", n);
            c = c.wrapping_add(n as u32);
            left -= n;
            t += 50;
        }
        t += 20_000;
        seg(t, false, s, c, "AP", ANSWER_BYTES);
        s += ANSWER_BYTES as u32;
        let end = t + open_us;
        t += 60_000_000;
        while t < end {
            seg(t, true, c, s, "AP", 50);
            c += 50;
            seg(t + 10_000, false, s, c, "AP", 50);
            s += 50;
            t += 60_000_000;
        }
        let t = end + 10_000;
        seg(t, true, c, s, "FA", 0);
        seg(t + 10_000, false, s, c + 1, "FA", 0);
        seg(t + 20_000, true, c + 1, s + 1, "A", 0);
    }
}

/// Makes a header-only IPv4 frame say it carries `len` more bytes of
/// payload (cut off by the capture): the total length and the header
/// checksum follow.
fn cut_payload(frame: &mut [u8], len: u64) {
    if len == 0 || frame.len() < 34 {
        return;
    }
    let total = u16::from_be_bytes([frame[16], frame[17]]).saturating_add(len as u16);
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = frame[14..34]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    frame[24..26].copy_from_slice(&(!(folded as u16)).to_be_bytes());
}

/// An NTP client request (mode 3) or server reply (mode 4), 48 bytes.
fn ntp(reply: bool) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = if reply { 0x24 } else { 0x23 };
    p
}

/// A DNS query for an A record (or its empty NOERROR answer).
fn dns(id: u32, answer: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&(id as u16).to_be_bytes());
    p.extend_from_slice(if answer { &[0x81, 0x80] } else { &[0x01, 0x00] });
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    let name = format!("h{}", id % 997);
    for label in [name.as_str(), "example", "com"] {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}
