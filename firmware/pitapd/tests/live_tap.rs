//! The live tap in network namespaces: `pitapd` bridges two veths between a
//! client and a server namespace and real programs talk across it (ping, a
//! TCP and a UDP exchange, curl against an HTTP server). Ground truth is
//! tcpdump on the same veth at the same time, read by tshark.
//!
//! Needs root (namespaces, bridges, AF_PACKET); CI has it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::conversations::{differences, pitap_conversations, tshark_conversations};
use common::netns::*;
use common::tshark;
use serde_json::Value;

const TCP_SERVER: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1)
c, _ = s.accept()
got = 0
while True:
    b = c.recv(65536)
    if not b: break
    got += len(b)
c.sendall(b"r" * 3000 + str(got).encode())
c.close()
"#;

const TCP_CLIENT: &str = r#"
import socket
c = socket.create_connection(("192.0.2.2", 5001))
c.sendall(b"x" * 200000)
c.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = c.recv(65536)
    if not b: break
    reply += b
assert reply.endswith(b"200000"), reply[-20:]
"#;

const UDP_SERVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5002))
for _ in range(5):
    data, peer = s.recvfrom(2048)
    s.sendto(data.upper() * 3, peer)
"#;

const UDP_CLIENT: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for i in range(5):
    s.sendto(b"ping %d" % i, ("192.0.2.2", 5002))
    s.recvfrom(2048)
"#;

fn start_collector(topo: &mut Topology, ns: &str, listen: &str) -> usize {
    topo.start_collector(
        ns,
        "collector",
        listen,
        &["--until-final", "--idle-exit", "30"],
    )
}

/// Per-direction ICMP frames and bytes from tshark, keyed (src, dst).
fn icmp_by_direction(pcap: &str) -> BTreeMap<(String, String), (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in tshark(&[
        "-r",
        pcap,
        "-Y",
        "icmp",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "frame.len",
    ])
    .lines()
    {
        let f: Vec<&str> = line.split('\t').collect();
        let e: &mut (u64, u64) = out.entry((f[0].to_string(), f[1].to_string())).or_default();
        e.0 += 1;
        e.1 += f[2].parse::<u64>().unwrap();
    }
    out
}

