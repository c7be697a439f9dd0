//! The analyst's questions, end to end: a capture holding a port scan, a
//! host sweep, a beacon, bytes leaving a database and an outside host
//! reaching an internal service (and the cases that must not be flagged:
//! one refused port, irregular connections to the same kind of server,
//! internal traffic of the database, refused inbound attempts) goes through
//! `pitapd --read` and the sealed uplink into `pitap collect` with named
//! networks and alert rules, all inside a network namespace made here;
//! then `pitap report` and `pitap query` are asked. Needs root (namespace,
//! nft).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::traffic::{host, Host, Session, Traffic, T0_MS};
use common::*;

const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x01];

fn outside(ip: [u8; 4]) -> Host {
    // Outside hosts come through the router: its MAC.
    Host { mac: GW_MAC, ip }
}

fn scenario(path: &Path) {
    let mut t = Traffic::default();
    let web = host(0x10, [172, 30, 0, 10]);
    let db = host(0x86, [172, 30, 0, 86]);
    let ws20 = host(0x20, [172, 30, 1, 20]);
    let ws50 = host(0x50, [172, 30, 1, 50]);
    let ws51 = host(0x51, [172, 30, 1, 51]);
    let late = host(0x99, [172, 30, 1, 99]);
    // A port scan: 40 ports of one server, all refused.
    for i in 0..40u16 {
        let at = 60_000 + u64::from(i) * 200;
        t.session(
            at,
            outside([203, 0, 113, 66]),
            50_000 + i,
            web,
            1 + i,
            Session::Refused,
        );
    }
    // A sweep: port 22 on 30 hosts, nobody answers.
    for i in 1..=30u8 {
        let at = 120_000 + u64::from(i) * 300;
        let target = host(i, [172, 30, 0, i]);
        t.session(
            at,
            outside([203, 0, 113, 77]),
            40_000 + u16::from(i),
            target,
            22,
            Session::Unanswered,
        );
    }
    // Not a scan: one workstation refused three times on one port.
    for k in 0..3u64 {
        t.session(
            200_000 + k * 60_000,
            ws20,
            33_000 + k as u16,
            web,
            8080,
            Session::Refused,
        );
    }
    // A beacon: every 60 s with under a second of jitter.
    for k in 0..12u64 {
        let at = 30_000 + k * 60_000 + (k * k * 7919 + k * 104_729) % 1500;
        t.session(
            at,
            ws50,
            45_000 + k as u16,
            outside([198, 51, 100, 200]),
            443,
            Session::Complete { up: 300, down: 500 },
        );
    }
    // Not a beacon: the same kind of HTTPS calls at irregular times.
    for (k, at) in [
        10_000u64, 15_000, 95_000, 101_000, 260_000, 263_000, 450_000, 520_000, 525_000, 700_000,
    ]
    .into_iter()
    .enumerate()
    {
        t.session(
            at,
            ws51,
            46_000 + k as u16,
            outside([198, 51, 100, 201]),
            443,
            Session::Complete { up: 300, down: 500 },
        );
    }
    // An outside host reaches the database (internal-only) and downloads.
    t.session(
        300_000,
        outside([198, 51, 100, 7]),
        51_000,
        db,
        5432,
        Session::Complete {
            up: 200,
            down: 14_000,
        },
    );
    // Refused inbound attempts are not "reached".
    t.session(
        305_000,
        outside([198, 51, 100, 8]),
        51_001,
        db,
        5433,
        Session::Refused,
    );
    // The database uploads to an outside address...
    t.session(
        400_000,
        db,
        52_000,
        outside([198, 51, 100, 99]),
        443,
        Session::Complete {
            up: 56_000,
            down: 600,
        },
    );
    // ...and sends more to a workstation, which is internal: not an exfil.
    t.session(
        410_000,
        db,
        5432,
        ws20,
        52_001,
        Session::Complete {
            up: 100,
            down: 84_000,
        },
    );
    // A device seen only at the end.
    t.session(
        840_000,
        late,
        53_000,
        web,
        80,
        Session::Complete { up: 100, down: 100 },
    );
    t.write(path);
}

/// One HTTP request received by a throwaway webhook server: its body.
fn webhook_server() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).to_string());
        }
    });
    (addr, rx)
}

