//! Both MACs of every flow as the frames carried them, against tshark: the
//! initiator's `eth.src` and the `eth.dst` it sent to, also where nobody
//! answers (multicast and broadcast groups, unanswered peers), for every
//! real Ethernet capture.

mod common;

use std::collections::BTreeSet;

use common::*;

#[test]
fn every_flow_has_the_macs_its_frames_carried() {
    let zero = "00:00:00:00:00:00";
    let (mut checked, mut one_way) = (0, 0);
    let mut wrong = Vec::new();
    for file in real_pcaps() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let frames: BTreeSet<(String, String, String, String)> = tshark(&[
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=f",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "eth.src",
            "-e",
            "eth.dst",
            "-Y",
            "eth && (ip || ipv6)",
        ])
        .lines()
        .filter_map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            let pick = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_string()
                } else {
                    a.to_string()
                }
            };
            (v.len() == 6).then(|| {
                (
                    pick(v[0], v[1]),
                    pick(v[2], v[3]),
                    v[4].to_string(),
                    v[5].to_string(),
                )
            })
        })
        .collect();
        if frames.is_empty() {
            continue;
        }
        for f in flows_json(&file, &[]) {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            if f["src_pkts"].as_u64().unwrap_or(0) == 0 || s("src_mac") == zero {
                continue;
            }
            let key = (s("src_addr"), s("dst_addr"), s("src_mac"), s("dst_mac"));
            checked += 1;
            one_way += usize::from(f["dst_pkts"].as_u64() == Some(0));
            if s("dst_mac") == zero || !frames.contains(&key) {
                wrong.push(format!("{name}: {key:?}"));
            }
        }
    }
    eprintln!("{checked} flows checked, {one_way} of them one-way");
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 150 && one_way > 20, "{checked} {one_way}");
}
