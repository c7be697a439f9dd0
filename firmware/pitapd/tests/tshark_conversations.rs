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

use common::conversations::*;
use common::*;
use serde_json::Value;

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
        compared += theirs.len();
        for d in differences(&theirs, &ours) {
            mismatches.push(format!("{name}: {d}"));
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