fn pitap(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn analyses_and_alerts_find_what_the_traffic_holds() {
    let dir = temp_dir("analyses");
    let capture = dir.join("scenario.pcap");
    scenario(&capture);
    let (keys_config, keys) = keygen(&dir, &["edge"]);
    let alerts = dir.join("alerts.jsonl");
    let blocklist = dir.join("blocked.txt");
    let nft = dir.join("blocked.nft");
    let store = dir.join("flows.db");
    // The webhook listens in the root namespace; the collector, in its own
    // namespace, reaches it through... nothing: so the webhook rule runs in
    // a second, plain collector below. Here: file, blocklist, nft-apply.
    let config = format!(
        "{}\n[networks]\ninternal = [\"172.30.0.0/16\"]\ndatabases = [\"172.30.0.86/32\"]\n\
         workstations = [\"172.30.1.0/24\"]\n\n[report]\nsensitive = [\"databases\"]\n\n\
         [[alert]]\nname = \"port scan\"\nquery = \"proto:TCP AND action:(REJECT OR NOREPLY)\"\n\
         aggregate = \"distinct:dst_port\"\nby = \"src_addr\"\nwindow_s = 60\nthreshold = 20\n\
         actions = [\"print\", \"file:{a}\", \"blocklist:{b}\", \"nft-apply:{n}\"]\n\n\
         [[alert]]\nname = \"sweep\"\nquery = \"proto:TCP AND action:(REJECT OR NOREPLY)\"\n\
         aggregate = \"distinct:dst_addr\"\nby = \"src_addr\"\nwindow_s = 60\nthreshold = 20\n\
         actions = [\"file:{a}\"]\n\n\
         [[alert]]\nname = \"database bytes out\"\nquery = \"src_group:databases AND to_internal:false\"\n\
         aggregate = \"sum:src_bytes\"\nwindow_s = 300\nthreshold = 50000\nactions = [\"file:{a}\"]\n",
        std::fs::read_to_string(&keys_config).unwrap(),
        a = alerts.display(),
        b = blocklist.display(),
        n = nft.display(),
    );
    let config_path = dir.join("collector.toml");
    std::fs::write(&config_path, &config).unwrap();

    let ns = Netns(format!("pta{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    let mut collector = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(env!("CARGO_BIN_EXE_pitap"))
        .args(["collect", "--listen", "127.0.0.1:47200", "--config"])
        .arg(&config_path)
        .arg("--store")
        .arg(&store)
        .args(["--until-final", "--idle-exit", "30", "--format", "json"])
        // Nobody reads the lines here: a full pipe would stall the collector.
        .stdout(Stdio::null())
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
        "127.0.0.1:47200",
        "edge",
        &keys[0],
    );
    let out = collector.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // Alerts: each case once, nothing for the workstation's refusals.
    let fired: Vec<serde_json::Value> = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<(String, String)> = fired
        .iter()
        .map(|f| {
            (
                f["alert"].as_str().unwrap().to_string(),
                f["group"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("port scan".to_string(), "203.0.113.66".to_string()),
            ("sweep".to_string(), "203.0.113.77".to_string()),
            ("database bytes out".to_string(), String::new()),
        ],
        "{fired:?}"
    );
    assert!(
        stderr.contains("pitap: ALERT") && stderr.contains("port scan [203.0.113.66]"),
        "{stderr}"
    );
    let blocked = std::fs::read_to_string(&blocklist).unwrap();
    assert_eq!(
        blocked
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["203.0.113.66"]
    );
    // nft-apply loaded the table into the namespace's firewall.
    let set = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "list", "set", "inet", "pitap", "blocked4",
        ])
        .output()
        .unwrap();
    let set = String::from_utf8_lossy(&set.stdout);
    assert!(
        set.contains("203.0.113.66") && !set.contains("203.0.113.77"),
        "{set}"
    );

    let s = store.to_str().unwrap();
    let since = T0_MS.to_string();
    let report = |only: &str| {
        let (ok, out, err) = pitap(&[
            "report",
            "--store",
            s,
            "--config",
            config_path.to_str().unwrap(),
            "--since",
            &since,
            "--only",
            only,
        ]);
        assert!(ok, "{err}");
        out
    };

    let inbound = report("inbound");
    assert!(
        inbound.contains("172.30.0.86 5432/tcp: 1 flows from 1 outside hosts (198.51.100.7)"),
        "{inbound}"
    );
    assert!(
        !inbound.contains("5433") && !inbound.contains("172.30.0.10"),
        "{inbound}"
    );
    assert!(inbound.contains(
        "query: pitap query 'from_internal:false AND to_internal:true AND action:ACCEPT'"
    ));

    let exfil = report("exfil");
    let lines: Vec<&str> = exfil.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(lines.len(), 2, "{exfil}");
    assert!(
        lines[0].contains("databases -> 198.51.100.99:")
            && lines[1].contains("databases -> 198.51.100.7:"),
        "{exfil}"
    );
    let bytes = |l: &str| -> u64 {
        l.split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        bytes(lines[0]) >= 56_000 && bytes(lines[1]) >= 14_000 && bytes(lines[1]) < 20_000,
        "{exfil}"
    );
    assert!(!exfil.contains("172.30.1.20"), "{exfil}");

    let refused = report("refused");
    assert!(
        refused.contains("203.0.113.66: port scan (40 attempts, 40 refused, 40 ports, 1 hosts)"),
        "{refused}"
    );
    assert!(
        refused.contains("203.0.113.77: host sweep (30 attempts, 0 refused, 1 ports, 30 hosts)"),
        "{refused}"
    );
    assert!(
        refused.contains("172.30.1.20: refused (3 attempts, 3 refused, 1 ports, 1 hosts)"),
        "{refused}"
    );

    let beacons = report("beacons");
    let found: Vec<&str> = beacons.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(found.len(), 1, "{beacons}");
    assert!(
        found[0].contains("172.30.1.50 -> 198.51.100.200:443/tcp: score 0.9")
            && found[0].contains("12 connections every 60."),
        "{beacons}"
    );

    let late_since = (T0_MS + 800_000).to_string();
    let (ok, devices, err) = pitap(&[
        "report",
        "--store",
        s,
        "--since",
        &late_since,
        "--only",
        "devices",
    ]);
    assert!(ok, "{err}");
    let found: Vec<&str> = devices
        .lines()
        .filter(|l| l.contains("first seen"))
        .collect();
    assert_eq!(found.len(), 1, "{devices}");
    assert!(
        found[0].starts_with("  02:00:00:00:01:99 ") && found[0].contains("as 172.30.1.99"),
        "{devices}"
    );

    // The report's query reproduces its finding.
    let (ok, top, err) = pitap(&[
        "query",
        "--store",
        s,
        "--since",
        &since,
        "from_internal:false AND to_internal:true AND action:ACCEPT",
        "--top",
        "dst_addr",
    ]);
    assert!(ok, "{err}");
    assert!(
        top.contains("172.30.0.86") && top.contains("100.00%"),
        "{top}"
    );
    let (ok, sums, _) = pitap(&[
        "query",
        "--store",
        s,
        "--since",
        &since,
        "src_group:databases",
        "--sum",
        "bytes",
        "--by",
        "dst_addr",
    ]);
    assert!(ok);
    let first_row = sums.lines().nth(1).unwrap();
    assert!(first_row.starts_with("172.30.1.20"), "{sums}");
    let (ok, count, _) = pitap(&[
        "query",
        "--store",
        s,
        "--since",
        &since,
        "--count",
        "dst_addr:172.30.0.0/24 AND dst_port:[1 TO 40] AND conn_state:REJ",
    ]);
    assert!(ok);
    assert_eq!(count.trim(), "40");
    let (ok, _, err) = pitap(&["query", "--store", s, "action:ACCEPT AND bytes:>big"]);
    assert!(!ok);
    assert!(err.contains("column 26") && err.contains("^"), "{err}");
}

#[test]
fn a_webhook_receives_the_alert() {
    let dir = temp_dir("webhook");
    let capture = dir.join("scan.pcap");
    let mut t = Traffic::default();
    let web = host(0x10, [172, 30, 0, 10]);
    for i in 0..25u16 {
        t.session(
            u64::from(i) * 100,
            outside([203, 0, 113, 9]),
            50_000 + i,
            web,
            100 + i,
            Session::Refused,
        );
    }
    t.write(&capture);
    let (hook, bodies) = webhook_server();
    let (keys_config, keys) = keygen(&dir, &["edge"]);
    let config = format!(
        "{}\n[[alert]]\nname = \"scan\"\nquery = \"action:REJECT\"\naggregate = \"distinct:dst_port\"\n\
         by = \"src_addr\"\nwindow_s = 60\nthreshold = 20\nactions = [\"webhook:http://{hook}/alerts\"]\n",
        std::fs::read_to_string(&keys_config).unwrap()
    );
    std::fs::write(&keys_config, config).unwrap();
    let (child, addr) = start_collector(&keys_config, &["--until-final", "--idle-exit", "20"]);
    replay_to(&capture, &addr, "edge", &keys[0]);
    let (_, stderr) = finish(child);
    let body = bodies
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no webhook call: {stderr}"));
    let alert: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["alert"], "scan");
    assert_eq!(alert["group"], "203.0.113.9");
    assert_eq!(alert["value"], 20.0);
    assert!(
        bodies.recv_timeout(Duration::from_millis(500)).is_err(),
        "fired twice"
    );
}

#[test]
fn bad_alert_and_network_config_names_the_key() {
    let dir = temp_dir("badconfig");
    for (text, want) in [
        ("[networks]\ninternal = [\"10.0.0.0/33\"]\n", "networks.internal:"),
        ("[[alert]]\nname = \"x\"\nquery = \"bytes:>lots\"\nwindow_s = 60\nthreshold = 1\n", "alert[0] (x): query"),
        ("[[alert]]\nname = \"x\"\nwindow_s = 60\nthreshold = 1\nactions = [\"blocklist:/tmp/x\"]\n", "by = \"src_addr\""),
        ("[[alert]]\nname = \"x\"\nwindow_s = 60\nthreshold = 1\naggregate = \"avg:bytes\"\n", "aggregate"),
        ("[report]\nsensitive = [\"vault\"]\n", "report.sensitive"),
        ("[export]\nipfix = [\"nowhere\"]\n", "export.ipfix"),
        ("[store]\nretention_days = -1\n", "store.retention_days"),
    ] {
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let (ok, _, err) = pitap(&["collect", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-store"]);
        assert!(!ok && err.contains(want), "{text}: {err}");
    }
}

/// `[networks]` apply when the flows are read: a store collected without
/// networks answers `from_internal`, groups and the inbound report once a
/// collector.toml with networks is given, and a different one changes the
/// same stored flow's `from_internal`.
#[test]
fn networks_defined_after_collecting_apply_to_stored_flows() {
    let dir = temp_dir("late-networks");
    let capture = dir.join("inbound.pcap");
    let mut t = Traffic::default();
    let db = host(0x86, [172, 30, 0, 86]);
    let ws = host(0x20, [172, 30, 1, 20]);
    t.session(
        1_000,
        outside([198, 51, 100, 7]),
        51_000,
        db,
        5432,
        Session::Complete {
            up: 200,
            down: 14_000,
        },
    );
    t.session(
        5_000,
        ws,
        40_000,
        db,
        5432,
        Session::Complete { up: 100, down: 100 },
    );
    t.write(&capture);
    let (keys_config, keys) = keygen(&dir, &["edge"]);
    // Collected with no [networks] at all.
    let (child, addr) = start_collector(&keys_config, &["--until-final", "--idle-exit", "20"]);
    replay_to(&capture, &addr, "edge", &keys[0]);
    finish(child);
    let store = store_in(&dir);
    let s = store.to_str().unwrap();
    let with_networks = dir.join("networks.toml");
    std::fs::write(
        &with_networks,
        "[networks]\ninternal = [\"172.30.0.0/16\"]\ndatabases = [\"172.30.0.86/32\"]\n",
    )
    .unwrap();
    let only_servers = dir.join("servers.toml");
    std::fs::write(
        &only_servers,
        "[networks]\ninternal = [\"172.30.0.0/24\"]\n",
    )
    .unwrap();
    let n = with_networks.to_str().unwrap();
    let o = only_servers.to_str().unwrap();

    let since = T0_MS.to_string();
    let count = |extra: &[&str], q: &str| {
        let mut args = vec!["query", "--store", s, "--since", &since, "--count", q];
        args.extend_from_slice(extra);
        let (ok, out, err) = pitap(&args);
        assert!(ok, "{err}");
        out.trim().parse::<u64>().unwrap()
    };
    assert_eq!(count(&[], "_exists_:src_addr"), 2);
    assert_eq!(count(&[], "from_internal:true"), 0, "no networks then");
    assert_eq!(count(&["--config", n], "from_internal:true"), 1);
    assert_eq!(count(&["--config", n], "dst_group:databases"), 2);
    assert_eq!(
        count(&["--config", n], "to_internal:true AND from_internal:false"),
        1
    );

    // The workstation's flow: internal with one table, outside with the other.
    let json = |extra: &[&str]| {
        let mut args = vec![
            "query",
            "--store",
            s,
            "--since",
            &since,
            "--json",
            "src_addr:172.30.1.20",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = pitap(&args);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        (v["from_internal"].clone(), v["src_group"].clone())
    };
    assert_eq!(json(&[]), (false.into(), serde_json::Value::Null));
    assert_eq!(json(&["--config", n]), (true.into(), "internal".into()));
    assert_eq!(
        json(&["--config", o]),
        (false.into(), serde_json::Value::Null)
    );

    let report = |extra: &[&str]| {
        let mut args = vec![
            "report", "--store", s, "--since", &since, "--only", "inbound",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = pitap(&args);
        assert!(ok, "{err}");
        out
    };
    let before = report(&[]);
    assert!(
        before.contains("define [networks]") && before.contains("(nothing)"),
        "{before}"
    );
    let after = report(&["--config", n]);
    assert!(
        after.contains("172.30.0.86 5432/tcp: 1 flows from 1 outside hosts (198.51.100.7)"),
        "{after}"
    );
    assert!(!after.contains("define [networks]"), "{after}");
}
