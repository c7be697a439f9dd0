//! What the collector benches share: a seeded stream of realistic flow
//! records (made by index, so 10M of them need no memory) and the sealed
//! datagrams a tap would send for them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pitap_wire::envelope::{self, DatagramKind, Header, Key};
use pitap_wire::{
    BatchHeader, BatchWriter, ConnState, EndReason, Endpoint, FlowRecord, History, SideCounters,
    TapPort, Text, WireError,
};

/// The collector's secret, so the batches carry the challenge it gives
/// the tap's boot.
pub const SECRET: [u8; 32] = [0x77; 32];
pub const BOOT: [u8; 16] = [3; 16];
pub const TAP: &str = "bench-tap";

/// A cheap, seeded mix of the index (splitmix64).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Flow `i` of a LAN's day: 4,000 clients (5% over IPv6), 3,000 servers
/// of which a few get most flows, web, DNS, SSH and others, refused and
/// unanswered attempts, TLS names on HTTPS, ICMP.
pub fn record(i: u64) -> FlowRecord {
    let h = mix(i);
    let side = |addr: IpAddr, port: u16, n: u64, mac: u16| Endpoint {
        addr,
        port,
        mac: [2, 0, 0, 0, (mac >> 8) as u8, mac as u8],
        counters: SideCounters {
            packets: n,
            bytes: n * (60 + h % 1400),
            ip_bytes: n * (46 + h % 1400),
            payload_bytes: n * (h % 1400),
            tcp_flags: 0x1b,
        },
    };
    let client = (h % 4000) as u32;
    // Heavy-tailed: squaring a uniform number favours the low servers.
    let u = (h >> 16) % 3000;
    let server = (u * u / 3000) as u32;
    let v6 = h.is_multiple_of(20);
    let (src, dst) = if v6 {
        (
            IpAddr::V6(Ipv6Addr::from(
                0xfd00_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(client),
            )),
            IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(server),
            )),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::from(0xac1e_0000 + client)),
            IpAddr::V4(Ipv4Addr::from(0xc633_6400 + server)),
        )
    };
    let kind = (h >> 32) % 100;
    let (proto, dport) = match kind {
        0..=49 => (6, 443),
        50..=64 => (6, 80),
        65..=79 => (17, 53),
        80..=84 => (6, 22),
        85..=89 => (1, 0),
        _ => (6, 1024 + ((h >> 40) % 8000) as u16),
    };
    let refused = (h >> 48).is_multiple_of(13) && proto == 6;
    let start = 1_760_000_000_000 + i * 3;
    let mut r = FlowRecord {
        start_ms: start,
        end_ms: start + (h >> 20) % 5000,
        proto,
        src: side(
            src,
            32_768 + ((h >> 8) % 28_000) as u16,
            2 + (h >> 24) % 90,
            client as u16,
        ),
        dst: side(
            dst,
            dport,
            if refused { 1 } else { 1 + (h >> 28) % 70 },
            0xff01,
        ),
        conn_state: if refused {
            ConnState::REJ
        } else if proto == 6 {
            ConnState::SF
        } else {
            ConnState::OTH
        },
        history: History::from_text(if refused { "Sr" } else { "ShADadFf" }),
        end_reason: if proto == 6 {
            EndReason::TcpClose
        } else {
            EndReason::Idle
        },
        ingress: TapPort::A,
        icmp: (proto == 1).then_some((8, 0)),
        clock: pitap_wire::ClockState::Synced,
        ..FlowRecord::default()
    };
    if proto == 1 {
        r.src.port = 0;
        r.dst.port = 0;
    }
    if dport == 443 {
        let name = format!("s{server}.example.net");
        r.names.sni = Text::from_bytes(name.as_bytes());
        r.names.responder_name = Text::from_bytes(name.as_bytes());
        r.names.alpn = Text::from_bytes(b"h2,http/1.1");
    }
    r
}

/// The sealed datagrams a tap sends for records `0..flows`.
pub fn datagrams(flows: u64, key: Option<&Key>) -> Vec<Vec<u8>> {
    datagrams_of(flows, key, record)
}

/// The datagrams (sealed with `key`, else plaintext) a tap sends for
/// `record(0..flows)`.
pub fn datagrams_of(
    flows: u64,
    key: Option<&Key>,
    record: impl Fn(u64) -> FlowRecord,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = BatchWriter::default();
    let mut seq = 0;
    let challenge = envelope::derive_challenge(&Key::from_bytes(SECRET), &BOOT, 0);
    let seal = |w: &BatchWriter, seq: u64| {
        let h = Header {
            sealed: key.is_some(),
            kind: DatagramKind::Batch,
            tap_id: TAP,
            boot: BOOT,
            counter: seq,
            challenge,
        };
        envelope::seal(&h, key, w.as_bytes()).expect("seal")
    };
    let header = |seq, base_ms| BatchHeader {
        tap_id: TAP,
        seq,
        base_ms,
        ..BatchHeader::default()
    };
    for i in 0..flows {
        let r = record(i);
        if !w.is_started() {
            w.start(&header(seq, r.start_ms)).expect("start");
        }
        if w.push(&r) == Err(WireError::Full) {
            out.push(seal(&w, seq));
            seq += 1;
            w.start(&header(seq, r.start_ms)).expect("start");
            w.push(&r).expect("push");
        }
    }
    out.push(seal(&w, seq));
    out
}