#[test]
fn flows_through_the_bridge_match_the_capture() {
    let mut topo = Topology::new("flows");
    let tap_ns = topo.tap.clone();
    let (client, server) = (topo.client.clone(), topo.server.clone());
    let collector = start_collector(&mut topo, &tap_ns, "127.0.0.1:47100");
    let config = topo.pitapd_config("", &topo.uplink("127.0.0.1:47100", ""));
    let pitapd = topo.start_pitapd(&config, &[]);

    // The bridge is a transparent tap.
    let sysfs = |f: &str| {
        String::from_utf8(
            topo.run(&tap_ns, &["cat", &format!("/sys/class/net/br0/bridge/{f}")])
                .stdout,
        )
        .unwrap()
    };
    assert_eq!(sysfs("stp_state").trim(), "0");
    assert_eq!(sysfs("ageing_time").trim(), "0");
    assert_eq!(sysfs("multicast_snooping").trim(), "0");
    assert_eq!(sysfs("group_fwd_mask").trim(), "0x4008");
    for dev in ["br0", "porta", "portb"] {
        let v = topo.run(
            &tap_ns,
            &[
                "cat",
                &format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
            ],
        );
        assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "1", "{dev}");
        let addrs = topo.run(&tap_ns, &["ip", "-o", "addr", "show", "dev", dev]);
        assert!(
            addrs.stdout.is_empty(),
            "{dev} has addresses: {}",
            String::from_utf8_lossy(&addrs.stdout)
        );
    }
    for port in ["porta", "portb"] {
        let k = String::from_utf8(topo.run(&tap_ns, &["ethtool", "-k", port]).stdout).unwrap();
        assert!(k.contains("generic-receive-offload: off"), "{port}: {k}");
    }

    let pcap = topo.dir.join("porta.pcap");
    let tcpdump = topo.start_capture("porta", &pcap);
    let http_dir = topo.dir.join("www");
    std::fs::create_dir_all(&http_dir).unwrap();
    std::fs::write(http_dir.join("file.bin"), vec![7u8; 300_000]).unwrap();
    let http = topo.spawn(
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
            http_dir.to_str().unwrap(),
        ],
    );
    let tcp_server = topo.spawn(&server, "tcpserver", &["python3", "-c", TCP_SERVER]);
    let udp_server = topo.spawn(&server, "udpserver", &["python3", "-c", UDP_SERVER]);
    std::thread::sleep(Duration::from_millis(500));

    topo.run(&client, &["ping", "-c", "3", "-i", "0.2", SERVER_IP]);
    topo.run(&server, &["ping", "-c", "2", "-i", "0.2", CLIENT_IP]);
    topo.run(&client, &["python3", "-c", TCP_CLIENT]);
    topo.run(&client, &["python3", "-c", UDP_CLIENT]);
    let curl = topo.run(
        &client,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &format!("http://{SERVER_IP}:8000/file.bin"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "300000");
    assert!(topo.wait(tcp_server, Duration::from_secs(10)));
    assert!(topo.wait(udp_server, Duration::from_secs(10)));
    topo.signal(http, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    topo.stop_capture(tcpdump);

    // SIGTERM: every live flow is flushed and sent before pitapd exits.
    let flows = topo.stop_and_collect(pitapd, collector);
    let pcap_s = pcap.to_str().unwrap();

    let theirs = tshark_conversations(&pcap);
    assert!(
        theirs.len() >= 3,
        "the capture holds the TCP, UDP and HTTP conversations"
    );
    let diffs = differences(&theirs, &pitap_conversations(&flows));
    assert!(diffs.is_empty(), "mismatches:\n{}", diffs.join("\n"));

    let icmp = icmp_by_direction(pcap_s);
    let mut ours = BTreeMap::new();
    for f in flows.iter().filter(|f| f["proto"] == "ICMP") {
        let (s, d) = (
            f["src_addr"].as_str().unwrap().to_string(),
            f["dst_addr"].as_str().unwrap().to_string(),
        );
        let e: &mut (u64, u64) = ours.entry((s.clone(), d.clone())).or_default();
        e.0 += f["src_pkts"].as_u64().unwrap();
        e.1 += f["src_bytes"].as_u64().unwrap();
        let e: &mut (u64, u64) = ours.entry((d, s)).or_default();
        e.0 += f["dst_pkts"].as_u64().unwrap();
        e.1 += f["dst_bytes"].as_u64().unwrap();
    }
    assert_eq!(ours, icmp);

    // Each side's traffic entered on its own port.
    for f in &flows {
        let expected = match f["src_addr"].as_str().unwrap() {
            CLIENT_IP => "A",
            SERVER_IP => "B",
            other => panic!("unexpected flow from {other}: {f}"),
        };
        assert_eq!(f["ingress"], expected, "{f}");
        assert_eq!(f["tap"], "nstap");
    }
    let pings: Vec<&Value> = flows.iter().filter(|f| f["proto"] == "ICMP").collect();
    assert_eq!(pings.len(), 2, "one echo flow each way");
    assert!(flows
        .iter()
        .any(|f| f["dst_port"] == 8000 && f["conn_state"] == "SF" && f["action"] == "ACCEPT"));
    assert!(
        topo.errors("collector")
            .contains("0 duplicates, 0 waiting, 0 lost (tap gave up)"),
        "{}",
        topo.errors("collector")
    );
    // The tap's health report reached the collector with it.
    assert!(
        topo.errors("collector")
            .contains(&format!("fw {}, up", env!("CARGO_PKG_VERSION")))
            && topo.errors("collector").contains("links A:up B:up"),
        "{}",
        topo.errors("collector")
    );
}

/// Sends 8 MB in 64 KiB pieces, 20 ms apart: a transfer of about 2.5 s.
const PACED_SERVER: &str = r#"
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5003)); s.listen(1)
c, _ = s.accept()
for _ in range(122):
    c.sendall(b"Z" * 65536)
    time.sleep(0.02)
