//! Conversations (TCP/UDP endpoint pairs with per-side frames and bytes)
//! from tshark's conversation tables and from PiTap's records, to compare.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::tshark;

/// (proto, lower endpoint, higher endpoint) with endpoints "addr:port".
pub type ConvKey = (String, String, String);

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Side {
    pub frames: u64,
    pub bytes: u64,
    /// tshark's printed byte count is rounded to this unit.
    pub unit: u64,
}

pub type Conversations = BTreeMap<ConvKey, [Side; 2]>;

pub fn endpoint(addr: &str, port: u64) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// Orders a pair of endpoints; returns the key and whether it was swapped.
pub fn conv_key(proto: &str, a: String, b: String) -> (ConvKey, bool) {
    if a <= b {
        ((proto.to_string(), a, b), false)
    } else {
        ((proto.to_string(), b, a), true)
    }
}

/// Adds what each endpoint sent to its conversation (summing the records
/// or table rows of one conversation).
fn add(convs: &mut Conversations, proto: &str, a: (String, Side), b: (String, Side)) {
    let (key, swapped) = conv_key(proto, a.0, b.0);
    let sides = if swapped { [b.1, a.1] } else { [a.1, b.1] };
    let entry = convs.entry(key).or_insert(
        [Side {
            unit: 1,
            ..Side::default()
        }; 2],
    );
    for i in 0..2 {
        entry[i].frames += sides[i].frames;
        entry[i].bytes += sides[i].bytes;
        entry[i].unit = entry[i].unit.max(sides[i].unit);
    }
}

/// Parses "1234 bytes", "248 kB", "1585 kB", "2 MB".
fn parse_bytes(value: &str, unit: &str) -> (u64, u64) {
    let v: u64 = value.parse().expect("tshark byte count");
    let mult = match unit {
        "bytes" => 1,
        "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => panic!("unknown tshark unit {other}"),
    };
    (v * mult, mult)
}

/// Splits tshark's "addr:port" (IPv6 addresses contain colons too).
fn split_endpoint(s: &str) -> (String, u64) {
    let (addr, port) = s.rsplit_once(':').expect("addr:port");
    (addr.to_string(), port.parse().expect("port"))
}

pub fn tshark_conversations(file: &Path) -> Conversations {
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-q",
        "-z",
        "conv,tcp",
        "-z",
        "conv,udp",
    ]);
    let mut convs = Conversations::new();
    let mut proto = "";
    for line in out.lines() {
        if line.starts_with("TCP Conversations") {
            proto = "TCP";
        } else if line.starts_with("UDP Conversations") {
            proto = "UDP";
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 13 || f[1] != "<->" {
            continue;
        }
        // A <-> B | frames B->A, bytes B->A | frames A->B, bytes A->B | ...
        let (a_addr, a_port) = split_endpoint(f[0]);
        let (b_addr, b_port) = split_endpoint(f[2]);
        let (b_to_a_bytes, b_unit) = parse_bytes(f[4], f[5]);
        let (a_to_b_bytes, a_unit) = parse_bytes(f[7], f[8]);
        let a_sent = Side {
            frames: f[6].parse().unwrap(),
            bytes: a_to_b_bytes,
            unit: a_unit,
        };
        let b_sent = Side {
            frames: f[3].parse().unwrap(),
            bytes: b_to_a_bytes,
            unit: b_unit,
        };
        add(
            &mut convs,
            proto,
            (endpoint(&a_addr, a_port), a_sent),
            (endpoint(&b_addr, b_port), b_sent),
        );
    }
    convs
}

pub fn pitap_conversations(flows: &[Value]) -> Conversations {
    let mut convs = Conversations::new();
    for f in flows {
        let proto = f["proto"].as_str().unwrap();
        if proto != "TCP" && proto != "UDP" {
            continue;
        }
        let src = endpoint(
            f["src_addr"].as_str().unwrap(),
            f["src_port"].as_u64().unwrap(),
        );
        let dst = endpoint(
            f["dst_addr"].as_str().unwrap(),
            f["dst_port"].as_u64().unwrap(),
        );
        let src_side = Side {
            frames: f["src_pkts"].as_u64().unwrap(),
            bytes: f["src_bytes"].as_u64().unwrap(),
            unit: 1,
        };
        let dst_side = Side {
            frames: f["dst_pkts"].as_u64().unwrap(),
            bytes: f["dst_bytes"].as_u64().unwrap(),
            unit: 1,
        };
        add(&mut convs, proto, (src, src_side), (dst, dst_side));
    }
    convs
}

/// Differences between two sets of conversations; frames must be equal,
/// bytes within tshark's printed precision.
pub fn differences(theirs: &Conversations, ours: &Conversations) -> Vec<String> {
    let keys: std::collections::BTreeSet<&ConvKey> = theirs.keys().chain(ours.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (t, o) = (theirs.get(key), ours.get(key));
        let same = match (t, o) {
            (Some(t), Some(o)) => (0..2)
                .all(|i| t[i].frames == o[i].frames && o[i].bytes.abs_diff(t[i].bytes) < t[i].unit),
            _ => false,
        };
        if !same {
            out.push(format!("{key:?}: tshark {t:?}, pitapd {o:?}"));
        }
    }
    out
}

/// A copy of the capture without IP fragments (atomic IPv6 fragments stay)
/// and without frames tshark could not dissect for their snap length,
/// written by tshark as pcapng, which also puts our pcapng reader to work.
pub fn without_fragments(file: &Path, dir: &Path) -> std::path::PathBuf {
    let out = dir.join(format!(
        "{}.pcapng",
        file.file_stem().unwrap().to_str().unwrap()
    ));
    tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "!(ip.flags.mf == 1 || ip.frag_offset > 0 || ipv6.fraghdr.more == 1 || ipv6.fraghdr.offset > 0 || _ws.short)",
        "-w",
        out.to_str().unwrap(),
    ]);
    out
}
