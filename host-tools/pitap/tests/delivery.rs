//! Delivery between real `pitapd --read` and `pitap collect` processes on
//! loopback, under the conditions of the field: a replay far faster than
//! the collector can store, the collector killed -9 at the worst moments
//! and restarted late, a path that reorders and duplicates, an old
//! datagram injected into a running replay. Every flow arrives exactly
//! once, in the store and in the output file, and the counters say only
//! what happened.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::relay::{PathFaults, Relay};
use common::*;

/// The stored flows as the tap's JSON lines (without the collector's
/// enrichment), counted.
fn stored_lines(store: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for mut v in stored_json(store) {
        let o = v.as_object_mut().unwrap();
        for k in [
            "from_internal",
            "to_internal",
            "src_group",
            "dst_group",
            "src_vendor",
            "dst_vendor",
        ] {
            o.remove(k);
        }
        *m.entry(v.to_string()).or_default() += 1;
    }
    m
}

fn parse_json_lines(text: &str) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *m.entry(v.to_string()).or_default() += 1;
    }
    m
}

fn assert_exactly_once(
    what: &str,
    ours: &std::collections::BTreeMap<String, usize>,
    theirs: &std::collections::BTreeMap<String, usize>,
) {
    let missing = theirs.keys().filter(|k| !ours.contains_key(*k)).count();
    let twice = ours.values().filter(|n| **n > 1).count();
    let foreign = ours.keys().filter(|k| !theirs.contains_key(*k)).count();
    assert!(
        missing == 0 && twice == 0 && foreign == 0,
        "{what}: {missing} flows missing, {twice} stored more than once, {foreign} not the tap's"
    );
    assert_eq!(ours, theirs, "{what}");
}

/// The output file and the store each hold the truth's flows exactly once.
fn assert_delivered(what: &str, files: &Path, truth: &std::collections::BTreeMap<String, usize>) {
    let output = std::fs::read_to_string(files.join("flows.txt")).unwrap();
    assert_exactly_once(
        &format!("{what}output file"),
        &parse_json_lines(&output),
        truth,
    );
    assert_exactly_once(
        &format!("{what}store"),
        &stored_lines(&files.join("flows.db")),
        truth,
    );
}

/// A test's directory, the keys of tap "edge", and a directory for one
/// collector's files.
struct Setup {
    dir: std::path::PathBuf,
    files: std::path::PathBuf,
    config: std::path::PathBuf,
    key: pitap_wire::envelope::Key,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = temp_dir(name);
        let (config, keys) = keygen(&dir, &["edge"]);
        let files = dir.join("run");
        std::fs::create_dir_all(&files).unwrap();
        Setup {
            dir,
            files,
            config,
            key: keys[0].clone(),
        }
    }

    /// A JSON-line collector with this setup's files (in `ns` if given).
    fn collector(
        &self,
        ns: Option<&Netns>,
        listen: &str,
        extra: &[&str],
    ) -> (std::process::Child, String) {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        collector_in(ns, &self.config, listen, &self.files, &args, &[])
    }
}

#[test]
fn a_300k_packet_replay_arrives_whole_with_few_retransmissions() {
    let dir = temp_dir("replay300k");
    let capture = generated(&dir, 300_000);
    let (config, keys) = keygen(&dir, &["bench"]);
    let truth = parse_json_lines(&printed(&capture, "json", "bench"));
    for (i, until_final) in [false, true].into_iter().enumerate() {
        let files = dir.join(format!("run{i}"));
        std::fs::create_dir_all(&files).unwrap();
        let mut extra = vec!["--format", "json", "--idle-exit", "20"];
        if until_final {
            extra.push("--until-final");
        }
        let (collector, addr) = collector_at(&config, "127.0.0.1:0", &files, &extra, &[]);
        let started = Instant::now();
        let tap = spawn_replay(&capture, &addr, "bench", &keys[0], &[]);
        let (status, stderr) = rest_of_stderr(tap);
        let took = started.elapsed();
        assert!(status.success(), "pitapd: {stderr}");
        let (cstatus, cerr) = rest_of_stderr(collector);
        assert!(cstatus.success(), "{cerr}");
        let s = uplink_summary(&stderr);
        println!(
            "300k packets, until_final={until_final}: {} batches in {} datagrams, {} retransmitted ({:.2} %), {:.1} s",
            s.batches,
            s.datagrams,
            s.retransmitted,
            s.retransmitted as f64 * 100.0 / s.datagrams as f64,
            took.as_secs_f64()
        );
        assert_eq!((s.dropped, s.unacknowledged), (0, 0), "{stderr}");
        assert_eq!(s.acknowledged, s.batches);
        assert!(
            s.retransmitted * 100 <= s.datagrams,
            "more than 1 % retransmitted: {s:?}"
        );
        assert!(
            cerr.contains("0 waiting, 0 lost (tap gave up), 0 reboots"),
            "{cerr}"
        );
        assert_delivered("", &files, &truth);
    }
}

