//! The tap's answer to a packet request: the kept packets of the flows (or
//! the time window) it names, read from the engine's packet ring once, when
//! the request arrives, as pcapng blocks: an interface description per tap
//! port and link type, then an enhanced packet block per packet, times on
//! the collector's clock (`pitap_wire::pcapng`). The collector puts a
//! section header before them.

use std::net::IpAddr;

use pitap_flow_core::ring::{FlowSelector, Kept, PacketRing};
use pitap_flow_core::FlowEngine;
use pitap_wire::messages::{PacketRequest, MAX_ANSWER};
use pitap_wire::pcapng;
use pitap_wire::TapPort;

use crate::uplink::Uplink;

/// An answer, whole.
#[derive(Debug, Default)]
pub struct Answer {
    pub data: Vec<u8>,
    pub packets: u64,
    /// Matching packets left out for the size limit.
    pub left_out: u64,
}

fn addr16(a: IpAddr) -> ([u8; 16], bool) {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, false)
        }
        IpAddr::V6(v6) => (v6.octets(), true),
    }
}

/// The packets in time order across ports, each port's in the order it
/// received them. The arena holds them in the order the ports' rings were
/// read (a block of one port, then of the other); and a port's kernel
/// timestamps are not always increasing (packets stamped on different
/// CPUs), so a sort by time would reorder a port's own packets.
fn merge_ports(kept: Vec<Kept<'_>>) -> Vec<Kept<'_>> {
    let mut by_port: Vec<std::collections::VecDeque<Kept<'_>>> = Vec::new();
    let mut ports: Vec<TapPort> = Vec::new();
    for k in kept {
        match ports.iter().position(|&p| p == k.port) {
            Some(i) => by_port[i].push_back(k),
            None => {
                ports.push(k.port);
                by_port.push(std::collections::VecDeque::from([k]));
            }
        }
    }
    let mut out = Vec::new();
    while let Some(i) = (0..by_port.len())
        .filter(|&i| !by_port[i].is_empty())
        .min_by_key(|&i| by_port[i].front().map(|k| (k.ts_us, k.pos)))
    {
        if let Some(k) = by_port[i].pop_front() {
            out.push(k);
        }
    }
    out
}

/// The answer to `req` from `ring`. `correction_us`: what the tap adds to
/// its clock to be on the collector's (0 for a capture's times).
pub fn answer(ring: &mut PacketRing, req: &PacketRequest, correction_us: i64) -> Answer {
    let to_local = |ms: u64| {
        (ms.saturating_mul(1000) as i64)
            .saturating_sub(correction_us)
            .max(0) as u64
    };
    let (since, until) = (
        to_local(req.since_ms),
        to_local(req.until_ms.saturating_add(1)),
    );
    let mut positions = Vec::new();
    // Packets counted past the limit; a generous one, checked on bytes below.
    let limit = MAX_ANSWER / 64;
    if req.flows.is_empty() {
        ring.window_packets(since, until, limit, &mut positions);
    } else {
        for f in &req.flows {
            let (a, v6) = addr16(f.a.0);
            let (b, _) = addr16(f.b.0);
            let sel = FlowSelector {
                proto: f.proto,
                ends: [(a, f.a.1), (b, f.b.1)],
                is_v6: v6,
            };
            if req.flag {
                ring.flag(&sel);
            }
            ring.flow_packets(&sel, since, until, limit, &mut positions);
        }
        positions.sort_unstable();
        positions.dedup();
    }
    let kept = merge_ports(positions.iter().filter_map(|&p| ring.get(p)).collect());
    let mut out = Answer::default();
    let mut interfaces: Vec<(TapPort, u16)> = Vec::new();
    for k in kept {
        let id = match interfaces.iter().position(|&i| i == (k.port, k.linktype)) {
            Some(i) => i,
            None => {
                interfaces.push((k.port, k.linktype));
                let name = format!("tap port {}", k.port.as_str());
                pcapng::interface(&mut out.data, k.linktype, &name);
                interfaces.len() - 1
            }
        };
        if out.data.len() + pcapng::packet_size(k.data.len()) > MAX_ANSWER {
            out.left_out += 1;
            continue;
        }
        let ts = (k.ts_us as i64).saturating_add(correction_us).max(0) as u64;
        pcapng::packet(&mut out.data, id as u32, ts, k.orig_len, k.data);
        out.packets += 1;
    }
    out
}

/// Answers the packet requests the uplink took, from the engine's ring
/// (an empty answer when the tap keeps no packets).
pub fn serve(engine: &mut FlowEngine, uplink: &mut Uplink) {
    for req in uplink.packet_requests() {
        let correction = uplink.correction_us();
        let answer = match engine.ring_mut() {
            Some(ring) => answer(ring, &req, correction),
            None => Answer::default(),
        };
        uplink.answer(req.id, answer);
    }
}
