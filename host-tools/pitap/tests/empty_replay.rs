//! A replay that makes no flow (a capture of one truncated frame) still
//! ends: its final batch leaves on the capture's clock, the collector
//! acknowledges it and both exit. It used to wait for a clock that a
//! replay never synchronises, until --ack-timeout.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_replay_without_flows_finishes() {
    let dir = temp_dir("empty-replay");
    let (config, keys) = keygen(&dir, &["empty"]);
    let (collector, addr) = start_collector(&config, &["--until-final", "--idle-exit", "20"]);
    let out = Command::new(pitapd_bin())
        .arg("--read")
        .arg(real_pcap("zeek__trunc_ip4-trunc.pcap"))
        .args([
            "--uplink",
            &addr,
            "--tap-id",
            "empty",
            "--key",
            &keys[0].to_hex(),
        ])
        .args(["--ack-timeout", "15"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = uplink_summary(&stderr);
    assert_eq!(
        (summary.acknowledged, summary.unacknowledged),
        (1, 0),
        "{stderr}"
    );
    let (stdout, _) = finish(collector);
    assert!(stdout.trim().is_empty(), "no flows: {stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
