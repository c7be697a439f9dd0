//! Every real capture through pitapd, checked against tshark's conversation
//! tables (`-z conv,tcp -z conv,udp`): addresses, ports, per-side frames and
//! bytes. tshark runs in the test; nothing is typed in.
//!
//! Differences allowed, each checked rather than assumed:
//! - Timeouts split a conversation into several records (idle gap, TCP
//!   linger after FIN/RST, active timeout): records are summed per
//!   conversation, and every split must be justified by the time gap or a
//!   new SYN (`splits_are_explained`).
//! - VLANs: PiTap keys flows by VLAN, tshark's table does not; records are
//!   summed over VLANs here, and `vlan_collisions_stay_apart` checks the
//!   split against tshark's VLAN ids.
//! - IP fragments: tshark's table counts only the frame whose UDP/TCP header
//!   it dissected, PiTap counts every fragment into its flow. Fragments are
//!   removed from the capture (by tshark) before the comparison and checked
//!   on their own in `fragments.rs`.
//! - Frames cut inside a header by the snap length: tshark stops dissecting
//!   and leaves them out of its table, PiTap still reads the ports that were
//!   captured and counts them. They are removed before the comparison and
//!   checked in `truncated_headers_are_counted_and_kept`.
//! - tshark prints bytes above 999 in kB/MB, rounded: those compare within
//!   the printed precision, smaller ones exactly.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

/// (proto, lower endpoint, higher endpoint) with endpoints "addr:port".
type ConvKey = (String, String, String);

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Side {
    frames: u64,
    bytes: u64,
    /// tshark's printed byte count is rounded to this unit.
    unit: u64,
}

type Conversations = BTreeMap<ConvKey, [Side; 2]>;

