//! Stores written by earlier versions (schema 2: one text row per flow;
//! schema 3: plus clock and ring drops) open in this one with every flow,
//! device and the collector's state kept; a row the migration cannot read
//! stops it with an error and leaves the old store as it was.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use pitap::flow::StoredFlow;
use pitap::networks::Networks;
use pitap::progress::Progress;
use pitap::query::Expr;
use pitap::store::engine::Scope;
use pitap::store::Store;
use pitap_wire::format::mac_text;
use pitap_wire::{ClockState, ConnState, EndReason, FlowRecord, History, TapPort, Text};
use rusqlite::{params, Connection};

/// The flows table of schema 2, as `pitap` wrote it until schema 3.
const SCHEMA_2: &str = "
CREATE TABLE flows (
    id            INTEGER PRIMARY KEY,
    tap           TEXT NOT NULL,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    action        TEXT NOT NULL,
    proto         INTEGER NOT NULL,
    src_addr      TEXT NOT NULL,
    src_port      INTEGER,
    dst_addr      TEXT NOT NULL,
    dst_port      INTEGER,
    src_mac       TEXT NOT NULL,
    dst_mac       TEXT NOT NULL,
    src_pkts      INTEGER NOT NULL,
    src_bytes     INTEGER NOT NULL,
    dst_pkts      INTEGER NOT NULL,
    dst_bytes     INTEGER NOT NULL,
    pkts          INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    src_tcp_flags INTEGER NOT NULL,
    dst_tcp_flags INTEGER NOT NULL,
    conn_state    TEXT NOT NULL,
    history       TEXT NOT NULL,
    end_reason    TEXT NOT NULL,
    continuation  INTEGER NOT NULL,
    ingress       TEXT NOT NULL,
    vlan          INTEGER NOT NULL,
    inner_vlan    INTEGER NOT NULL,
    icmp_type     INTEGER,
    icmp_code     INTEGER,
    from_internal INTEGER NOT NULL,
    to_internal   INTEGER NOT NULL,
    src_group     TEXT,
    dst_group     TEXT,
    dst_name      TEXT,
    src_hostname  TEXT,
    sni           TEXT,
    alpn          TEXT,
    http_host     TEXT,
    http_request  TEXT
);
CREATE INDEX flows_start ON flows(start_ms);
CREATE INDEX flows_src ON flows(src_addr, start_ms);
CREATE INDEX flows_dst ON flows(dst_addr, start_ms);
CREATE TABLE devices (
    mac TEXT PRIMARY KEY, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
    last_addr TEXT NOT NULL, flows INTEGER NOT NULL, hostname TEXT
);
CREATE TABLE device_addrs (
    mac TEXT NOT NULL, addr TEXT NOT NULL, first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL, PRIMARY KEY (mac, addr)
);
CREATE TABLE collector_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
";

fn records() -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for i in 0..300u64 {
        let mut r = FlowRecord {
            start_ms: 1_700_000_000_000 + i * 1000,
            end_ms: 1_700_000_000_000 + i * 1000 + i,
            proto: [6, 17, 1, 58][(i % 4) as usize],
            conn_state: [ConnState::SF, ConnState::REJ, ConnState::S0][(i % 3) as usize],
            history: History::from_text("ShADadFf"),
            end_reason: EndReason::ALL[(i % 3) as usize],
            continuation: i % 5 == 0,
            ingress: [TapPort::A, TapPort::B][(i % 2) as usize],
            vlan: (i % 2) as u16 * 10,
            ..FlowRecord::default()
        };
        r.src.addr = if i % 7 == 0 {
            "2001:db8::5".parse().unwrap()
        } else {
            IpAddr::from([10, 0, 0, (i % 50) as u8])
        };
        r.dst.addr = IpAddr::from([198, 51, 100, (i % 9) as u8]);
        if pitap_wire::has_ports(r.proto) {
            r.src.port = 40_000 + i as u16;
            r.dst.port = 443;
        } else {
            r.icmp = Some((8, 0));
        }
        r.src.mac = [2, 0, 0, 0, 0, (i % 50) as u8];
        r.dst.mac = [0x3c, 0x22, 0xfb, 0, 0, 1];
        r.src.counters.packets = i + 1;
        r.src.counters.bytes = 100 * i;
        r.dst.counters.packets = i;
        r.dst.counters.bytes = 1000 * i;
        r.names.sni = Text::from_bytes(if i % 2 == 0 { b"example.com" } else { b"" });
        r.names.client_hostname = Text::from_bytes(b"<b>laptop</b>");
        out.push(r);
    }
    out
}