c.sendall(b"Z" * (8000000 - 122 * 65536))
c.close()
"#;

const PACED_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection(("192.0.2.2", 5003))
got = bytearray()
while True:
    b = c.recv(65536)
    if not b: break
    got += b
    open(sys.argv[1], "w").write(str(len(got)))
assert got == b"Z" * 8000000, len(got)
print("complete")
"#;

#[test]
fn traffic_survives_kill_9() {
    let mut topo = Topology::new("kill");
    let (client, server) = (topo.client.clone(), topo.server.clone());
    let config = topo.pitapd_config("", "");
    let pitapd = topo.start_pitapd(&config, &[]);
    topo.spawn(&server, "server", &["python3", "-c", PACED_SERVER]);
    std::thread::sleep(Duration::from_millis(400));
    let progress = topo.dir.join("progress");
    let receiver = topo.spawn(
        &client,
        "client",
        &["python3", "-c", PACED_CLIENT, progress.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_millis(800));
    let partial: u64 = std::fs::read_to_string(&progress)
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    assert!(
        partial > 0 && partial < 8_000_000,
        "transfer should be under way ({partial} bytes)"
    );
    topo.signal(pitapd, "KILL");
    assert!(!topo.wait(pitapd, Duration::from_secs(5)));
    assert!(
        topo.wait(receiver, Duration::from_secs(20)),
        "transfer failed: {}",
        topo.errors("client")
    );
    assert_eq!(topo.output("client").trim(), "complete");
    // New connections still cross the bridge without pitapd.
    topo.run(&client, &["ping", "-c", "1", "-W", "2", SERVER_IP]);
}

#[test]
fn ring_drops_reach_the_counters_the_collector_and_the_flows() {
    let mut topo = Topology::new("drops");
    let (tap_ns, client) = (topo.tap.clone(), topo.client.clone());
    let collector = topo.start_collector(
        &tap_ns,
        "collector",
        "127.0.0.1:47113",
        &["--until-final", "--idle-exit", "30"],
    );
    // Two 4 KiB blocks: room for a handful of frames.
    let config = topo.pitapd_config(
        "",
        &format!(
            "[capture]\nblock_size = 4096\nblock_count = 2\nframe_size = 2048\n{}",
            topo.uplink("127.0.0.1:47113", "")
        ),
    );
    let pitapd = topo.start_pitapd(&config, &[]);
    topo.run(&client, &["ping", "-c", "1", "-W", "2", SERVER_IP]);
    // pitapd stops reading while a burst crosses the bridge: one UDP flow.
    topo.signal(pitapd, "STOP");
    const BURST: u64 = 3000;
    let sender = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{CLIENT_IP}', 5555))\nfor i in range({BURST}): s.sendto(b'x' * 100, ('{SERVER_IP}', 9))"
    );
    topo.run(&client, &["python3", "-c", &sender]);
    topo.signal(pitapd, "CONT");
    std::thread::sleep(Duration::from_millis(800));
    let status = topo.status();
    let a = &status["ports"][0];
    let drops = a["ring_drops"].as_u64().unwrap();
    let frames = a["frames"].as_u64().unwrap();
    assert!(drops > 0, "no drops counted: {status}");
    // Every frame that entered port A was either taken or counted as dropped.
    assert!(frames + drops >= BURST, "{frames} + {drops} < {BURST}");
    // A flow that starts after the drops were counted missed nothing.
    topo.run(&client, &["ping", "-c", "1", "-W", "2", SERVER_IP]);
    std::thread::sleep(Duration::from_millis(300));

    let flows = topo.stop_and_collect(pitapd, collector);
    // The summary at exit reports the same accumulated counter.
    let last = topo.status()["ports"][0]["ring_drops"].as_u64().unwrap();
    assert!(last >= drops);
    let summary = topo.errors("pitapd");
    assert!(
        summary.contains(&format!(" {last} ring drops")),
        "{summary}"
    );
    // The collector heard them in the tap's health report...
    let report = topo.errors("collector");
    assert!(
        report.contains(&format!(", {last} ring drops,")),
        "{report}"
    );
    // ...and the flows open while they happened say so; the later one not.
    let burst = flows
        .iter()
        .find(|f| f["src_port"] == 5555 && f["dst_port"] == 9)
        .unwrap_or_else(|| panic!("no burst flow in {flows:#?}"));
    assert!(burst["ring_drops"].as_u64().unwrap() >= drops, "{burst}");
    // Echo flows only (the server answers the burst with port unreachables,
    // ICMP type 3). After the freeze the kernel may hand over port A's
    // block late, so the later ping's reply can come first: its flow then
    // starts with the answer (type 0, history "^").
    let pings: Vec<&Value> = flows
        .iter()
        .filter(|f| f["proto"] == "ICMP" && (f["icmp_type"] == 8 || f["icmp_type"] == 0))
        .collect();
    assert_eq!(
        pings.len(),
        2,
        "{pings:#?}\npitapd: {}\ncollector: {}",
        topo.errors("pitapd"),
        topo.errors("collector")
    );
    let first = pings.iter().min_by_key(|f| f["start_ms"].as_u64()).unwrap();
    let later = pings.iter().max_by_key(|f| f["start_ms"].as_u64()).unwrap();
    assert!(first["ring_drops"].as_u64().unwrap() >= drops, "{first}");
    assert_eq!(later["ring_drops"], 0, "{later}");
}

