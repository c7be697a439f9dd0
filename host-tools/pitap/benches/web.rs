//! The web UI's pages over a store of N generated flows (default 1M),
//! each asked over HTTP from `pitap serve`'s own server in this process:
//! best of 3 per page, in ms. `cargo bench -p pitap --bench web`;
//! `PITAP_BENCH_FLOWS` for another size.

// Shared with the other benches; this one needs only the records.
#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pitap::flow::StoredFlow;
use pitap::networks::Networks;
use pitap::store::Store;
use pitap::web::{self, pages::Site};

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("read");
    let text = String::from_utf8_lossy(&body);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text.into_owned())
}

fn main() {
    let flows: u64 = std::env::var("PITAP_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("pitap-web-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("flows.db");
    let mut table = BTreeMap::new();
    table.insert("internal".to_string(), vec!["172.30.0.0/16".to_string()]);
    table.insert("servers".to_string(), vec!["198.51.100.0/26".to_string()]);
    let networks = Networks::from_config(&table).expect("networks");
    {
        let mut store = Store::open(&path).expect("store");
        store.save_networks(&networks).expect("networks");
        let mut batch = Vec::with_capacity(16_384);
        for i in 0..flows {
            batch.push(StoredFlow::new(
                support::TAP.into(),
                support::record(i),
                &networks,
            ));
            if batch.len() == 16_384 {
                store.commit(&batch, &[], None).expect("commit");
                batch.clear();
            }
        }
        store.commit(&batch, &[], None).expect("commit");
    }
    let addr = web::start(web::Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        site: Site {
            store: path.clone(),
            networks: None,
            sensitive: vec!["servers".into()],
            thresholds: pitap::report::Thresholds::default(),
            alert_files: Vec::new(),
        },
        password_hash: None,
        session: Duration::from_secs(3600),
    })
    .expect("web");
    let mac = "02:00:00:00:00:05";
    let r = support::record(flows / 2);
    let flow = format!(
        "/flow?tap={}&start={}&proto={}&src={}&sport={}&dst={}&dport={}",
        support::TAP,
        r.start_ms,
        r.proto,
        r.src.addr,
        r.src.port,
        r.dst.addr,
        r.dst.port
    );
    let pages = [
        ("overview", "/?range=all".to_string()),
        (
            "search: all flows, newest first",
            "/search?range=all".to_string(),
        ),
        (
            "search: a query, quick values of dst_port",
            "/search?range=all&qv=dst_port&q=proto%3Atcp+AND+dst_port%3A%5B1+TO+1023%5D"
                .to_string(),
        ),
        (
            "search: sorted by bytes, page 3",
            "/search?range=all&sort=bytes&page=2".to_string(),
        ),
        ("reports", "/reports?range=all".to_string()),
        ("devices", "/devices".to_string()),
        ("device", format!("/device?mac={mac}")),
        ("flow", flow),
    ];
    println!("{flows} flows in the store\n\n{HEADER}");
    let mut rows = Vec::new();
    for (name, path) in pages {
        let mut best = f64::MAX;
        let mut size = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let (status, body) = get(addr, &path);
            assert_eq!(status, 200, "{path}");
            // The flow page found its flow, the others their data.
            assert!(!body.contains("No such flow"), "{path}");
            let n = body.len();
            best = best.min(t.elapsed().as_secs_f64());
            size = n;
        }
        let row = format!("| {name} | {:.0} ms | {size} |", best * 1000.0);
        println!("{row}");
        rows.push(row);
    }
    if std::env::var_os("PITAP_BENCH_WRITE").is_some() {
        write_section(flows, &rows);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const SECTION: &str = "## The web UI's pages";
const HEADER: &str = "| page | best of 3 | bytes |\n|---|---|---|";

/// Replaces BENCHMARKS.md's web UI section (after the flow store's, which
/// scripts/bench.sh keeps with it).
fn write_section(flows: u64, rows: &[String]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let head = old.split(SECTION).next().unwrap_or("").trim_end();
    let text = format!(
        "{head}\n\n{SECTION}\n\nProduced by `PITAP_BENCH_WRITE=1 cargo bench -p pitap --bench web` on {} cores: \
         each page asked over HTTP from `pitap serve`'s server over a store of {flows} generated flows \
         (the window: all of them), best of 3, response bytes beside.\n\n{HEADER}\n{}\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        rows.join("\n")
    );
    std::fs::write(&path, text).expect("write BENCHMARKS.md");
    println!("wrote {}", path.display());
}