fn endpoint(addr: &str, port: u64) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// Orders a pair of endpoints; returns the key and whether it was swapped.
fn conv_key(proto: &str, a: String, b: String) -> (ConvKey, bool) {
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

fn tshark_conversations(file: &Path) -> Conversations {
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

fn pitap_conversations(flows: &[Value]) -> Conversations {
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

/// A copy of the capture without IP fragments (atomic IPv6 fragments stay)
/// and without frames tshark could not dissect for their snap length,
/// written by tshark as pcapng, which also puts our pcapng reader to work.
fn without_fragments(file: &Path, dir: &Path) -> std::path::PathBuf {
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

#[test]
fn every_real_capture_matches_tshark_conversations() {
    let dir = temp_dir("conv");
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for file in real_pcaps() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let filtered = without_fragments(&file, &dir);
        let theirs = tshark_conversations(&filtered);
        let ours = pitap_conversations(&flows_json(&filtered, &[]));
        let keys: std::collections::BTreeSet<&ConvKey> = theirs.keys().chain(ours.keys()).collect();
        for key in keys {
            compared += 1;
            let (t, o) = (theirs.get(key), ours.get(key));
            let same = match (t, o) {
                (Some(t), Some(o)) => (0..2).all(|i| {
                    t[i].frames == o[i].frames && o[i].bytes.abs_diff(t[i].bytes) < t[i].unit
                }),
                _ => false,
            };
            if !same {
                mismatches.push(format!("{name}: {key:?}: tshark {t:?}, pitapd {o:?}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(compared > 150, "only {compared} conversations compared");
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
}

/// Every place where PiTap made two records of one tshark conversation is a
/// timeout or a new connection, never an accident.
#[test]
fn splits_are_explained() {
    const IDLE_MS: u64 = 60_000;
    const LINGER_MS: u64 = 5_000;
    const ACTIVE_MS: u64 = 300_000;
    let mut splits = 0;
    for file in real_pcaps() {
        let mut by_conv: BTreeMap<(String, String, String, u64, u64), Vec<Value>> = BTreeMap::new();
        for f in flows_json(&file, &[]) {
            let (key, _) = conv_key(
                f["proto"].as_str().unwrap(),
                format!("{}:{}", f["src_addr"], f["src_port"]),
                format!("{}:{}", f["dst_addr"], f["dst_port"]),
            );
            let vlans = (
                f["vlan"].as_u64().unwrap(),
                f["inner_vlan"].as_u64().unwrap(),
            );
            by_conv
                .entry((key.0, key.1, key.2, vlans.0, vlans.1))
                .or_default()
                .push(f);
        }
        for (key, mut records) in by_conv {
            records.sort_by_key(|r| r["start_ms"].as_u64());
            for pair in records.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let gap = b["start_ms"]
                    .as_u64()
                    .unwrap()
                    .saturating_sub(a["end_ms"].as_u64().unwrap());
                let reason = a["end_reason"].as_str().unwrap();
                let new_syn = b["history"].as_str().unwrap().starts_with('S');
                let explained = match reason {
                    "idle" => gap >= IDLE_MS,
                    "tcp-close" | "tcp-reset" => gap >= LINGER_MS || new_syn,
                    "active" => {
                        b["continuation"] == true
                            && a["duration_ms"].as_u64().unwrap() + 1000 >= ACTIVE_MS
                    }
                    _ => false,
                };
                assert!(
                    explained,
                    "{}: {key:?} split without cause: {a} then {b}",
                    file.display()
                );
                splits += 1;
            }
        }
    }
    // The concatenated captures and late RSTs make some splits happen.
    assert!(splits > 0, "no split was exercised");
}

#[test]
fn vlan_collisions_stay_apart() {
    let file = real_pcap("zeek__vlan-collisions.pcap");
    // tshark's VLAN ids per frame: "" (untagged), "42", "10,20" (QinQ).
    let mut theirs: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for line in tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "vlan.id",
    ])
    .lines()
    {
        let ids: Vec<u64> = line
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let key = (
            ids.first().copied().unwrap_or(0),
            ids.get(1).copied().unwrap_or(0),
        );
        *theirs.entry(key).or_default() += 1;
    }
    let mut ours: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let flows = flows_json(&file, &[]);
    for f in &flows {
        let key = (
            f["vlan"].as_u64().unwrap(),
            f["inner_vlan"].as_u64().unwrap(),
        );
        *ours.entry(key).or_default() += f["pkts"].as_u64().unwrap();
    }
    assert_eq!(theirs.len(), 3, "the capture holds three VLAN variants");
    assert_eq!(flows.len(), 3, "one flow per VLAN variant");
    assert_eq!(ours, theirs);
}

/// A SYN whose TCP options were cut by a 68-byte snap length: tshark leaves
/// it out of its conversation, PiTap counts it (ports and flags were
/// captured) and counts the truncation.
#[test]
fn truncated_headers_are_counted_and_kept() {
    let file = real_pcap("zeek__tcp_truncated-header.pcap");
    let path = file.to_str().unwrap();
    let short = tshark(&[
        "-r",
        path,
        "-Y",
        "_ws.short",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]);
    let frames = tshark(&["-r", path, "-T", "fields", "-e", "frame.len"]);
    let wire_bytes: u64 = frames.lines().map(|l| l.parse::<u64>().unwrap()).sum();
    let flows = flows_json(&file, &[]);
    assert_eq!(flows.len(), 1);
    assert_eq!(
        flows[0]["pkts"].as_u64().unwrap(),
        frames.lines().count() as u64
    );
    // Byte counts use the wire length, not the 68-byte captured length.
    assert_eq!(flows[0]["bytes"].as_u64().unwrap(), wire_bytes);
    assert_eq!(flows[0]["conn_state"], "SF");
    let out = pitapd(&["--read", path, "--print"]);
    let summary = String::from_utf8_lossy(&out.stderr);
    let expected = format!("truncated_l4={}", short.lines().count());
    assert!(
        summary.contains(&expected),
        "summary {summary:?} lacks {expected}"
    );
}