#[test]
fn own_traffic_is_never_a_user_flow() {
    let mut topo = Topology::new("own");
    let (tap_ns, client, server) = (topo.tap.clone(), topo.client.clone(), topo.server.clone());
    let collector = start_collector(&mut topo, &server, &format!("{SERVER_IP}:47101"));
    let config = topo.pitapd_config("", &topo.uplink(&format!("{SERVER_IP}:47101"), ""));
    // The tap has an address on its bridge, so its uplink leaves through a
    // tap port, in the middle of the traffic it watches. pitapd adopts the
    // bridge made here and makes it a tap bridge.
    topo.run(&tap_ns, &["ip", "link", "add", "br0", "type", "bridge"]);
    topo.run(
        &tap_ns,
        &["ip", "addr", "add", &format!("{TAP_IP}/24"), "dev", "br0"],
    );
    let pitapd = topo.start_pitapd(&config, &[]);
    topo.run(&client, &["ping", "-c", "3", "-i", "0.2", SERVER_IP]);
    topo.run(&server, &["ping", "-c", "3", "-i", "0.2", TAP_IP]);
    std::thread::sleep(Duration::from_millis(500));
    let own = topo.status()["own_traffic_frames"].as_u64().unwrap();
    let flows = topo.stop_and_collect(pitapd, collector);
    assert!(own >= 3, "the pings to the tap are its own traffic ({own})");
    assert!(
        flows
            .iter()
            .any(|f| f["src_addr"] == CLIENT_IP && f["proto"] == "ICMP"),
        "{flows:?}"
    );
    for f in &flows {
        assert!(
            f["src_addr"] != TAP_IP && f["dst_addr"] != TAP_IP,
            "own traffic counted: {f}"
        );
        assert!(f["dst_port"] != 47101, "the uplink counted itself: {f}");
    }
}

