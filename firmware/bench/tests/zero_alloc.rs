//! After warm-up, the flow core allocates nothing per packet: a counting
//! global allocator watches this thread while a generated capture of
//! 400,000 packets (TCP, DNS, ICMP, IPv6, VLANs, ~60,000 flows) goes
//! through the engine, including timeouts, evictions from a deliberately
//! small table, and the final flush.

use pitap_bench::alloc_count::allocations_during;
use pitap_bench::gen::{generate, GenConfig};
use pitap_flow_core::{EngineConfig, FlowEngine, Frame, LinkType};
use pitap_wire::{FlowRecord, FlowSink, TapPort};

#[global_allocator]
static GLOBAL: pitap_bench::alloc_count::Counting = pitap_bench::alloc_count::Counting;

/// Keeps a running sum of what it is given, and nothing else.
#[derive(Default)]
struct Tally {
    records: u64,
    packets: u64,
}

impl FlowSink for Tally {
    fn emit(&mut self, r: &FlowRecord) {
        self.records += 1;
        self.packets += r.total_packets();
    }
}

#[test]
fn no_allocation_per_packet_after_warm_up() {
    // The capture, in memory before anything is counted.
    let config = GenConfig {
        packets: 400_000,
        concurrent: 12_000,
        ..GenConfig::default()
    };
    let mut data = Vec::new();
    let mut frames: Vec<(u64, usize, usize)> = Vec::new();
    generate(&config, |ts, frame| {
        frames.push((ts, data.len(), frame.len()));
        data.extend_from_slice(frame);
    });
    // 8,192 flows for 12,000 concurrent conversations: evictions happen.
    let mut engine = FlowEngine::new(EngineConfig {
        capacity: 8_192,
        idle_timeout_us: 2_000_000,
        ..EngineConfig::default()
    });
    let mut sink = Tally::default();
    let feed = |engine: &mut FlowEngine, sink: &mut Tally, part: &[(u64, usize, usize)]| {
        for &(ts, at, len) in part {
            let frame = Frame {
                ts_us: ts,
                orig_len: len as u32,
                data: &data[at..at + len],
                link: LinkType::Ethernet,
                port: TapPort::A,
                vlan_tci: None,
            };
            engine.process(&frame, sink);
        }
    };
    let (warm, rest) = frames.split_at(50_000);
    feed(&mut engine, &mut sink, warm);
    let ((), allocations) = allocations_during(|| {
        feed(&mut engine, &mut sink, rest);
        engine.flush(&mut sink);
    });
    let stats = engine.stats().clone();
    assert_eq!(stats.frames, 400_000);
    assert!(
        stats.evictions > 1_000,
        "the small table evicted ({})",
        stats.evictions
    );
    assert!(sink.records > 50_000, "{} records", sink.records);
    assert_eq!(
        sink.packets, 400_000,
        "every packet is in exactly one record"
    );
    assert_eq!(
        allocations, 0,
        "allocations while processing 350,000 packets"
    );
}
