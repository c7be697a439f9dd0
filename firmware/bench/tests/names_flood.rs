//! A flood of unique DNS names cannot grow the tap's memory: 300,000 DNS
//! responses, each for a new name and address, go through the engine; the
//! name cache stays at its fixed capacity, nothing is allocated while it
//! happens, and a name learned just before a connection still names it.

use etherparse::PacketBuilder;
use pitap_bench::alloc_count::allocations_during;
use pitap_flow_core::{EngineConfig, FlowEngine, Frame, LinkType};
use pitap_wire::{FlowRecord, FlowSink, TapPort};

#[global_allocator]
static GLOBAL: pitap_bench::alloc_count::Counting = pitap_bench::alloc_count::Counting;

/// A DNS response "nNNNNNN.flood.example A 10.x.y.z" from 172.16.0.53.
fn response(n: u32) -> Vec<u8> {
    let label = format!("n{n:07}");
    let mut dns = vec![(n >> 8) as u8, n as u8, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    dns.push(label.len() as u8);
    dns.extend_from_slice(label.as_bytes());
    dns.extend_from_slice(b"\x05flood\x07example\x00\x00\x01\x00\x01");
    dns.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
    dns.extend_from_slice(&[10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 53], [2, 0, 0, 0, 0, 1])
        .ipv4([172, 16, 0, 53], [172, 16, 0, 1], 64)
        .udp(53, 40_000 + (n % 20_000) as u16)
        .write(&mut out, &dns)
        .unwrap();
    out
}

#[derive(Default)]
struct Names(Vec<String>);

impl FlowSink for Names {
    fn emit(&mut self, r: &FlowRecord) {
        if r.proto == 6 && self.0.len() < self.0.capacity() {
            self.0.push(r.names.responder_name.as_str().to_string());
        }
    }
}

#[test]
fn unique_names_churn_a_fixed_cache() {
    const FLOOD: u32 = 300_000;
    let frames: Vec<Vec<u8>> = (0..FLOOD).map(response).collect();
    let config = EngineConfig::default();
    let capacity = config.name_cache;
    let mut engine = FlowEngine::new(config);
    let mut sink = Names(Vec::with_capacity(16));
    let ((), flooded) = allocations_during(|| {
        for (i, data) in frames.iter().enumerate() {
            let f = Frame {
                ts_us: 1_000_000 + i as u64 * 10,
                orig_len: data.len() as u32,
                data,
                link: LinkType::Ethernet,
                port: TapPort::A,
                vlan_tci: None,
            };
            engine.process(&f, &mut sink);
        }
    });
    let stats = engine.stats().clone();
    assert_eq!(stats.apps.dns_responses, u64::from(FLOOD));
    assert_eq!(stats.apps.dns_malformed, 0);
    assert_eq!(flooded, 0, "allocations during the flood");
    let (cached, room) = engine.name_cache_fill();
    assert!(
        cached <= room && room <= capacity.next_power_of_two(),
        "{cached} names in {room}"
    );
    assert!(
        cached > room / 2,
        "the cache is in use ({cached} of {room})"
    );
    // The last name learned still names a connection to its address.
    let last = FLOOD - 1;
    let mut syn = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 9])
        .ipv4(
            [172, 16, 0, 1],
            [10, (last >> 16) as u8, (last >> 8) as u8, last as u8],
            64,
        )
        .tcp(50_000, 443, 1, 1000)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    let f = Frame {
        ts_us: 10_000_000,
        orig_len: syn.len() as u32,
        data: &syn,
        link: LinkType::Ethernet,
        port: TapPort::A,
        vlan_tci: None,
    };
    engine.process(&f, &mut sink);
    engine.flush(&mut sink);
    assert_eq!(sink.0, [format!("n{last:07}.flood.example")]);
}
