//! `--format zeek` read back by a real Zeek-log reader (zat's
//! ZeekLogReader, strict: a value that does not convert to its column's
//! type fails), for every real capture, row by row against pitapd's own
//! JSON lines of the same flows; and `--format zeek-json` carrying the same
//! values under Zeek's names.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// Reads a conn.log with zat and prints its rows as JSON (times and
/// intervals as seconds).
const READER: &str = r#"
import json, sys, datetime
from zat.zeek_log_reader import ZeekLogReader
reader = ZeekLogReader(sys.argv[1], strict=True)
for row in reader.readrows():
    out = {}
    for k, v in row.items():
        if isinstance(v, datetime.datetime):
            v = v.timestamp()
        elif isinstance(v, datetime.timedelta):
            v = v.total_seconds()
        out[k] = v
    print(json.dumps(out))
print("fields", json.dumps(reader.field_names), json.dumps(reader.field_types), file=sys.stderr)
"#;

fn lines(file: &std::path::Path, format: &str) -> Vec<Value> {
    let out = pitapd(&[
        "--read",
        file.to_str().unwrap(),
        "--print",
        "--format",
        format,
        "-q",
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn conn_log_reads_back_with_zat_on_every_real_capture() {
    let dir = temp_dir("zeek");
    let mut rows_checked = 0;
    for file in real_pcaps() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let log = dir.join(format!("{name}.conn.log"));
        let out = pitapd(&[
            "--read",
            file.to_str().unwrap(),
            "--print",
            "--format",
            "zeek",
            "-q",
        ]);
        assert!(out.status.success(), "{out:?}");
        std::fs::write(&log, &out.stdout).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.starts_with("#separator \\x09\n"), "{name}");
        assert!(
            text.trim_end()
                .lines()
                .last()
                .unwrap()
                .starts_with("#close\t"),
            "{name}"
        );
        let read = Command::new("python3")
            .args(["-c", READER])
            .arg(&log)
            .output()
            .unwrap();
        assert!(read.status.success(), "zat on {name}: {read:?}");
        let stderr = String::from_utf8_lossy(&read.stderr);
        assert!(!stderr.contains("Conversion Issue"), "{name}: {stderr}");
        let rows: Vec<Value> = String::from_utf8_lossy(&read.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ours = lines(&file, "json");
        let zeek_json = lines(&file, "zeek-json");
        assert_eq!(rows.len(), ours.len(), "{name}: rows");
        assert_eq!(zeek_json.len(), ours.len(), "{name}: zeek-json lines");
        for ((row, f), zj) in rows.iter().zip(&ours).zip(&zeek_json) {
            let n = |k: &str| f[k].as_u64().unwrap_or(0);
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            let ctx = format!("{name}: {row} vs {f}");
            let ts = row["ts"].as_f64().unwrap();
            assert!((ts - n("start_ms") as f64 / 1000.0).abs() < 1e-3, "{ctx}");
            let duration = row["duration"].as_f64().unwrap();
            assert!(
                (duration - n("duration_ms") as f64 / 1000.0).abs() < 1e-3,
                "{ctx}"
            );
            assert_eq!(row["id.orig_h"], f["src_addr"], "{ctx}");
            assert_eq!(row["id.resp_h"], f["dst_addr"], "{ctx}");
            let (op, rp) = match s("proto").as_str() {
                "ICMP" | "ICMPv6" => (n("icmp_type"), n("icmp_code")),
                _ => (n("src_port"), n("dst_port")),
            };
            assert_eq!(row["id.orig_p"].as_u64(), Some(op), "{ctx}");
            assert_eq!(row["id.resp_p"].as_u64(), Some(rp), "{ctx}");
            let proto = match s("proto").as_str() {
                "TCP" => "tcp",
                "UDP" => "udp",
                "ICMP" | "ICMPv6" => "icmp",
                _ => "unknown_transport",
            };
            assert_eq!(row["proto"], proto, "{ctx}");
            assert_eq!(row["conn_state"], f["conn_state"], "{ctx}");
            let history = s("history");
            assert_eq!(
                row["history"].as_str(),
                Some(if history.is_empty() {
                    "-"
                } else {
                    history.as_str()
                }),
                "{ctx}"
            );
            for (zeek, pitap) in [
                ("orig_bytes", "src_payload_bytes"),
                ("resp_bytes", "dst_payload_bytes"),
                ("orig_pkts", "src_pkts"),
                ("resp_pkts", "dst_pkts"),
                ("orig_ip_bytes", "src_ip_bytes"),
                ("resp_ip_bytes", "dst_ip_bytes"),
                ("missed_bytes", "missed_bytes"),
            ] {
                assert_eq!(row[zeek].as_u64(), Some(n(pitap)), "{zeek} {ctx}");
                assert_eq!(zj[zeek], row[zeek], "zeek-json {zeek} {ctx}");
            }
            // No [networks] on the tap: locality is unset.
            assert!(zj.get("local_orig").is_none(), "{zj}");
            assert_eq!(zj["uid"], row["uid"], "{ctx}");
            assert_eq!(zj["conn_state"], row["conn_state"], "{ctx}");
            assert!((zj["ts"].as_f64().unwrap() - ts).abs() < 1e-3, "{ctx}");
            rows_checked += 1;
        }
        // A uid names one flow.
        let mut uids: Vec<&str> = rows.iter().filter_map(|r| r["uid"].as_str()).collect();
        let all = uids.len();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), all, "{name}: uids repeat");
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{rows_checked} conn.log rows read back by zat");
    assert!(rows_checked > 250, "{rows_checked}");
}

/// Every file record's `conn_uid` is the `uid` of the conn.log row of the
/// flow that carried it (Zeek's files.log `conn_uids`).
#[test]
fn file_records_name_their_conn_log_row() {
    let mut linked = 0;
    for file in real_pcaps() {
        let path = file.to_str().unwrap();
        let out = pitapd(&["--read", path, "--files", "--format", "json", "-q"]);
        assert!(out.status.success(), "{out:?}");
        let files: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if files.is_empty() {
            continue;
        }
        let rows = lines(&file, "zeek-json");
        for f in &files {
            let uid = f["conn_uid"].as_str().unwrap();
            let row = rows
                .iter()
                .find(|r| r["uid"] == uid)
                .unwrap_or_else(|| panic!("{path}: no conn.log row {uid} for {f}"));
            assert_eq!(row["id.orig_h"], f["src_addr"], "{path}");
            assert_eq!(row["id.orig_p"], f["src_port"], "{path}");
            assert_eq!(row["id.resp_h"], f["dst_addr"], "{path}");
            assert_eq!(row["id.resp_p"], f["dst_port"], "{path}");
            linked += 1;
        }
    }
    assert!(linked >= 10, "only {linked} files linked");
}
