//! Helpers shared by the host tools' integration tests: the binaries, the
//! real captures, keys, collectors and replays through pitapd.
#![allow(dead_code)]

pub mod mmdb;
pub mod relay;
pub mod traffic;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use pitap_wire::envelope::Key;

pub fn pitapd_bin() -> PathBuf {
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

pub fn real_pcap(name: &str) -> PathBuf {
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

/// The tap's own lines for a capture (`pitapd --read --print`): the ground
/// truth of what a collector must write.
pub fn printed(file: &Path, format: &str, tap: &str) -> String {
    let out = Command::new(pitapd_bin())
        .arg("--read")
        .arg(file)
        .args(["--print", "--format", format, "--tap-id", tap, "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pitap-collect-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Keys for the given taps made by `pitap keygen`; returns the collector
/// configuration (all taps) and each tap's key.
pub fn keygen(dir: &Path, taps: &[&str]) -> (PathBuf, Vec<Key>) {
    let mut collector = String::new();
    let mut keys = Vec::new();
    for tap in taps {
        let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
            .args([
                "keygen",
                "--tap-id",
                tap,
                "--out-dir",
                dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        collector += &std::fs::read_to_string(dir.join(format!("{tap}.collector.toml"))).unwrap();
        let tap_toml = std::fs::read_to_string(dir.join(format!("{tap}.tap.toml"))).unwrap();
        let hex = tap_toml
            .lines()
            .find_map(|l| l.strip_prefix("key = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("key line");
        keys.push(Key::from_hex(hex).unwrap());
    }
    let path = dir.join("collector.toml");
    std::fs::write(&path, collector).unwrap();
    (path, keys)
}

/// The store `start_collector` made beside a config in `dir` (stores are
/// numbered across the whole test binary, so tests find theirs).
pub fn store_in(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .expect("the collector made a store")
}

/// A collector on an ephemeral loopback port; returns it and its address.
/// Each gets a store of its own beside the config.
pub fn start_collector(config: &Path, extra: &[&str]) -> (Child, String) {
    static STORES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STORES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let store = config.with_file_name(format!("flows-{n}.db"));
    let _ = std::fs::remove_file(&store);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args([
            "collect",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ])
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

pub fn finish(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "collector failed: {out:?}");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

pub fn replay_to(file: &Path, addr: &str, tap: &str, key: &Key) {
    replay_with(Command::new(pitapd_bin()), file, addr, tap, key);
}

/// `pitapd --read FILE` sent sealed to `addr`, run by `pitapd` (a plain
/// command, or one inside a namespace: `Netns::command(pitapd_bin())`).
pub fn replay_with(mut pitapd: Command, file: &Path, addr: &str, tap: &str, key: &Key) {
    let out = pitapd
        .arg("--read")
        .arg(file)
        .args([
            "--uplink",
            addr,
            "--tap-id",
            tap,
            "--key",
            &key.to_hex(),
            "-q",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pitapd {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace made by a test, deleted (after killing what runs in
/// it) when dropped, also when the test fails.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("pt{}{tag}", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(
            ok(&["netns", "add", &name]),
            "ip netns add (the test needs root)"
        );
        assert!(ok(&["-n", &name, "link", "set", "lo", "up"]));
        Netns(name)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A capture of `packets` packets from the benchmark generator (seeded:
/// the same bytes every time), written once per test process.
pub fn generated(dir: &Path, packets: u64) -> PathBuf {
    let path = dir.join(format!("gen-{packets}.pcap"));
    if !path.exists() {
        let config = pitap_bench::gen::GenConfig {
            packets,
            ..pitap_bench::gen::GenConfig::default()
        };
        pitap_bench::gen::write_pcap(&path, &config).unwrap();
    }
    path
}

/// `program`, run inside `ns` when one is given.
pub fn command_in(ns: Option<&Netns>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match ns {
        Some(ns) => ns.command(program),
        None => Command::new(program),
    }
}

/// `pitap collect` with every path given: the restart of a collector is the
/// same command again. Returns the child and the address it listens on.
pub fn collector_at(
    config: &Path,
    listen: &str,
    files: &Path,
    extra: &[&str],
    env: &[(&str, String)],
) -> (Child, String) {
    collector_in(None, config, listen, files, extra, env)
}

/// [`collector_at`], inside a namespace when one is given.
pub fn collector_in(
    ns: Option<&Netns>,
    config: &Path,
    listen: &str,
    files: &Path,
    extra: &[&str],
    env: &[(&str, String)],
) -> (Child, String) {
    let mut cmd = command_in(ns, env!("CARGO_BIN_EXE_pitap"));
    cmd.args(["collect", "--listen", listen, "--config"])
        .arg(config)
        .arg("--store")
        .arg(files.join("flows.db"))
        .arg("--output")
        .arg(files.join("flows.txt"))
        .arg("--state")
        .arg(files.join("state.json"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start pitap collect");
    // A restarted collector may say first what it rolled back.
    let mut reader = BufReader::new(child.stderr.as_mut().unwrap());
    let mut said = String::new();
    let addr = loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("pitap collect ended: {said}");
        }
        if let Some(addr) = line.trim().strip_prefix("pitap: collecting on ") {
            break addr.to_string();
        }
        said.push_str(&line);
    };
    (child, addr)
}

/// The rest of a child's stderr, once it has exited.
pub fn rest_of_stderr(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `pitapd --read FILE --uplink ADDR` for tap `tap`, as a child with its
/// stderr piped (the summary says what the uplink did). It gives up after
/// 120 s without acknowledgements, so no test waits for ever.
pub fn spawn_replay(file: &Path, addr: &str, tap: &str, key: &Key, extra: &[&str]) -> Child {
    replay_in(None, file, addr, tap, key, extra)
}

/// [`spawn_replay`], inside a namespace when one is given.
pub fn replay_in(
    ns: Option<&Netns>,
    file: &Path,
    addr: &str,
    tap: &str,
    key: &Key,
    extra: &[&str],
) -> Child {
    command_in(ns, pitapd_bin())
        .arg("--read")
        .arg(file)
        .args(["--uplink", addr, "--tap-id", tap, "--key", &key.to_hex()])
        .args(["--ack-timeout", "120"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The figures of pitapd's uplink summary line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UplinkSummary {
    pub batches: u64,
    pub datagrams: u64,
    pub retransmitted: u64,
    pub acknowledged: u64,
    pub dropped: u64,
    pub unacknowledged: u64,
}

pub fn uplink_summary(stderr: &str) -> UplinkSummary {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pitapd: uplink (") && l.contains(" batches ("))
        .unwrap_or_else(|| panic!("no uplink summary in {stderr}"));
    let number_before = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} not in {line}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.trim_start_matches('(').parse().ok())
            .unwrap_or_else(|| panic!("no number before {word:?} in {line}"))
    };
    UplinkSummary {
        batches: number_before(" batches ("),
        datagrams: number_before(" datagrams"),
        retransmitted: number_before(" retransmitted"),
        acknowledged: number_before(" acknowledged"),
        dropped: number_before(" dropped"),
        unacknowledged: number_before(" unacknowledged"),
    }
}

/// Lines of a text, counted.
pub fn multiset(text: &str) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for line in text.lines() {
        *m.entry(line.to_string()).or_default() += 1;
    }
    m
}

/// The flows in a store, one JSON line each (`pitap query --json`).
pub fn stored_json(store: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["query", "--since", "0", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
