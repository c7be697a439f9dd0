//! Export to the peers people run: real captures go through pitapd and the
//! sealed uplink into `pitap collect`, which exports IPFIX to one `nfcapd`
//! and NetFlow v9 to another (Debian's nfdump package), all inside a
//! network namespace made here; `nfdump -r` must read back our addresses,
//! ports, packets, bytes and start times, and `tshark` must decode every
//! exported datagram without a warning. GELF over UDP (chunked) and TCP is
//! checked against the GELF 1.1 spec by decoding what went over the wire.
//! Needs root (namespace).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// IPv4 and IPv6, TCP, UDP, ICMP, VLAN tags, tunnels, many short flows.
const CAPTURES: [&str; 8] = [
    "zeek__wikipedia.pcap",
    "zeek__icmp_5-pings.pcap",
    "zeek__ipv6-http-atomic-frag.pcap",
    "zeek__http-vlan-0.pcap",
    "zeek__dns-edns-ecs.pcap",
    "zeek__var-services-std-ports.pcap",
    "zeek__tunnels_Teredo.pcap",
    "tcpdump__icmpv6.pcap",
];

fn proto_number(name: &str) -> u64 {
    match name {
        "TCP" => 6,
        "UDP" => 17,
        "ICMP" => 1,
        "ICMP6" | "ICMPv6" => 58,
        other => other.parse().unwrap_or(0),
    }
}

fn has_ports(proto: u64) -> bool {
    proto == 6 || proto == 17
}

/// One direction of a flow: (start s, src, sport, dst, dport, proto) -> counters.
type Directional = BTreeMap<String, usize>;

/// One direction: (address, port) pairs and (packets, bytes).
fn key(start_s: u64, a: (&str, u64), b: (&str, u64), proto: u64, counters: (u64, u64)) -> String {
    let (ap, bp) = if has_ports(proto) { (a.1, b.1) } else { (0, 0) };
    format!(
        "{start_s} {}:{ap} > {}:{bp} p{proto} {}/{}",
        a.0, b.0, counters.0, counters.1
    )
}

fn bump(m: &mut Directional, k: String) {
    *m.entry(k).or_default() += 1;
}

/// nfdump's CSV rows as maps of column -> value (times in UTC).
fn nfdump_rows(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nfcapd."))
        })
        .unwrap_or_else(|| panic!("no nfcapd file in {}", dir.display()));
    let out = std::process::Command::new("nfdump")
        .env("TZ", "UTC")
        .args(["-r", file.to_str().unwrap(), "-o", "csv"])
        .output()
        .expect("nfdump (Debian's nfdump package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .take_while(|l| !l.is_empty() && !l.starts_with("Summary"))
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split(',').map(|v| v.trim().to_string()))
                .collect()
        })
        .collect()
}

fn utc_seconds(text: &str) -> u64 {
    // "2011-03-18 19:06:07"
    let (d, t) = text.split_once(' ').unwrap();
    let p: Vec<i64> = d
        .split('-')
        .chain(t.split(':'))
        .map(|x| x.parse().unwrap())
        .collect();
    let (y, m, day) = (p[0], p[1], p[2]);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days * 86_400 + p[3] * 3600 + p[4] * 60 + p[5]) as u64
}

fn spawn(ns: &Netns, args: &[&str]) -> Child {
    ns.command(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]))
}