/// One run of the crash test: the collector kills itself (SIGKILL) just
/// before the commit that would take the store past `kill_at` flows, stays
/// away for `away`, and comes back with its store and state.
fn crash_and_return(dir: &Path, capture: &Path, kill_at: u64, away: Duration) -> String {
    let files = dir.join(format!("kill{kill_at}-away{}", away.as_secs()));
    std::fs::create_dir_all(&files).unwrap();
    let (config, keys) = keygen(&files, &["edge"]);
    let (first, addr) = collector_at(
        &config,
        "127.0.0.1:0",
        &files,
        &["--format", "json"],
        &[("PITAP_TEST_KILL_BEFORE_COMMIT_AT", kill_at.to_string())],
    );
    let tap = spawn_replay(capture, &addr, "edge", &keys[0], &[]);
    let (status, _) = rest_of_stderr(first);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the first collector was killed -9"
    );
    let killed = Instant::now();
    let written = std::fs::read_to_string(files.join("flows.txt")).unwrap_or_default();
    std::thread::sleep(away);
    let restarted = Instant::now();
    let (second, _) = collector_at(
        &config,
        &addr,
        &files,
        &["--format", "json", "--until-final", "--idle-exit", "60"],
        &[],
    );
    let (status, stderr) = rest_of_stderr(tap);
    assert!(status.success(), "pitapd: {stderr}");
    let s = uplink_summary(&stderr);
    assert_eq!((s.dropped, s.unacknowledged), (0, 0), "{stderr}");
    let (cstatus, cerr) = rest_of_stderr(second);
    assert!(cstatus.success(), "{cerr}");
    let what = format!("killed before the commit past {kill_at} flows, away {away:?}");
    assert_delivered(
        &format!("{what}: "),
        &files,
        &parse_json_lines(&printed(capture, "json", "edge")),
    );
    format!(
        "{what}: {} lines written before the kill (rolled back), restarted {:.1} s after it, replay done {:.1} s after the restart, {} retransmitted of {} datagrams",
        written.lines().count(),
        restarted.duration_since(killed).as_secs_f64(),
        restarted.elapsed().as_secs_f64(),
        s.retransmitted,
        s.datagrams
    )
}

#[test]
fn collector_killed_at_three_points_keeps_every_flow_once() {
    let dir = temp_dir("crash");
    let capture = generated(&dir, 60_000);
    let flows = printed(&capture, "text", "edge").lines().count() as u64;
    assert!(flows > 5_000, "{flows} flows");
    // Before the first commit, midway, near the end; back after 5 s and 30 s.
    let mut runs = Vec::new();
    for kill_at in [0, flows / 2, flows * 9 / 10] {
        for away in [5, 30] {
            let (dir, capture) = (dir.clone(), capture.clone());
            runs.push(std::thread::spawn(move || {
                crash_and_return(&dir, &capture, kill_at, Duration::from_secs(away))
            }));
        }
    }
    for run in runs {
        println!("{}", run.join().unwrap());
    }
}

