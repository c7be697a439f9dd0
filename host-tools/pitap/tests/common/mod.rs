//! Helpers shared by the host tools' integration tests: the binaries, the
//! real captures, keys, collectors and replays through pitapd.
#![allow(dead_code)]

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
