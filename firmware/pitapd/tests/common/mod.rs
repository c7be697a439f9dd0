//! Helpers shared by pitapd's integration tests.
#![allow(dead_code)]

pub mod conversations;
pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The real captures beside the checkout (`../shared/pcaps/real`).
pub fn real_pcaps_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps/real");
    assert!(
        dir.is_dir(),
        "{} is missing: the tests need ../shared beside the checkout",
        dir.display()
    );
    dir
}

pub fn real_pcaps() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(real_pcaps_dir())
        .expect("read pcaps dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the real captures, found {}",
        files.len()
    );
    files
}

pub fn real_pcap(name: &str) -> PathBuf {
    real_pcaps_dir().join(name)
}

/// Runs a program and returns its output; fails the test with the reason
/// when the program is not installed.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); install it with scripts/setup.sh"))
}

pub fn tshark(args: &[&str]) -> String {
    let out = run("tshark", args);
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark output is UTF-8")
}

/// tshark's `fields` of the packets of `file` that match `filter`: one
/// line a packet, the fields tab-separated in the order given.
pub fn tshark_fields(file: &Path, fields: &[&str], filter: &str) -> String {
    let mut args = vec![
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=\t",
    ];
    for f in fields {
        args.extend(["-e", f]);
    }
    args.extend(["-Y", filter]);
    tshark(&args)
}

pub fn pitapd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pitapd"))
        .args(args)
        .output()
        .expect("run pitapd")
}

/// `pitapd --read FILE --print --format json` and the records it printed.
pub fn flows_json(file: &Path, extra: &[&str]) -> Vec<Value> {
    let path = file.to_str().expect("utf-8 path");
    let mut args = vec!["--read", path, "--print", "--format", "json", "--quiet"];
    args.extend_from_slice(extra);
    let out = pitapd(&args);
    assert!(
        out.status.success(),
        "pitapd failed on {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pitapd-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The shipped pin map (hardware/pinmap.toml).
pub fn shipped_pinmap() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../hardware/pinmap.toml"
    ))
    .expect("hardware/pinmap.toml")
}

/// The shipped pin map's `[bypass]` section, which it carries commented
/// out (a board without the bypass board has none), uncommented: what a
/// builder of the board puts on the card.
pub fn shipped_bypass_section() -> String {
    let map = shipped_pinmap();
    let mut lines = map.lines().skip_while(|l| l.trim() != "# [bypass]");
    let mut out = String::new();
    for l in lines.by_ref() {
        let Some(text) = l.strip_prefix("# ") else {
            break;
        };
        out.push_str(text);
        out.push('\n');
    }
    assert!(
        out.starts_with("[bypass]"),
        "no commented [bypass] in pinmap.toml"
    );
    out
}
