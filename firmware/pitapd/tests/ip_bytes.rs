//! IP bytes and transport payload bytes per side (`src_ip_bytes`,
//! `src_payload_bytes`, and the responder's), for every TCP and UDP flow of
//! every real capture, against tshark's own dissection: the sum of `ip.len`
//! (IPv6: `ipv6.plen` + 40) and of `tcp.len` (UDP: `udp.length` - 8) over
//! the packets of each direction of each conversation. Fragments and frames
//! cut inside a header are left out as in `tshark_conversations.rs`, and so
//! are packets in tunnels (two IP headers), which tshark counts per layer.

mod common;

use std::collections::BTreeMap;

use common::conversations::without_fragments;
use common::*;

/// (proto, src, src port, dst, dst port) -> (IP bytes, payload bytes).
type Directed = BTreeMap<(u64, String, u64, String, u64), (u64, u64)>;

fn theirs(file: &std::path::Path) -> Directed {
    let fields = [
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "ip.len",
        "ipv6.plen",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.len",
        "udp.srcport",
        "udp.dstport",
        "udp.length",
    ];
    let mut out = Directed::new();
    for line in tshark_fields(file, &fields, "tcp || udp").lines() {
        let v: Vec<&str> = line.split('\t').collect();
        // One value per field: a second IP layer (a tunnel) or a second
        // transport header (ICMP quoting one) is left out.
        if v.len() != fields.len() || v.iter().any(|x| x.contains(',')) {
            continue;
        }
        let n = |i: usize| v[i].parse::<u64>().ok();
        let (src, dst, ip) = match (n(4), n(5)) {
            (Some(len), None) => (v[0], v[1], len),
            (None, Some(plen)) => (v[2], v[3], plen + 40),
            _ => continue,
        };
        let (proto, sp, dp, payload) = match (n(6), n(7), n(8), n(9), n(10), n(11)) {
            (Some(sp), Some(dp), Some(len), None, None, None) => (6, sp, dp, len),
            (None, None, None, Some(sp), Some(dp), Some(len)) => {
                (17, sp, dp, len.saturating_sub(8))
            }
            _ => continue,
        };
        let e = out
            .entry((proto, src.to_string(), sp, dst.to_string(), dp))
            .or_default();
        e.0 += ip;
        e.1 += payload;
    }
    out
}

fn ours(flows: &[serde_json::Value]) -> Directed {
    let mut out = Directed::new();
    for f in flows {
        let proto = match f["proto"].as_str() {
            Some("TCP") => 6,
            Some("UDP") => 17,
            _ => continue,
        };
        let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        for (a, ap, b, bp, side) in [
            (
                s("src_addr"),
                n("src_port"),
                s("dst_addr"),
                n("dst_port"),
                "src",
            ),
            (
                s("dst_addr"),
                n("dst_port"),
                s("src_addr"),
                n("src_port"),
                "dst",
            ),
        ] {
            let ip = n(&format!("{side}_ip_bytes"));
            let payload = n(&format!("{side}_payload_bytes"));
            if n(&format!("{side}_pkts")) == 0 {
                continue;
            }
            let e = out.entry((proto, a, ap, b, bp)).or_default();
            e.0 += ip;
            e.1 += payload;
        }
    }
    out
}

#[test]
fn ip_and_payload_bytes_match_tshark_on_every_real_capture() {
    let dir = temp_dir("ip-bytes");
    let (mut compared, mut ip_total) = (0, 0u64);
    let mut mismatches = Vec::new();
    for file in real_pcaps() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let filtered = without_fragments(&file, &dir);
        let theirs = theirs(&filtered);
        let ours = ours(&flows_json(&filtered, &[]));
        for (k, t) in &theirs {
            // Directions tshark saw that are ours too (tunnelled ones are
            // left out of theirs, ICMP-quoted ones of ours).
            let Some(o) = ours.get(k) else { continue };
            compared += 1;
            ip_total += t.0;
            if o != t {
                mismatches.push(format!("{name} {k:?}: tshark {t:?}, pitapd {o:?}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{compared} directions compared, {ip_total} IP bytes");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared > 300, "{compared}");
}
