//! Boots nobody can replay: everything a tap's first boot sent, recorded on
//! the path and replayed after 40 later boots, or into a collector that
//! starts with a fresh state and store, is refused and counted, and nothing
//! of it is stored a second time. A genuine reboot is taken within one
//! round trip of its hello.

use std::time::{Duration, Instant};

mod common;

use common::relay::{PathFaults, Relay};
use common::*;

const KIND_HELLO: u8 = 4;

/// Datagrams of the recording that are not hellos (a hello is answered,
/// never refused: it changes nothing).
fn data_datagrams(recorded: &[Vec<u8>]) -> Vec<Vec<u8>> {
    recorded
        .iter()
        .filter(|d| d.get(5) != Some(&KIND_HELLO))
        .cloned()
        .collect()
}

fn stored_count(store: &std::path::Path) -> usize {
    stored_json(store).len()
}

#[test]
fn the_first_boot_replayed_after_forty_boots_is_refused() {
    let dir = temp_dir("boots40");
    let (config, keys) = keygen(&dir, &["edge"]);
    let files = dir.join("run");
    std::fs::create_dir_all(&files).unwrap();
    let (collector, addr) = collector_at(
        &config,
        "127.0.0.1:0",
        &files,
        &["--idle-exit", "4", "--status-every", "1"],
        &[],
    );
    let relay = Relay::start(&addr, PathFaults::default());
    let capture = real_pcap("zeek__http_bro.org.pcap");
    let per_boot = printed(&capture, "text", "edge").lines().count();
    replay_to(&capture, &relay.addr, "edge", &keys[0]);
    let boot1 = data_datagrams(&relay.recorded().up);
    assert!(boot1.len() >= 2, "a batch and the final one at least");
    let mut accepted_after = Vec::new();
    let mut challenges = Vec::new();
    for _ in 0..40 {
        let started = Instant::now();
        let tap = spawn_replay(&capture, &relay.addr, "edge", &keys[0], &[]);
        let (status, stderr) = rest_of_stderr(tap);
        assert!(status.success(), "{stderr}");
        accepted_after.push(started.elapsed());
        let challenge_ms: f64 = stderr
            .split(", challenge after ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(challenge_ms < 1_000.0, "{stderr}");
        challenges.push(challenge_ms);
    }
    challenges.sort_by(f64::total_cmp);
    relay.inject(&boot1);
    let (status, stderr) = rest_of_stderr(collector);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "rejected {} datagrams: stale challenge (an earlier boot or collector run)\n",
            boot1.len()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("40 reboots (0 lost before)"), "{stderr}");
    // The running collector shows them too, not only at its exit.
    assert!(
        stderr.contains(&format!(
            "pitap: refused so far: {} stale challenge",
            boot1.len()
        )),
        "{stderr}"
    );
    assert_eq!(stored_count(&files.join("flows.db")), 41 * per_boot);
    let output = std::fs::read_to_string(files.join("flows.txt")).unwrap();
    assert_eq!(output.lines().count(), 41 * per_boot);
    let slowest = accepted_after.iter().max().unwrap();
    println!(
        "41 boots of {per_boot} flows, then boot 1's {} datagrams replayed: all refused; a reboot taken {:.1} ms after its hello (median, max {:.1} ms); slowest replay {:.0} ms",
        boot1.len(),
        challenges[challenges.len() / 2],
        challenges[challenges.len() - 1],
        slowest.as_secs_f64() * 1e3
    );
}

#[test]
fn old_boots_into_a_collector_with_a_fresh_state_and_store_are_refused() {
    let dir = temp_dir("fresh");
    let (config, keys) = keygen(&dir, &["edge"]);
    let first = dir.join("first");
    std::fs::create_dir_all(&first).unwrap();
    let (collector, addr) =
        collector_at(&config, "127.0.0.1:0", &first, &["--idle-exit", "2"], &[]);
    let relay = Relay::start(&addr, PathFaults::default());
    for capture in [
        "zeek__http_bro.org.pcap",
        "zeek__smtp.pcap",
        "zeek__ssh_ssh.pcap",
    ] {
        replay_to(&real_pcap(capture), &relay.addr, "edge", &keys[0]);
    }
    let recorded = relay.recorded().up.clone();
    let (status, _) = rest_of_stderr(collector);
    assert!(status.success());
    drop(relay);
    // A new collector: no state, no store. It has never seen these boots.
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let (collector, addr) =
        collector_at(&config, "127.0.0.1:0", &fresh, &["--idle-exit", "2"], &[]);
    let relay = Relay::start(&addr, PathFaults::default());
    relay.inject(&recorded);
    std::thread::sleep(Duration::from_millis(100));
    // The real tap, booting now, is taken at once.
    let capture = real_pcap("tcpdump__print-flags.pcap");
    replay_to(&capture, &addr, "edge", &keys[0]);
    let (status, stderr) = rest_of_stderr(collector);
    assert!(status.success(), "{stderr}");
    let refused = data_datagrams(&recorded).len();
    assert!(
        stderr.contains(&format!(
            "rejected {refused} datagrams: stale challenge (an earlier boot or collector run)\n"
        )),
        "{stderr}"
    );
    let genuine = printed(&capture, "text", "edge");
    assert_eq!(
        stored_count(&fresh.join("flows.db")),
        genuine.lines().count(),
        "only the genuine boot stored"
    );
    assert_eq!(
        std::fs::read_to_string(fresh.join("flows.txt")).unwrap(),
        genuine,
        "only the genuine boot written"
    );
    println!("{} datagrams of 3 old boots into a fresh collector: {refused} refused, the hellos answered, nothing stored", recorded.len());
}