fn stop(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn ipfix_and_netflow_v9_read_back_by_nfdump_and_tshark() {
    let dir = temp_dir("export");
    let ns = Netns::new("exp");
    let (ipfix_dir, v9_dir) = (dir.join("ipfix"), dir.join("v9"));
    std::fs::create_dir_all(&ipfix_dir).unwrap();
    std::fs::create_dir_all(&v9_dir).unwrap();
    let wire = dir.join("exported.pcap");
    let mut nf1 = spawn(
        &ns,
        &[
            "nfcapd",
            "-b",
            "127.0.0.1",
            "-p",
            "9995",
            "-t",
            "3600",
            "-w",
            ipfix_dir.to_str().unwrap(),
        ],
    );
    let mut nf2 = spawn(
        &ns,
        &[
            "nfcapd",
            "-b",
            "127.0.0.1",
            "-p",
            "9996",
            "-t",
            "3600",
            "-w",
            v9_dir.to_str().unwrap(),
        ],
    );
    let mut dump = spawn(
        &ns,
        &[
            "tcpdump",
            "-Z",
            "root",
            "-U",
            "-i",
            "lo",
            "-w",
            wire.to_str().unwrap(),
            "udp port 9995 or udp port 9996",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));

    // Two taps: each its own observation domain.
    let taps = ["edge", "core"];
    let (keys_config, keys) = keygen(&dir, &taps);
    // The Community ID under RFC 5612's documentation enterprise number.
    let config = format!(
        "{}\n[export]\nipfix = [\"127.0.0.1:9995\"]\nnetflow9 = [\"127.0.0.1:9996\"]\nipfix_community_id_pen = 32473\n",
        std::fs::read_to_string(&keys_config).unwrap()
    );
    std::fs::write(&keys_config, config).unwrap();
    let flows_file = dir.join("flows.jsonl");
    let mut collector = ns
        .command(env!("CARGO_BIN_EXE_pitap"))
        .args([
            "collect",
            "--listen",
            "127.0.0.1:47400",
            "--format",
            "json",
            "--idle-exit",
            "3",
            "--config",
        ])
        .arg(&keys_config)
        .arg("--store")
        .arg(dir.join("flows.db"))
        .arg("--output")
        .arg(&flows_file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(collector.stderr.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("collecting on"), "{first}");
    for (i, capture) in CAPTURES.iter().enumerate() {
        replay_with(
            ns.command(pitapd_bin()),
            &real_pcap(capture),
            "127.0.0.1:47400",
            taps[i % 2],
            &keys[i % 2],
        );
    }
    let out = collector.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    stop(&mut nf1);
    stop(&mut nf2);
    stop(&mut dump);

    let ours: Vec<Value> = std::fs::read_to_string(&flows_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(ours.len() > 150, "{} flows", ours.len());
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();

    // IPFIX: one biflow record per flow, reverse counters in opkt/obyt.
    let mut expected = Directional::new();
    for f in &ours {
        let proto = n(f, "proto_num");
        let k = key(
            n(f, "start_ms") / 1000,
            (&s(f, "src_addr"), n(f, "src_port")),
            (&s(f, "dst_addr"), n(f, "dst_port")),
            proto,
            (n(f, "src_pkts"), n(f, "src_ip_bytes")),
        );
        bump(
            &mut expected,
            format!("{k} rev {}/{}", n(f, "dst_pkts"), n(f, "dst_ip_bytes")),
        );
    }
    let mut got = Directional::new();
    for r in nfdump_rows(&ipfix_dir) {
        let g = |c: &str| r.get(c).cloned().unwrap_or_default();
        let u = |c: &str| g(c).parse::<u64>().unwrap_or(0);
        let proto = proto_number(&g("pr"));
        let k = key(
            utc_seconds(&g("ts")),
            (&g("sa"), u("sp")),
            (&g("da"), u("dp")),
            proto,
            (u("ipkt"), u("ibyt")),
        );
        bump(&mut got, format!("{k} rev {}/{}", u("opkt"), u("obyt")));
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert_eq!(
        expected, got,
        "IPFIX differs: ours not in nfdump {missing:?}; nfdump not ours {extra:?}"
    );

    // NetFlow v9: one record per direction that carried packets.
    let mut expected = Directional::new();
    for f in &ours {
        let proto = n(f, "proto_num");
        let start = n(f, "start_ms") / 1000;
        bump(
            &mut expected,
            key(
                start,
                (&s(f, "src_addr"), n(f, "src_port")),
                (&s(f, "dst_addr"), n(f, "dst_port")),
                proto,
                (n(f, "src_pkts"), n(f, "src_ip_bytes")),
            ),
        );
        if n(f, "dst_pkts") > 0 {
            bump(
                &mut expected,
                key(
                    start,
                    (&s(f, "dst_addr"), n(f, "dst_port")),
                    (&s(f, "src_addr"), n(f, "src_port")),
                    proto,
                    (n(f, "dst_pkts"), n(f, "dst_ip_bytes")),
                ),
            );
        }
    }
    let mut got = Directional::new();
    for r in nfdump_rows(&v9_dir) {
        let g = |c: &str| r.get(c).cloned().unwrap_or_default();
        let u = |c: &str| g(c).parse::<u64>().unwrap_or(0);
        bump(
            &mut got,
            key(
                utc_seconds(&g("ts")),
                (&g("sa"), u("sp")),
                (&g("da"), u("dp")),
                proto_number(&g("pr")),
                (u("ipkt"), u("ibyt")),
            ),
        );
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert_eq!(
        expected, got,
        "NetFlow v9 differs: ours not in nfdump {missing:?}; nfdump not ours {extra:?}"
    );
    let v9_records: usize = got.values().sum();

    // tshark decodes every datagram, with no malformed packet or warning.
    let decode = ["-d", "udp.port==9995,cflow", "-d", "udp.port==9996,cflow"];
    let warnings = std::process::Command::new("tshark")
        .args(["-r", wire.to_str().unwrap()])
        .args(decode)
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= \"warning\""])
        .output()
        .unwrap();
    let warnings = String::from_utf8_lossy(&warnings.stdout);
    assert!(warnings.trim().is_empty(), "tshark: {warnings}");
    let fields = std::process::Command::new("tshark")
        .args(["-r", wire.to_str().unwrap()])
        .args(decode)
        .args([
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            "-e",
            "cflow.version",
            "-e",
            "cflow.srcaddr",
            "-e",
            "cflow.srcaddrv6",
            "-e",
            "cflow.layer2_octet_delta_count",
            "-e",
            "cflow.od_id",
            "-e",
            "cflow.observation_domain_name",
            "-e",
            "cflow.enterprise_private_entry",
        ])
        .output()
        .unwrap();
    // Each tap's flows in the domain its id hashes to, named by the tap id
    // (IPFIX); v9 carries the domain as the source id.
    let mut domains = std::collections::BTreeSet::new();
    let mut named = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&fields.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0] == "10" {
            // One domain a message (tshark repeats it per set).
            let domain = cols[4].split(',').next().unwrap_or_default().to_string();
            assert!(cols[4].split(',').all(|d| d == domain), "{line}");
            for n in cols[5].split(',').filter(|n| !n.is_empty()) {
                named.insert((domain.clone(), n.to_string()));
            }
            domains.insert(domain);
        }
    }
    let want: std::collections::BTreeSet<(String, String)> = taps
        .iter()
        .map(|t| {
            (
                pitap::export::ipfix::domain_of(t).to_string(),
                t.to_string(),
            )
        })
        .collect();
    assert_eq!(named, want, "observationDomainName per domain");
    assert_eq!(domains.len(), 2, "{domains:?}");
    let (mut ipfix_records, mut v9_seen, mut layer2) = (0, 0, 0u64);
    for line in String::from_utf8_lossy(&fields.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        // Forward and reverse layer-2 octets of every IPFIX record.
        layer2 += cols[3]
            .split(',')
            .filter_map(|c| c.parse::<u64>().ok())
            .sum::<u64>();
        let records = cols[1..3]
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| c.split(',').count())
            .sum::<usize>();
        match cols[0] {
            "10" => ipfix_records += records,
            "9" => v9_seen += records,
            other => panic!("version {other:?}"),
        }
    }
    assert_eq!(ipfix_records, ours.len(), "tshark's IPFIX records");
    // Every IPFIX record carries its flow's Community ID (the JSON line's,
    // itself checked against the reference implementation).
    let mut theirs_ids: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&fields.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0] != "10" {
            continue;
        }
        for hex in cols[6].split(',').filter(|h| !h.is_empty()) {
            let hex = hex.replace(':', "");
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            theirs_ids.push(String::from_utf8(bytes).unwrap());
        }
    }
    let mut ours_ids: Vec<String> = ours
        .iter()
        .map(|f| f["community_id"].as_str().unwrap().to_string())
        .collect();
    theirs_ids.sort();
    ours_ids.sort();
    assert_eq!(theirs_ids, ours_ids, "Community IDs in the IPFIX records");
    // The frame bytes travel as layer2OctetDeltaCount (octets are IP bytes).
    let frames: u64 = ours
        .iter()
        .map(|f| n(f, "src_bytes") + n(f, "dst_bytes"))
        .sum();
    assert_eq!(layer2, frames, "layer2OctetDeltaCount, both directions");
    assert_eq!(v9_seen, v9_records, "tshark's NetFlow v9 records");
}

