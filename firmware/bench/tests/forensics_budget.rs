//! The packet ring and the file tracker in their fixed memory under a flood
//! of new connections: 3,000 HTTP downloads, 600 open at once (far more
//! than the 64 followed connections and a ring of 4 MiB can hold), go
//! through the engine with both on. Nothing is allocated after warm-up,
//! the ring never holds more than its budget, what did not fit is counted
//! (overwritten packets, connections not followed), and every object the
//! tracker followed is hashed right.

use pitap_bench::alloc_count::allocations_during;
use pitap_bench::http;
use pitap_flow_core::files::FileConfig;
use pitap_flow_core::ring::RingConfig;
use pitap_flow_core::{EngineConfig, FlowEngine, Frame, LinkType};
use pitap_wire::{FileRecord, FlowRecord, FlowSink, TapPort};

#[global_allocator]
static GLOBAL: pitap_bench::alloc_count::Counting = pitap_bench::alloc_count::Counting;

const CONNECTIONS: u32 = 3_000;
const OPEN: u32 = 600;
const BODY: usize = 20_000;

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

#[test]
fn ring_and_files_stay_in_their_memory_under_a_flood() {
    let body = http::body(BODY);
    // Connections interleaved: OPEN at once, packet by packet.
    let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
    http::downloads(CONNECTIONS, OPEN, &body, |ts, p| {
        packets.push((ts, p.to_vec()))
    });
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

/// Objects over the size limit or the hashing budget are counted and
/// marked, with their sizes, and carry no digests.
#[test]
fn objects_past_the_limits_are_marked_not_hashed() {
    let body = http::body(BODY);
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
    http::downloads(10, 10, &body, |ts, p| frames.push((ts, p.to_vec())));
    let run = |files: FileConfig| {
        let mut engine = FlowEngine::new(EngineConfig {
            files,
            ..EngineConfig::default()
        });
        let mut sink = Sink {
            records: 0,
            files: Vec::with_capacity(16),
        };
        for (ts, data) in &frames {
            let frame = Frame {
                ts_us: *ts,
                orig_len: data.len() as u32,
                data,
                link: LinkType::Ethernet,
                port: TapPort::A,
                vlan_tci: None,
            };
            engine.process(&frame, &mut sink);
        }
        engine.flush(&mut sink);
        (sink.files, engine.file_stats().clone())
    };
    let (files, stats) = run(FileConfig {
        max_object_bytes: 5_000,
        hash_bytes_per_s: 0,
        ..FileConfig::default()
    });
    assert_eq!(stats.too_large, 10);
    assert!(files
        .iter()
        .all(|f| f.flags == pitap_wire::file_flags::TOO_LARGE
            && f.hashes.is_none()
            && f.size == BODY as u64));
    // A budget of 50,000 bytes a second: the first two bodies, then none
    // (the ten come within 3 ms).
    let (files, stats) = run(FileConfig {
        hash_bytes_per_s: 50_000,
        ..FileConfig::default()
    });
    assert_eq!((stats.hashed, stats.over_budget), (2, 8), "{stats:?}");
    assert_eq!(
        files
            .iter()
            .filter(|f| f.flags == pitap_wire::file_flags::OVER_BUDGET)
            .count(),
        8
    );
    assert!(files.iter().all(|f| f.size == BODY as u64));
}
