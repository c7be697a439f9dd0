//! Every HTTP object in the real captures, as pitapd hashes it, against
//! `tshark --export-objects http` and `sha256sum`: SHA-256, size and URL.
//! tshark and sha256sum run in the test; nothing is typed in.
//!
//! Differences allowed, each checked rather than assumed:
//! - An HTTP/0.9 response (no status line, the body until close): tshark
//!   exports each of its segments as an object, PiTap the whole body; the
//!   concatenation of tshark's pieces must hash to PiTap's object.
//! - tshark does not key TCP streams by VLAN: the same connection on three
//!   VLANs is one object to it, three to PiTap. An object over is accepted
//!   when it repeats a matched one and its flow's addresses and ports come
//!   on more than one VLAN in PiTap's flow records.
//! - tshark names an object after the last part of its path ("%2f" for
//!   "/", "objectN" when it knows no request); the URL itself is checked
//!   against tshark's `http.response_for.uri` / `http.request.full_uri`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

/// One exported object: its file name, size and SHA-256.
#[derive(Clone, Debug)]
struct Exported {
    name: String,
    size: u64,
    sha256: String,
    bytes: Vec<u8>,
}

fn sha256sum(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().unwrap()]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn exported(file: &Path, dir: &Path) -> Vec<Exported> {
    let out = dir.join(file.file_stem().unwrap());
    std::fs::create_dir_all(&out).unwrap();
    let arg = format!("http,{}", out.display());
    tshark(&["-Q", "-r", file.to_str().unwrap(), "--export-objects", &arg]);
    let mut objects: Vec<Exported> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            Exported {
                name: path.file_name().unwrap().to_string_lossy().to_string(),
                size: bytes.len() as u64,
                sha256: sha256sum(&path),
                bytes,
            }
        })
        .collect();
    // "name", "name(1)", "name(2)": tshark's order of export.
    objects.sort_by_key(|o| (base_name(&o.name), suffix(&o.name)));
    objects
}

/// Where tshark put the "(n)" of a repeated name ("favicon(1).ico"): the
/// byte range and n.
fn repeat_mark(name: &str) -> Option<(usize, usize, u32)> {
    let open = name.rfind('(')?;
    let close = open + name[open..].find(')')?;
    let n = name[open + 1..close].parse().ok()?;
    Some((open, close + 1, n))
}

/// tshark's file name without its "(n)" for a repeated name.
fn base_name(name: &str) -> String {
    match repeat_mark(name) {
        Some((a, b, _)) => format!("{}{}", &name[..a], &name[b..]),
        None => name.to_string(),
    }
}

fn suffix(name: &str) -> u32 {
    repeat_mark(name).map_or(0, |(_, _, n)| n)
}

/// The name tshark gives an object of `url`.
fn tshark_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or("");
    match path.rsplit('/').next() {
        Some("") | None => "%2f".into(),
        Some(last) => last.to_string(),
    }
}

/// The URLs tshark knows for responses and for requests with a body.
fn tshark_urls(file: &Path) -> Vec<String> {
    tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "http.response or http.request",
        "-T",
        "fields",
        "-e",
        "http.response_for.uri",
        "-e",
        "http.request.full_uri",
    ])
    .lines()
    .flat_map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>())
    .filter(|u| !u.is_empty())
    .collect()
}

