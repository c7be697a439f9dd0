//! Splunk HEC export and HTTPS webhooks (plain, Slack, Teams) against a
//! local HTTPS receiver (Python's http.server behind ssl) with a
//! certificate of a private CA this test makes with openssl. The receiver
//! answers 503 to its first requests, so batches and alerts are retried; every
//! flow arrives exactly once, with the token. With another CA the
//! collector refuses the receiver's certificate and sends nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

const RECEIVER: &str = r#"
import http.server, json, ssl, sys
cert, key, log, refuse = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        seen["n"] += 1
        code = 503 if seen["n"] <= refuse else 200
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "code": code,
                "auth": self.headers.get("Authorization"), "body": body}) + "\n")
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A private CA and a certificate for 127.0.0.1 it signed: (CA, leaf, key).
fn private_ca(dir: &Path, name: &str) -> (String, String, String) {
    let p = |ext: &str| dir.join(format!("{name}{ext}")).display().to_string();
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=pitap test CA"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("-ca.key"), p("-ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    run(&ca);
    let (key, csr, leaf, ext) = (p(".key"), p(".csr"), p(".pem"), p(".ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let mut req = vec!["req", "-subj", "/CN=127.0.0.1"];
    req.extend(ec);
    req.extend(["-keyout", &key, "-out", &csr]);
    run(&req);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &leaf,
    ]);
    (ca_pem, leaf, key)
}

struct Receiver {
    child: Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receiver(dir: &Path, cert: &str, key: &str, log: &Path, refuse: u32) -> Receiver {
    let script = dir.join("receiver.py");
    std::fs::write(&script, RECEIVER).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .args([cert, key, log.to_str().unwrap(), &refuse.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the receiver's port");
    Receiver { child, port }
}

fn requests(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn with_receivers(config: &Path, ca: &str, port: u16) -> std::path::PathBuf {
    let base = format!("https://127.0.0.1:{port}");
    let text = std::fs::read_to_string(config).unwrap()
        + &format!(
            "\n[tls]\nca_file = \"{ca}\"\n\n[export]\nsplunk_hec = \"{base}/services/collector/event\"\n\
             splunk_token = \"0b5a-tok\"\nsplunk_batch = 10\n\n\
             [[alert]]\nname = \"tcp <seen>\"\nquery = \"proto:TCP\"\nwindow_s = 3600\nthreshold = 1\n\
             actions = [\"webhook:{base}/hook\", \"slack:{base}/slack\", \"teams:{base}/teams\"]\n"
        );
    let path = config.with_file_name(format!("https-{port}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn hec_and_webhooks_over_https_with_retries() {
    let dir = temp_dir("https");
    let (config, keys) = keygen(&dir, &["lab"]);
    let (ca, cert, key) = private_ca(&dir, "receiver");
    let log = dir.join("requests.jsonl");
    let rx = receiver(&dir, &cert, &key, &log, 3);
    let pcap = real_pcap("zeek__wikipedia.pcap");
    let flows = printed(&pcap, "json", "lab").lines().count();

    let (child, addr) = start_collector(&with_receivers(&config, &ca, rx.port), &["--until-final"]);
    replay_to(&pcap, &addr, "lab", &keys[0]);
    let (_, stderr) = finish(child);
    assert!(
        stderr.contains(&format!("{flows} sent, 0 errors")),
        "{stderr}"
    );

    let all = requests(&log);
    let hec: Vec<_> = all
        .iter()
        .filter(|r| r["path"] == "/services/collector/event")
        .collect();
    assert!(
        hec.iter().any(|r| r["code"] == 503),
        "the first answers refuse"
    );
    let mut events = Vec::new();
    for r in hec.iter().filter(|r| r["code"] == 200) {
        assert_eq!(r["auth"], "Splunk 0b5a-tok");
        for line in r["body"].as_str().unwrap().lines() {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(e["host"], "lab");
            assert_eq!(e["sourcetype"], "pitap:flow");
            assert!(e["time"].as_f64().unwrap() > 1e9);
            events.push(
                e["event"]["community_id"].as_str().unwrap().to_string() + &e["time"].to_string(),
            );
        }
    }
    assert_eq!(events.len(), flows, "every flow once");
    events.sort();
    events.dedup();
    assert_eq!(events.len(), flows, "none twice");

    // The alert, as each receiver reads it (the rule's name is hostile).
    let body = |path: &str| -> serde_json::Value {
        let r = all
            .iter()
            .find(|r| r["path"] == path && r["code"] == 200)
            .unwrap_or_else(|| panic!("nothing accepted on {path}"));
        serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
    };
    assert_eq!(body("/hook")["alert"], "tcp <seen>");
    assert!(body("/slack")["text"].as_str().unwrap().contains("ALERT"));
    assert_eq!(body("/teams")["@type"], "MessageCard");

    // Another CA: the receiver's certificate is refused, nothing is sent.
    let (other, _, _) = private_ca(&dir, "other");
    let before = requests(&log).len();
    let (child, addr) = start_collector(
        &with_receivers(&config, &other, rx.port),
        &["--until-final"],
    );
    replay_to(&pcap, &addr, "lab", &keys[0]);
    let (_, stderr) = finish(child);
    assert!(
        stderr.contains(&format!("0 sent, {flows} errors")),
        "{stderr}"
    );
    assert_eq!(requests(&log).len(), before, "nothing reached the receiver");
}
