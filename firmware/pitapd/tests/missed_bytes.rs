//! `missed_bytes` (Zeek's conn.log field: bytes in TCP sequence gaps)
//! against tshark's dissection of every real capture, and of each capture
//! with every 7th and every 3rd data segment cut out, so that there are
//! gaps to find. Ground truth per TCP connection and direction, from
//! tshark's `tcp.seq_raw`, `tcp.len` and flags: the holes in the union of
//! the sequence ranges the segments covered, from the first segment (or
//! past the SYN) to the highest byte. That is the exact answer for any
//! order; the tap keeps one gap per side, which gives the same answer
//! unless a late segment fills a gap older than the latest.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::conversations::without_fragments;
use common::*;

/// The connection's VLAN ids (zeros left out: a priority tag is no VLAN)
/// and its two ends, sorted. The same connection on two VLANs is two.
type Conn = (String, (String, u64), (String, u64));

fn conn(vlans: String, a: (String, u64), b: (String, u64)) -> Conn {
    if a <= b {
        (vlans, a, b)
    } else {
        (vlans, b, a)
    }
}

fn vlan_list<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.filter(|v| !v.is_empty() && *v != "0")
        .collect::<Vec<_>>()
        .join(",")
}

/// One direction's segments in arrival order: (seq, len, syn, fin).
type Segments = Vec<(u32, u32, bool, bool)>;

/// The exact count of bytes in holes, relative to the first segment.
fn holes(segments: &Segments) -> u64 {
    let Some(&(seq0, _, syn0, _)) = segments.first() else {
        return 0;
    };
    let base = seq0.wrapping_add(u32::from(syn0));
    let mut ranges: Vec<(i64, i64)> = segments
        .iter()
        .map(|&(seq, len, syn, fin)| {
            let start = i64::from(seq.wrapping_add(u32::from(syn)).wrapping_sub(base) as i32);
            (start, start + i64::from(len) + i64::from(fin))
        })
        // Before the base: the tap has no place for it either.
        .filter(|&(_, end)| end > 0)
        .map(|(start, end)| (start.max(0), end))
        .collect();
    ranges.sort();
    let (mut covered_to, mut missed) = (0i64, 0i64);
    for (start, end) in ranges {
        if start > covered_to {
            missed += start - covered_to;
        }
        covered_to = covered_to.max(end);
    }
    missed as u64
}

/// tshark's segments per TCP stream and direction.
fn theirs(file: &Path) -> BTreeMap<Conn, u64> {
    let fields = [
        "tcp.stream",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.seq_raw",
        "tcp.len",
        "tcp.flags.syn",
        "tcp.flags.fin",
        "tcp.flags.reset",
        "vlan.id",
    ];
    // tshark's stream numbers do not tell VLANs apart.
    let mut streams: BTreeMap<(u64, String, String, u64), (Conn, Segments)> = BTreeMap::new();
    for line in tshark_fields(file, &fields, "tcp").lines() {
        let v: Vec<&str> = line.split('\t').collect();
        // A second IP or TCP header (a tunnel, an ICMP quote): left out.
        if v.len() != fields.len() || v[..fields.len() - 1].iter().any(|x| x.contains(',')) {
            continue;
        }
        let n = |i: usize| v[i].parse::<u64>().ok();
        let flag = |i: usize| v[i] == "1" || v[i] == "True";
        let (src, dst) = match (v[1].is_empty(), v[3].is_empty()) {
            (false, true) => (v[1], v[2]),
            (true, false) => (v[3], v[4]),
            _ => continue,
        };
        let (Some(stream), Some(sp), Some(dp), Some(seq), Some(len)) =
            (n(0), n(5), n(6), n(7), n(8))
        else {
            continue;
        };
        let (syn, fin, rst) = (flag(9), flag(10), flag(11));
        let vlans = vlan_list(v[12].split(','));
        let entry = streams
            .entry((stream, vlans.clone(), src.to_string(), sp))
            .or_insert_with(|| {
                (
                    conn(vlans, (src.to_string(), sp), (dst.to_string(), dp)),
                    Vec::new(),
                )
            });
        // What the tap counts: segments that carry stream numbers.
        if !rst && (syn || fin || len > 0) {
            entry.1.push((seq as u32, len as u32, syn, fin));
        }
    }
    let mut out = BTreeMap::new();
    for (conn, segments) in streams.into_values() {
        *out.entry(conn).or_default() += holes(&segments);
    }
    out
}

fn ours(flows: &[serde_json::Value]) -> BTreeMap<Conn, u64> {
    let mut out = BTreeMap::new();
    for f in flows.iter().filter(|f| f["proto"] == "TCP") {
        let end = |side: &str| {
            (
                f[format!("{side}_addr")]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                f[format!("{side}_port")].as_u64().unwrap_or(0),
            )
        };
        let ids = [f["vlan"].to_string(), f["inner_vlan"].to_string()];
        let vlans = vlan_list(ids.iter().map(|s| s.as_str()).filter(|s| *s != "null"));
        *out.entry(conn(vlans, end("src"), end("dst"))).or_default() += f["missed_bytes"]
            .as_u64()
            .expect("missed_bytes on every line");
    }
    out
}

/// The capture less every `nth` TCP segment that carries data.
fn lossy(file: &Path, nth: u32, dir: &Path) -> std::path::PathBuf {
    let out = dir.join(format!(
        "{}-lossy{nth}.pcapng",
        file.file_stem().unwrap().to_str().unwrap()
    ));
    let filter = format!("!(tcp.len > 0 && frame.number % {nth} == 0)");
    tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        &filter,
        "-w",
        out.to_str().unwrap(),
    ]);
    out
}

#[test]
fn holes_counts_the_union_not_the_order() {
    // In order, reordered, retransmitted: the same 10-byte hole.
    for segs in [
        vec![(100, 10, false, false), (120, 10, false, false)],
        vec![
            (100, 10, false, false),
            (120, 10, false, false),
            (100, 10, false, false),
        ],
        vec![(120, 10, false, false), (100, 10, false, false)],
    ] {
        let expect = if segs[0].0 == 120 { 0 } else { 10 };
        assert_eq!(holes(&segs), expect, "{segs:?}");
    }
    assert_eq!(holes(&vec![(9, 0, true, false), (20, 5, false, true)]), 10);
}

#[test]
fn missed_bytes_match_tshark_on_every_real_capture_and_with_losses() {
    let dir = temp_dir("missed-bytes");
    let (mut compared, mut with_gaps, mut missed_total) = (0, 0, 0u64);
    let mut mismatches = Vec::new();
    for file in real_pcaps() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let whole = without_fragments(&file, &dir);
        for (variant, capture) in [
            ("whole", whole.clone()),
            ("every 7th cut", lossy(&whole, 7, &dir)),
            ("every 3rd cut", lossy(&whole, 3, &dir)),
        ] {
            let theirs = theirs(&capture);
            let ours = ours(&flows_json(&capture, &[]));
            for (k, t) in &theirs {
                let Some(o) = ours.get(k) else { continue };
                compared += 1;
                missed_total += t;
                with_gaps += usize::from(*t > 0);
                if o != t {
                    mismatches.push(format!("{name} {variant} {k:?}: tshark {t}, pitapd {o}"));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{compared} connections compared, {with_gaps} with gaps, {missed_total} bytes missed"
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared > 300, "{compared}");
    assert!(
        with_gaps > 50,
        "the cut captures must have gaps: {with_gaps}"
    );
}
