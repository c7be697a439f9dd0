//! Every flow's `community_id` in pitapd's JSON lines, for every real
//! capture, against the reference implementation (Corelight's
//! `communityid` Python package): from the flow as recorded and from its
//! reverse (the responder's side first; for ICMP the counterpart type), so
//! both directions of a conversation are one ID. ICMP, ICMPv6, SCTP and
//! protocols without ports included.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

const REFERENCE: &str = r#"
import json, sys, communityid
cid = communityid.CommunityID(0)
ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6 = {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133, 135: 136, 136: 135,
         139: 140, 140: 139, 144: 145, 145: 144}
def tuples(f):
    p, s, d = f["proto_num"], f["src_addr"], f["dst_addr"]
    if p in (6, 17, 132):
        make = {6: communityid.FlowTuple.make_tcp, 17: communityid.FlowTuple.make_udp,
                132: communityid.FlowTuple.make_sctp}[p]
        yield make(s, d, f["src_port"], f["dst_port"])
        yield make(d, s, f["dst_port"], f["src_port"])
    elif p in (1, 58) and f["icmp_type"] is not None:
        make = communityid.FlowTuple.make_icmp if p == 1 else communityid.FlowTuple.make_icmp6
        t, c = f["icmp_type"], f["icmp_code"]
        yield make(s, d, t, c)
        other = (ICMP4 if p == 1 else ICMP6).get(t)
        if other is not None:
            yield make(d, s, other, c)
    else:
        yield communityid.FlowTuple.make_ip(s, d, p)
        yield communityid.FlowTuple.make_ip(d, s, p)
checked = 0
for line in sys.stdin:
    f = json.loads(line)
    for t in tuples(f):
        want = cid.calc(t)
        if want != f["community_id"]:
            print("MISMATCH", f["file"], want, json.dumps(f))
        checked += 1
print("checked", checked)
"#;

#[test]
fn every_flow_of_every_real_capture_matches_the_reference() {
    let mut lines = String::new();
    let mut by_proto = std::collections::BTreeMap::<u64, usize>::new();
    for file in real_pcaps() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for mut f in flows_json(&file, &[]) {
            let proto = protocol_number(&f);
            *by_proto.entry(proto).or_default() += 1;
            f["proto_num"] = proto.into();
            f["file"] = name.clone().into();
            lines += &f.to_string();
            lines.push('\n');
        }
    }
    let mut child = Command::new("python3")
        .args(["-c", REFERENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the reference failed: {out:?}");
    let mismatches: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("MISMATCH"))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    let checked: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("checked "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    eprintln!("{checked} IDs checked; flows by protocol: {by_proto:?}");
    // Both directions of TCP, UDP, ICMP echo, ICMPv6 and SCTP were there.
    for p in [1, 6, 17, 58, 132] {
        assert!(
            by_proto.get(&p).copied().unwrap_or(0) > 0,
            "no flow of protocol {p}"
        );
    }
    // Every flow at least once (one-way ICMP has no reverse), most twice.
    let flows: usize = by_proto.values().sum();
    assert!(
        flows > 200 && checked >= flows + flows / 2,
        "{checked} of {flows}"
    );
}

/// The JSON line names well-known protocols; the reference wants numbers.
fn protocol_number(f: &serde_json::Value) -> u64 {
    let text = f["proto"].as_str().unwrap_or_default();
    text.parse().unwrap_or_else(|_| {
        (0..=255u8)
            .find(|&p| pitap_wire::record::proto_name(p) == Some(text))
            .map_or_else(|| panic!("protocol {text:?}"), u64::from)
    })
}
