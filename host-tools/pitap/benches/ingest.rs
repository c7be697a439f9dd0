//! Collector ingest benchmark (not a test): sealed batches of realistic
//! records through the collector core (open, challenge and replay check,
//! dedup, decode, a sealed reply per group of 64) and the text line format
//! into a sink, as `pitap collect` does minus the socket. Prints flows/s
//! sealed and, for comparison, plaintext.
//!
//! `cargo bench -p pitap --bench ingest`

// Shared with the other benches; this one sends its own records.
#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Instant, SystemTime};

use pitap::collector::{Collector, Outcome};
use pitap_wire::envelope::Key;
use pitap_wire::format::{LineFormat, LineSink};
use pitap_wire::{ConnState, Endpoint, FlowRecord, FlowSink, SideCounters};

const FLOWS: u64 = 400_000;

fn record(i: u64) -> FlowRecord {
    let side = |a: u32, port: u16, n: u64| Endpoint {
        addr: IpAddr::V4(Ipv4Addr::from(a)),
        port,
        mac: [2, 0, 0, 0, (a >> 8) as u8, a as u8],
        counters: SideCounters {
            packets: n,
            bytes: n * 700,
            ip_bytes: n * 686,
            payload_bytes: n * 634,
            tcp_flags: 0x1b,
        },
    };
    FlowRecord {
        start_ms: 1_760_000_000_000 + i * 3,
        end_ms: 1_760_000_000_000 + i * 3 + (i % 5000),
        proto: 6,
        src: side(
            0x0a00_0000 + (i % 4000) as u32,
            40_000 + (i % 20_000) as u16,
            10 + i % 90,
        ),
        dst: side(0xc000_0200 + (i % 300) as u32, 443, 12 + i % 200),
        conn_state: ConnState::SF,
        ..FlowRecord::default()
    }
}

fn run(label: &str, key: Option<Key>) -> f64 {
    // Simpler records than the store bench's (no names): the figures in
    // the README were measured with these.
    let dgs = support::datagrams_of(FLOWS, key.as_ref(), record);
    let bytes: usize = dgs.iter().map(Vec::len).sum();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut keys = BTreeMap::new();
        if let Some(k) = &key {
            keys.insert(support::TAP.to_string(), k.clone());
        }
        let mut collector = Collector::new(keys, key.is_none(), [5; 16], support::SECRET);
        let mut sink = LineSink::new(std::io::sink(), "", LineFormat::Text);
        let from = SocketAddr::from(([127, 0, 0, 1], 9));
        let start = Instant::now();
        let mut flows = 0u64;
        for (i, d) in dgs.iter().enumerate() {
            if let Outcome::Batch { records, .. } = collector.handle(d, from, SystemTime::now()) {
                for r in &records {
                    sink.emit(r);
                }
                flows += records.len() as u64;
            }
            if i % 64 == 63 {
                black_box(collector.take_replies(2048));
            }
        }
        assert_eq!(flows, FLOWS);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let rate = FLOWS as f64 / best;
    println!(
        "  {label:<10} {FLOWS} flows in {} datagrams ({:.1} MB): {:.3} s, {:>9.0} flows/s, {:.0} datagrams/s",
        dgs.len(),
        bytes as f64 / 1e6,
        best,
        rate,
        dgs.len() as f64 / best
    );
    rate
}

fn main() {
    println!("collector ingest (open, replay check, dedup, decode, text line), best of 3:");
    let sealed = run("sealed", Some(Key::from_bytes([0x5a; 32])));
    let plain = run("plaintext", None);
    println!(
        "  sealing costs {:.0}% of plaintext throughput",
        (1.0 - sealed / plain) * 100.0
    );
}
