//! The flow store: one SQLite file (rusqlite, bundled SQLite) that `pitap
//! collect` fills and `pitap query`, `pitap report` and `sqlite3`/Grafana
//! read. Flows go in batched transactions; the collector's per-tap state
//! goes into the same transaction, so a batch is acknowledged only once its
//! rows and the fact that they arrived are both on disk: every flow is
//! stored exactly once across collector crashes. The schema is in the
//! README ("The flow store").

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use pitap_wire::format::mac_text;
use pitap_wire::{
    has_ports, ClockState, ConnState, EndReason, Endpoint, FlowRecord, History, SideCounters,
    TapPort, Text,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::networks::Enrichment;

pub const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flows (
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
    http_request  TEXT,
    clock         TEXT NOT NULL DEFAULT 'unsynced',
    ring_drops    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS flows_start ON flows(start_ms);
CREATE INDEX IF NOT EXISTS flows_src ON flows(src_addr, start_ms);
CREATE INDEX IF NOT EXISTS flows_dst ON flows(dst_addr, start_ms);
CREATE TABLE IF NOT EXISTS devices (
    mac       TEXT PRIMARY KEY,
    first_ms  INTEGER NOT NULL,
    last_ms   INTEGER NOT NULL,
    last_addr TEXT NOT NULL,
    flows     INTEGER NOT NULL,
    hostname  TEXT
);
CREATE TABLE IF NOT EXISTS device_addrs (
    mac      TEXT NOT NULL,
    addr     TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (mac, addr)
);
CREATE TABLE IF NOT EXISTS collector_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// One stored flow: the record as the tap sent it, its tap, and the fields
/// named networks gave it at ingest.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFlow {
    pub tap: String,
    pub record: FlowRecord,
    pub enrichment: Enrichment,
}

/// Retention: rows older than `max_age_ms`, and the oldest rows while the
/// data takes more than `max_bytes`, are deleted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retention {
    pub max_age_ms: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// A MAC address seen in flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub mac: String,
    pub first_ms: u64,
    pub last_ms: u64,
    pub last_addr: String,
    pub flows: u64,
    pub hostname: Option<String>,
}

pub struct Store {
    conn: Connection,
}

fn err(context: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("{context}: {e}")
}

/// What one commit saw of a device (a MAC).
struct DeviceSeen {
    first_ms: u64,
    last_ms: u64,
    last_addr: IpAddr,
    flows: u64,
    hostname: Option<String>,
}

