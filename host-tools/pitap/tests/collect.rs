//! `pitap collect` with real `pitapd` processes sending sealed batches over
//! UDP on loopback: the lines are the ones `pitapd --print` makes, taps are
//! told apart, a restarted tap is a reboot, and forged, replayed, truncated,
//! wrong-key and random datagrams are rejected and counted while good taps
//! are served.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

mod common;

use common::*;
use pitap_wire::envelope::{self, Challenge, DatagramKind, Header, Key};
use pitap_wire::messages::{self, Hello, Reply};
use pitap_wire::{BatchHeader, BatchWriter, FlowRecord};

#[test]
fn collector_lines_equal_the_taps_own_lines() {
    let dir = temp_dir("lines");
    let (config, keys) = keygen(&dir, &["lab-tap"]);
    for format in ["text", "json"] {
        let file = real_pcap("zeek__wikipedia.pcap");
        let (child, addr) = start_collector(
            &config,
            &["--format", format, "--until-final", "--idle-exit", "20"],
        );
        replay_to(&file, &addr, "lab-tap", &keys[0]);
        let (collected, stderr) = finish(child);
        assert_eq!(collected, printed(&file, format, "lab-tap"), "{format}");
        assert!(collected.lines().count() > 20);
        assert!(stderr.contains("tap lab-tap:"), "{stderr}");
        assert!(
            stderr.contains("0 duplicates, 0 waiting, 0 lost (tap gave up)"),
            "{stderr}"
        );
        assert!(!stderr.contains("rejected"), "{stderr}");
    }
}

