//! conn_state, action and end reason for the ways a connection can go,
//! from packets the test writes into pcap files and from real captures.

mod common;

use std::path::PathBuf;

use common::*;
use etherparse::PacketBuilder;
use pitap_flow_core::LinkType;
use pitapd::source::pcap_writer::PcapWriter;
use serde_json::Value;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT: [u8; 4] = [10, 1, 2, 3];
const SERVER: [u8; 4] = [10, 9, 8, 7];

/// Writes a conversation between CLIENT:40000 and SERVER:80 into a pcap.
struct Capture {
    writer: PcapWriter<Vec<u8>>,
    now_us: u64,
    client_port: u16,
}

impl Capture {
    fn new() -> Self {
        Capture {
            writer: PcapWriter::new(Vec::new(), LinkType::Ethernet).unwrap(),
            now_us: 1_700_000_000_000_000,
            client_port: 40_000,
        }
    }

    fn endpoints(&self, from_client: bool) -> ([u8; 6], [u8; 6], [u8; 4], [u8; 4], u16, u16) {
        if from_client {
            (CLIENT_MAC, SERVER_MAC, CLIENT, SERVER, self.client_port, 80)
        } else {
            (SERVER_MAC, CLIENT_MAC, SERVER, CLIENT, 80, self.client_port)
        }
    }

    fn write(&mut self, bytes: Vec<u8>, after_ms: u64) {
        self.now_us += after_ms * 1000;
        let len = bytes.len() as u32;
        self.writer.write_packet(self.now_us, &bytes, len).unwrap();
    }

    /// One TCP segment; flags from "S", "A", "F", "R", "P".
    fn tcp(&mut self, from_client: bool, flags: &str, payload: usize, after_ms: u64) -> &mut Self {
        let (sm, dm, sa, da, sp, dp) = self.endpoints(from_client);
        let mut b = PacketBuilder::ethernet2(sm, dm)
            .ipv4(sa, da, 64)
            .tcp(sp, dp, 1000, 65_000);
        for flag in flags.chars() {
            b = match flag {
                'S' => b.syn(),
                'A' => b.ack(1),
                'F' => b.fin(),
                'R' => b.rst(),
                'P' => b.psh(),
                other => panic!("flag {other}"),
            };
        }
        let mut bytes = Vec::new();
        b.write(&mut bytes, &vec![0x41; payload]).unwrap();
        self.write(bytes, after_ms);
        self
    }

    fn udp(&mut self, from_client: bool, payload: usize, after_ms: u64) -> &mut Self {
        let (sm, dm, sa, da, sp, dp) = self.endpoints(from_client);
        let mut bytes = Vec::new();
        PacketBuilder::ethernet2(sm, dm)
            .ipv4(sa, da, 64)
            .udp(sp, dp)
            .write(&mut bytes, &vec![0x42; payload])
            .unwrap();
        self.write(bytes, after_ms);
        self
    }

    fn handshake(&mut self) -> &mut Self {
        self.tcp(true, "S", 0, 1)
            .tcp(false, "SA", 0, 1)
            .tcp(true, "A", 0, 1)
    }

    fn flows(&mut self, name: &str, extra: &[&str]) -> Vec<Value> {
        let writer = std::mem::replace(
            &mut self.writer,
            PcapWriter::new(Vec::new(), LinkType::Ethernet).unwrap(),
        );
        let dir = temp_dir(name);
        let path: PathBuf = dir.join(format!("{name}.pcap"));
        std::fs::write(&path, writer.into_inner()).unwrap();
        let flows = flows_json(&path, extra);
        let _ = std::fs::remove_dir_all(dir);
        flows
    }
}

fn summary(f: &Value) -> (String, String, String) {
    (
        f["conn_state"].as_str().unwrap().to_string(),
        f["action"].as_str().unwrap().to_string(),
        f["end_reason"].as_str().unwrap().to_string(),
    )
}

fn one(flows: &[Value]) -> (String, String, String) {
    assert_eq!(flows.len(), 1, "{flows:#?}");
    summary(&flows[0])
}

fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