#[test]
fn an_old_datagram_injected_into_a_running_replay_changes_nothing() {
    let setup = Setup::new("inject");
    let (collector, addr) = setup.collector(None, "127.0.0.1:0", &["--idle-exit", "5"]);
    let relay = Relay::start(&addr, PathFaults::default());
    // An earlier boot of the tap, recorded on the path.
    let earlier = real_pcap("zeek__http_bro.org.pcap");
    replay_to(&earlier, &relay.addr, "edge", &setup.key);
    let old_batch = relay
        .recorded()
        .up
        .iter()
        .filter(|d| d.get(5) == Some(&1)) // kind: batch
        .max_by_key(|d| d.len())
        .cloned()
        .expect("a batch of the earlier boot");
    let old_len = old_batch.len();
    let old_boot = old_batch[7 + 4..7 + 4 + 16].to_vec(); // after "edge"
                                                          // The current boot: a long replay; 80 ms after its first batch (the
                                                          // collector has taken the new boot), the old datagram.
    let capture = generated(&setup.dir, 150_000);
    let tap = spawn_replay(&capture, &relay.addr, "edge", &setup.key, &[]);
    let waited = Instant::now();
    while !relay
        .recorded()
        .up
        .iter()
        .any(|d| d.get(5) == Some(&1) && d[11..27] != old_boot[..])
    {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "no batch of the new boot"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(80));
    relay.inject(&[old_batch]);
    let (status, stderr) = rest_of_stderr(tap);
    assert!(status.success(), "pitapd: {stderr}");
    let s = uplink_summary(&stderr);
    assert_eq!((s.dropped, s.unacknowledged), (0, 0), "{stderr}");
    let (cstatus, cerr) = rest_of_stderr(collector);
    assert!(cstatus.success(), "{cerr}");
    assert!(
        cerr.contains("rejected 1 datagrams: stale challenge (an earlier boot or collector run)\n"),
        "{cerr}"
    );
    assert!(cerr.contains("1 reboots (0 lost before)"), "{cerr}");
    let mut truth = parse_json_lines(&printed(&earlier, "json", "edge"));
    for (line, n) in parse_json_lines(&printed(&capture, "json", "edge")) {
        *truth.entry(line).or_default() += n;
    }
    assert_delivered("", &setup.files, &truth);
    println!("one {old_len}-byte datagram of an earlier boot, 80 ms into a replay: refused, nothing lost");
}

#[test]
fn a_path_that_reorders_and_duplicates_loses_and_repeats_nothing() {
    let setup = Setup::new("reorder");
    let (collector, addr) =
        setup.collector(None, "127.0.0.1:0", &["--until-final", "--idle-exit", "30"]);
    let relay = Relay::start(
        &addr,
        PathFaults {
            swap_every: Some(3),
            duplicate_every: Some(7),
        },
    );
    let capture = generated(&setup.dir, 60_000);
    let tap = spawn_replay(&capture, &relay.addr, "edge", &setup.key, &[]);
    let (status, stderr) = rest_of_stderr(tap);
    assert!(status.success(), "pitapd: {stderr}");
    let s = uplink_summary(&stderr);
    assert_eq!((s.dropped, s.unacknowledged), (0, 0), "{stderr}");
    let (cstatus, cerr) = rest_of_stderr(collector);
    assert!(cstatus.success(), "{cerr}");
    assert_delivered(
        "",
        &setup.files,
        &parse_json_lines(&printed(&capture, "json", "edge")),
    );
    // Duplicates the path made are refused as replays, counted.
    assert!(cerr.contains("datagrams: replayed"), "{cerr}");
    println!(
        "every 3rd datagram reordered, every 7th twice: {} batches, {} retransmitted",
        s.batches, s.retransmitted
    );
}

#[test]
fn thirty_percent_loss_both_ways_loses_and_repeats_nothing() {
    let setup = Setup::new("loss");
    let ns = Netns::new("loss");
    // The kernel drops 30 % of the datagrams to the collector and 30 % of
    // its replies (nftables in a namespace of the test's own).
    let rules = "table inet loss {
        chain out {
            type filter hook output priority 0;
            udp dport 47300 numgen random mod 10 < 3 drop
            udp sport 47300 numgen random mod 10 < 3 drop
        }
    }";
    let rules_file = setup.dir.join("loss.nft");
    std::fs::write(&rules_file, rules).unwrap();
    let nft = ns
        .command("nft")
        .arg("-f")
        .arg(&rules_file)
        .output()
        .unwrap();
    assert!(nft.status.success(), "nft: {nft:?}");
    let (collector, addr) = setup.collector(
        Some(&ns),
        "127.0.0.1:47300",
        &["--until-final", "--idle-exit", "30"],
    );
    let capture = generated(&setup.dir, 60_000);
    let tap = replay_in(Some(&ns), &capture, &addr, "edge", &setup.key, &[]);
    let (status, stderr) = rest_of_stderr(tap);
    assert!(status.success(), "pitapd: {stderr}");
    let s = uplink_summary(&stderr);
    assert_eq!((s.dropped, s.unacknowledged), (0, 0), "{stderr}");
    assert!(
        s.retransmitted > 0,
        "30 % loss and nothing sent again? {s:?}"
    );
    let (cstatus, cerr) = rest_of_stderr(collector);
    assert!(cstatus.success(), "{cerr}");
    assert_delivered(
        "",
        &setup.files,
        &parse_json_lines(&printed(&capture, "json", "edge")),
    );
    println!(
        "30 % loss each way: {} batches in {} datagrams ({} retransmitted, {:.0} %), exactly once",
        s.batches,
        s.datagrams,
        s.retransmitted,
        s.retransmitted as f64 * 100.0 / s.datagrams as f64
    );
}