fn files_json(file: &Path) -> Vec<Value> {
    let path = file.to_str().unwrap();
    let out = pitapd(&["--read", path, "--files", "--format", "json", "--quiet"]);
    assert!(
        out.status.success(),
        "pitapd failed on {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// A flow's (or a file record's flow's) addresses and ports.
fn conversation(v: &Value) -> String {
    format!(
        "{} {} {} {}",
        v["src_addr"], v["src_port"], v["dst_addr"], v["dst_port"]
    )
}

fn sha256_of(bytes: &[u8]) -> String {
    let dir = temp_dir("joined");
    let p = dir.join("joined");
    std::fs::write(&p, bytes).unwrap();
    sha256sum(&p)
}

#[test]
fn every_http_object_matches_tshark_export_and_sha256sum() {
    let dir = temp_dir("export");
    let mut matched = 0;
    let mut exported_total = 0;
    let mut problems = Vec::new();
    for file in real_pcaps() {
        let capture = file.file_stem().unwrap().to_string_lossy().to_string();
        let theirs = exported(&file, &dir);
        exported_total += theirs.len();
        let ours = files_json(&file);
        let urls = tshark_urls(&file);
        let mut vlans: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
        for f in flows_json(&file, &[]) {
            vlans
                .entry(conversation(&f))
                .or_default()
                .insert(f["vlan"].as_u64().unwrap_or(0));
        }
        let mut matched_here: Vec<String> = Vec::new();
        let mut unmatched: Vec<Exported> = theirs.clone();
        let mut leftover = Vec::new();
        for o in &ours {
            let (sha, size, url) = (
                o["file_sha256"].as_str(),
                o["file_size"].as_u64().unwrap(),
                o["file_url"].as_str().unwrap().to_string(),
            );
            let Some(sha) = sha else {
                // Not hashed: it must say why, and tshark must not have it
                // whole either.
                let flags = o["file_flags"].as_array().unwrap();
                if flags.is_empty() {
                    problems.push(format!("{capture}: {url} unhashed without a flag"));
                }
                if theirs.iter().any(|t| t.name == tshark_name(&url)) {
                    problems.push(format!("{capture}: {url} not hashed, tshark has it"));
                }
                continue;
            };
            match unmatched
                .iter()
                .position(|t| t.sha256 == sha && t.size == size)
            {
                Some(i) => {
                    let t = unmatched.remove(i);
                    let named = base_name(&t.name) == tshark_name(&url)
                        || (t.name.starts_with("object") && o["file_status"] == 0);
                    if !named {
                        problems.push(format!("{capture}: {url} exported as {}", t.name));
                    }
                    let http09 = o["file_status"] == 0 && o["file_direction"] == "download";
                    if !http09 && !urls.contains(&url) {
                        problems.push(format!("{capture}: URL {url} unknown to tshark"));
                    }
                    matched += 1;
                    matched_here.push(sha.to_string());
                }
                None if matched_here.iter().any(|m| m == sha)
                    && vlans.get(&conversation(o)).is_some_and(|v| v.len() > 1) =>
                {
                    matched += 1;
                }
                None => leftover.push((sha.to_string(), size, url, o["file_status"].clone())),
            }
        }
        // HTTP/0.9 bodies against the concatenation of tshark's pieces.
        for (sha, size, url, status) in leftover {
            let pieces: Vec<usize> = (0..unmatched.len())
                .filter(|&i| base_name(&unmatched[i].name) == tshark_name(&url))
                .collect();
            let joined: Vec<u8> = pieces
                .iter()
                .flat_map(|&i| unmatched[i].bytes.clone())
                .collect();
            if status == 0 && pieces.len() > 1 && sha256_of(&joined) == sha {
                assert_eq!(joined.len() as u64, size);
                for i in pieces.into_iter().rev() {
                    unmatched.remove(i);
                }
                matched += 1;
            } else {
                problems.push(format!("{capture}: ours only: {url} {sha} {size}"));
            }
        }
        for t in unmatched {
            problems.push(format!(
                "{capture}: tshark only: {} {} {}",
                t.name, t.sha256, t.size
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!("{exported_total} objects exported by tshark, {matched} of PiTap's matched");
    assert!(
        exported_total >= 50,
        "only {exported_total} objects exported"
    );
}

/// The flow a file record names is one of the capture's flow records.
#[test]
fn file_records_name_their_flows() {
    let file = real_pcap("zeek__http_pipelined-requests.pcap");
    let flows = flows_json(&file, &[]);
    let files = files_json(&file);
    assert_eq!(files.len(), 5);
    let key = |v: &Value| {
        (
            v["start_ms"].as_u64(),
            v["src_addr"].clone(),
            v["src_port"].clone(),
            v["dst_addr"].clone(),
            v["dst_port"].clone(),
        )
    };
    let flow_keys: BTreeMap<_, ()> = flows
        .iter()
        .map(|f| (format!("{:?}", key(f)), ()))
        .collect();
    for f in &files {
        assert!(
            flow_keys.contains_key(&format!("{:?}", key(f))),
            "no flow for {f}"
        );
        assert_eq!(f["file_sha256"].as_str().map(str::len), Some(64));
        assert_eq!(f["file_sha1"].as_str().map(str::len), Some(40));
        assert_eq!(f["file_md5"].as_str().map(str::len), Some(32));
    }
    // Pipelined: five objects on one connection, in request order.
    let mimes: Vec<_> = files
        .iter()
        .map(|f| f["file_mime"].as_str().unwrap())
        .collect();
    assert_eq!(
        mimes,
        [
            "text/plain",
            "text/plain",
            "image/gif",
            "image/png",
            "image/png"
        ]
    );
}
