//! IP fragments join the flow of their first fragment by IP id; a fragment
//! whose first was never captured is counted and kept in a flow without
//! ports. Ground truth: tshark's per-frame dissection with reassembly off,
//! grouped by (source, destination, IP id) in the test.

mod common;

use std::collections::BTreeMap;

use common::*;

/// (src endpoint, dst endpoint) -> (frames, bytes), directional.
type Directional = BTreeMap<(String, String), (u64, u64)>;

fn expected_from_tshark(file: &str) -> (Directional, u64) {
    let out = tshark(&[
        "-o",
        "ip.defragment:FALSE",
        "-o",
        "ipv6.defragment:FALSE",
        "-r",
        file,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "ip.src",
        "-e",
        "ipv6.src",
        "-e",
        "ip.dst",
        "-e",
        "ipv6.dst",
        "-e",
        "ip.id",
        "-e",
        "ipv6.fraghdr.ident",
        "-e",
        "ip.frag_offset",
        "-e",
        "ipv6.fraghdr.offset",
        "-e",
        "udp.srcport",
        "-e",
        "tcp.srcport",
        "-e",
        "udp.dstport",
        "-e",
        "tcp.dstport",
        "-e",
        "frame.len",
    ]);
    let mut first_ports: BTreeMap<(String, String, String), (String, String)> = BTreeMap::new();
    let mut rows = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let src = format!("{}{}", f[0], f[1]);
        let dst = format!("{}{}", f[2], f[3]);
        let id = format!("{}{}", f[4], f[5]);
        let offset: u64 = format!("{}{}", f[6], f[7]).parse().unwrap_or(0);
        let ports = (format!("{}{}", f[8], f[9]), format!("{}{}", f[10], f[11]));
        if !ports.0.is_empty() {
            first_ports.insert((src.clone(), dst.clone(), id.clone()), ports.clone());
        }
        rows.push((src, dst, id, offset, ports, f[12].parse::<u64>().unwrap()));
    }
    let mut expected = Directional::new();
    let mut orphans = 0;
    for (src, dst, id, offset, ports, len) in rows {
        let ports = if offset > 0 {
            first_ports
                .get(&(src.clone(), dst.clone(), id))
                .cloned()
                .unwrap_or_else(|| {
                    orphans += 1;
                    ("0".into(), "0".into())
                })
        } else {
            ports
        };
        let e = expected
            .entry((format!("{src}:{}", ports.0), format!("{dst}:{}", ports.1)))
            .or_default();
        e.0 += 1;
        e.1 += len;
    }
    (expected, orphans)
}

fn ours(file: &str) -> Directional {
    let mut got = Directional::new();
    for f in flows_json(std::path::Path::new(file), &[]) {
        let src = format!("{}:{}", f["src_addr"].as_str().unwrap(), f["src_port"]);
        let dst = format!("{}:{}", f["dst_addr"].as_str().unwrap(), f["dst_port"]);
        for (from, to, side) in [(&src, &dst, "src"), (&dst, &src, "dst")] {
            let pkts = f[format!("{side}_pkts")].as_u64().unwrap();
            if pkts > 0 {
                let e = got.entry((from.clone(), to.clone())).or_default();
                e.0 += pkts;
                e.1 += f[format!("{side}_bytes")].as_u64().unwrap();
            }
        }
    }
    got
}

#[test]
fn fragments_join_their_flows() {
    let mut orphans_seen = 0;
    for name in [
        "zeek__ipv4_fragmented-1.pcap",
        "zeek__ipv4_fragmented-3.pcap",
        "zeek__ipv6-fragmented-dns.pcap",
    ] {
        let file = real_pcap(name);
        let path = file.to_str().unwrap();
        let (expected, orphans) = expected_from_tshark(path);
        assert_eq!(ours(path), expected, "{name}");
        let summary =
            String::from_utf8_lossy(&pitapd(&["--read", path, "--print"]).stderr).to_string();
        if orphans > 0 {
            assert!(
                summary.contains(&format!("fragment_without_first={orphans}")),
                "{name}: {summary}"
            );
        } else {
            assert!(
                !summary.contains("fragment_without_first"),
                "{name}: {summary}"
            );
        }
        orphans_seen += orphans;
    }
    assert!(
        orphans_seen > 0,
        "the IPv6 DNS capture holds a fragment without its first"
    );
}
