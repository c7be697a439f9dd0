//! The web UI in a real headless Chromium (tests/web/ui.mjs, playwright-core
//! over the DevTools protocol) against `pitap serve` on a store filled from
//! real captures through pitapd and the sealed uplink: every page loads
//! without a console error, the overview's byte total is `pitap query
//! --sum bytes`'s, a quick value's bar narrows the search, the DHCP client's
//! device page names it, hostile names render as text; and the bind and
//! login rules, over plain HTTP.
//!
//! `PITAP_SCREENSHOTS=DIR` keeps a screenshot of each page there
//! (scripts/screenshots.sh puts them into docs/).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::traffic::{client_hello, host, Session, Traffic};
use common::*;

const HOSTILE_SNI: &str =
    "\"><img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";
const HOSTILE_HOST: &str = "<svg onload=window.__pwned=3>.example";

fn pitap(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(args)
        .output()
        .expect("pitap");
    assert!(
        out.status.success(),
        "pitap {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A store with the real DHCP and HTTP captures and a written one whose
/// TLS and HTTP names are payloads, each replayed by pitapd as a tap.
fn filled_store(dir: &Path) -> PathBuf {
    let names = dir.join("names.pcap");
    let mut t = Traffic::default();
    let (client, server) = (host(0x11, [172, 30, 1, 5]), host(0x22, [198, 51, 100, 9]));
    t.session(
        1_000,
        client,
        41_000,
        server,
        443,
        Session::Payload {
            first: client_hello(HOSTILE_SNI.as_bytes()),
            down: 900,
        },
    );
    t.session(
        2_000,
        client,
        41_001,
        server,
        80,
        Session::Payload {
            first: format!("GET / HTTP/1.1\r\nHost: {HOSTILE_HOST}\r\n\r\n").into_bytes(),
            down: 500,
        },
    );
    for i in 0..5u16 {
        t.session(
            3_000 + u64::from(i) * 500,
            client,
            42_000 + i,
            host(0x30, [198, 51, 100, 20]),
            22,
            Session::Complete { up: 300, down: 700 },
        );
    }
    t.write(&names);
    let (config, keys) = keygen(dir, &["edge", "dhcp", "web"]);
    let (child, addr) = start_collector(&config, &["--idle-exit", "3"]);
    replay_to(&names, &addr, "edge", &keys[0]);
    replay_to(&real_pcap("zeek__dhcp_dhcp.pcap"), &addr, "dhcp", &keys[1]);
    replay_to(
        &real_pcap("zeek__http_bro.org.pcap"),
        &addr,
        "web",
        &keys[2],
    );
    finish(child);
    store_in(dir)
}

/// `pitap serve` on an ephemeral port; returns it and its address.
fn serve(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pitap serve");
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("pitap: serving the web UI on http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_pages_in_chromium_show_the_store_and_run_no_payload() {
    let dir = temp_dir("web-ui");
    let store = filled_store(&dir);
    let s = store.to_str().unwrap();
    let total: u64 = pitap(&[
        "query", "--store", s, "--since", "0", "--sum", "bytes", "--by", "dst_addr",
    ])
    .lines()
    .last()
    .and_then(|l| l.rsplit(' ').next())
    .and_then(|n| n.parse().ok())
    .expect("a total");
    let counts: BTreeMap<String, String> = pitap(&[
        "query", "--store", s, "--since", "0", "--top", "dst_addr", "--limit", "1000",
    ])
    .lines()
    .skip(1)
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        let (a, n) = (w.next()?, w.next()?);
        a.parse::<std::net::IpAddr>().ok()?;
        Some((a.to_string(), n.to_string()))
    })
    .collect();
    // GeoIP from a database the test writes: the written capture's servers
    // in CN, bro.org's in US.
    let geo = dir.join("countries.mmdb");
    std::fs::write(
        &geo,
        common::mmdb::write(
            "GeoLite2-Country",
            vec![
                ([198, 51, 100, 0], 24, common::mmdb::country("CN")),
                ([192, 150, 187, 0], 24, common::mmdb::country("US")),
            ],
        ),
    )
    .unwrap();
    let config = dir.join("web.toml");
    std::fs::write(
        &config,
        format!("[geoip]\ncountry = \"{}\"\n", geo.display()),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let countries: BTreeMap<String, String> = pitap(&[
        "query",
        "--store",
        s,
        "--config",
        c,
        "--since",
        "0",
        "--top",
        "dst_country",
    ])
    .lines()
    .skip(1)
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        let (code, n) = (w.next()?, w.next()?);
        (code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase()))
            .then(|| (code.to_string(), n.to_string()))
    })
    .collect();
    assert_eq!(countries.len(), 2, "{countries:?}");
    let (child, addr) = serve(&["--store", s, "--config", c, "--listen", "127.0.0.1:0"]);
    let _server = Server(child);
    let shots = std::env::var("PITAP_SCREENSHOTS").unwrap_or_default();
    let input = serde_json::json!({
        "base": format!("http://{addr}"),
        "shots": shots,
        "expect": {
            "total_bytes": total,
            "counts": counts,
            "countries": countries,
            "dhcp_mac": "90:b1:1c:99:49:29",
            "dhcp_hostname": "btest.is.cool",
            "hostile_sni": HOSTILE_SNI,
            "live": true,
        }
    });
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "tests/web/node_modules is missing: scripts/setup.sh installs it (npm ci)"
    );
    let out = Command::new("node")
        .arg(web.join("ui.mjs"))
        .arg(input.to_string())
        .current_dir(&web)
        .output()
        .expect("node (scripts/setup.sh installs Node.js and Chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script's JSON");
    assert_eq!(result["problems"], serde_json::json!([]), "{result}");
    assert!(out.status.success());
    assert_eq!(result["seen"]["total_bytes"], total.to_string());
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request; returns the status, the headers and the body.
fn http(addr: &str, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

#[test]
fn other_addresses_need_a_password_and_pages_need_a_session() {
    let dir = temp_dir("web-auth");
    let store = dir.join("empty.db");
    pitap_wire_empty_store(&store);
    let s = store.to_str().unwrap();
    // No password: any address but loopback is refused, naming the fix.
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["serve", "--store", s, "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a password") && err.contains("web-password"),
        "{err}"
    );

    // With a password (from pitap web-password): a login, then pages.
    let mut hash = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .arg("web-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hash.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    let lines = hash.wait_with_output().unwrap();
    assert!(lines.status.success());
    let config = dir.join("collector.toml");
    std::fs::write(&config, &lines.stdout).unwrap();
    let (child, addr) = serve(&[
        "--store",
        s,
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    let _server = Server(child);
    let port = addr.rsplit(':').next().unwrap();
    let local = format!("127.0.0.1:{port}");
    let (status, head, _) = http(
        &local,
        "GET /search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("Location: /login?to=%2Fsearch"), "{head}");
    assert!(
        head.contains("Content-Security-Policy") && head.contains("frame-ancestors 'none'"),
        "{head}"
    );
    assert!(head.contains("X-Frame-Options: DENY"), "{head}");
    let login = |password: &str| {
        let body = format!("password={password}");
        http(
            &local,
            &format!(
                "POST /login?to=%2Fsearch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let (status, _, body) = login("wrong+password");
    assert_eq!(status, 403);
    assert!(body.contains("Wrong password"));
    let (status, head, _) = login("correct+horse+battery");
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("Location: /search"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    let (status, _, body) = http(
        &local,
        &format!(
            "GET /search HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200);
    assert!(body.contains("<h1>Search</h1>"));
    // No GeoIP database: the map says how to add one.
    assert!(body.contains("id=\"no-geoip\"") && body.contains("[geoip] country"));
    // Garbage in every parameter: a page or a clear error, never a crash.
    for path in [
        "/search?q=%FF%FE%00&range=zzz",
        "/search?q=bytes%3A%3E&page=99999999999999999999999&sort=%3Cscript%3E&order=x",
        "/search?range=custom&since=yesterday",
        "/search?qv=nosuchfield",
        "/flow?start=notanumber&src=%22%3E",
        "/device?mac=%3Cimg%20src%3Dx%3E",
        "/?tap=%22%3E%3Cscript%3E&range=all",
        "/reports?range=-5h",
        "/nothing-here",
    ] {
        let (status, _, body) = http(
            &local,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(matches!(status, 200 | 400 | 404), "{path}: {status}");
        assert!(
            !body.contains("<script>") && !body.contains("<img"),
            "{path}: {body}"
        );
    }
    // A made-up session is not one.
    let (status, _, _) = http(
        &local,
        "GET /search HTTP/1.1\r\nHost: x\r\nCookie: pitap_session=00ff\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 303);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty store, made the way the collector makes one.
fn pitap_wire_empty_store(path: &Path) {
    pitap::store::Store::open(path).expect("store");
}
