//! The store's own tests: flows come back as they went in, in start
//! order, across merges; retention removes exactly what it should; a
//! damaged column is an error naming it, never a panic.

use std::net::IpAddr;

use pitap_wire::FlowRecord;

use super::engine::{Aggregate, Scope};
use super::*;
use crate::progress::Progress;
use crate::query::{parse, Expr};

fn flow(i: u64, end_ms: u64) -> StoredFlow {
    let mut record = FlowRecord {
        start_ms: end_ms - 10,
        end_ms,
        proto: pitap_wire::proto::UDP,
        ..FlowRecord::default()
    };
    record.src.addr = IpAddr::from([10, 0, 0, (i % 200) as u8]);
    record.src.mac = [2, 0, 0, 0, 0, (i % 200) as u8];
    record.src.port = 1000 + (i % 7) as u16;
    record.src.counters.packets = 1;
    record.src.counters.bytes = 100 + i;
    StoredFlow {
        tap: format!("t{}", i % 3),
        record,
        enrichment: Default::default(),
    }
}

fn temp_store(name: &str) -> (std::path::PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!("pitap-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.db");
    let store = Store::open(&path).unwrap();
    (dir, store)
}

fn all(store: &Store) -> Vec<StoredFlow> {
    let networks = Networks::default();
    let scope = Scope {
        since_ms: 0,
        until_ms: u64::MAX,
        networks: &networks,
    };
    let mut back = Vec::new();
    store
        .scan(&Expr::All, &scope, &mut Progress::silent(), |f| {
            back.push(f.clone())
        })
        .unwrap();
    back
}

