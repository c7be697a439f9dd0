//! The table under attack: a 65,536-flow table takes 1,000,000 SYNs from
//! spoofed random sources (20,000 a second for 50 s) while 2,000 real TCP
//! connections run through it, each sending data every 10 s. With the
//! default eviction (unanswered flows first) every real connection comes
//! out whole — one record, every packet counted, SF, closed by FIN — the
//! evictions are counted, and nothing is allocated while it happens (the
//! memory is flat). Plain least-recently-seen eviction, for comparison,
//! loses them.

use etherparse::PacketBuilder;
use pitap_bench::alloc_count::allocations_during;
use pitap_flow_core::{EngineConfig, Eviction, FlowEngine, Frame, LinkType};
use pitap_wire::{EndReason, FlowRecord, FlowSink, TapPort};

#[global_allocator]
static GLOBAL: pitap_bench::alloc_count::Counting = pitap_bench::alloc_count::Counting;

const SYNS: u64 = 1_000_000;
const LEGIT: u32 = 2_000;
const ROUNDS: u64 = 5;
const SERVER: [u8; 4] = [10, 9, 0, 2];

/// The records of the real connections (the flood's go uncounted), in a
/// buffer allocated up front.
struct Sink {
    legit: Vec<FlowRecord>,
    flood: u64,
}

impl FlowSink for Sink {
    fn emit(&mut self, r: &FlowRecord) {
        let real = matches!(r.src.addr, std::net::IpAddr::V4(a) if a.octets()[..2] == [172, 16]);
        if real && self.legit.len() < self.legit.capacity() {
            self.legit.push(*r);
        } else {
            self.flood += 1;
        }
    }
}

fn tcp(client: [u8; 4], sport: u16, to_server: bool, flags: &str, payload: usize) -> Vec<u8> {
    let (src, dst, sp, dp) = if to_server {
        (client, SERVER, sport, 443)
    } else {
        (SERVER, client, 443, sport)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, src[3]], [2, 0, 0, 0, 0, dst[3]])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1, 64_000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'P' => b.psh(),
            _ => b,
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x42; payload]).unwrap();
    out
}

fn frame(ts: u64, data: &[u8]) -> Frame<'_> {
    Frame {
        ts_us: ts,
        orig_len: data.len() as u32,
        data,
        link: LinkType::Ethernet,
        port: TapPort::A,
        vlan_tci: None,
    }
}

struct Outcome {
    intact: u32,
    evictions: u64,
    embryonic: u64,
    allocations: u64,
}

fn run(eviction: Eviction) -> Outcome {
    // Frames of the real connections, built before anything is watched:
    // (time in µs, frame).
    let mut legit: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in 0..LEGIT {
        let client = [172, 16, (i >> 8) as u8, i as u8];
        let sport = 40_000 + i as u16;
        let t0 = u64::from(i) * 100; // handshakes in the first 0.2 s
        legit.push((t0, tcp(client, sport, true, "S", 0)));
        legit.push((t0 + 10, tcp(client, sport, false, "SA", 0)));
        legit.push((t0 + 20, tcp(client, sport, true, "A", 0)));
        for r in 1..=ROUNDS {
            let t = r * 10_000_000 + u64::from(i) * 100;
            legit.push((t, tcp(client, sport, true, "PA", 100)));
            legit.push((t + 10, tcp(client, sport, false, "PA", 1000)));
        }
        let t = (ROUNDS + 1) * 10_000_000 - 1_000_000 + u64::from(i) * 100;
        legit.push((t, tcp(client, sport, true, "FA", 0)));
        legit.push((t + 10, tcp(client, sport, false, "FA", 0)));
        legit.push((t + 20, tcp(client, sport, true, "A", 0)));
    }
    legit.sort_by_key(|f| f.0);
    // One SYN frame patched in place: source address and port from an LCG.
    let mut syn = tcp([0, 0, 0, 0], 0, true, "S", 0);
    let mut engine = FlowEngine::new(EngineConfig {
        eviction,
        ..EngineConfig::default()
    });
    let mut sink = Sink {
        legit: Vec::with_capacity(2 * LEGIT as usize),
        flood: 0,
    };
    let mut lcg = 0x1234_5678u64;
    let mut next_legit = 0;
    let end_us = (ROUNDS + 1) * 10_000_000;
    let ((), allocations) = allocations_during(|| {
        for n in 0..SYNS {
            let ts = n * end_us / SYNS;
            while next_legit < legit.len() && legit[next_legit].0 <= ts {
                let (t, data) = &legit[next_legit];
                engine.process(&frame(*t, data), &mut sink);
                next_legit += 1;
            }
            lcg = lcg
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            syn[26..30].copy_from_slice(&((lcg >> 32) as u32 | 0x0100_0000).to_be_bytes());
            syn[34..36].copy_from_slice(&((lcg >> 16) as u16 | 1024).to_be_bytes());
            engine.process(&frame(ts, &syn), &mut sink);
        }
        for (t, data) in &legit[next_legit..] {
            engine.process(&frame(*t, data), &mut sink);
        }
        engine.flush(&mut sink);
    });
    let stats = engine.stats().clone();
    let intact = sink
        .legit
        .iter()
        .filter(|r| {
            r.src.counters.packets == 3 + ROUNDS + 1
                && r.dst.counters.packets == 1 + ROUNDS + 1
                && r.conn_state.as_str() == "SF"
                && r.end_reason == EndReason::TcpClose
                && !r.continuation
        })
        .count() as u32;
    Outcome {
        intact,
        evictions: stats.evictions,
        embryonic: stats.evictions_embryonic,
        allocations,
    }
}

#[test]
fn a_syn_flood_evicts_half_open_flows_not_real_connections() {
    let ours = run(Eviction::UnansweredFirst);
    let lru = run(Eviction::LeastRecent);
    eprintln!(
        "flood of {SYNS} SYNs with {LEGIT} real connections: unanswered-first keeps {} intact \
         ({} evictions, {} of them unanswered); least-recent keeps {} ({} evictions, {} unanswered)",
        ours.intact, ours.evictions, ours.embryonic, lru.intact, lru.evictions, lru.embryonic
    );
    assert_eq!(ours.intact, LEGIT, "every real connection whole");
    assert_eq!(
        ours.evictions, ours.embryonic,
        "only unanswered flows evicted"
    );
    assert!(
        ours.evictions > SYNS - 70_000,
        "evictions counted: {}",
        ours.evictions
    );
    assert_eq!(ours.allocations, 0, "memory stays flat");
    assert!(
        lru.intact < LEGIT / 10,
        "plain LRU loses the real connections ({})",
        lru.intact
    );
}