/// Reassembles GELF UDP datagrams (chunked or not) into messages.
fn gelf_messages(datagrams: &[Vec<u8>], chunk_size: usize) -> Vec<Value> {
    let mut pending: BTreeMap<Vec<u8>, Vec<Option<Vec<u8>>>> = BTreeMap::new();
    let mut out = Vec::new();
    for d in datagrams {
        assert!(
            d.len() <= chunk_size,
            "datagram of {} bytes over the chunk size",
            d.len()
        );
        if d.starts_with(&[0x1e, 0x0f]) {
            assert!(d.len() > 12);
            let (id, seq, count) = (d[2..10].to_vec(), d[10] as usize, d[11] as usize);
            assert!(
                (1..=128).contains(&count) && seq < count,
                "chunk {seq}/{count}"
            );
            let parts = pending
                .entry(id.clone())
                .or_insert_with(|| vec![None; count]);
            assert_eq!(parts.len(), count);
            parts[seq] = Some(d[12..].to_vec());
            if parts.iter().all(Option::is_some) {
                let whole: Vec<u8> = pending
                    .remove(&id)
                    .unwrap()
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect();
                out.push(serde_json::from_slice(&whole).expect("a chunked message is JSON"));
            }
        } else {
            out.push(serde_json::from_slice(d).expect("an unchunked message is JSON"));
        }
    }
    assert!(pending.is_empty(), "incomplete chunked messages");
    out
}

