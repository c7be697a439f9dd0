//! File records from a real `pitapd` replay through a sealed uplink into
//! `pitap collect`'s store: `pitap files` lists what `pitapd --files`
//! printed, and `pitap query 'file_sha256:…'` finds the flow that carried
//! each object, whatever hash of it is given.

use std::process::Command;

mod common;

use common::*;
use serde_json::Value;

fn pitap(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn stored_files_lead_to_their_flows() {
    let dir = temp_dir("files");
    let (config, keys) = keygen(&dir, &["lab-tap"]);
    let file = real_pcap("zeek__http_bro.org.pcap");
    let (child, addr) = start_collector(&config, &["--until-final", "--idle-exit", "20"]);
    replay_to(&file, &addr, "lab-tap", &keys[0]);
    finish(child);
    let store = store_in(&dir);
    let store = store.to_str().unwrap();

    // What the tap printed is what the store lists (newest first there).
    let printed = Command::new(pitapd_bin())
        .args([
            "--read",
            file.to_str().unwrap(),
            "--files",
            "--format",
            "json",
            "-q",
            "--tap-id",
            "lab-tap",
        ])
        .output()
        .unwrap();
    let mut printed = lines(&String::from_utf8(printed.stdout).unwrap());
    let (ok, out, err) = pitap(&["files", "--since", "0", "--json", "--store", store]);
    assert!(ok, "{err}");
    let mut stored = lines(&out);
    assert_eq!(stored.len(), 31);
    let key = |v: &Value| {
        (
            v["ts"].to_string(),
            v["file_url"].to_string(),
            v["src_port"].to_string(),
        )
    };
    printed.sort_by_key(key);
    stored.sort_by_key(key);
    assert_eq!(stored, printed);

    // From the hash of the logo alone: the file, then its flow.
    let logo = stored
        .iter()
        .find(|f| f["file_url"] == "http://bro.org/images/logo-nsf.jpg")
        .expect("the logo");
    for hash in ["file_sha256", "file_sha1", "file_md5"] {
        let h = logo[hash].as_str().unwrap();
        let (ok, out, err) = pitap(&["files", h, "--since", "0", "--json", "--store", store]);
        assert!(ok, "{err}");
        assert_eq!(lines(&out), vec![logo.clone()], "{hash}");
        let q = format!("{hash}:{}", h.to_uppercase());
        let (ok, out, err) = pitap(&["query", &q, "--since", "0", "--json", "--store", store]);
        assert!(ok, "{err}");
        let flows = lines(&out);
        assert_eq!(flows.len(), 1, "{q}: {out}");
        let f = &flows[0];
        for k in ["src_addr", "src_port", "dst_addr", "dst_port", "start_ms"] {
            assert_eq!(f[k], logo[k], "{k}");
        }
        assert_eq!(f["http_host"], "bro.org");
    }
    // Text too, and combined with flow terms; a hash nobody has finds nothing.
    let (ok, out, _) = pitap(&[
        "files",
        "--mime",
        "image/jpeg",
        "--since",
        "0",
        "--store",
        store,
    ]);
    assert!(
        ok && out.contains("FILE download") && out.contains("logo-nsf.jpg"),
        "{out}"
    );
    let sha = logo["file_sha256"].as_str().unwrap();
    let q = format!("file_sha256:{sha} AND NOT dst_port:80");
    let (ok, out, _) = pitap(&["query", &q, "--since", "0", "--count", "--store", store]);
    assert!(ok);
    assert_eq!(out.trim(), "0");
    let (ok, out, _) = pitap(&[
        "query",
        "file_mime:image/png",
        "--since",
        "0",
        "--count",
        "--store",
        store,
    ]);
    assert!(ok);
    let png_flows: u64 = out.trim().parse().unwrap();
    assert!((1..=13).contains(&png_flows), "{png_flows}");
    let (ok, out, _) = pitap(&[
        "query",
        &format!("file_md5:{}", "0".repeat(32)),
        "--since",
        "0",
        "--count",
        "--store",
        store,
    ]);
    assert!(ok);
    assert_eq!(out.trim(), "0");
    // A hash of no known length is refused, naming why.
    let (ok, _, err) = pitap(&["files", "abc", "--store", store]);
    assert!(!ok && err.contains("3 hex digits"), "{err}");
}
