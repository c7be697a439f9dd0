//! The uplink of a live tap in network namespaces: a collector that is away
//! for 30 s loses nothing and duplicates nothing; the user-space uplink
//! stack takes its address from a DHCP server and delivers while the kernel
//! has no address on any tap port.
//!
//! Needs root; CI has it.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::*;
use serde_json::Value;

/// One UDP datagram to a new port every 50 ms: a new flow each time.
fn steady_flows(count: usize) -> String {
    format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range({count}):\n    s.sendto(b'flow %d' % i, ('{SERVER_IP}', 20000 + i))\n    time.sleep(0.05)\n"
    )
}

fn multiset(text: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        *m.entry(line.to_string()).or_default() += 1;
    }
    m
}

#[test]
fn collector_away_for_30_s_loses_and_repeats_nothing() {
    let mut topo = Topology::new("outage");
    let (tap_ns, client) = (topo.tap.clone(), topo.client.clone());
    let output = topo.dir.join("flows.jsonl");
    let state = topo.dir.join("collector-state.json");
    let collector_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--output".into(),
            output.to_str().unwrap().into(),
            "--state".into(),
            state.to_str().unwrap().into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let first_args = collector_args(&[]);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let first = topo.start_collector(&tap_ns, "collector1", "127.0.0.1:47110", &first_args);
    let config = topo.pitapd_config(
        "",
        &format!(
            "{}\n[flows]\nidle_timeout_s = 1\n",
            topo.uplink("127.0.0.1:47110", "")
        ),
    );
    // The tap prints what it reports too: the ground truth for the comparison.
    let pitapd = topo.start_pitapd(&config, &["--print", "--format", "json"]);
    let traffic = topo.spawn(&client, "traffic", &["python3", "-c", &steady_flows(760)]);
    std::thread::sleep(Duration::from_secs(4));
    // The collector dies hard, mid-stream, and stays away for 30 s.
    topo.signal(first, "KILL");
    let killed = Instant::now();
    assert!(!topo.wait(first, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_secs(30));
    let pending = topo.status()["uplink"]["pending"].as_u64().unwrap();
    assert!(
        pending > 50,
        "batches should wait for the collector ({pending})"
    );
    let second_args = collector_args(&["--until-final", "--idle-exit", "60"]);
    let second_args: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let second = topo.start_collector(&tap_ns, "collector2", "127.0.0.1:47110", &second_args);
    assert!(killed.elapsed() >= Duration::from_secs(30));
    assert!(
        topo.wait(traffic, Duration::from_secs(60)),
        "traffic generator failed"
    );
    std::thread::sleep(Duration::from_secs(2));
    topo.signal(pitapd, "TERM");
    assert!(
        topo.wait(pitapd, Duration::from_secs(20)),
        "{}",
        topo.errors("pitapd")
    );
    assert!(
        topo.wait(second, Duration::from_secs(30)),
        "{}",
        topo.errors("collector2")
    );

    let reported = topo.output("pitapd");
    let collected = std::fs::read_to_string(&output).unwrap();
    assert!(
        reported.lines().count() >= 760,
        "{} flows reported",
        reported.lines().count()
    );
    let (theirs, ours) = (multiset(&reported), multiset(&collected));
    let missing: Vec<_> = theirs
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .take(3)
        .collect();
    let repeated: Vec<_> = ours.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(missing.is_empty(), "flows lost: {missing:?}");
    assert!(repeated.is_empty(), "flows delivered twice: {repeated:?}");
    assert_eq!(theirs, ours);
    // The store holds the same flows, each once: its rows and the collector
    // state were committed together.
    let stored = Command::new(common::netns::sibling_binary("pitap"))
        .args(["query", "--since", "0", "--json", "--store"])
        .arg(topo.store_path())
        .output()
        .expect("pitap query");
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let stored: String = String::from_utf8_lossy(&stored.stdout)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            let o = v.as_object_mut().expect("object");
            for enrichment in [
                "from_internal",
                "to_internal",
                "src_group",
                "dst_group",
                "src_vendor",
                "dst_vendor",
            ] {
                o.remove(enrichment);
            }
            v.to_string() + "\n"
        })
        .collect();
    assert_eq!(
        multiset(&stored),
        theirs,
        "the store differs from what the tap reported"
    );
    let status = topo.status();
    assert!(status["uplink"]["retransmits"].as_u64().unwrap() > 0);
    assert_eq!(status["uplink"]["dropped_batches"], 0);
    // Duplicates may be counted: a batch committed by the first collector
    // just before the SIGKILL, whose acknowledgement never left, comes again
    // and is recognised (the comparisons above show it stored once).
    let report = topo.errors("collector2");
    assert!(
        report.contains(" duplicates, 0 waiting, 0 lost (tap gave up), 0 reboots"),
        "{report}"
    );
}