#[test]
fn many_taps_at_once() {
    let dir = temp_dir("many");
    let names = ["tap0", "tap1", "tap2"];
    let (config, keys) = keygen(&dir, &names);
    let (child, addr) = start_collector(&config, &["--idle-exit", "2"]);
    let files = [
        "zeek__http_bro.org.pcap",
        "zeek__ssh_ssh.pcap",
        "zeek__smtp.pcap",
    ];
    let handles: Vec<_> = files
        .iter()
        .zip(names)
        .zip(keys.clone())
        .map(|((name, tap), key)| {
            let addr = addr.clone();
            let file = real_pcap(name);
            std::thread::spawn(move || replay_to(&file, &addr, tap, &key))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (collected, stderr) = finish(child);
    for (name, tap) in files.iter().zip(names) {
        let mut ours: Vec<&str> = collected
            .lines()
            .filter(|l| l.split(' ').any(|w| w == format!("tap={tap}")))
            .collect();
        let expected = printed(&real_pcap(name), "text", tap);
        let mut expected: Vec<&str> = expected.lines().collect();
        ours.sort();
        expected.sort();
        assert_eq!(ours, expected, "{tap}");
        assert!(stderr.contains(&format!("tap {tap}:")), "{stderr}");
    }
}

#[test]
fn a_restarted_tap_is_a_reboot_not_a_replay() {
    let dir = temp_dir("reboot");
    let (config, keys) = keygen(&dir, &["edge"]);
    let (child, addr) = start_collector(&config, &["--idle-exit", "2"]);
    let first = real_pcap("zeek__http_bro.org.pcap");
    let second = real_pcap("zeek__smtp.pcap");
    replay_to(&first, &addr, "edge", &keys[0]);
    replay_to(&second, &addr, "edge", &keys[0]);
    let (collected, stderr) = finish(child);
    let expected = printed(&first, "text", "edge").lines().count()
        + printed(&second, "text", "edge").lines().count();
    assert_eq!(collected.lines().count(), expected);
    assert!(stderr.contains("1 reboots (0 lost before)"), "{stderr}");
    assert!(
        !stderr.contains("rejected"),
        "nothing of a new boot is a replay: {stderr}"
    );
}

/// A sealed batch of one record, as a tap of `boot` with `challenge` would
/// send it.
fn sealed_batch(
    tap: &str,
    key: &Key,
    boot: [u8; 16],
    challenge: Challenge,
    counter: u64,
    seq: u64,
) -> Vec<u8> {
    let mut w = BatchWriter::default();
    let header = BatchHeader {
        tap_id: tap,
        boot_id: envelope::boot_id(&boot),
        seq,
        base_ms: 1_000,
        ..BatchHeader::default()
    };
    w.start(&header).unwrap();
    w.push(&FlowRecord {
        start_ms: 1_000,
        end_ms: 2_000,
        proto: 17,
        ..FlowRecord::default()
    })
    .unwrap();
    let env = Header {
        sealed: true,
        kind: DatagramKind::Batch,
        tap_id: tap,
        boot,
        counter,
        challenge,
    };
    envelope::seal(&env, Some(key), w.as_bytes()).unwrap()
}

/// What a tap does first: a hello for `boot`, and the challenge out of the
/// collector's sealed reply.
fn handshake(sock: &UdpSocket, addr: &str, tap: &str, key: &Key, boot: [u8; 16]) -> Challenge {
    let hello = envelope::seal(
        &Header {
            sealed: true,
            kind: DatagramKind::Hello,
            tap_id: tap,
            boot,
            counter: 1_000_000,
            challenge: [0; 8],
        },
        Some(key),
        &messages::encode(&Hello::default()).unwrap(),
    )
    .unwrap();
    sock.send_to(&hello, addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let n = sock.recv(&mut buf).expect("a reply to the hello");
        let Ok((_, payload)) = envelope::open(&buf[..n], Some(key), false) else {
            continue;
        };
        let reply: Reply = messages::decode(&payload).unwrap();
        if reply.tap_boot == boot && reply.echo == 1_000_000 {
            return reply.challenge;
        }
    }
}

#[test]
fn bad_datagrams_are_rejected_and_counted_while_good_taps_are_served() {
    let dir = temp_dir("bad");
    let (config, keys) = keygen(&dir, &["good", "victim"]);
    let (child, addr) = start_collector(&config, &["--idle-exit", "2"]);
    let good_tap = {
        let addr = addr.clone();
        let key = keys[0].clone();
        std::thread::spawn(move || replay_to(&real_pcap("zeek__ssh_ssh.pcap"), &addr, "good", &key))
    };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |d: &[u8]| {
        sock.send_to(d, &addr).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    };
    let victim = &keys[1];
    let boot_a = [0xa1; 16];
    let challenge_a = handshake(&sock, &addr, "victim", victim, boot_a);
    let genuine = sealed_batch("victim", victim, boot_a, challenge_a, 0, 0);
    send(&genuine); // accepted: 1 record
    send(&genuine); // the same datagram again: replayed
    send(&genuine[..genuine.len() - 5]); // truncated: the tag no longer checks
    send(&sealed_batch(
        "victim",
        &Key::from_bytes([7; 32]),
        boot_a,
        challenge_a,
        1,
        1,
    )); // wrong key
    let mut forged = sealed_batch("victim", victim, boot_a, challenge_a, 2, 2);
    let n = forged.len();
    forged[n - 20] ^= 0x40; // a bit of the ciphertext changed
    send(&forged);
    send(&sealed_batch("stranger", victim, boot_a, challenge_a, 0, 0)); // no such tap
    send(b"\x00\x01 random bytes, not a datagram of ours");
    let plain = envelope::seal(
        &Header {
            sealed: false,
            kind: DatagramKind::Batch,
            tap_id: "victim",
            boot: boot_a,
            counter: 9,
            challenge: challenge_a,
        },
        None,
        b"x",
    )
    .unwrap();
    send(&plain); // plaintext is refused without --insecure-plaintext
    let mut old_version = genuine.clone();
    old_version[4] = 2; // an envelope from before the challenge
    send(&old_version);
    // A batch of a new boot with a challenge the collector never gave it.
    send(&sealed_batch("victim", victim, [0xb2; 16], [0x55; 8], 0, 0));
    let challenge_b = handshake(&sock, &addr, "victim", victim, [0xb2; 16]);
    send(&sealed_batch(
        "victim",
        victim,
        [0xb2; 16],
        challenge_b,
        0,
        0,
    )); // a reboot: accepted
    send(&sealed_batch("victim", victim, boot_a, challenge_a, 3, 3)); // the old boot again: stale
    good_tap.join().unwrap();
    let (collected, stderr) = finish(child);
    let expected = printed(&real_pcap("zeek__ssh_ssh.pcap"), "text", "good");
    let good: Vec<&str> = collected
        .lines()
        .filter(|l| l.split(' ').any(|w| w == "tap=good"))
        .collect();
    assert_eq!(
        good.len(),
        expected.lines().count(),
        "the good tap lost nothing"
    );
    assert_eq!(
        collected
            .lines()
            .filter(|l| l.split(' ').any(|w| w == "tap=victim"))
            .count(),
        2
    );
    for (reason, n) in [
        ("replayed", 1),
        ("forged or wrong key", 3),
        ("unknown tap", 1),
        ("not a PiTap datagram", 1),
        ("plaintext refused", 1),
        ("unsupported version", 1),
        ("stale challenge (an earlier boot or collector run)", 2),
    ] {
        assert!(
            stderr.contains(&format!("rejected {n} datagrams: {reason}\n")),
            "{reason} x{n} missing in {stderr}"
        );
    }
    // One batch from each boot; the current boot is the second.
    assert!(
        stderr.contains("tap victim: boot b2b2b2b2, 2 batches, 2 records"),
        "{stderr}"
    );
    assert!(stderr.contains("1 reboots"), "{stderr}");
}

#[test]
fn plaintext_only_by_consent_on_both_ends() {
    let dir = temp_dir("plain");
    let (config, _) = keygen(&dir, &["x"]);
    let (child, addr) = start_collector(
        &config,
        &["--insecure-plaintext", "--until-final", "--idle-exit", "20"],
    );
    let file = real_pcap("tcpdump__print-flags.pcap");
    let out = Command::new(pitapd_bin())
        .args([
            "--read",
            file.to_str().unwrap(),
            "--uplink",
            &addr,
            "--tap-id",
            "lab",
            "--insecure-plaintext",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (collected, _) = finish(child);
    assert_eq!(collected, printed(&file, "text", "lab"));
    // Without consent pitapd refuses to send in clear.
    let out = Command::new(pitapd_bin())
        .args(["--read", file.to_str().unwrap(), "--uplink", &addr, "-q"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--uplink needs --key HEX"));
}

#[test]
fn keygen_snippets_configure_both_ends() {
    let dir = temp_dir("keygen");
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args([
            "keygen",
            "--tap-id",
            "rack3",
            "--collector",
            "127.0.0.1:1",
            "--out-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let tap = std::fs::read_to_string(dir.join("rack3.tap.toml")).unwrap();
    let collector = std::fs::read_to_string(dir.join("rack3.collector.toml")).unwrap();
    let key_line = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("key = "))
            .unwrap()
            .to_string()
    };
    assert_eq!(key_line(&tap), key_line(&collector));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("rack3.tap.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key files are private");
    // Two runs never give the same key.
    let again = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["keygen", "--tap-id", "rack3"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&again.stdout).contains(&key_line(&tap)));
}

/// `pitap collect --format zeek-json`: the tap's conn.log rows, with
/// local_orig and local_resp from the collector's internal networks.
#[test]
fn zeek_rows_from_the_collector_know_the_local_networks() {
    let dir = temp_dir("zeek");
    let (config, keys) = keygen(&dir, &["lab-tap"]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += "\n[networks]\ninternal = [\"141.142.0.0/16\"]\n";
    std::fs::write(&config, text).unwrap();
    let file = real_pcap("zeek__wikipedia.pcap");
    let (child, addr) = start_collector(
        &config,
        &[
            "--format",
            "zeek-json",
            "--until-final",
            "--idle-exit",
            "20",
        ],
    );
    replay_to(&file, &addr, "lab-tap", &keys[0]);
    let (collected, _) = finish(child);
    let rows: Vec<serde_json::Value> = collected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tap: Vec<serde_json::Value> = printed(&file, "zeek-json", "lab-tap")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), tap.len());
    assert!(rows.len() > 20);
    let (mut local, mut outside) = (0, 0);
    for (row, t) in rows.iter().zip(&tap) {
        assert_eq!(
            row["uid"], t["uid"],
            "the tap and the collector agree on uids"
        );
        for (end, flag) in [("id.orig_h", "local_orig"), ("id.resp_h", "local_resp")] {
            let is_local = row[end].as_str().unwrap().starts_with("141.142.");
            assert_eq!(row[flag], is_local, "{row}");
            if is_local {
                local += 1;
            } else {
                outside += 1;
            }
        }
        // The tap has no [networks]: its rows leave locality unset.
        assert!(t.get("local_orig").is_none(), "{t}");
    }
    assert!(local > 0 && outside > 0, "{local} {outside}");
}

/// logrotate's way: the output file is moved, then SIGHUP. The old file
/// ends whole (Zeek's `#close`), the new one starts with a header, and
/// every flow is in exactly one of them.
#[test]
fn sighup_reopens_the_output_and_loses_nothing() {
    let dir = temp_dir("sighup");
    let (config, keys) = keygen(&dir, &["before", "after"]);
    let log = dir.join("conn.log");
    let rotated = dir.join("conn.log.1");
    let (child, addr) = start_collector(
        &config,
        &[
            "--output",
            log.to_str().unwrap(),
            "--format",
            "zeek",
            "--idle-exit",
            "4",
        ],
    );
    let first = real_pcap("zeek__wikipedia.pcap");
    let second = real_pcap("zeek__http_bro.org.pcap");
    replay_to(&first, &addr, "before", &keys[0]);
    std::fs::rename(&log, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The collector opens the path anew when it sees the signal.
    let start = std::time::Instant::now();
    let mut child = child;
    while !log.exists() {
        if start.elapsed() > Duration::from_secs(10) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no new file: {:?}", child.wait_with_output());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    replay_to(&second, &addr, "after", &keys[1]);
    let (_, stderr) = finish(child);
    assert!(stderr.contains("SIGHUP: reopened"), "{stderr}");

    let rows = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let flows = |file: &std::path::Path| printed(file, "text", "x").lines().count();
    for (path, pcap) in [(&rotated, &first), (&log, &second)] {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with("#separator \\x09\n"), "{}", path.display());
        assert!(text
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("#close"));
        assert_eq!(text.matches("#fields").count(), 1, "{}", path.display());
        assert_eq!(rows(&text), flows(pcap), "{}", path.display());
    }
}

/// `pitap collect --check-config`: ok and a summary for a good file, exit
/// 2 and the key for each kind of mistake, and nothing bound meanwhile.
#[test]
fn check_config_names_the_key() {
    let dir = temp_dir("check-config");
    let (config, _) = keygen(&dir, &["lab", "rack-2"]);
    let good = std::fs::read_to_string(&config).unwrap();
    let check = |text: &str| {
        let path = dir.join("check.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_pitap"))
            .args([
                "collect",
                "--check-config",
                "--config",
                path.to_str().unwrap(),
            ])
            .args(["--listen", "127.0.0.1:9"])
            .output()
            .unwrap()
    };
    let out = check(&good);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("ok: listen 127.0.0.1:9, 2 taps"), "{said}");
    assert!(!dir.join("flows.db").exists() && !dir.join("pitap-flows.db").exists());
    for (extra, key) in [
        ("[export]\nipfix = [\"nowhere\"]\n", "export.ipfix"),
        (
            "[export]\nmax_datagrams_per_s = 99999999\n",
            "export.max_datagrams_per_s",
        ),
        ("[networks]\ninternal = [\"10.0.0.0/33\"]\n", "networks"),
        ("[[alert]]\nname = \"x\"\nquery = \"proto:(\"\n", "alert"),
        ("[taps.\"../evil\"]\nkey = \"00\"\n", "taps"),
        ("[report]\nbeacon_score = 7\n", "beacon_score"),
    ] {
        let out = check(&format!("{good}\n{extra}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {out:?}");
        assert!(err.contains(key), "{extra}: {err}");
        assert!(err.contains("check.toml"), "{err}");
    }
}
