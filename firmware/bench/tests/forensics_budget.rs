//! The packet ring and the file tracker in their fixed memory under a flood
//! of new connections: 3,000 HTTP downloads, 600 open at once (far more
//! than the 64 followed connections and a ring of 4 MiB can hold), go
//! through the engine with both on. Nothing is allocated after warm-up,
//! the ring never holds more than its budget, what did not fit is counted
//! (overwritten packets, connections not followed), and every object the
//! tracker followed is hashed right.

use etherparse::PacketBuilder;
use pitap_bench::alloc_count::allocations_during;
use pitap_flow_core::files::FileConfig;
use pitap_flow_core::ring::RingConfig;
use pitap_flow_core::{EngineConfig, FlowEngine, Frame, LinkType};
use pitap_wire::{FileRecord, FlowRecord, FlowSink, TapPort};

#[global_allocator]
static GLOBAL: pitap_bench::alloc_count::Counting = pitap_bench::alloc_count::Counting;

const CONNECTIONS: u32 = 3_000;
const OPEN: u32 = 600;
const BODY: usize = 20_000;
const SEGMENT: usize = 1_400;

/// Counts, in memory taken up front.
struct Sink {
    records: u64,
    files: Vec<FileRecord>,
}

impl FlowSink for Sink {
    fn emit(&mut self, _: &FlowRecord) {
        self.records += 1;
    }
    fn file(&mut self, f: &FileRecord) {
        if self.files.len() < self.files.capacity() {
            self.files.push(*f);
        }
    }
}

fn body() -> Vec<u8> {
    (0..BODY).map(|i| (i * 7 % 251) as u8).collect()
}

/// The packets of connection `n`: handshake, request, response in
/// segments, FIN/ACK both ways.
fn connection(n: u32, body: &[u8]) -> Vec<Vec<u8>> {
    let client = [10, 1, (n >> 8) as u8, n as u8];
    let server = [10, 2, 0, 1];
    let sport = 20_000 + (n % 40_000) as u16;
    let pkt = |to_server: bool, seq: u32, ack: u32, flags: &str, payload: &[u8]| {
        let (s, d, sp, dp) = if to_server {
            (client, server, sport, 80)
        } else {
            (server, client, 80, sport)
        };
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, s[3]], [2, 0, 0, 0, 0, d[3]])
            .ipv4(s, d, 64)
            .tcp(sp, dp, seq, 64_000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(ack),
                'F' => b.fin(),
                _ => b,
            };
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    };
    let request = b"GET /f.bin HTTP/1.1\r\nHost: files.example\r\n\r\n";
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    let (c0, s0) = (1000u32, 5000u32);
    let mut out = vec![
        pkt(true, c0, 0, "S", &[]),
        pkt(false, s0, c0 + 1, "SA", &[]),
        pkt(true, c0 + 1, s0 + 1, "A", &[]),
        pkt(true, c0 + 1, s0 + 1, "A", request),
    ];
    let c1 = c0 + 1 + request.len() as u32;
    for (i, seg) in response.chunks(SEGMENT).enumerate() {
        out.push(pkt(false, s0 + 1 + (i * SEGMENT) as u32, c1, "A", seg));
    }
    let s1 = s0 + 1 + response.len() as u32;
    out.push(pkt(false, s1, c1, "FA", &[]));
    out.push(pkt(true, c1, s1 + 1, "FA", &[]));
    out.push(pkt(false, s1 + 1, c1 + 1, "A", &[]));
    out
}

#[test]
fn ring_and_files_stay_in_their_memory_under_a_flood() {
    let body = body();
    // Connections interleaved: OPEN at once, packet by packet.
    let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut ts = 1_700_000_000_000_000u64;
    for group in (0..CONNECTIONS).step_by(OPEN as usize) {
        let conns: Vec<Vec<Vec<u8>>> = (group..(group + OPEN).min(CONNECTIONS))
            .map(|n| connection(n, &body))
            .collect();
        let longest = conns.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for c in &conns {
                if let Some(p) = c.get(i) {
                    ts += 5;
                    packets.push((ts, p.clone()));
                }
            }
        }
    }
    let mut engine = FlowEngine::new(EngineConfig {
        files: FileConfig {
            hash_bytes_per_s: 0,
            ..FileConfig::default()
        },
        ring: RingConfig {
            bytes: 4 << 20,
            cutoff: 8 << 10,
            flows: 4096,
        },
        ..EngineConfig::default()
    });
    let mut sink = Sink {
        records: 0,
        files: Vec::with_capacity(CONNECTIONS as usize),
    };
    let capacity = engine.ring().map(|r| r.capacity() as u64).unwrap();
    let mut over_budget = 0u64;
    let mut feed = |engine: &mut FlowEngine, sink: &mut Sink, part: &[(u64, Vec<u8>)]| {
        for (ts, data) in part {
            let frame = Frame {
                ts_us: *ts,
                orig_len: data.len() as u32,
                data,
                link: LinkType::Ethernet,
                port: TapPort::A,
                vlan_tci: None,
            };
            engine.process(&frame, sink);
            if engine.ring().is_some_and(|r| r.used() > capacity) {
                over_budget += 1;
            }
        }
    };
    let (warm, rest) = packets.split_at(20_000);
    feed(&mut engine, &mut sink, warm);
    let ((), allocations) = allocations_during(|| {
        feed(&mut engine, &mut sink, rest);
        engine.flush(&mut sink);
    });
    assert_eq!(
        allocations,
        0,
        "allocations while {} packets went through",
        rest.len()
    );
    assert_eq!(over_budget, 0, "the ring stays in its budget");
    let ring = engine.ring().unwrap().stats().clone();
    assert!(ring.packets_overwritten > 10_000, "{ring:?}");
    assert!(ring.packets_cut > 0 && ring.flows_forgotten > 0, "{ring:?}");
    let files = engine.file_stats().clone();
    assert!(files.streams_full > 1_000, "{files:?}");
    assert_eq!(files.objects, files.streams, "{files:?}");
    assert_eq!(files.streams + files.streams_full, u64::from(CONNECTIONS));
    assert_eq!(sink.records, u64::from(CONNECTIONS));
    // Every object followed came out whole, with the body's SHA-256 as
    // sha256sum has it.
    let path = std::env::temp_dir().join(format!("pitap-body-{}", std::process::id()));
    std::fs::write(&path, &body).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let want = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    assert_eq!(sink.files.len() as u64, files.objects);
    for f in &sink.files {
        assert_eq!(f.size, BODY as u64);
        let sha = f.hashes.map(|h| pitap_wire::file::hex(&h.sha256));
        assert_eq!(sha.as_deref(), Some(want.as_str()));
    }
    eprintln!("ring {ring:?}\nfiles {files:?}");
}
