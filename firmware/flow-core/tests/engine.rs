//! The engine on frames built here: malformed frames are counted by reason,
//! arbitrary bytes never panic, and every IP frame ends up in exactly one
//! record.

use etherparse::PacketBuilder;
use pitap_flow_core::{Anomaly, EngineConfig, FlowEngine, Frame, LinkType};
use pitap_wire::{FlowRecord, TapPort};
use proptest::prelude::*;

fn frame(data: &[u8], ts_us: u64) -> Frame<'_> {
    Frame {
        ts_us,
        orig_len: data.len() as u32,
        data,
        link: LinkType::Ethernet,
        port: TapPort::A,
        vlan_tci: None,
    }
}

fn udp_frame(sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(sport, 53)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn run(frames: &[Vec<u8>]) -> (FlowEngine, Vec<FlowRecord>) {
    let mut engine = FlowEngine::new(EngineConfig {
        capacity: 64,
        ..EngineConfig::default()
    });
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        engine.process(&frame(f, 1_000_000 + i as u64), &mut out);
    }
    engine.flush(&mut out);
    (engine, out)
}

#[test]
fn malformed_frames_are_counted_by_reason() {
    let good = udp_frame(1000, b"hello");
    let mut bad_version = good.clone();
    bad_version[14] = 0x55; // IP version 5
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43; // IHL 3 words < 20 bytes
    let vlan_cut = [&good[..12], &[0x81, 0x00, 0x00][..]].concat();
    let mpls_cut = [&good[..12], &[0x88, 0x47, 0x00, 0x01][..]].concat();
    let mpls_not_ip = [
        &good[..12],
        &[0x88, 0x47, 0x00, 0x01, 0x01, 0x40, 0x00, 0x00, 0x00, 0x00][..],
    ]
    .concat();
    let frames = vec![
        good[..10].to_vec(), // shorter than Ethernet
        vlan_cut,            // cut inside the VLAN tag
        mpls_cut,            // cut inside the label stack
        mpls_not_ip,         // label stack over a control word
        good[..20].to_vec(), // cut inside the IP header
        bad_version,
        bad_ihl,
        good.clone(),
    ];
    let (engine, records) = run(&frames);
    let s = engine.stats();
    for (anomaly, n) in [
        (Anomaly::TruncatedLink, 1),
        (Anomaly::TruncatedVlan, 1),
        (Anomaly::TruncatedMpls, 1),
        (Anomaly::MplsNotIp, 1),
        (Anomaly::TruncatedIp, 1),
        (Anomaly::BadIpVersion, 1),
        (Anomaly::BadIpHeader, 1),
    ] {
        assert_eq!(s.anomaly(anomaly), n, "{anomaly:?}");
    }
    assert_eq!(s.dropped(), 7);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].src.counters.packets, 1);
}

#[test]
fn non_ip_is_counted_per_ethertype() {
    let arp = [&[0xff; 6][..], &[2, 0, 0, 0, 0, 1], &[0x08, 0x06], &[0; 28]].concat();
    let lldp = [
        &[0x01, 0x80, 0xc2, 0, 0, 0x0e][..],
        &[2, 0, 0, 0, 0, 1],
        &[0x88, 0xcc],
        &[0; 30],
    ]
    .concat();
    let (engine, records) = run(&[arp.clone(), arp, lldp]);
    assert!(records.is_empty());
    assert_eq!(engine.stats().non_ip.get(0x0806), 2);
    assert_eq!(engine.stats().non_ip.get(0x88cc), 1);
}

#[test]
fn vlan_and_mpls_reach_the_inner_flow() {
    let inner = udp_frame(2000, b"x");
    // Three VLAN tags (only two are kept), then MPLS with two labels.
    let mut f = inner[..12].to_vec();
    f.extend_from_slice(&[
        0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x81, 0x00, 0x00, 0x1e,
    ]);
    f.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]);
    f.extend_from_slice(&inner[14..]);
    let (_, records) = run(&[f]);
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].vlan, records[0].inner_vlan), (10, 20));
    assert_eq!(records[0].src.port, 2000);
    assert_eq!(records[0].dst.port, 53);
}

#[test]
fn replays_are_deterministic() {
    let frames: Vec<Vec<u8>> = (0..500)
        .map(|i| udp_frame(1000 + (i % 50) as u16, &[0; 20]))
        .collect();
    let (_, a) = run(&frames);
    let (_, b) = run(&frames);
    assert_eq!(a, b);
    assert_eq!(a.len(), 50);
}

proptest! {
    /// Arbitrary bytes as any link type: no panic, every frame counted once.
    #[test]
    fn arbitrary_frames_never_panic(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..50),
        link in 0usize..7,
    ) {
        let links = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp,
                     LinkType::Ipv4, LinkType::Ipv6, LinkType::Null];
        let mut engine = FlowEngine::new(EngineConfig { capacity: 8, ..EngineConfig::default() });
        let mut out: Vec<FlowRecord> = Vec::new();
        for (i, data) in frames.iter().enumerate() {
            let mut f = frame(data, i as u64 * 1_000);
            f.link = links[link];
            engine.process(&f, &mut out);
        }
        engine.flush(&mut out);
        let s = engine.stats();
        let non_ip: u64 = s.non_ip.iter().map(|(_, n)| n).sum::<u64>() + s.non_ip.other;
        prop_assert_eq!(s.frames, frames.len() as u64);
        prop_assert_eq!(s.ip_frames + non_ip + s.dropped(), s.frames);
        let in_records: u64 = out.iter().map(|r| r.total_packets()).sum();
        prop_assert_eq!(in_records, s.ip_frames);
    }

    /// Mutated real-looking frames: every IP frame is in exactly one record.
    #[test]
    fn mutated_udp_frames_are_conserved(flips in proptest::collection::vec((0usize..60, any::<u8>()), 0..6), n in 1usize..40) {
        let mut frames = Vec::new();
        for i in 0..n {
            let mut f = udp_frame(3000 + i as u16 % 7, b"payload");
            for (at, v) in &flips {
                if let Some(b) = f.get_mut(*at) { *b = *v; }
            }
            frames.push(f);
        }
        let (engine, records) = run(&frames);
        let in_records: u64 = records.iter().map(|r| r.total_packets()).sum();
        prop_assert_eq!(in_records, engine.stats().ip_frames);
    }
}

#[test]
fn records_say_how_many_frames_the_rings_dropped_while_they_were_open() {
    let mut engine = FlowEngine::new(EngineConfig {
        capacity: 64,
        idle_timeout_us: 10_000_000,
        ..EngineConfig::default()
    });
    let mut out = Vec::new();
    let t0 = 1_000_000_000;
    // Flow 1000 opens, the ring drops 7 frames, flow 2000 opens, 5 more drop.
    engine.process(&frame(&udp_frame(1000, b"a"), t0), &mut out);
    engine.note_ring_drops(7);
    engine.process(&frame(&udp_frame(2000, b"b"), t0 + 1_000), &mut out);
    engine.note_ring_drops(5);
    // Flow 1000 ends by its idle timeout; flow 3000 starts after every drop.
    engine.expire(t0 + 10_500_000, &mut out);
    engine.process(&frame(&udp_frame(2000, b"b"), t0 + 10_600_000), &mut out);
    engine.process(&frame(&udp_frame(3000, b"c"), t0 + 10_700_000), &mut out);
    engine.flush(&mut out);
    let drops = |port: u16| {
        out.iter()
            .find(|r| r.src.port == port)
            .map(|r| r.ring_drops)
            .unwrap()
    };
    assert_eq!((drops(1000), drops(2000), drops(3000)), (12, 5, 0));
}