/// Writes `records` as the schema-2 (or, with `clock`, schema-3) insert did.
fn write_old_store(path: &Path, version: i64, rows: &[FlowRecord]) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA_2).unwrap();
    if version == 3 {
        conn.execute_batch(
            "ALTER TABLE flows ADD COLUMN clock TEXT NOT NULL DEFAULT 'unsynced';
             ALTER TABLE flows ADD COLUMN ring_drops INTEGER NOT NULL DEFAULT 0;",
        )
        .unwrap();
    }
    let text = |t: &str| (!t.is_empty()).then(|| t.to_string());
    for r in rows {
        let port = |p: u16| pitap_wire::has_ports(r.proto).then_some(p);
        conn.execute(
            "INSERT INTO flows (tap, start_ms, end_ms, duration_ms, action, proto,
             src_addr, src_port, dst_addr, dst_port, src_mac, dst_mac,
             src_pkts, src_bytes, dst_pkts, dst_bytes, pkts, bytes,
             src_tcp_flags, dst_tcp_flags, conn_state, history, end_reason,
             continuation, ingress, vlan, inner_vlan, icmp_type, icmp_code,
             from_internal, to_internal, src_group, dst_group,
             dst_name, src_hostname, sni, alpn, http_host, http_request)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
             ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28,
             ?29, 1, 0, 'old', NULL, ?30, ?31, ?32, ?33, ?34, ?35)",
            params![
                "old-tap",
                r.start_ms as i64,
                r.end_ms as i64,
                r.duration_ms() as i64,
                r.action().as_str(),
                r.proto,
                r.src.addr.to_string(),
                port(r.src.port),
                r.dst.addr.to_string(),
                port(r.dst.port),
                mac_text(&r.src.mac),
                mac_text(&r.dst.mac),
                r.src.counters.packets as i64,
                r.src.counters.bytes as i64,
                r.dst.counters.packets as i64,
                r.dst.counters.bytes as i64,
                r.total_packets() as i64,
                r.total_bytes() as i64,
                r.src.counters.tcp_flags,
                r.dst.counters.tcp_flags,
                r.conn_state.as_str(),
                r.history.as_str(),
                r.end_reason.as_str(),
                r.continuation,
                r.ingress.as_str(),
                r.vlan,
                r.inner_vlan,
                r.icmp.map(|(t, _)| t),
                r.icmp.map(|(_, c)| c),
                text(r.names.responder_name.as_str()),
                text(r.names.client_hostname.as_str()),
                text(r.names.sni.as_str()),
                text(r.names.alpn.as_str()),
                text(r.names.http_host.as_str()),
                text(r.names.http_request.as_str()),
            ],
        )
        .unwrap();
        if version == 3 {
            conn.execute(
                "UPDATE flows SET clock = 'synced', ring_drops = 4 WHERE id = last_insert_rowid()",
                [],
            )
            .unwrap();
        }
    }
    conn.execute(
        "INSERT INTO devices VALUES ('02:00:00:00:00:01', 1, 2, '10.0.0.1', 5, 'laptop')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO collector_state VALUES ('taps', '{\"taps\":{}}')",
        [],
    )
    .unwrap();
    conn.pragma_update(None, "user_version", version).unwrap();
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pitap-migrate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stored(store: &Store) -> Vec<StoredFlow> {
    let networks = Networks::default();
    let scope = Scope {
        since_ms: 0,
        until_ms: u64::MAX,
        networks: &networks,
    };
    let mut v = Vec::new();
    store
        .scan(&Expr::All, &scope, &mut Progress::silent(), |f| {
            v.push(f.clone())
        })
        .unwrap();
    v
}