/// Private, shared, link-local and unique-local addresses: on a LAN.
fn is_local(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private() || a.is_link_local() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// NULL for an empty name.
fn text(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

impl Store {
    /// Opens (or creates) the store. WAL lets `pitap query` read while the
    /// collector writes.
    pub fn open(path: &Path) -> Result<Store, String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ctx = path.display().to_string();
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err(&ctx))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err(&ctx))?;
        // The address indexes take inserts all over their B-trees: a page
        // cache of 2 MB (the default) turns each insert into reads. 256 MB
        // is an upper bound (the cache grows as used) and keeps ingest fast
        // to tens of millions of flows; mmap makes scans cheaper.
        conn.pragma_update(None, "cache_size", -262_144)
            .map_err(err(&ctx))?;
        conn.pragma_update(None, "mmap_size", 1i64 << 30)
            .map_err(err(&ctx))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err(&ctx))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err(&ctx))?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "{ctx}: schema version {version} is newer than this pitap ({SCHEMA_VERSION})"
            ));
        }
        if version == 1 {
            // Version 2 added the names a tap learns (DNS, DHCP, TLS, HTTP).
            conn.execute_batch(
                "ALTER TABLE flows ADD COLUMN dst_name TEXT;
                 ALTER TABLE flows ADD COLUMN src_hostname TEXT;
                 ALTER TABLE flows ADD COLUMN sni TEXT;
                 ALTER TABLE flows ADD COLUMN alpn TEXT;
                 ALTER TABLE flows ADD COLUMN http_host TEXT;
                 ALTER TABLE flows ADD COLUMN http_request TEXT;
                 ALTER TABLE devices ADD COLUMN hostname TEXT;",
            )
            .map_err(err(&ctx))?;
        }
        if (1..=2).contains(&version) {
            // Version 3: where a flow's times come from, and the frames the
            // tap's rings dropped while it was open. Older rows come from
            // taps that never synchronised their clocks.
            conn.execute_batch(
                "ALTER TABLE flows ADD COLUMN clock TEXT NOT NULL DEFAULT 'unsynced';
                 ALTER TABLE flows ADD COLUMN ring_drops INTEGER NOT NULL DEFAULT 0;",
            )
            .map_err(err(&ctx))?;
        }
        conn.execute_batch(SCHEMA).map_err(err(&ctx))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err(&ctx))?;
        Ok(Store { conn })
    }

    /// Opens an existing store for reading; a missing file is an error, not
    /// an empty store.
    pub fn open_existing(path: &Path) -> Result<Store, String> {
        if !path.exists() {
            return Err(format!(
                "{}: no flow store here (pitap collect --store makes one)",
                path.display()
            ));
        }
        Store::open(path)
    }

    /// Stores flows and the collector's state in one transaction.
    pub fn commit(&mut self, flows: &[StoredFlow], state: Option<&str>) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err("store"))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO flows (tap, start_ms, end_ms, duration_ms, action, proto,
                     src_addr, src_port, dst_addr, dst_port, src_mac, dst_mac,
                     src_pkts, src_bytes, dst_pkts, dst_bytes, pkts, bytes,
                     src_tcp_flags, dst_tcp_flags, conn_state, history, end_reason,
                     continuation, ingress, vlan, inner_vlan, icmp_type, icmp_code,
                     from_internal, to_internal, src_group, dst_group,
                     dst_name, src_hostname, sni, alpn, http_host, http_request,
                     clock, ring_drops)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                     ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28,
                     ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41)",
                )
                .map_err(err("store"))?;
            let mut devices: HashMap<[u8; 6], DeviceSeen> = HashMap::new();
            let mut addrs: HashMap<([u8; 6], IpAddr), (u64, u64)> = HashMap::new();
            for StoredFlow {
                tap,
                record: r,
                enrichment: e,
            } in flows
            {
                let port = |p: u16| has_ports(r.proto).then_some(p);
                insert
                    .execute(params![
                        tap,
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
                        e.from_internal,
                        e.to_internal,
                        e.src_group.as_deref(),
                        e.dst_group.as_deref(),
                        text(r.names.responder_name.as_str()),
                        text(r.names.client_hostname.as_str()),
                        text(r.names.sni.as_str()),
                        text(r.names.alpn.as_str()),
                        text(r.names.http_host.as_str()),
                        text(r.names.http_request.as_str()),
                        r.clock.as_str(),
                        r.ring_drops,
                    ])
                    .map_err(err("store: insert"))?;
                for (i, side) in [&r.src, &r.dst].into_iter().enumerate() {
                    // Only unicast station MACs name a device.
                    if side.mac == [0; 6] || side.mac[0] & 1 == 1 {
                        continue;
                    }
                    let d = devices.entry(side.mac).or_insert(DeviceSeen {
                        first_ms: r.start_ms,
                        last_ms: r.end_ms,
                        last_addr: side.addr,
                        flows: 0,
                        hostname: None,
                    });
                    if i == 0 && !r.names.client_hostname.is_empty() {
                        d.hostname = Some(r.names.client_hostname.as_str().to_string());
                    }
                    d.first_ms = d.first_ms.min(r.start_ms);
                    if r.end_ms >= d.last_ms {
                        d.last_ms = r.end_ms;
                        d.last_addr = side.addr;
                    }
                    d.flows += 1;
                    // Addresses over time, for local addresses only: a
                    // router's MAC stands for every outside address.
                    let internal = if i == 0 {
                        e.from_internal
                    } else {
                        e.to_internal
                    };
                    if internal || is_local(&side.addr) {
                        let a = addrs
                            .entry((side.mac, side.addr))
                            .or_insert((r.start_ms, r.end_ms));
                        a.0 = a.0.min(r.start_ms);
                        a.1 = a.1.max(r.end_ms);
                    }
                }
            }
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO devices (mac, first_ms, last_ms, last_addr, flows, hostname)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(mac) DO UPDATE SET
                       hostname = coalesce(excluded.hostname, hostname),
                       first_ms = min(first_ms, excluded.first_ms),
                       last_addr = CASE WHEN excluded.last_ms >= last_ms
                                   THEN excluded.last_addr ELSE last_addr END,
                       last_ms = max(last_ms, excluded.last_ms),
                       flows = flows + excluded.flows",
                )
                .map_err(err("store"))?;
            for (mac, d) in devices {
                upsert
                    .execute(params![
                        mac_text(&mac),
                        d.first_ms as i64,
                        d.last_ms as i64,
                        d.last_addr.to_string(),
                        d.flows as i64,
                        d.hostname
                    ])
                    .map_err(err("store: devices"))?;
            }
            let mut upsert_addr = tx
                .prepare_cached(
                    "INSERT INTO device_addrs (mac, addr, first_ms, last_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(mac, addr) DO UPDATE SET
                       first_ms = min(first_ms, excluded.first_ms),
                       last_ms = max(last_ms, excluded.last_ms)",
                )
                .map_err(err("store"))?;
            for ((mac, addr), (first, last)) in addrs {
                upsert_addr
                    .execute(params![
                        mac_text(&mac),
                        addr.to_string(),
                        first as i64,
                        last as i64
                    ])
                    .map_err(err("store: device addresses"))?;
            }
            if let Some(state) = state {
                tx.execute(
                    "INSERT INTO collector_state (name, value) VALUES ('taps', ?1)
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    params![state],
                )
                .map_err(err("store: state"))?;
            }
        }
        tx.commit().map_err(err("store: commit"))
    }

    /// The collector state saved with the last commit.
    pub fn saved_state(&self) -> Result<Option<String>, String> {
        self.conn
            .query_row(
                "SELECT value FROM collector_state WHERE name = 'taps'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(err("store: state"))
    }

    /// Deletes what the retention settings no longer keep; returns the rows deleted.
    pub fn apply_retention(&mut self, retention: Retention, now_ms: u64) -> Result<u64, String> {
        let mut deleted = 0u64;
        if let Some(age) = retention.max_age_ms {
            let cut = now_ms.saturating_sub(age) as i64;
            deleted += self
                .conn
                .execute("DELETE FROM flows WHERE end_ms < ?1", params![cut])
                .map_err(err("store: retention"))? as u64;
        }
        if let Some(max) = retention.max_bytes {
            // Pages in use (freed pages are reused, so the file stops growing).
            while self.used_bytes()? > max {
                let n = self
                    .conn
                    .execute(
                        "DELETE FROM flows WHERE id IN
                         (SELECT id FROM flows ORDER BY id LIMIT
                          max(1000, (SELECT count(*) FROM flows) / 10))",
                        [],
                    )
                    .map_err(err("store: retention"))?;
                if n == 0 {
                    break;
                }
                deleted += n as u64;
            }
        }
        Ok(deleted)
    }

    pub fn used_bytes(&self) -> Result<u64, String> {
        let q = |p: &str| -> Result<i64, String> {
            self.conn
                .pragma_query_value(None, p, |r| r.get(0))
                .map_err(err("store"))
        };
        Ok((q("page_count")? - q("freelist_count")?).max(0) as u64 * q("page_size")? as u64)
    }

    pub fn count(&self) -> Result<u64, String> {
        self.conn
            .query_row("SELECT count(*) FROM flows", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(err("store"))
    }

    /// Every flow that started in [since_ms, until_ms), oldest first.
    pub fn scan(
        &self,
        since_ms: u64,
        until_ms: u64,
        mut visit: impl FnMut(&StoredFlow),
    ) -> Result<u64, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tap, start_ms, end_ms, proto, src_addr, src_port, dst_addr, dst_port,
                 src_mac, dst_mac, src_pkts, src_bytes, dst_pkts, dst_bytes,
                 src_tcp_flags, dst_tcp_flags, conn_state, history, end_reason,
                 continuation, ingress, vlan, inner_vlan, icmp_type, icmp_code,
                 from_internal, to_internal, src_group, dst_group,
                 dst_name, src_hostname, sni, alpn, http_host, http_request,
                 clock, ring_drops
                 FROM flows WHERE start_ms >= ?1 AND start_ms < ?2 ORDER BY start_ms, id",
            )
            .map_err(err("store"))?;
        let mut rows = stmt
            .query(params![
                since_ms.min(i64::MAX as u64) as i64,
                until_ms.min(i64::MAX as u64) as i64
            ])
            .map_err(err("store"))?;
        let mut flow = StoredFlow {
            tap: String::new(),
            record: blank_record(),
            enrichment: Enrichment::default(),
        };
        let mut n = 0;
        while let Some(row) = rows.next().map_err(err("store"))? {
            read_row(row, &mut flow).map_err(err("store: a row"))?;
            visit(&flow);
            n += 1;
        }
        Ok(n)
    }

    /// A device's addresses, the most recently seen first: (address, first_ms, last_ms).
    pub fn device_addrs(&self, mac: &str) -> Result<Vec<(String, u64, u64)>, String> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT addr, first_ms, last_ms FROM device_addrs WHERE mac = ?1 ORDER BY last_ms DESC",
            )
            .map_err(err("store"))?;
        let rows = stmt
            .query_map(params![mac], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(err("store"))?;
        rows.collect::<Result<_, _>>().map_err(err("store"))
    }

    /// Devices (MACs), first seen first.
    pub fn devices(&self) -> Result<Vec<Device>, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT mac, first_ms, last_ms, last_addr, flows, hostname FROM devices ORDER BY first_ms",
            )
            .map_err(err("store"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Device {
                    mac: r.get(0)?,
                    first_ms: r.get::<_, i64>(1)? as u64,
                    last_ms: r.get::<_, i64>(2)? as u64,
                    last_addr: r.get(3)?,
                    flows: r.get::<_, i64>(4)? as u64,
                    hostname: r.get(5)?,
                })
            })
            .map_err(err("store"))?;
        rows.collect::<Result<_, _>>().map_err(err("store"))
    }
}