#[test]
fn uplink_stack_gets_dhcp_and_delivers_without_a_kernel_address() {
    let mut topo = Topology::new("stack");
    let (tap_ns, client, server) = (topo.tap.clone(), topo.client.clone(), topo.server.clone());
    // As on a real host: the collector's side checksums in the NIC, so the
    // tap's raw socket sees its replies with the UDP checksum not filled in
    // yet (TP_STATUS_CSUMNOTREADY); the AEAD tag covers them anyway.
    topo.run(&client, &["ethtool", "-K", "eth0", "tx", "on"]);
    let leases = topo.dir.join("leases");
    topo.spawn(
        &client,
        "dnsmasq",
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--user=root",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,1h",
            &format!("--dhcp-leasefile={}", leases.display()),
            &format!("--pid-file={}", topo.dir.join("dnsmasq.pid").display()),
        ],
    );
    let collector = topo.start_collector(
        &client,
        "collector",
        &format!("{CLIENT_IP}:47111"),
        &["--until-final", "--idle-exit", "60"],
    );
    // In-band on tap port A: the tap is one host on the client's side.
    let config = topo.pitapd_config(
        "",
        &topo.uplink(
            &format!("{CLIENT_IP}:47111"),
            "[uplink.stack]\ninterface = \"porta\"\nmac = \"02:50:54:41:50:07\"\naddress = \"dhcp\"\n",
        ),
    );
    let pitapd = topo.start_pitapd(&config, &[]);
    topo.wait_for_stderr("pitapd", "DHCP gave 192.0.2.1", Duration::from_secs(20));
    let lease = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(
        lease.contains("02:50:54:41:50:07"),
        "dnsmasq leased to the stack: {lease:?}"
    );
    // The kernel has no address on the tap's interfaces, v4 or v6.
    let addrs = String::from_utf8(topo.run(&tap_ns, &["ip", "-o", "addr", "show"]).stdout).unwrap();
    for line in addrs.lines() {
        assert!(
            line.split_whitespace().nth(1) == Some("lo"),
            "kernel address on the tap: {line}"
        );
    }
    topo.run(&client, &["ping", "-c", "3", "-i", "0.2", SERVER_IP]);
    topo.run(&server, &["ping", "-c", "2", "-i", "0.2", CLIENT_IP]);
    std::thread::sleep(Duration::from_millis(500));
    let own = topo.status()["own_traffic_frames"].as_u64().unwrap();
    let flows = topo.stop_and_collect(pitapd, collector);
    let pings: Vec<&Value> = flows.iter().filter(|f| f["proto"] == "ICMP").collect();
    assert_eq!(pings.len(), 2, "{flows:#?}");
    assert!(own > 0, "the stack's own frames are counted apart");
    for f in &flows {
        for side in ["src_addr", "dst_addr"] {
            let addr = f[side].as_str().unwrap();
            assert!(
                !addr.starts_with("192.0.2.1") || addr == CLIENT_IP,
                "the uplink's own traffic became a flow: {f}"
            );
        }
        assert!(
            f["dst_port"] != 67 && f["dst_port"] != 68,
            "DHCP of the tap itself: {f}"
        );
    }
    assert!(
        topo.errors("collector").contains("0 duplicates, 0 waiting"),
        "{}",
        topo.errors("collector")
    );
}

