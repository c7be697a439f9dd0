//! Collector ingest benchmark (not a test): sealed batches of realistic
//! records through the collector core (open, challenge and replay check,
//! dedup, decode, a sealed reply per group of 64) and the text line format
//! into a sink, as `pitap collect` does minus the socket. Prints flows/s
//! sealed and, for comparison, plaintext.
//!
//! `cargo bench -p pitap --bench ingest`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Instant, SystemTime};

use pitap::collector::{Collector, Outcome};
use pitap_wire::envelope::{self, DatagramKind, Header, Key};
use pitap_wire::format::{LineFormat, LineSink};
use pitap_wire::{
    BatchHeader, BatchWriter, ConnState, Endpoint, FlowRecord, FlowSink, SideCounters, WireError,
};

const FLOWS: u64 = 400_000;
/// The collector's secret in this bench, so the batches carry the
/// challenge it gives the tap's boot.
const SECRET: [u8; 32] = [0x77; 32];
const BOOT: [u8; 16] = [3; 16];

fn record(i: u64) -> FlowRecord {
    let side = |a: u32, port: u16, n: u64| Endpoint {
        addr: IpAddr::V4(Ipv4Addr::from(a)),
        port,
        mac: [2, 0, 0, 0, (a >> 8) as u8, a as u8],
        counters: SideCounters {
            packets: n,
            bytes: n * 700,
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

/// The datagrams a tap would send for FLOWS records.
fn datagrams(key: Option<&Key>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = BatchWriter::default();
    let mut seq = 0;
    let challenge = envelope::derive_challenge(&Key::from_bytes(SECRET), &BOOT, 0);
    let seal = |w: &BatchWriter, seq: u64| {
        let h = Header {
            sealed: key.is_some(),
            kind: DatagramKind::Batch,
            tap_id: "bench-tap",
            boot: BOOT,
            counter: seq,
            challenge,
        };
        envelope::seal(&h, key, w.as_bytes()).unwrap()
    };
    let header = |seq, base_ms| BatchHeader {
        tap_id: "bench-tap",
        seq,
        base_ms,
        ..BatchHeader::default()
    };
    for i in 0..FLOWS {
        let r = record(i);
        if !w.is_started() {
            w.start(&header(seq, r.start_ms)).unwrap();
        }
        if w.push(&r) == Err(WireError::Full) {
            out.push(seal(&w, seq));
            seq += 1;
            w.start(&header(seq, r.start_ms)).unwrap();
            w.push(&r).unwrap();
        }
    }
    out.push(seal(&w, seq));
    out
}

fn run(label: &str, key: Option<Key>) -> f64 {
    let dgs = datagrams(key.as_ref());
    let bytes: usize = dgs.iter().map(Vec::len).sum();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut keys = BTreeMap::new();
        if let Some(k) = &key {
            keys.insert("bench-tap".to_string(), k.clone());
        }
        let mut collector = Collector::new(keys, key.is_none(), [5; 16], SECRET);
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