fn blank_record() -> FlowRecord {
    let side = Endpoint {
        addr: IpAddr::from([0, 0, 0, 0]),
        port: 0,
        mac: [0; 6],
        counters: SideCounters::default(),
    };
    FlowRecord {
        start_ms: 0,
        end_ms: 0,
        proto: 0,
        src: side,
        dst: side,
        vlan: 0,
        inner_vlan: 0,
        conn_state: ConnState::OTH,
        history: History::default(),
        end_reason: EndReason::ALL[0],
        continuation: false,
        ingress: TapPort::default(),
        icmp: None,
        names: Default::default(),
        clock: ClockState::Unsynced,
        ring_drops: 0,
    }
}

fn read_row(row: &rusqlite::Row, f: &mut StoredFlow) -> rusqlite::Result<()> {
    let text = |i: usize| row.get_ref(i).map(|v| v.as_str().unwrap_or(""));
    let num = |i: usize| row.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(0));
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("not {what}").into(),
        )
    };
    let tap = text(0)?;
    if f.tap != tap {
        f.tap = tap.to_string();
    }
    let r = &mut f.record;
    r.start_ms = num(1)? as u64;
    r.end_ms = num(2)? as u64;
    r.proto = num(3)? as u8;
    r.src.addr = text(4)?.parse().map_err(|_| bad(4, "an address"))?;
    r.src.port = num(5)? as u16;
    r.dst.addr = text(6)?.parse().map_err(|_| bad(6, "an address"))?;
    r.dst.port = num(7)? as u16;
    r.src.mac = parse_mac(text(8)?);
    r.dst.mac = parse_mac(text(9)?);
    r.src.counters.packets = num(10)? as u64;
    r.src.counters.bytes = num(11)? as u64;
    r.dst.counters.packets = num(12)? as u64;
    r.dst.counters.bytes = num(13)? as u64;
    r.src.counters.tcp_flags = num(14)? as u8;
    r.dst.counters.tcp_flags = num(15)? as u8;
    let state = text(16)?;
    r.conn_state = ConnState::from_name(state).ok_or_else(|| bad(16, "a conn_state"))?;
    r.history = History::from_text(text(17)?);
    let reason = text(18)?;
    r.end_reason = EndReason::from_name(reason).ok_or_else(|| bad(18, "an end reason"))?;
    r.continuation = num(19)? != 0;
    let ingress = text(20)?;
    r.ingress = TapPort::from_name(ingress).ok_or_else(|| bad(20, "a tap port"))?;
    r.vlan = num(21)? as u16;
    r.inner_vlan = num(22)? as u16;
    r.icmp = match (
        row.get::<_, Option<i64>>(23)?,
        row.get::<_, Option<i64>>(24)?,
    ) {
        (Some(t), Some(c)) => Some((t as u8, c as u8)),
        _ => None,
    };
    let r = &mut f.record;
    let e = &mut f.enrichment;
    e.from_internal = num(25)? != 0;
    e.to_internal = num(26)? != 0;
    e.src_group = row.get(27)?;
    e.dst_group = row.get(28)?;
    let n = &mut r.names;
    n.responder_name = Text::from_bytes(text(29)?.as_bytes());
    n.client_hostname = Text::from_bytes(text(30)?.as_bytes());
    n.sni = Text::from_bytes(text(31)?.as_bytes());
    n.alpn = Text::from_bytes(text(32)?.as_bytes());
    n.http_host = Text::from_bytes(text(33)?.as_bytes());
    n.http_request = Text::from_bytes(text(34)?.as_bytes());
    let clock = text(35)?;
    r.clock = ClockState::from_name(clock).ok_or_else(|| bad(35, "a clock state"))?;
    r.ring_drops = num(36)? as u32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(i: u64, end_ms: u64) -> StoredFlow {
        let mut record = blank_record();
        record.start_ms = end_ms - 10;
        record.end_ms = end_ms;
        record.proto = pitap_wire::proto::UDP;
        record.src.addr = IpAddr::from([10, 0, 0, (i % 200) as u8]);
        record.src.mac = [2, 0, 0, 0, 0, (i % 200) as u8];
        record.src.counters.packets = 1;
        record.src.counters.bytes = 100 + i;
        StoredFlow {
            tap: "t".into(),
            record,
            enrichment: Enrichment::default(),
        }
    }

    #[test]
    fn rows_round_trip_and_retention_removes_the_oldest() {
        let dir = std::env::temp_dir().join(format!("pitap-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        let mut store = Store::open(&path).unwrap();
        let flows: Vec<StoredFlow> = (0..5000).map(|i| flow(i, 1_000_000 + i * 1000)).collect();
        store.commit(&flows, Some("{\"x\":1}")).unwrap();
        assert_eq!(store.saved_state().unwrap().as_deref(), Some("{\"x\":1}"));
        let mut back = Vec::new();
        store.scan(0, u64::MAX, |f| back.push(f.clone())).unwrap();
        assert_eq!(back, flows);
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
        // By size: the oldest go until the data fits.
        let before = store.used_bytes().unwrap();
        store
            .apply_retention(
                Retention {
                    max_age_ms: None,
                    max_bytes: Some(before / 2),
                },
                5_000_000,
            )
            .unwrap();
        assert!(store.used_bytes().unwrap() <= before / 2);
        let mut oldest = u64::MAX;
        store
            .scan(0, u64::MAX, |f| oldest = oldest.min(f.record.end_ms))
            .unwrap();
        assert!(oldest > 3_000_000, "the newest rows stay");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