#[test]
fn uplink_stack_with_a_static_address() {
    let mut topo = Topology::new("static");
    let client = topo.client.clone();
    topo.run(&client, &["ethtool", "-K", "eth0", "tx", "on"]);
    let collector = topo.start_collector(
        &client,
        "collector",
        &format!("{CLIENT_IP}:47112"),
        &["--until-final", "--idle-exit", "60"],
    );
    let config = topo.pitapd_config(
        "",
        &topo.uplink(
            &format!("{CLIENT_IP}:47112"),
            "[uplink.stack]\ninterface = \"porta\"\naddress = \"192.0.2.60/24\"\n",
        ),
    );
    let pitapd = topo.start_pitapd(&config, &[]);
    topo.run(&client, &["ping", "-c", "2", "-i", "0.2", SERVER_IP]);
    std::thread::sleep(Duration::from_millis(300));
    let flows = topo.stop_and_collect(pitapd, collector);
    assert!(
        flows
            .iter()
            .any(|f| f["proto"] == "ICMP" && f["dst_addr"] == SERVER_IP),
        "{flows:#?}"
    );
    assert!(flows
        .iter()
        .all(|f| f["src_addr"] != "192.0.2.60" && f["dst_addr"] != "192.0.2.60"));
}

/// A relay on the tap's uplink path (in the tap's namespace): it forwards
/// both ways and keeps the collector's replies; when TRIGGER appears it
/// sends the tap the first reply again (seconds old: taken, it would move
/// the clock back) and the latest one with a byte of its sealed time
/// changed, then writes DONE.
const REPLAYING_RELAY: &str = r#"
import os, select, socket, sys, time
front_port, collector_port, trigger, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); front.bind(("127.0.0.1", front_port))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); back.bind(("127.0.0.1", 0))
back.connect(("127.0.0.1", collector_port))
tap, replies = None, []
while True:
    r, _, _ = select.select([front, back], [], [], 0.05)
    if front in r:
        d, tap = front.recvfrom(65536); back.send(d)
    if back in r:
        d = back.recv(65536); replies.append(d)
        if tap: front.sendto(d, tap)
    if os.path.exists(trigger) and tap and len(replies) >= 2:
        front.sendto(replies[0], tap)
        forged = bytearray(replies[-1]); forged[-20] ^= 0x40
        front.sendto(bytes(forged), tap)
        os.remove(trigger); open(done, "w").write("sent")
"#;

#[test]
fn replayed_and_forged_time_replies_move_a_live_taps_clock_nowhere() {
    let mut topo = Topology::new("timerelay");
    let (tap_ns, client) = (topo.tap.clone(), topo.client.clone());
    let collector = topo.start_collector(
        &tap_ns,
        "collector",
        "127.0.0.1:47120",
        &["--until-final", "--idle-exit", "30"],
    );
    let (trigger, done) = (topo.dir.join("trigger"), topo.dir.join("done"));
    topo.spawn(
        &tap_ns,
        "relay",
        &[
            "python3",
            "-c",
            REPLAYING_RELAY,
            "47121",
            "47120",
            trigger.to_str().unwrap(),
            done.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let config = topo.pitapd_config("", &topo.uplink("127.0.0.1:47121", "health_interval_s = 1"));
    let pitapd = topo.start_pitapd(&config, &[]);
    topo.run(&client, &["ping", "-c", "2", "-i", "0.2", SERVER_IP]);
    std::thread::sleep(Duration::from_secs(3));
    let before = topo.status();
    assert_eq!(before["clock"]["synced"], true, "{before}");
    assert_eq!(before["clock"]["source"], "collector", "{before}");
    // Tap and collector share this machine's clock: nothing to correct.
    assert_eq!(before["clock"]["offset_ms"], 0, "{before}");
    std::fs::write(&trigger, "").unwrap();
    let waited = std::time::Instant::now();
    while !done.exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the relay did not replay"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after = topo.status();
    let refused = &after["uplink"]["refused_replies"];
    assert!(refused["replayed"].as_u64().unwrap() >= 1, "{after}");
    assert!(refused["forged"].as_u64().unwrap() >= 1, "{after}");
    assert_eq!(after["clock"]["offset_ms"], 0, "moved: {after}");
    assert_eq!(after["clock"]["steps"], 0, "stepped: {after}");
    let flows = topo.stop_and_collect(pitapd, collector);
    assert!(
        flows
            .iter()
            .any(|f| f["proto"] == "ICMP" && f["clock"] == "synced"),
        "{flows:#?}"
    );
}
