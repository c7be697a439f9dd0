//! Flow store benchmark (not a test): ingest in flows/s, in transactions of
//! 64 batches' worth as `pitap collect` commits them, then `pitap query`
//! times over the whole store: `--top dst_addr` with no query, and with a
//! query (`action:ACCEPT AND dst_port:[1 TO 1023]`), and `--count` with a
//! CIDR term. Prints each figure.
//!
//! `cargo bench -p pitap --bench store` (10M flows, about 3 GB in
//! $TMPDIR); `PITAP_BENCH_FLOWS=1000000` for a quicker run.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use pitap::networks::Networks;
use pitap::search::{self, Output};
use pitap::store::{Store, StoredFlow};
use pitap_wire::{ConnState, Endpoint, FlowRecord, SideCounters};

fn record(i: u64) -> FlowRecord {
    let side = |a: u32, port: u16, n: u64| Endpoint {
        addr: IpAddr::V4(Ipv4Addr::from(a)),
        port,
        mac: [2, 0, 0, 0, (a >> 8) as u8, a as u8],
        counters: SideCounters {
            packets: n,
            bytes: n * 700,
            tcp_flags: 0x1b,
        },
    };
    // 4000 clients, 3000 servers (heavy-tailed: a few get most), 40 ports.
    let server = (i * i % 7919 % 3000) as u32;
    FlowRecord {
        start_ms: 1_760_000_000_000 + i * 3,
        end_ms: 1_760_000_000_000 + i * 3 + (i % 5000),
        proto: if i.is_multiple_of(10) { 17 } else { 6 },
        src: side(
            0xac1e_0000 + (i % 4000) as u32,
            40_000 + (i % 20_000) as u16,
            10 + i % 90,
        ),
        dst: side(
            0xc633_6400 + server,
            [443, 80, 22, 53, 8080][(i % 5) as usize] + (i % 8) as u16,
            8 + i % 70,
        ),
        vlan: 0,
        inner_vlan: 0,
        conn_state: if i.is_multiple_of(13) {
            ConnState::REJ
        } else {
            ConnState::SF
        },
        history: Default::default(),
        end_reason: pitap_wire::EndReason::TcpClose,
        continuation: false,
        ingress: pitap_wire::TapPort::A,
        icmp: None,
        names: Default::default(),
        clock: pitap_wire::ClockState::Synced,
        ring_drops: 0,
    }
}

fn main() {
    let flows: u64 = std::env::var("PITAP_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!("pitap-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("flows.db");
    let mut table = std::collections::BTreeMap::new();
    table.insert("internal".to_string(), vec!["172.30.0.0/16".to_string()]);
    let networks = Networks::from_config(&table).expect("networks");
    let mut store = Store::open(&path).expect("store");
    // One commit per group of 1024 batches of ~20 records, as the collector
    // commits under full load (PITAP_BENCH_COMMIT to try other sizes).
    let per_commit: usize = std::env::var("PITAP_BENCH_COMMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024 * 20);
    let start = Instant::now();
    let mut batch = Vec::with_capacity(per_commit);
    for i in 0..flows {
        let r = record(i);
        batch.push(StoredFlow {
            tap: "bench".into(),
            enrichment: networks.enrich(&r),
            record: r,
        });
        if batch.len() == per_commit || i + 1 == flows {
            store.commit(&batch, Some("{}")).expect("commit");
            batch.clear();
        }
    }
    let ingest = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "store ingest: {flows} flows in {ingest:.1} s = {:.0} flows/s ({per_commit} per commit), {:.0} bytes/flow on disk",
        flows as f64 / ingest,
        size as f64 / flows as f64
    );
    drop(store);
    for (label, query, output) in [
        (
            "--top dst_addr",
            "",
            Output::Top {
                field: pitap::fields::Field::DstAddr,
                limit: 10,
            },
        ),
        (
            "'action:ACCEPT AND dst_port:[1 TO 1023]' --top dst_addr",
            "action:ACCEPT AND dst_port:[1 TO 1023]",
            Output::Top {
                field: pitap::fields::Field::DstAddr,
                limit: 10,
            },
        ),
        (
            "'dst_addr:198.51.100.0/26 AND conn_state:REJ' --count",
            "dst_addr:198.51.100.0/26 AND conn_state:REJ",
            Output::Count,
        ),
    ] {
        let start = Instant::now();
        let mut out = Vec::new();
        let matched = search::run(
            &search::Options {
                store: path.clone(),
                query: query.into(),
                since_ms: 0,
                until_ms: u64::MAX,
                output,
            },
            &mut out,
        )
        .expect("query");
        let t = start.elapsed().as_secs_f64();
        println!(
            "query {label}: {matched} of {flows} flows matched in {t:.2} s ({:.2} M flows/s scanned)",
            flows as f64 / t / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