#[test]
fn complete_connection_is_sf_accept_closed() {
    let mut c = Capture::new();
    c.handshake()
        .tcp(true, "PA", 100, 1)
        .tcp(false, "PA", 500, 1)
        .tcp(true, "FA", 0, 1)
        .tcp(false, "FA", 0, 1)
        .tcp(true, "A", 0, 1);
    let flows = c.flows("sf", &[]);
    assert_eq!(one(&flows), s("SF", "ACCEPT", "tcp-close"));
    let f = &flows[0];
    // The server never sent a pure ACK, so no "a".
    assert_eq!(f["history"], "ShADdFf");
    assert_eq!(f["src_addr"], "10.1.2.3");
    assert_eq!(f["dst_port"], 80);
    assert_eq!(
        (f["src_pkts"].as_u64(), f["dst_pkts"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(f["src_mac"], "02:00:00:00:00:01");
    assert_eq!(f["dst_mac"], "02:00:00:00:00:02");
}

#[test]
fn refused_connection_is_rej_reject() {
    let mut c = Capture::new();
    c.tcp(true, "S", 0, 1).tcp(false, "RA", 0, 1);
    assert_eq!(one(&c.flows("rej", &[])), s("REJ", "REJECT", "tcp-reset"));
}

#[test]
fn unanswered_syns_are_s0_noreply() {
    let mut c = Capture::new();
    c.tcp(true, "S", 0, 1)
        .tcp(true, "S", 0, 1000)
        .tcp(true, "S", 0, 2000);
    let flows = c.flows("s0", &[]);
    assert_eq!(one(&flows), s("S0", "NOREPLY", "shutdown"));
    assert_eq!(flows[0]["src_pkts"], 3);
    // Without more packets the idle timeout ends it.
    let mut c = Capture::new();
    c.tcp(true, "S", 0, 1);
    c.client_port += 1;
    c.tcp(true, "S", 0, 61_000);
    let flows = c.flows("s0-idle", &[]);
    assert_eq!(summary(&flows[0]), s("S0", "NOREPLY", "idle"));
}

#[test]
fn resets_after_establishment() {
    let mut c = Capture::new();
    c.handshake().tcp(true, "PA", 10, 1).tcp(true, "RA", 0, 1);
    assert_eq!(one(&c.flows("rsto", &[])), s("RSTO", "ACCEPT", "tcp-reset"));
    let mut c = Capture::new();
    c.handshake().tcp(true, "PA", 10, 1).tcp(false, "RA", 0, 1);
    assert_eq!(one(&c.flows("rstr", &[])), s("RSTR", "ACCEPT", "tcp-reset"));
    let mut c = Capture::new();
    c.tcp(true, "S", 0, 1).tcp(true, "R", 0, 1);
    assert_eq!(
        one(&c.flows("rstos0", &[])),
        s("RSTOS0", "NOREPLY", "tcp-reset")
    );
}

#[test]
fn half_closes() {
    let mut c = Capture::new();
    c.handshake().tcp(true, "FA", 0, 1);
    assert_eq!(one(&c.flows("s2", &[])), s("S2", "ACCEPT", "shutdown"));
    let mut c = Capture::new();
    c.handshake().tcp(false, "FA", 0, 1);
    assert_eq!(one(&c.flows("s3", &[])), s("S3", "ACCEPT", "shutdown"));
    let mut c = Capture::new();
    c.tcp(true, "S", 0, 1).tcp(true, "FA", 0, 1);
    assert_eq!(one(&c.flows("sh", &[])), s("SH", "NOREPLY", "shutdown"));
    let mut c = Capture::new();
    c.handshake();
    assert_eq!(one(&c.flows("s1", &[])), s("S1", "ACCEPT", "shutdown"));
}

#[test]
fn midstream_and_missing_syn() {
    let mut c = Capture::new();
    c.tcp(true, "PA", 100, 1).tcp(false, "PA", 100, 1);
    assert_eq!(one(&c.flows("oth", &[])), s("OTH", "ACCEPT", "shutdown"));
    // The first packet seen is the SYN-ACK: its receiver initiated.
    let mut c = Capture::new();
    c.tcp(false, "SA", 0, 1)
        .tcp(true, "A", 0, 1)
        .tcp(true, "PA", 5, 1);
    let flows = c.flows("flip", &[]);
    assert_eq!(flows[0]["src_addr"], "10.1.2.3");
    assert_eq!(flows[0]["history"], "^hAD");
    assert_eq!(flows[0]["action"], "ACCEPT");
}

#[test]
fn port_reuse_starts_a_new_flow() {
    let mut c = Capture::new();
    c.handshake()
        .tcp(true, "FA", 0, 1)
        .tcp(false, "FA", 0, 1)
        .tcp(true, "A", 0, 1);
    c.handshake().tcp(true, "RA", 0, 1);
    let flows = c.flows("reuse", &[]);
    let states: Vec<_> = flows.iter().map(summary).collect();
    assert_eq!(
        states,
        vec![
            s("SF", "ACCEPT", "tcp-close"),
            s("RSTO", "ACCEPT", "tcp-reset")
        ]
    );
}

#[test]
fn udp_answered_or_not() {
    let mut c = Capture::new();
    c.udp(true, 40, 1).udp(false, 200, 1);
    assert_eq!(one(&c.flows("udp", &[])), s("OTH", "ACCEPT", "shutdown"));
    let mut c = Capture::new();
    c.udp(true, 40, 1).udp(true, 40, 1);
    assert_eq!(one(&c.flows("udp1", &[])), s("OTH", "NOREPLY", "shutdown"));
}

#[test]
fn active_timeout_reports_long_flows_in_parts() {
    let mut c = Capture::new();
    c.udp(true, 10, 1);
    for _ in 0..70 {
        c.udp(true, 10, 10_000).udp(false, 10, 1);
    }
    let flows = c.flows("active", &[]);
    let reasons: Vec<&str> = flows
        .iter()
        .map(|f| f["end_reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["active", "active", "shutdown"]);
    let conts: Vec<bool> = flows
        .iter()
        .map(|f| f["continuation"].as_bool().unwrap())
        .collect();
    assert_eq!(conts, [false, true, true]);
    let pkts: u64 = flows.iter().map(|f| f["pkts"].as_u64().unwrap()).sum();
    assert_eq!(pkts, 141, "no packet lost across parts");
    assert!(flows[0]["duration_ms"].as_u64().unwrap() < 300_000);
    // A shorter active timeout makes more parts.
    let mut c = Capture::new();
    c.udp(true, 10, 1);
    for _ in 0..70 {
        c.udp(true, 10, 10_000);
    }
    assert_eq!(c.flows("active2", &["--active-timeout", "100"]).len(), 8);
}

#[test]
fn full_table_evicts_least_recently_seen() {
    let mut c = Capture::new();
    for _ in 0..10 {
        c.udp(true, 10, 1);
        c.client_port += 1;
    }
    let flows = c.flows("evict", &["--flows", "4"]);
    assert_eq!(flows.len(), 10);
    let evicted: Vec<u64> = flows
        .iter()
        .filter(|f| f["end_reason"] == "evicted")
        .map(|f| f["src_port"].as_u64().unwrap())
        .collect();
    // The oldest six made room, in the order they were last seen.
    assert_eq!(evicted, [40_000, 40_001, 40_002, 40_003, 40_004, 40_005]);
}

#[test]
fn real_captures_states() {
    let flows = flows_json(&real_pcap("tcpdump__print-flags.pcap"), &[]);
    assert_eq!(one(&flows), s("SF", "ACCEPT", "tcp-close"));
    // A handshake only (nanosecond pcap, Linux cooked): established, open.
    let flows = flows_json(&real_pcap("tcpdump__tcp-handshake-nano.pcap"), &[]);
    assert_eq!(one(&flows), s("S1", "ACCEPT", "shutdown"));
    // An injected RST answers the SYN, then the real SYN-ACK arrives and the
    // connection goes on until the responder resets it for real.
    let flows = flows_json(&real_pcap("zeek__tcp_rst-inject-rae.pcap"), &[]);
    assert_eq!(one(&flows), s("RSTR", "ACCEPT", "tcp-reset"));
    assert_eq!(flows[0]["history"], "SrhADa");
    // The SYN is missing; the SYN-ACK's receiver is still the initiator.
    let flows = flows_json(&real_pcap("zeek__tcp_missing-syn.pcap"), &[]);
    assert!(
        flows[0]["history"].as_str().unwrap().starts_with('^'),
        "{flows:#?}"
    );
    assert_eq!(flows[0]["dst_port"], 80);
}
