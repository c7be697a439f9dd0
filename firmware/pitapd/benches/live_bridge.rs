//! Live capture benchmark (not a test): a UDP flood of minimum-size frames
//! crosses the veth bridge for a fixed time while `pitapd` taps it and
//! `tcpdump -w /dev/null` captures the same port in the same run. Prints
//! frames sent, captured and dropped per second for both.
//!
//! Run as root: `cargo bench -p pitapd --bench live_bridge`
//! (`PITAP_BENCH_SECS` sets the duration, default 5; `PITAP_BENCH_BLASTERS`
//! the number of flooding processes, default 2, one per core here).

#[path = "../tests/common/netns.rs"]
mod netns;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use netns::{Topology, SERVER_IP};

/// The flood itself, run by this binary inside the client namespace.
fn blast(target: &str, secs: f64) {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
    socket.connect(target).expect("connect");
    let payload = [0u8; 18]; // 14 + 20 + 8 + 18 = a 60-byte frame
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    while Instant::now() < deadline {
        for _ in 0..256 {
            if socket.send(&payload).is_ok() {
                sent += 1;
            }
        }
    }
    println!("{sent}");
}

fn tcpdump_count(report: &str, what: &str) -> u64 {
    report
        .lines()
        .find(|l| l.ends_with(what))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system, all threads) process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat (11 and 12 counted
    // from the state after the name),
    // in USER_HZ ticks: 100 a second on Linux (fixed by its ABI).
    (ticks(11) + ticks(12)) / 100.0
}

/// This CPU's clock in MHz, as /proc/cpuinfo gives it.
fn cpu_mhz() -> Option<f64> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--blast") {
        blast(&args[i + 1], args[i + 2].parse().expect("seconds"));
        return;
    }
    let secs: f64 = std::env::var("PITAP_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let mut topo = Topology::new("bench");
    let (client, server, tap) = (topo.client.clone(), topo.server.clone(), topo.tap.clone());
    let config = topo.pitapd_config("", "");
    let pitapd = topo.start_pitapd(&config, &[]);
    // A bound socket that never reads: the server drops the flood silently
    // instead of answering each datagram with an ICMP error.
    topo.spawn(&server, "sink", &["python3", "-c", "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9))\ntime.sleep(3600)"]);
    let tcpdump = topo.spawn(
        &tap,
        "tcpdump",
        &[
            "tcpdump",
            "-Z",
            "root",
            "-n",
            "-i",
            "porta",
            "-w",
            "/dev/null",
        ],
    );
    topo.wait_for_stderr("tcpdump", "listening on", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let before = topo.status();
    let cpu_before = cpu_seconds(topo.pid(pitapd));
    let blasters: usize = std::env::var("PITAP_BENCH_BLASTERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let me = std::env::current_exe().expect("current exe");
    let children: Vec<usize> = (0..blasters)
        .map(|i| {
            topo.spawn(
                &client,
                &format!("blaster{i}"),
                &[
                    me.to_str().unwrap(),
                    "--blast",
                    &format!("{SERVER_IP}:9"),
                    &secs.to_string(),
                ],
            )
        })
        .collect();
    for child in children {
        assert!(
            topo.wait(child, Duration::from_secs_f64(secs + 30.0)),
            "blaster failed"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = topo.status();
    let cpu = cpu_seconds(topo.pid(pitapd)) - cpu_before;
    topo.signal(tcpdump, "INT");
    assert!(topo.wait(tcpdump, Duration::from_secs(30)));
    topo.signal(pitapd, "TERM");
    assert!(topo.wait(pitapd, Duration::from_secs(30)));

    let sent: u64 = (0..blasters)
        .map(|i| {
            topo.output(&format!("blaster{i}"))
                .trim()
                .parse::<u64>()
                .expect("blaster count")
        })
        .sum();
    let port = |s: &serde_json::Value, k: &str| s["ports"][0][k].as_u64().unwrap_or(0);
    let ours = port(&after, "frames") - port(&before, "frames");
    let our_drops = port(&after, "ring_drops") - port(&before, "ring_drops");
    let report = topo.errors("tcpdump");
    let theirs = tcpdump_count(&report, "packets captured");
    let their_drops = tcpdump_count(&report, "packets dropped by kernel");
    let pps = |n: u64| n as f64 / secs;
    println!("live bridge benchmark, {secs} s of 60-byte UDP frames from {blasters} senders through a veth bridge");
    println!(
        "  sent by the client       {:>12} frames  {:>10.0} /s",
        sent,
        pps(sent)
    );
    println!(
        "  pitapd captured (port A) {:>12} frames  {:>10.0} /s",
        ours,
        pps(ours)
    );
    println!(
        "  pitapd ring drops        {:>12} frames  {:>10.0} /s",
        our_drops,
        pps(our_drops)
    );
    println!(
        "  tcpdump -w /dev/null     {:>12} frames  {:>10.0} /s",
        theirs,
        pps(theirs)
    );
    println!(
        "  tcpdump kernel drops     {:>12} frames  {:>10.0} /s",
        their_drops,
        pps(their_drops)
    );
    if theirs > 0 {
        println!(
            "  pitapd / tcpdump captured: {:.2}",
            ours as f64 / theirs as f64
        );
    }
    // What one core tapped: frames over the CPU time pitapd used for them
    // (its ring reader, engine and status loop together).
    if cpu > 0.0 {
        let per_core = ours as f64 / cpu;
        println!(
            "  pitapd CPU {cpu:.2} s for them: {per_core:.0} frames per second of one core{}",
            cpu_mhz().map_or(String::new(), |mhz| format!(
                " ({:.0} cycles a frame at {mhz:.0} MHz)",
                mhz * 1e6 / per_core
            ))
        );
    }
    let engine = &after["engine"];
    println!(
        "  pitapd engine: {} frames, {} flows created, {} records",
        engine["frames"], engine["flows_created"], engine["records"]
    );
}
