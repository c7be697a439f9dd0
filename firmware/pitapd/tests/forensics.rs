//! The seed's case, end to end through the live tap: a client gets its
//! address and hostname from dnsmasq's DHCP and downloads a picture over
//! HTTP; from the picture's SHA-256 alone, `pitap files`, `pitap query` and
//! `pitap devices` lead to the flow, its address, MAC and DHCP hostname; and
//! `pitap pcap` fetches the flow's packets from the tap's ring, equal to a
//! tcpdump capture on the client's veth up to the cut-off, through 30 %
//! uplink loss (nftables) and a collector killed mid-fetch; every reply the
//! collector sent, replayed afterwards, is refused by the tap.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::*;
use pitap_flow_core::decode::{decode, Decoded};
use pitap_flow_core::{LinkType, PacketSource};
use pitapd::source::CaptureReader;
use serde_json::Value;

const UPLINK: &str = "127.0.0.1:47140";
const HOSTNAME: &str = "photo-laptop";
/// The ring keeps this much payload of each direction of a connection.
const CUTOFF_KIB: u64 = 256;

fn pitap(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(sibling_binary("pitap"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A picture: a PNG signature and 600 KB of bytes no compressor shrinks.
fn picture(path: &Path) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < 600_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// One frame of a capture: time, length on the wire, bytes.
#[derive(Debug, PartialEq)]
struct Packet {
    ts_us: u64,
    orig_len: u32,
    data: Vec<u8>,
}

fn frames(path: &Path) -> Vec<Packet> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(f) = r.next_frame().unwrap() {
        out.push(Packet {
            ts_us: f.ts_us,
            orig_len: f.orig_len,
            data: f.data.to_vec(),
        });
    }
    out
}

/// The frames the ring keeps of a connection: each direction's until its
/// payload reached the cut-off (the frame crossing it included).
fn up_to_cutoff(frames: Vec<Packet>, client_port: u16) -> Vec<Packet> {
    let mut kept = [0u64; 2];
    frames
        .into_iter()
        .filter(|p| {
            let Decoded::Ip(ip) = decode(LinkType::Ethernet, &p.data, None) else {
                return false;
            };
            let side = usize::from(ip.src_port != client_port);
            if kept[side] >= CUTOFF_KIB << 10 {
                return false;
            }
            kept[side] += u64::from(ip.payload_len);
            true
        })
        .collect()
}

fn chunks_stored(store: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(store) else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM fetch_chunks", [], |r| r.get(0))
        .unwrap_or(0)
}

#[test]
fn from_a_pictures_hash_to_the_device_and_its_packets() {
    let mut topo = Topology::new("fx");
    let (tap_ns, client, server) = (topo.tap.clone(), topo.client.clone(), topo.server.clone());
    let dir = topo.dir.clone();
    let store = topo.store_path();
    let store_arg = store.to_str().unwrap().to_string();

    // The server: DHCP (dnsmasq) and the picture over HTTP.
    topo.spawn(
        &server,
        "dnsmasq",
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=0",
            "--user=root",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,1h",
            &format!("--dhcp-leasefile={}", dir.join("leases").display()),
        ],
    );
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let sent = picture(&www.join("holiday.png"));
    topo.spawn(
        &server,
        "http",
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            SERVER_IP,
            "--directory",
            www.to_str().unwrap(),
        ],
    );

    // The tap and its collector; the uplink loses 30 % both ways.
    let collector = topo.start_collector(&tap_ns, "collector", UPLINK, &[]);
    let config = topo.pitapd_config(
        "",
        &format!(
            "{}\n[flows]\ntcp_linger_s = 0.5\n[forensics]\nring_mib = 32\ncutoff_kib = {CUTOFF_KIB}\n",
            topo.uplink(UPLINK, "health_interval_s = 1")
        ),
    );
    let pitapd = topo.start_pitapd(&config, &[]);

    // The client: no address until DHCP gives one, with its hostname.
    topo.run(&client, &["ip", "addr", "flush", "dev", "eth0"]);
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let mac = topo.run(&client, &["cat", "/sys/class/net/eth0/address"]);
    let mac = String::from_utf8(mac.stdout).unwrap().trim().to_string();
    // Ground truth: the client's own veth.
    let truth = dir.join("client.pcap");
    let tcpdump = topo.spawn(
        &client,
        "client-tcpdump",
        &[
            "tcpdump",
            "-Z",
            "root",
            "--immediate-mode",
            "-B",
            "65536",
            "-n",
            "-i",
            "eth0",
            "-w",
            truth.to_str().unwrap(),
            "tcp port 8000",
        ],
    );
    topo.wait_for_stderr("client-tcpdump", "listening on", Duration::from_secs(10));
    topo.run(
        &client,
        &[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-t",
            "5",
            "-x",
            &format!("hostname:{HOSTNAME}"),
            "-s",
            script.to_str().unwrap(),
        ],
    );
    let got = dir.join("got.png");
    let out = topo.run(
        &client,
        &[
            "curl",
            "-sS",
            "--retry",
            "3",
            "--retry-connrefused",
            "-o",
            got.to_str().unwrap(),
            &format!("http://{SERVER_IP}:8000/holiday.png"),
        ],
    );
    assert_eq!(std::fs::read(&got).unwrap(), sent, "{out:?}");
    let sha = sha256_hex(&got);
    topo.signal(tcpdump, "INT");
    assert!(topo.wait(tcpdump, Duration::from_secs(10)));

    // From the hash alone: the file, then the flow and who was behind it.
    let start = Instant::now();
    let file = loop {
        let (ok, out, err) = pitap(&[
            "files", &sha, "--since", "0", "--json", "--store", &store_arg,
        ]);
        assert!(ok, "{err}");
        if let Some(f) = json_lines(&out).pop() {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no file record: {}",
            topo.errors("pitapd")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(file["file_size"], sent.len());
    assert_eq!(file["file_mime"], "image/png");
    assert_eq!(
        file["file_url"],
        format!("http://{SERVER_IP}:8000/holiday.png")
    );
    let q = format!("file_sha256:{sha}");
    let start = Instant::now();
    let flow = loop {
        let (ok, out, err) = pitap(&["query", &q, "--since", "0", "--json", "--store", &store_arg]);
        assert!(ok, "{err}");
        if let Some(f) = json_lines(&out).pop() {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no flow for the file"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let client_ip = flow["src_addr"].as_str().unwrap().to_string();
    assert!(client_ip.starts_with("192.0.2.1"), "{flow}");
    assert_eq!(flow["src_mac"], mac.as_str(), "{flow}");
    assert_eq!(flow["src_hostname"], HOSTNAME, "{flow}");
    assert_eq!(flow["dst_port"], 8000);
    let (ok, out, _) = pitap(&["devices", "--json", "--store", &store_arg]);
    assert!(ok);
    assert!(
        json_lines(&out)
            .iter()
            .any(|d| d["mac"] == mac.as_str() && d["hostname"] == HOSTNAME),
        "{out}"
    );

    // The packets, through 30 % loss each way on the uplink, with a
    // collector killed while the answer comes in.
    let port = UPLINK.rsplit(':').next().unwrap();
    topo.run(&tap_ns, &["nft", "add", "table", "inet", "loss"]);
    topo.run(
        &tap_ns,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "loss",
            "out",
            "{ type filter hook output priority 0 ; }",
        ],
    );
    for dir in ["dport", "sport"] {
        topo.run(
            &tap_ns,
            &[
                "nft", "add", "rule", "inet", "loss", "out", "udp", dir, port, "numgen", "random",
                "mod", "10", "<", "3", "drop",
            ],
        );
    }
    let replies = dir.join("replies.pcap");
    let lo_dump = topo.spawn(
        &tap_ns,
        "lo-tcpdump",
        &[
            "tcpdump",
            "-Z",
            "root",
            "--immediate-mode",
            "-n",
            "-i",
            "lo",
            "-w",
            replies.to_str().unwrap(),
            &format!("udp src port {port}"),
        ],
    );
    topo.wait_for_stderr("lo-tcpdump", "listening on", Duration::from_secs(10));
    let fetched = dir.join("flow.pcapng");
    let fetch = topo.spawn(
        &tap_ns,
        "pcap",
        &[
            sibling_binary("pitap").to_str().unwrap(),
            "pcap",
            "--tap",
            "nstap",
            "--query",
            &q,
            "--since",
            "0",
            "-o",
            fetched.to_str().unwrap(),
            "--store",
            &store_arg,
        ],
    );
    let start = Instant::now();
    while chunks_stored(&store) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no chunk stored: {}",
            topo.errors("collector")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    topo.signal(collector, "KILL");
    topo.wait(collector, Duration::from_secs(5));
    let partial = chunks_stored(&store);
    let state: String = rusqlite::Connection::open(&store)
        .unwrap()
        .query_row("SELECT state FROM fetches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(state, "waiting", "killed mid-fetch");
    let collector = topo.start_collector(&tap_ns, "collector2", UPLINK, &[]);
    assert!(
        topo.wait(fetch, Duration::from_secs(90)),
        "pitap pcap: {}",
        topo.errors("pcap")
    );
    assert!(
        topo.errors("pcap").contains("packets from tap nstap"),
        "{}",
        topo.errors("pcap")
    );

    // Equal to the client's capture, packet by packet, up to the cut-off:
    // each direction in its order (the tap's two ports and the client's veth
    // see packets crossing each other within microseconds in either order).
    let client_port = flow["src_port"].as_u64().unwrap() as u16;
    let want = up_to_cutoff(frames(&truth), client_port);
    let have = frames(&fetched);
    assert!(
        have.len() > 20 && (partial as usize) < have.len() * 2,
        "{} {partial}",
        have.len()
    );
    assert_eq!(have.len(), want.len(), "packets fetched vs captured");
    let from_client = |p: &&Packet| matches!(decode(LinkType::Ethernet, &p.data, None), Decoded::Ip(ip) if ip.src_port == client_port);
    // Time order across the directions (within one, the order it came in).
    assert!(
        have.windows(2)
            .all(|w| from_client(&&w[0]) == from_client(&&w[1]) || w[0].ts_us <= w[1].ts_us),
        "time order"
    );
    // Each packet the client's capture has, and in its order but for
    // packets sent within a millisecond of each other: on this VM a veth's
    // packets reach the tap's port from whichever CPU sent them (a real NIC
    // queue keeps them in order).
    for side in [true, false] {
        let h: Vec<&Packet> = have.iter().filter(|p| from_client(p) == side).collect();
        let w: Vec<&Packet> = want.iter().filter(|p| from_client(p) == side).collect();
        assert_eq!(h.len(), w.len(), "from the client: {side}");
        let mut used = vec![false; w.len()];
        let mut at = Vec::new();
        for (i, p) in h.iter().enumerate() {
            let j = (0..w.len())
                .find(|&j| !used[j] && (w[j].orig_len, &w[j].data) == (p.orig_len, &p.data))
                .unwrap_or_else(|| {
                    panic!("packet {i} (from the client: {side}) is not in the capture")
                });
            used[j] = true;
            assert!(
                p.ts_us.abs_diff(w[j].ts_us) < 500_000,
                "packet {i}: {} vs {}",
                p.ts_us,
                w[j].ts_us
            );
            at.push(j);
        }
        for pair in at.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                a < b || w[a].ts_us.abs_diff(w[b].ts_us) < 1_000,
                "from the client: {side}: packet {b} of the capture comes after {a}, {} us apart",
                w[a].ts_us.abs_diff(w[b].ts_us)
            );
        }
    }
    let total_payload: usize = sent.len();
    assert!(
        (CUTOFF_KIB as usize) << 10 < total_payload,
        "the cut-off is inside the download"
    );

    // The tap hears that the answer is whole (the collector says so for a
    // while after), and stops sending it.
    topo.run(&tap_ns, &["nft", "delete", "table", "inet", "loss"]);
    let start = Instant::now();
    while topo.status()["uplink"]["packet_requests"]["answered"] != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            topo.status()["uplink"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every reply the collectors sent, replayed to the tap: refused.
    topo.signal(collector, "TERM");
    topo.wait(collector, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    topo.signal(lo_dump, "INT");
    assert!(topo.wait(lo_dump, Duration::from_secs(10)));
    let recorded = frames(&replies);
    assert!(recorded.len() > 5);
    let payloads: Vec<String> = recorded
        .iter()
        .map(|p| {
            // Ethernet-less loopback frames: 14 bytes of fake Ethernet, IP, UDP.
            let Decoded::Ip(ip) = decode(LinkType::Ethernet, &p.data, None) else {
                panic!("not IP")
            };
            let hex: String = ip.payload.iter().map(|b| format!("{b:02x}")).collect();
            format!("{} {hex}", ip.dst_port)
        })
        .collect();
    let list = dir.join("replay.txt");
    std::fs::write(&list, payloads.join("\n")).unwrap();
    let replay = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', {port}))\n\
         for line in open('{}'):\n    p, h = line.split()\n    s.sendto(bytes.fromhex(h), ('127.0.0.1', int(p)))\n",
        list.display()
    );
    topo.run(&tap_ns, &["python3", "-c", &replay]);
    std::thread::sleep(Duration::from_millis(500));
    topo.signal(pitapd, "TERM");
    topo.wait(pitapd, Duration::from_secs(20));
    let summary = topo.errors("pitapd");
    assert!(summary.contains("pitapd: packet ring: "), "{summary}");
    let line = summary
        .lines()
        .find(|l| l.contains("packet requests"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        line.contains("1 packet requests (1 answered whole"),
        "{line}"
    );
    let replayed: u64 = line
        .split(", ")
        .find(|p| p.ends_with("replies refused (replayed)"))
        .and_then(|p| p.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        replayed >= recorded.len() as u64,
        "{replayed} of {} refused: {line}",
        recorded.len()
    );
}

/// An alert with the `pcap` action leaves the flagged flow's packets beside
/// the alert: the alert's JSON line names a pcapng file that holds them.
#[test]
fn an_alert_fetches_the_packets_of_its_flow() {
    let mut topo = Topology::new("fa");
    let (tap_ns, client, server) = (topo.tap.clone(), topo.client.clone(), topo.server.clone());
    let dir = topo.dir.clone();
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("payload.bin"), vec![7u8; 20_000]).unwrap();
    topo.spawn(
        &server,
        "http",
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            SERVER_IP,
            "--directory",
            www.to_str().unwrap(),
        ],
    );
    let alerts = dir.join("alerts.jsonl");
    let pcaps = dir.join("alert-pcaps");
    let config = dir.join("collector-alert.toml");
    std::fs::write(
        &config,
        format!(
            "[taps.nstap]\nkey = \"{}\"\n\n[[alert]]\nname = \"download\"\nquery = \"dst_port:8000 AND conn_state:SF\"\n\
             window_s = 60\nthreshold = 1\nactions = [\"file:{}\", \"pcap:{}\"]\n",
            topo.key,
            alerts.display(),
            pcaps.display()
        ),
    )
    .unwrap();
    let uplink = "127.0.0.1:47141";
    let pitap_bin = sibling_binary("pitap");
    let store = topo.store_path();
    topo.spawn(
        &tap_ns,
        "collector",
        &[
            pitap_bin.to_str().unwrap(),
            "collect",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            uplink,
            "--store",
            store.to_str().unwrap(),
        ],
    );
    topo.wait_for_stderr("collector", "collecting on", Duration::from_secs(10));
    let tap_config = topo.pitapd_config(
        "",
        &format!(
            "{}\n[flows]\ntcp_linger_s = 0.5\n[forensics]\nring_mib = 16\n",
            topo.uplink(uplink, "health_interval_s = 1")
        ),
    );
    topo.start_pitapd(&tap_config, &[]);
    std::thread::sleep(Duration::from_millis(500));
    topo.run(
        &client,
        &[
            "curl",
            "-sS",
            "--retry",
            "3",
            "--retry-connrefused",
            "-o",
            "/dev/null",
            &format!("http://{SERVER_IP}:8000/payload.bin"),
        ],
    );
    let start = Instant::now();
    let (alert, file) = loop {
        let alert: Option<Value> = std::fs::read_to_string(&alerts)
            .ok()
            .and_then(|t| t.lines().next().map(|l| serde_json::from_str(l).unwrap()));
        if let Some(a) = alert {
            let path =
                std::path::PathBuf::from(a["pcap"].as_str().expect("the alert names its pcap"));
            if path.exists() {
                break (a, path);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no pcap beside the alert: {}",
            topo.errors("collector")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(file.starts_with(&pcaps), "{alert}");
    let packets = frames(&file);
    // The whole download is under the cut-off: handshake, request, the
    // 20 kB and the teardown, every packet decoding as this flow's.
    assert!(packets.len() >= 10, "{}", packets.len());
    let payload: u64 = packets
        .iter()
        .map(|p| match decode(LinkType::Ethernet, &p.data, None) {
            Decoded::Ip(ip) => {
                assert!(ip.src_port == 8000 || ip.dst_port == 8000);
                u64::from(ip.payload_len)
            }
            other => panic!("{other:?}"),
        })
        .sum();
    assert!(payload > 20_000, "{payload}");
    // tshark reads it, and sees the comment naming the alert.
    let out = Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-q", "-z", "io,stat,0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("capinfos").arg(&file).output().unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("alert \"download\""), "{info}");
}