/// GELF 1.1: version, host, short_message, timestamp (number), level,
/// additional fields with a leading underscore and no `_id`.
fn check_gelf(m: &Value, ours: &Value) {
    let o = m.as_object().unwrap();
    assert_eq!(o["version"], "1.1");
    assert_eq!(o["host"], "edge");
    assert!(o["short_message"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(o["timestamp"].is_number());
    assert_eq!(o["level"], 6);
    for (k, v) in o {
        if [
            "version",
            "host",
            "short_message",
            "full_message",
            "timestamp",
            "level",
        ]
        .contains(&k.as_str())
        {
            continue;
        }
        assert!(k.starts_with('_') && k != "_id", "field {k}");
        assert!(
            k[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'),
            "{k}"
        );
        assert!(!v.is_null() && !v.is_object() && !v.is_array(), "{k}: {v}");
    }
    let ms = (o["timestamp"].as_f64().unwrap() * 1000.0).round() as u64;
    assert_eq!(ms, ours["start_ms"].as_u64().unwrap());
    for f in [
        "src_addr",
        "dst_addr",
        "src_bytes",
        "dst_pkts",
        "conn_state",
        "action",
    ] {
        assert_eq!(o[&format!("_{f}")], ours[f], "{f}");
    }
}

#[test]
fn gelf_over_udp_and_tcp_follows_the_spec() {
    let dir = temp_dir("gelf");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let syslog = UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tcp_thread = std::thread::spawn(move || {
        let (mut stream, _) = tcp.accept().unwrap();
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        all
    });
    let chunk = 512;
    let (keys_config, keys) = keygen(&dir, &["edge"]);
    let config = format!(
        "{}\n[export]\ngelf_udp = [\"{}\"]\ngelf_tcp = [\"{tcp_addr}\"]\ngelf_chunk_size = {chunk}\nsyslog = [\"{}\"]\n",
        std::fs::read_to_string(&keys_config).unwrap(),
        udp.local_addr().unwrap(),
        syslog.local_addr().unwrap()
    );
    std::fs::write(&keys_config, config).unwrap();
    let (child, addr) = start_collector(
        &keys_config,
        &["--format", "json", "--until-final", "--idle-exit", "20"],
    );
    replay_to(&real_pcap("zeek__wikipedia.pcap"), &addr, "edge", &keys[0]);
    let (lines, stderr) = finish(child);
    let ours: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut datagrams = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = udp.recv(&mut buf) {
        datagrams.push(buf[..n].to_vec());
    }
    let chunked = datagrams
        .iter()
        .filter(|d| d.starts_with(&[0x1e, 0x0f]))
        .count();
    assert!(
        chunked > 0,
        "no message needed chunks at {chunk} bytes: {stderr}"
    );
    let messages = gelf_messages(&datagrams, chunk);
    assert_eq!(messages.len(), ours.len(), "{stderr}");
    for (m, f) in messages.iter().zip(&ours) {
        check_gelf(m, f);
    }
    let tcp_bytes = tcp_thread.join().unwrap();
    assert_eq!(tcp_bytes.last(), Some(&0), "GELF TCP frames end with NUL");
    let tcp_messages: Vec<Value> = tcp_bytes
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| serde_json::from_slice(m).expect("JSON"))
        .collect();
    assert_eq!(tcp_messages.len(), ours.len());
    for (m, f) in tcp_messages.iter().zip(&ours) {
        check_gelf(m, f);
    }
    // Syslog: RFC 5424 header, then the flow line exactly as printed.
    let printed_lines: Vec<String> = std::process::Command::new(pitapd_bin())
        .args([
            "--read",
            real_pcap("zeek__wikipedia.pcap").to_str().unwrap(),
            "--print",
            "--tap-id",
            "edge",
            "-q",
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap();
    let mut got = Vec::new();
    while let Ok(n) = syslog.recv(&mut buf) {
        got.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8"));
    }
    assert_eq!(got.len(), printed_lines.len());
    for (m, line) in got.iter().zip(&printed_lines) {
        let (header, rest) = m.split_once(" pitap - flow - ").expect("APP-NAME, MSGID");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts[0], "<134>1", "PRI local0.info, VERSION 1");
        assert!(
            parts[1].ends_with('Z') && parts[1].contains('T'),
            "TIMESTAMP {}",
            parts[1]
        );
        assert_eq!(parts[2], "edge", "HOSTNAME");
        assert_eq!(rest, line);
    }
}

/// A replay of over 200,000 flows exported by `pitap collect` to `nfcapd`
/// on the namespace's loopback: nfcapd must hold every flow, with no
/// sequence failure (`nfdump -I`). The export paces itself.
#[test]
fn a_200k_flow_replay_reaches_nfcapd_whole() {
    let dir = temp_dir("export-volume");
    let ns = Netns::new("expv");
    let nf_dir = dir.join("ipfix");
    std::fs::create_dir_all(&nf_dir).unwrap();
    // Many short connections: the beacon corpus' noise written as traffic.
    let capture = dir.join("many.pcap");
    let series = pitap_bench::beacons::corpus(11, 1, 3_000);
    pitap_bench::beacon_capture::write(&capture, &series).unwrap();
    let mut nf = spawn(
        &ns,
        &[
            "nfcapd",
            "-b",
            "127.0.0.1",
            "-p",
            "9997",
            // A receiver's usual setting for bursts: once, on a loaded CI
            // machine, nfcapd's default buffer overflowed by one datagram.
            "-B",
            "4194304",
            "-t",
            "3600",
            "-w",
            nf_dir.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let (keys_config, keys) = keygen(&dir, &["bulk"]);
    let config = format!(
        "{}\n[export]\nipfix = [\"127.0.0.1:9997\"]\n",
        std::fs::read_to_string(&keys_config).unwrap()
    );
    std::fs::write(&keys_config, config).unwrap();
    let store = dir.join("flows.db");
    let mut collector = ns
        .command(env!("CARGO_BIN_EXE_pitap"))
        .args([
            "collect",
            "--listen",
            "127.0.0.1:47401",
            "--until-final",
            "--idle-exit",
            "30",
        ])
        .arg("--config")
        .arg(&keys_config)
        .arg("--store")
        .arg(&store)
        .arg("--output")
        .arg(dir.join("lines.txt"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(collector.stderr.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("collecting on"), "{first}");
    replay_with(
        ns.command(pitapd_bin()),
        &capture,
        "127.0.0.1:47401",
        "bulk",
        &keys[0],
    );
    let out = collector.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(1500));
    stop(&mut nf);
    let stored = std::process::Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["query", "--since", "0", "--count", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let stored: u64 = String::from_utf8_lossy(&stored.stdout)
        .trim()
        .parse()
        .unwrap();
    let file = std::fs::read_dir(&nf_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nfcapd."))
        })
        .expect("an nfcapd file");
    let info = std::process::Command::new("nfdump")
        .args(["-I", "-r", file.to_str().unwrap()])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout).to_string();
    let stat = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {info}"))
    };
    eprintln!("stored {stored}, nfcapd: {info}\ncollector: {stderr}");
    assert!(stored >= 200_000, "{stored}");
    assert_eq!(stat("Sequence failures"), 0, "{info}");
    assert_eq!(stat("Flows"), stored, "{info}");
    let _ = std::fs::remove_dir_all(&dir);
}
