//! The query command's rough edges, as a new user meets them: a leading
//! "-" negation, --json with --count and --top, a window that holds
//! nothing (said, with where the flows are), --since after --until, dates
//! that do not exist, compound spans and offsets, a mistyped subcommand.

mod common;

use std::process::{Command, Output};

use common::*;

fn pitap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn query_edges() {
    let dir = temp_dir("cli-edges");
    let (config, keys) = keygen(&dir, &["lab"]);
    let file = real_pcap("zeek__wikipedia.pcap");
    let (child, addr) = start_collector(&config, &["--until-final", "--idle-exit", "20"]);
    replay_to(&file, &addr, "lab", &keys[0]);
    finish(child);
    let store = store_in(&dir);
    let s = store.to_str().unwrap();
    let all = stored_json(&store);
    let not_udp = all.iter().filter(|f| f["proto"] != "UDP").count();

    // The capture is from 2011: the default window (1d) holds none of it.
    let out = pitap(&["query", "--store", s]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
    let hint = text(&out.stderr);
    assert!(
        hint.contains("--since 0") && hint.contains("2011-03-18"),
        "{hint}"
    );

    // A leading "-" is a negation, not an option.
    let out = pitap(&[
        "query",
        "--store",
        s,
        "--since",
        "0",
        "--count",
        "-proto:UDP",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), not_udp.to_string());

    // --json with --count and --top.
    let out = pitap(&["query", "--store", s, "--since", "0", "--count", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["matched"], all.len());
    let out = pitap(&[
        "query", "--store", s, "--since", "0", "--top", "proto", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["field"], "proto");
    assert_eq!(v["flows"], all.len());
    let counted: u64 = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, all.len() as u64);

    // One spelling: --format json on every reading command is what the
    // hidden --json alias prints, and not the text output.
    for cmd in [
        &["query", "--store", s, "--since", "0"][..],
        &["query", "--store", s, "--since", "0", "--count"][..],
        &["report", "--store", s, "--since", "0"][..],
        &["devices", "--store", s, "--since", "0"][..],
        &["files", "--store", s, "--since", "0"][..],
    ] {
        let run = |extra: &[&str]| {
            let until = ["--until", "2100-01-01"];
            let args: Vec<&str> = cmd.iter().chain(&until).chain(extra).copied().collect();
            let out = pitap(&args);
            assert!(out.status.success(), "{args:?}: {out:?}");
            // The report's heading ends at now: not the same twice.
            text(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with("PiTap report:"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        let json = run(&["--format", "json"]);
        assert_eq!(json, run(&["--json"]), "{cmd:?}");
        assert_eq!(run(&["--format", "text"]), run(&[]), "{cmd:?}");
        for line in json.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{cmd:?}: {e}: {line}"));
        }
        if cmd[0] != "files" {
            assert_ne!(json, run(&[]), "{cmd:?}");
        }
    }
    let out = pitap(&["query", "--store", s, "--format", "yaml"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("possible values"), "{out:?}");

    // A window that ends before it starts, and a day that does not exist.
    let out = pitap(&["query", "--store", s, "--since", "1h", "--until", "2h"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not before --until"), "{out:?}");
    let out = pitap(&["query", "--store", s, "--since", "2011-02-31"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--since"), "{out:?}");
    // Compound spans and offsets are understood.
    let out = pitap(&["query", "--store", s, "--since", "1h30m", "--count"]);
    assert!(out.status.success(), "{out:?}");
    let out = pitap(&[
        "query",
        "--store",
        s,
        "--since",
        "2011-03-18T20:00:00+01:00",
        "--count",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        all.len().to_string(),
        "19:00 UTC is before the capture"
    );

    // A mistyped subcommand gets a suggestion.
    let out = pitap(&["qurey"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("'query'"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
