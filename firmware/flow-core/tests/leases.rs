//! Leases name flows: after a DHCPv4 ACK or a DHCPv6 Reply gives a device
//! its address and hostname, the flows that device starts carry the name.

use etherparse::PacketBuilder;
use pitap_flow_core::{EngineConfig, FlowEngine, Frame, LinkType};
use pitap_wire::{FlowRecord, TapPort};

const MAC: [u8; 6] = [0x3c, 0x22, 0xfb, 0, 0, 9];

fn frame(ts_us: u64, data: &[u8]) -> Frame<'_> {
    Frame {
        ts_us,
        orig_len: data.len() as u32,
        data,
        link: LinkType::Ethernet,
        port: TapPort::A,
        vlan_tci: None,
    }
}

fn dhcp6_reply(addr: [u8; 16]) -> Vec<u8> {
    let mut m = vec![7, 1, 2, 3];
    m.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1]);
    m.extend_from_slice(&MAC);
    m.extend_from_slice(&[0, 3, 0, 40, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 24]);
    m.extend_from_slice(&addr);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&[
        0, 39, 0, 12, 0, 5, b'a', b'l', b'i', b'c', b'e', 3, b'l', b'a', b'n', 0,
    ]);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], MAC)
        .ipv6(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            64,
        )
        .udp(547, 546)
        .write(&mut out, &m)
        .unwrap();
    out
}

fn dhcp4_ack(addr: [u8; 4]) -> Vec<u8> {
    let mut m = vec![2, 1, 6, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&addr);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&MAC);
    m.extend_from_slice(&[0; 10 + 192]);
    m.extend_from_slice(&[
        0x63, 0x82, 0x53, 0x63, 53, 1, 5, 12, 3, b'b', b'o', b'b', 255,
    ]);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], MAC)
        .ipv4([10, 0, 0, 1], addr, 64)
        .udp(67, 68)
        .write(&mut out, &m)
        .unwrap();
    out
}

fn syn_v6(from: [u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC, [2, 0, 0, 0, 0, 1])
        .ipv6(
            from,
            [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            64,
        )
        .tcp(40_000, 443, 1, 1000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

fn syn_v4(from: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC, [2, 0, 0, 0, 0, 1])
        .ipv4(from, [192, 0, 2, 80], 64)
        .tcp(40_001, 80, 1, 1000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

#[test]
fn dhcp_leases_name_the_devices_flows() {
    let v6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    let mut engine = FlowEngine::new(EngineConfig::default());
    let mut records: Vec<FlowRecord> = Vec::new();
    for (t, f) in [
        (1_000_000, dhcp6_reply(v6)),
        (1_100_000, dhcp4_ack([10, 0, 0, 42])),
        (2_000_000, syn_v6(v6)),
        (2_100_000, syn_v4([10, 0, 0, 42])),
    ] {
        engine.process(&frame(t, &f), &mut records);
    }
    engine.flush(&mut records);
    let by_port = |p: u16| records.iter().find(|r| r.dst.port == p).unwrap();
    assert_eq!(by_port(443).names.client_hostname.as_str(), "alice.lan");
    assert_eq!(by_port(80).names.client_hostname.as_str(), "bob");
    assert_eq!(engine.stats().apps.dhcp_messages, 2);
}
