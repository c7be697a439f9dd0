//! `pitap collect` with real `pitapd` processes sending to it over UDP on
//! loopback: the lines are the same as `pitapd --print` makes, taps are told
//! apart, and forged or garbled datagrams are rejected and counted.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn pitapd_bin() -> PathBuf {
    // Built beside this package's binary by `cargo test --workspace`.
    let pitap = PathBuf::from(env!("CARGO_BIN_EXE_pitap"));
    let bin = pitap.with_file_name("pitapd");
    assert!(
        bin.exists(),
        "{} missing: run the tests with --workspace",
        bin.display()
    );
    bin
}

fn real_pcap(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/pcaps/real")
        .join(name);
    assert!(
        p.exists(),
        "{} missing: the tests need ../shared",
        p.display()
    );
    p
}

/// A collector on an ephemeral loopback port; returns it and its address.
fn start_collector(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["collect", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pitap collect");
    let mut first = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("pitap: collecting on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    (child, addr)
}

fn finish(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "collector failed: {out:?}");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn printed(file: &Path, format: &str, tap: &str) -> String {
    let out = Command::new(pitapd_bin())
        .args([
            "--read",
            file.to_str().unwrap(),
            "--print",
            "--format",
            format,
            "--tap-id",
            tap,
            "-q",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn replay_to(file: &Path, addr: &str, tap: &str) {
    let status = Command::new(pitapd_bin())
        .args([
            "--read",
            file.to_str().unwrap(),
            "--uplink",
            addr,
            "--tap-id",
            tap,
            "-q",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn collector_lines_equal_the_taps_own_lines() {
    for format in ["text", "json"] {
        let file = real_pcap("zeek__wikipedia.pcap");
        let (child, addr) =
            start_collector(&["--format", format, "--until-final", "--idle-exit", "20"]);
        replay_to(&file, &addr, "lab-tap");
        let (collected, stderr) = finish(child);
        assert_eq!(collected, printed(&file, format, "lab-tap"), "{format}");
        assert!(collected.lines().count() > 20);
        assert!(stderr.contains("tap lab-tap:"), "{stderr}");
        assert!(stderr.contains("0 batches lost"), "{stderr}");
    }
}

#[test]
fn many_taps_at_once() {
    let (child, addr) = start_collector(&["--idle-exit", "2"]);
    let files = [
        "zeek__http_bro.org.pcap",
        "zeek__ssh_ssh.pcap",
        "zeek__smtp.pcap",
    ];
    let handles: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let addr = addr.clone();
            let file = real_pcap(name);
            std::thread::spawn(move || replay_to(&file, &addr, &format!("tap{i}")))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (collected, stderr) = finish(child);
    for (i, name) in files.iter().enumerate() {
        let tap = format!("tap{i}");
        let mut ours: Vec<&str> = collected
            .lines()
            .filter(|l| l.ends_with(&format!("tap={tap}")))
            .collect();
        let expected = printed(&real_pcap(name), "text", &tap);
        let mut expected: Vec<&str> = expected.lines().collect();
        ours.sort();
        expected.sort();
        assert_eq!(ours, expected, "{tap}");
        assert!(stderr.contains(&format!("tap {tap}:")), "{stderr}");
    }
}

#[test]
fn garbled_and_forged_datagrams_are_rejected_and_counted() {
    let (child, addr) = start_collector(&["--idle-exit", "2"]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Not ours at all, a truncated header, a version from the future.
    sock.send_to(b"GET / HTTP/1.1\r\n\r\n", &addr).unwrap();
    sock.send_to(b"PTAP\x01\x40abc", &addr).unwrap();
    sock.send_to(b"PTAP\x09\x00", &addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // A real tap still gets through.
    replay_to(&real_pcap("tcpdump__print-flags.pcap"), &addr, "good");
    let (collected, stderr) = finish(child);
    assert_eq!(collected.lines().count(), 1, "{collected}");
    assert!(
        stderr.contains("rejected 1 datagrams: not a PiTap datagram (bad magic)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rejected 1 datagrams: datagram truncated"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rejected 1 datagrams: unsupported wire version 9"),
        "{stderr}"
    );
}