#[test]
fn link_failure_propagates_and_recovers() {
    let mut topo = Topology::new("link");
    let (client, server) = (topo.client.clone(), topo.server.clone());
    let config = topo.pitapd_config("link_propagation = true", "");
    let pitapd = topo.start_pitapd(&config, &[]);
    let carrier = |topo: &Topology, ns: &str| {
        String::from_utf8(topo.run(ns, &["cat", "/sys/class/net/eth0/carrier"]).stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    let wait_carrier = |topo: &Topology, ns: &str, want: &str| {
        let start = std::time::Instant::now();
        while carrier(topo, ns) != want {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "client carrier never became {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(carrier(&topo, &client), "1");
    // The server side's cable is pulled: the client must see its link go.
    topo.run(&server, &["ip", "link", "set", "eth0", "down"]);
    wait_carrier(&topo, &client, "0");
    // The status file is written after the propagation: give it a tick.
    let start = std::time::Instant::now();
    let status = loop {
        let status = topo.status();
        if status["link_propagation_events"] == 1 || start.elapsed() > Duration::from_secs(3) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["link_propagation_events"], 1, "{status}");
    assert_eq!(status["ports"][1]["carrier"], false, "{status}");
    topo.run(&server, &["ip", "link", "set", "eth0", "up"]);
    wait_carrier(&topo, &client, "1");
    topo.run(&client, &["ping", "-c", "1", "-W", "3", SERVER_IP]);
    topo.signal(pitapd, "TERM");
    assert!(topo.wait(pitapd, Duration::from_secs(10)));
}

/// Sends `count` UDP frames with an 802.1Q tag (VLAN `vid`) from the
/// client's eth0 through a raw socket; the kernel here has no VLAN
/// interfaces, and the tag must still be seen by the tap.
fn send_tagged(topo: &Topology, vid: u16, count: usize) {
    let script = format!(
        r#"
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src = s.getsockname()[4]
udp = struct.pack("!HHHH", 40000, 7000, 8 + 4, 0) + b"vlan"
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.2"))
frame = b"\x02\x00\x00\x00\x00\x99" + src + struct.pack("!HH", 0x8100, {vid}) + b"\x08\x00" + ip + udp
for _ in range({count}):
    s.send(frame)
"#
    );
    topo.run(&topo.client, &["python3", "-c", &script]);
}

/// SIGTERM to a pitapd started with `--print --format json`; its flows.
fn stop_and_read_printed_flows(topo: &mut Topology, pitapd: usize) -> Vec<Value> {
    topo.signal(pitapd, "TERM");
    assert!(
        topo.wait(pitapd, Duration::from_secs(10)),
        "{}",
        topo.errors("pitapd")
    );
    topo.output("pitapd")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn vlan_tags_stripped_by_the_kernel_are_kept() {
    let mut topo = Topology::new("vlan");
    let config = topo.pitapd_config("", "");
    let pitapd = topo.start_pitapd(&config, &["--print", "--format", "json"]);
    send_tagged(&topo, 42, 3);
    std::thread::sleep(Duration::from_millis(400));
    let flows = stop_and_read_printed_flows(&mut topo, pitapd);
    let tagged: Vec<&Value> = flows.iter().filter(|f| f["dst_port"] == 7000).collect();
    assert_eq!(tagged.len(), 1, "{flows:?}");
    assert_eq!(tagged[0]["vlan"], 42);
    assert_eq!(tagged[0]["src_pkts"], 3);
    // Bytes are the frame on the wire, tag included: 18 + 20 + 12 (veth
    // does not pad to 60), though the kernel stripped the tag on capture.
    assert_eq!(tagged[0]["src_bytes"], 3 * 50);
}

#[test]
fn span_mode_receives_without_bridging() {
    let mut topo = Topology::new("span");
    let (tap_ns, client) = (topo.tap.clone(), topo.client.clone());
    let config = topo.pitapd_config("mode = \"span\"", "");
    let pitapd = topo.start_pitapd(&config, &["--print", "--format", "json"]);
    // Nothing forwards: the ports only receive, like a switch's mirror port.
    let bridges = topo.run(&tap_ns, &["ip", "-o", "link", "show", "type", "bridge"]);
    assert!(bridges.stdout.is_empty(), "span mode made a bridge");
    let ping = topo.try_run(&client, &["ping", "-c", "1", "-W", "1", SERVER_IP]);
    assert!(!ping.status.success(), "traffic crossed a span tap");
    send_tagged(&topo, 7, 2);
    std::thread::sleep(Duration::from_millis(400));
    let flows = stop_and_read_printed_flows(&mut topo, pitapd);
    let seen = flows
        .iter()
        .find(|f| f["dst_port"] == 7000)
        .expect("the mirrored frames");
    assert_eq!(
        (seen["vlan"].as_u64(), seen["src_pkts"].as_u64()),
        (Some(7), Some(2))
    );
    assert_eq!(seen["ingress"], "A");
    assert_eq!(seen["action"], "NOREPLY");
    let status = topo.status();
    assert_eq!(status["mode"], "span");
    assert!(topo.errors("pitapd").contains("span mode"));
}

#[test]
fn status_simulator_shows_links_and_traffic() {
    let mut topo = Topology::new("leds");
    let client = topo.client.clone();
    let sim = topo.dir.join("status");
    let config = topo.pitapd_config(
        "",
        &format!(
            "[status]\nbackend = \"simulator\"\nsimulator_dir = \"{}\"\n",
            sim.display()
        ),
    );
    let pitapd = topo.start_pitapd(&config, &[]);
    // Said just after "tapping": wait for it rather than race it.
    topo.wait_for_stderr(
        "pitapd",
        "status: status simulator in",
        Duration::from_secs(5),
    );
    let pinger = topo.spawn(
        &client,
        "ping",
        &["ping", "-c", "60", "-i", "0.05", SERVER_IP],
    );
    // While the pings run, the overview shows them as packets per second.
    let start = std::time::Instant::now();
    let busy_line = loop {
        let page: Value = std::fs::read_to_string(sim.join("page.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let line = page["lines"][1].as_str().unwrap_or("").to_string();
        let pps: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if page["page"] == "overview" && pps > 0 {
            break line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "overview never showed traffic: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(busy_line.starts_with("A>B"), "{busy_line}");
    assert!(topo.wait(pinger, Duration::from_secs(10)));
    topo.signal(pitapd, "TERM");
    assert!(topo.wait(pitapd, Duration::from_secs(10)));
    let log: Vec<Value> = std::fs::read_to_string(sim.join("leds.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Both links up: steady on before the traffic.
    assert!(log
        .iter()
        .any(|e| e["patterns"]["link_a"] == "on" && e["patterns"]["link_b"] == "on"));
    // Traffic: both link LEDs blink (requests in on A, replies in on B), and
    // the log shows them actually going on and off.
    for led in ["link_a", "link_b"] {
        let blinking: Vec<&Value> = log
            .iter()
            .filter(|e| {
                e["patterns"][led]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("blink")
            })
            .collect();
        assert!(blinking.len() >= 4, "{led} never blinked: {log:?}");
        assert!(blinking.iter().any(|e| e["lit"][led] == true));
        assert!(blinking.iter().any(|e| e["lit"][led] == false));
    }
    assert!(log.iter().all(|e| e["patterns"]["power"] == "heartbeat"));
    assert!(
        log.iter().all(|e| e["patterns"]["alert"] == "off"),
        "no alert on a clean run"
    );
    assert!(sim.join("display.png").exists());
}

/// The watchdog is fed while the bridge is whole and not once it is gone
/// (the board then resets and boots its configuration again), and a clean
/// stop disarms it with the magic 'V'. The kernel here has no softdog: the
/// "device" is a regular file, which counts the feeds as bytes.
#[test]
fn watchdog_is_fed_only_while_the_bridge_is_whole() {
    let mut topo = Topology::new("wdog");
    let device = topo.dir.join("watchdog");
    std::fs::write(&device, b"").unwrap();
    let config = topo.pitapd_config(
        "",
        &format!(
            "[watchdog]\ndevice = \"{}\"\ntimeout_s = 15\n",
            device.display()
        ),
    );
    let pitapd = topo.start_pitapd(&config, &[]);
    topo.wait_for_stderr("pitapd", "feeding the watchdog", Duration::from_secs(5));
    let fed = || std::fs::read(&device).unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    let healthy = fed();
    assert!(
        healthy.len() >= 2 && healthy.iter().all(|&b| b == 0),
        "fed {} times in 3.5 s (once a second expected): {:?}",
        healthy.len(),
        healthy
    );
    // Someone (or a bug) deletes the bridge: feeding must stop.
    let tap = topo.tap.clone();
    topo.run(&tap, &["ip", "link", "del", "br0"]);
    topo.wait_for_stderr("pitapd", "no longer feeding", Duration::from_secs(5));
    let at_loss = fed().len();
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(fed().len(), at_loss, "fed without a bridge");
    topo.signal(pitapd, "TERM");
    assert!(topo.wait(pitapd, Duration::from_secs(10)));
    assert_eq!(
        fed().last(),
        Some(&b'V'),
        "a clean stop disarms the watchdog"
    );
}

/// Removes /etc/netns/NS (the resolver configuration `ip netns exec`
/// bind-mounts for a namespace) when the test ends.
struct NetnsEtc(std::path::PathBuf);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client resolves a name through a DNS server (dnsmasq) in the server
/// namespace and fetches a page from it: the flow the collector receives
/// carries the name it looked up (DNS) and the Host it asked for (HTTP).
#[test]
fn a_flow_carries_the_name_the_client_resolved() {
    let mut topo = Topology::new("dns");
    let (tap_ns, client, server) = (topo.tap.clone(), topo.client.clone(), topo.server.clone());
    let etc = NetnsEtc(std::path::PathBuf::from(format!("/etc/netns/{client}")));
    std::fs::create_dir_all(&etc.0).unwrap();
    std::fs::write(
        etc.0.join("resolv.conf"),
        format!("nameserver {SERVER_IP}\n"),
    )
    .unwrap();
    topo.spawn(
        &server,
        "dnsmasq",
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            &format!("--listen-address={SERVER_IP}"),
            "--bind-interfaces",
            &format!("--address=/c2.example.net/{SERVER_IP}"),
        ],
    );
    let www = topo.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("beacon"), "ok").unwrap();
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
    let collector = start_collector(&mut topo, &tap_ns, "127.0.0.1:47120");
    let config = topo.pitapd_config("", &topo.uplink("127.0.0.1:47120", ""));
    let pitapd = topo.start_pitapd(&config, &[]);
    std::thread::sleep(Duration::from_millis(800));
    let got = topo.run(
        &client,
        &[
            "curl",
            "-sS",
            "--retry",
            "3",
            "--retry-connrefused",
            "http://c2.example.net:8000/beacon",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "ok",
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    // No pause: pitapd's stop waits for the rings' last blocks to retire.
    let flows = topo.stop_and_collect(pitapd, collector);
    let http = flows
        .iter()
        .filter(|f| f["dst_port"] == 8000)
        .find(|f| f["src_pkts"].as_u64() > Some(0))
        .unwrap_or_else(|| panic!("no HTTP flow in {flows:?}"));
    assert_eq!(http["dst_name"], "c2.example.net", "{http}");
    assert_eq!(http["http_host"], "c2.example.net:8000", "{http}");
    assert_eq!(http["http_request"], "GET /beacon", "{http}");
    assert!(
        flows
            .iter()
            .any(|f| (f["dst_port"] == 53 || f["src_port"] == 53) && f["proto"] == "UDP"),
        "the lookup is a flow too"
    );
    // The store answers the query an analyst would type.
    let out = std::process::Command::new(common::netns::sibling_binary("pitap"))
        .args([
            "query",
            "--since",
            "0",
            "--count",
            "dst_name:*.example.net AND dst_port:8000",
            "--store",
        ])
        .arg(topo.store_path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