#[test]
fn flows_come_back_in_start_order_across_merges() {
    let (dir, mut store) = temp_store("merge");
    // Commits of 10,000 out of order by start, so the level-0 segments
    // overlap and merge into full segments and a remainder.
    let mut flows: Vec<StoredFlow> = (0..150_000u64)
        .map(|i| flow(i, 1_000_000 + (i * 7919) % 150_000 * 10))
        .collect();
    for chunk in flows.chunks(10_000) {
        store.commit(chunk, &[], None).unwrap();
    }
    assert_eq!(store.count().unwrap(), 150_000);
    let levels = metas(&store.conn, "ORDER BY id", []).unwrap();
    assert_eq!(
        levels.iter().filter(|m| m.level == 1).count(),
        2,
        "{levels:?}"
    );
    assert!(levels.iter().all(|m| m.level == 1 || m.rows < SEGMENT_ROWS));
    flows.sort_by_key(|f| f.record.start_ms);
    let back = all(&store);
    assert_eq!(back.len(), flows.len());
    assert!(back
        .windows(2)
        .all(|w| w[0].record.start_ms <= w[1].record.start_ms));
    let key = |f: &StoredFlow| (f.record.start_ms, f.record.src.counters.bytes);
    let mut a: Vec<_> = back.iter().map(key).collect();
    let mut b: Vec<_> = flows.iter().map(key).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert_eq!(
        back.iter()
            .find(|f| f.record.src.counters.bytes == 142)
            .unwrap(),
        &flows
            .iter()
            .find(|f| f.record.src.counters.bytes == 142)
            .unwrap()
            .clone()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rows_round_trip_and_retention_removes_the_oldest() {
    let (dir, mut store) = temp_store("retention");
    let flows: Vec<StoredFlow> = (0..5000).map(|i| flow(i, 1_000_000 + i * 1000)).collect();
    store.commit(&flows, &[], Some("{\"x\":1}")).unwrap();
    assert_eq!(store.saved_state().unwrap().as_deref(), Some("{\"x\":1}"));
    assert_eq!(all(&store), flows);
    assert_eq!(store.devices().unwrap().len(), 200);
    // By age: everything that ended before 3,000 s goes.
    let deleted = store
        .apply_retention(
            Retention {
                max_age_ms: Some(2_000_000),
                max_bytes: None,
            },
            5_000_000,
        )
        .unwrap();
    assert_eq!(deleted, 2000);
    assert_eq!(store.count().unwrap(), 3000);
    assert_eq!(all(&store), flows[2000..]);
    // By size: the oldest go until the data fits. A third of what the
    // flows take is over the limit (the empty tables take their pages too).
    let before = store.used_bytes().unwrap();
    let (empty_dir, empty) = temp_store("retention-empty");
    let over = (before - empty.used_bytes().unwrap()) / 3;
    let _ = std::fs::remove_dir_all(&empty_dir);
    store
        .apply_retention(
            Retention {
                max_age_ms: None,
                max_bytes: Some(before - over),
            },
            5_000_000,
        )
        .unwrap();
    assert!(store.used_bytes().unwrap() <= before - over);
    let left = all(&store);
    assert!(!left.is_empty() && left.len() < 3000, "{}", left.len());
    assert_eq!(left, flows[5000 - left.len()..], "the newest rows stay");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_column_is_an_error_naming_it() {
    let (dir, mut store) = temp_store("damage");
    let flows: Vec<StoredFlow> = (0..100).map(|i| flow(i, 1_000_000 + i)).collect();
    store.commit(&flows, &[], None).unwrap();
    store
        .conn
        .execute(
            "UPDATE columns SET data = substr(data, 1, length(data) - 1) WHERE name = 'dst_port'",
            [],
        )
        .unwrap();
    let networks = Networks::default();
    let scope = Scope {
        since_ms: 0,
        until_ms: u64::MAX,
        networks: &networks,
    };
    let e = store
        .aggregate(
            &parse("dst_port:53").unwrap(),
            &scope,
            Aggregate::Count,
            &mut Progress::silent(),
        )
        .unwrap_err();
    assert!(e.contains("column dst_port: truncated"), "{e}");
    // A column that does not name its values.
    store
        .conn
        .execute(
            "UPDATE columns SET data = x'ff' WHERE name = 'src_addr'",
            [],
        )
        .unwrap();
    let e = store
        .scan(&Expr::All, &scope, &mut Progress::silent(), |_| {})
        .unwrap_err();
    assert!(e.contains("src_addr"), "{e}");
    // The untouched columns still answer.
    let t = store
        .aggregate(
            &parse("src_port:1000").unwrap(),
            &scope,
            Aggregate::Count,
            &mut Progress::silent(),
        )
        .unwrap();
    assert_eq!(t.matched, 15);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A device as the test compares them: mac, first, last, last address,
/// flows, hostname.
type DeviceRow = (String, u64, u64, String, u64, Option<String>);

/// What the devices of `flows` must be, counted the plain way.
fn devices_of(flows: &[StoredFlow]) -> Vec<DeviceRow> {
    type Acc = (u64, u64, IpAddr, u64, Option<String>);
    let mut by: BTreeMap<[u8; 6], Acc> = BTreeMap::new();
    for f in flows {
        let r = &f.record;
        let d = by
            .entry(r.src.mac)
            .or_insert((u64::MAX, 0, r.src.addr, 0, None));
        d.0 = d.0.min(r.start_ms);
        if r.end_ms >= d.1 {
            d.1 = r.end_ms;
            d.2 = r.src.addr;
        }
        d.3 += 1;
        if !r.names.client_hostname.is_empty() {
            d.4 = Some(r.names.client_hostname.as_str().to_string());
        }
    }
    let mut v: Vec<_> = by
        .into_iter()
        .map(|(mac, d)| {
            (
                pitap_wire::format::mac_text(&mac),
                d.0,
                d.1,
                d.2.to_string(),
                d.3,
                d.4,
            )
        })
        .collect();
    v.sort_by_key(|d| (d.1, d.0.clone()));
    v
}

fn devices_in(store: &Store) -> Vec<DeviceRow> {
    let mut v: Vec<_> = store
        .devices()
        .unwrap()
        .into_iter()
        .map(|d| {
            (
                d.mac,
                d.first_ms,
                d.last_ms,
                d.last_addr,
                d.flows,
                d.hostname,
            )
        })
        .collect();
    v.sort_by_key(|d| (d.1, d.0.clone()));
    v
}

#[test]
fn devices_count_every_flow_once_merged_waiting_or_trimmed() {
    let (dir, mut store) = temp_store("devices");
    // Each MAC keeps one address and one hostname; ends are distinct, so
    // the last address seen is well defined.
    let flows: Vec<StoredFlow> = (0..80_000u64)
        .map(|i| {
            let mut f = flow(i, 1_000_000 + (i * 7919) % 80_000 * 10);
            if i % 200 < 50 {
                f.record.names.client_hostname =
                    pitap_wire::Text::from_bytes(format!("host-{}", i % 200).as_bytes());
            }
            f
        })
        .collect();
    // 30,000 flows: all waiting in level 0, laid over the empty tables.
    for chunk in flows[..30_000].chunks(10_000) {
        store.commit(chunk, &[], None).unwrap();
    }
    assert!(metas(&store.conn, "WHERE counted = 1", [])
        .unwrap()
        .is_empty());
    assert_eq!(devices_in(&store), devices_of(&flows[..30_000]));
    // 80,000: one merge put 65,536 into the tables, the rest waits.
    for chunk in flows[30_000..].chunks(10_000) {
        store.commit(chunk, &[], None).unwrap();
    }
    let waiting = metas(&store.conn, "WHERE counted = 0", []).unwrap();
    assert!(!waiting.is_empty(), "some rows wait in level 0");
    assert_eq!(devices_in(&store), devices_of(&flows));
    assert_eq!(
        store.device_addrs("02:00:00:00:00:07").unwrap(),
        vec![(
            "10.0.0.7".to_string(),
            flows
                .iter()
                .filter(|f| f.record.src.mac[5] == 7)
                .map(|f| f.record.start_ms)
                .min()
                .unwrap(),
            flows
                .iter()
                .filter(|f| f.record.src.mac[5] == 7)
                .map(|f| f.record.end_ms)
                .max()
                .unwrap()
        )]
    );
    // Retention trims waiting segments: their flows leave the store, but
    // not the devices.
    let newest = flows.iter().map(|f| f.record.end_ms).max().unwrap();
    store
        .apply_retention(
            Retention {
                max_age_ms: Some(10),
                max_bytes: None,
            },
            newest,
        )
        .unwrap();
    assert!(store.count().unwrap() < 10);
    assert!(metas(&store.conn, "WHERE counted = 0", [])
        .unwrap()
        .is_empty());
    assert_eq!(devices_in(&store), devices_of(&flows));
    let _ = std::fs::remove_dir_all(&dir);
}