#[test]
fn schema_2_and_3_stores_keep_every_flow() {
    for version in [2, 3] {
        let d = dir(&format!("v{version}"));
        let path = d.join("old.db");
        let rows = records();
        write_old_store(&path, version, &rows);
        let store = Store::open(&path).unwrap();
        let back = stored(&store);
        let want: Vec<FlowRecord> = rows
            .iter()
            .map(|r| FlowRecord {
                clock: if version == 3 {
                    ClockState::Synced
                } else {
                    ClockState::Unsynced
                },
                ring_drops: if version == 3 { 4 } else { 0 },
                ..*r
            })
            .collect();
        assert_eq!(back.len(), want.len());
        for (b, w) in back.iter().zip(&want) {
            assert_eq!(b.tap, "old-tap");
            assert_eq!(&b.record, w);
        }
        assert_eq!(
            store.devices().unwrap()[0].hostname.as_deref(),
            Some("laptop")
        );
        assert_eq!(
            store.saved_state().unwrap().as_deref(),
            Some("{\"taps\":{}}")
        );
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, pitap::store::SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'flows'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the old table is gone");
        drop(conn);
        // Opening again moves nothing twice.
        assert_eq!(stored(&Store::open(&path).unwrap()).len(), want.len());
        // And the command line reads it.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pitap"))
            .args(["query", "--since", "0", "--count", "--store"])
            .arg(&path)
            .arg("sni:example.com AND dst_port:443")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n = rows
            .iter()
            .filter(|r| r.names.sni.as_str() == "example.com" && r.dst.port == 443)
            .count();
        assert!(n > 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), n.to_string());
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn a_row_the_migration_cannot_read_leaves_the_old_store_as_it_was() {
    let d = dir("bad");
    let path = d.join("old.db");
    write_old_store(&path, 2, &records());
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE flows SET src_addr = 'ten.0.0.1' WHERE id = 150", [])
        .unwrap();
    let e = Store::open(&path).err().unwrap();
    assert!(e.contains("not an address"), "{e}");
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 300);
    let segments: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'segments'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(segments, 0, "nothing of the new schema was left behind");
    let _ = std::fs::remove_dir_all(&d);
}

/// A schema-4 store (columns, no files table) opens as schema 5 with every
/// flow, and takes files from then on.
#[test]
fn schema_4_stores_get_the_files_table() {
    let d = dir("v4");
    let path = d.join("v4.db");
    let rows = records();
    let networks = pitap::networks::Networks::default();
    let flows: Vec<StoredFlow> = rows
        .iter()
        .map(|r| StoredFlow::new("old-tap".into(), *r, &networks))
        .collect();
    Store::open(&path)
        .unwrap()
        .commit(&flows, &[], None)
        .unwrap();
    // What a schema-4 pitap left: the same, without the files table.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE files").unwrap();
    conn.pragma_update(None, "user_version", 4).unwrap();
    drop(conn);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(stored(&store).len(), rows.len());
    let file = pitap::store::StoredFile {
        tap: "old-tap".into(),
        file: pitap_wire::FileRecord {
            ts_ms: rows[0].end_ms,
            flow_start_ms: rows[0].start_ms,
            src_addr: rows[0].src.addr,
            src_port: rows[0].src.port,
            dst_addr: rows[0].dst.addr,
            dst_port: rows[0].dst.port,
            size: 10,
            ..Default::default()
        },
    };
    store
        .commit(&[], std::slice::from_ref(&file), None)
        .unwrap();
    let listed = store
        .files(&pitap::store::FileFilter {
            until_ms: u64::MAX,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed, vec![file]);
    let v: i64 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, pitap::store::SCHEMA_VERSION);
    let _ = std::fs::remove_dir_all(&d);
}
