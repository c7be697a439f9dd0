//! The flow store: one SQLite file (rusqlite, bundled SQLite) that `pitap
//! collect` fills and `pitap query`, `pitap report` and `pitap devices`
//! read. SQLite gives transactions, WAL (readers while the collector
//! writes) and the small tables; the flows themselves are segments of
//! typed columns in BLOBs ([`segment`], [`codec`]), which queries read
//! column by column ([`engine`]). Each commit stores its flows as one
//! segment with the collector's per-tap state in the same transaction, so
//! a batch is acknowledged only once its rows and the fact that they
//! arrived are both on disk: every flow is stored exactly once across
//! collector crashes. Small segments are merged as they add up to a full
//! one, in the transaction of the commit that fills it, and their rows go
//! into the devices tables then ([`devices`]). The schema is in
//! the README ("The flow store").

mod codec;
mod devices;
pub mod engine;
pub mod fetches;
pub mod files;
mod legacy;
pub mod segment;
pub mod updates;

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

pub use devices::Device;
use devices::Seen;
pub use files::{FileFilter, StoredFile};
use segment::{Decoded, Encoded, Meta, SEGMENT_ROWS};

use crate::fields::{Field, FieldType};
use crate::flow::StoredFlow;
use crate::networks::Networks;

/// 5: the files table, packet fetches, device hostnames over time;
/// 6: updates offered to taps and the taps' update status.
pub const SCHEMA_VERSION: i64 = 6;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS segments (
    id        INTEGER PRIMARY KEY,
    level     INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    min_start INTEGER NOT NULL,
    max_start INTEGER NOT NULL,
    min_end   INTEGER NOT NULL,
    max_end   INTEGER NOT NULL,
    -- 1: its rows are in the devices tables
    counted   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_start ON segments(max_start);
CREATE TABLE IF NOT EXISTS columns (
    segment INTEGER NOT NULL,
    name    TEXT NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (segment, name)
);
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
CREATE TABLE IF NOT EXISTS device_hostnames (
    mac      TEXT NOT NULL,
    hostname TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (mac, hostname)
);
CREATE TABLE IF NOT EXISTS collector_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Retention: rows older than `max_age_ms`, and the oldest rows while the
/// data takes more than `max_bytes`, are deleted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retention {
    pub max_age_ms: Option<u64>,
    pub max_bytes: Option<u64>,
}

pub struct Store {
    conn: Connection,
}

pub(crate) fn err(context: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("{context}: {e}")
}

/// SQLite integers are signed: times and counters past i64::MAX are kept
/// at i64::MAX.
pub(crate) fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn sql_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Writes a segment; returns its id.
pub(crate) fn insert_segment(conn: &Connection, s: &Encoded) -> Result<i64, String> {
    let m = &s.meta;
    conn.prepare_cached(
        "INSERT INTO segments (level, rows, min_start, max_start, min_end, max_end, counted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            m.level,
            m.rows as i64,
            sql_int(m.min_start),
            sql_int(m.max_start),
            sql_int(m.min_end),
            sql_int(m.max_end),
            m.counted
        ])
    })
    .map_err(err("store: segment"))?;
    let id = conn.last_insert_rowid();
    let mut insert = conn
        .prepare_cached("INSERT INTO columns (segment, name, data) VALUES (?1, ?2, ?3)")
        .map_err(err("store: column"))?;
    for (name, bytes) in &s.columns {
        insert
            .execute(params![id, name, bytes])
            .map_err(err("store: column"))?;
    }
    Ok(id)
}

fn delete_segment(conn: &Connection, id: i64) -> Result<(), String> {
    conn.execute("DELETE FROM columns WHERE segment = ?1", params![id])
        .and_then(|_| conn.execute("DELETE FROM segments WHERE id = ?1", params![id]))
        .map(|_| ())
        .map_err(err("store: deleting a segment"))
}

const SEGMENT_COLUMNS: &str = "id, level, rows, min_start, max_start, min_end, max_end, counted";

fn read_meta(r: &rusqlite::Row) -> rusqlite::Result<Meta> {
    Ok(Meta {
        id: r.get(0)?,
        level: r.get(1)?,
        rows: usize::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        min_start: sql_u64(r.get(3)?),
        max_start: sql_u64(r.get(4)?),
        min_end: sql_u64(r.get(5)?),
        max_end: sql_u64(r.get(6)?),
        counted: r.get(7)?,
    })
}

fn metas(conn: &Connection, filter: &str, p: impl rusqlite::Params) -> Result<Vec<Meta>, String> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {SEGMENT_COLUMNS} FROM segments {filter}"))
        .map_err(err("store: segments"))?;
    let rows = stmt
        .query_map(p, read_meta)
        .map_err(err("store: segments"))?;
    rows.collect::<Result<_, _>>()
        .map_err(err("store: segments"))
}

/// One column of a segment, decoded; a column the segment was written
/// without has no values.
fn read_column(
    conn: &Connection,
    m: &Meta,
    name: &str,
    ty: FieldType,
) -> Result<codec::Column, String> {
    let mut stmt = conn
        .prepare_cached("SELECT data FROM columns WHERE segment = ?1 AND name = ?2")
        .map_err(err("store: column"))?;
    let mut rows = stmt
        .query(params![m.id, name])
        .map_err(err("store: column"))?;
    match rows.next().map_err(err("store: column"))? {
        Some(row) => {
            let bytes = row
                .get_ref(0)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(err("store: column"))?;
            codec::Column::decode(bytes, m.rows, ty)
                .map_err(|e| format!("store: segment {} column {name}: {e}", m.id))
        }
        None => Ok(codec::Column::missing(m.rows)),
    }
}

/// One column's bytes, undecoded (None: the segment has no such column).
pub(crate) fn read_blob(
    conn: &Connection,
    m: &Meta,
    name: &str,
) -> Result<Option<Vec<u8>>, String> {
    let mut stmt = conn
        .prepare_cached("SELECT data FROM columns WHERE segment = ?1 AND name = ?2")
        .map_err(err("store: column"))?;
    stmt.query_row(params![m.id, name], |r| r.get::<_, Vec<u8>>(0))
        .optional()
        .map_err(err("store: column"))
}

/// A column from [`read_blob`]'s bytes.
pub(crate) fn decode_blob(
    bytes: Option<&[u8]>,
    m: &Meta,
    name: &str,
    ty: FieldType,
) -> Result<codec::Column, String> {
    match bytes {
        Some(bytes) => codec::Column::decode(bytes, m.rows, ty)
            .map_err(|e| format!("store: segment {} column {name}: {e}", m.id)),
        None => Ok(codec::Column::missing(m.rows)),
    }
}

fn read_all(conn: &Connection, m: &Meta) -> Result<Decoded, String> {
    let columns = segment::stored_fields()
        .map(|f| read_column(conn, m, f.name(), f.field_type()))
        .collect::<Result<_, _>>()?;
    Ok(Decoded {
        rows: m.rows,
        columns,
    })
}

/// Merges the level-0 segments once they hold a full segment's rows;
/// their rows go into the devices tables then.
fn compact(conn: &Connection) -> Result<(), String> {
    let small = metas(conn, "WHERE level = 0 ORDER BY id", [])?;
    if small.iter().map(|m| m.rows).sum::<usize>() < SEGMENT_ROWS {
        return Ok(());
    }
    let parts = small
        .iter()
        .map(|m| read_all(conn, m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = Seen::default();
    let networks = saved_networks(conn)?;
    for (m, d) in small.iter().zip(&parts) {
        if !m.counted {
            count_devices(&mut seen, d, &networks);
        }
        delete_segment(conn, m.id)?;
    }
    seen.write(conn)?;
    for mut s in segment::merge(&parts) {
        s.meta.counted = true;
        insert_segment(conn, &s)?;
    }
    Ok(())
}

/// The rows of a decoded segment into `seen`.
fn count_devices(seen: &mut Seen, d: &Decoded, networks: &Networks) {
    let columns: Vec<&codec::Column> = devices::COLUMNS
        .iter()
        .filter_map(|name| d.columns.get(segment::column_of(name)))
        .collect();
    seen.add_columns(&columns, d.rows, networks);
}

/// The rows of the segments not yet in the devices tables.
fn uncounted(conn: &Connection) -> Result<Seen, String> {
    let mut seen = Seen::default();
    let networks = saved_networks(conn)?;
    for m in metas(conn, "WHERE counted = 0", [])? {
        let columns = devices::COLUMNS
            .iter()
            .map(|name| {
                let ty = Field::parse(name).map_or(FieldType::Text, |f| f.field_type());
                read_column(conn, &m, name, ty)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&codec::Column> = columns.iter().collect();
        seen.add_columns(&refs, m.rows, &networks);
    }
    Ok(seen)
}

/// The networks the collector saved (none saved: none).
fn saved_networks(conn: &Connection) -> Result<Networks, String> {
    match value(conn, "networks")? {
        Some(text) => {
            let table: BTreeMap<String, Vec<String>> =
                serde_json::from_str(&text).map_err(|e| format!("store: saved networks: {e}"))?;
            Networks::from_config(&table).map_err(|e| format!("store: saved {e}"))
        }
        None => Ok(Networks::default()),
    }
}

fn value(conn: &Connection, name: &str) -> Result<Option<String>, String> {
    conn.query_row(
        "SELECT value FROM collector_state WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()
    .map_err(err("store: state"))
}

impl Store {
    /// Opens (or creates) the store. WAL lets `pitap query` read while the
    /// collector writes.
    pub fn open(path: &Path) -> Result<Store, String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ctx = path.display().to_string();
        // Larger pages: a column is one BLOB over a chain of overflow
        // pages, read in fewer, larger steps (only takes on a new file).
        conn.pragma_update(None, "page_size", 16_384)
            .map_err(err(&ctx))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err(&ctx))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err(&ctx))?;
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(err(&ctx))?;
        conn.pragma_update(None, "mmap_size", 1i64 << 32)
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
        if version < SCHEMA_VERSION {
            let tx = conn.unchecked_transaction().map_err(err(&ctx))?;
            tx.execute_batch(SCHEMA).map_err(err(&ctx))?;
            tx.execute_batch(files::SCHEMA).map_err(err(&ctx))?;
            tx.execute_batch(fetches::SCHEMA).map_err(err(&ctx))?;
            tx.execute_batch(updates::SCHEMA).map_err(err(&ctx))?;
            if (1..=3).contains(&version) {
                let moved = legacy::migrate(&tx, version)?;
                eprintln!(
                    "pitap: {ctx}: moved {moved} flows from schema {version} to {SCHEMA_VERSION}"
                );
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(err(&ctx))?;
            tx.commit().map_err(err(&ctx))?;
        }
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

    /// Stores flows, files and the collector's state in one transaction.
    pub fn commit(
        &mut self,
        flows: &[StoredFlow],
        files: &[StoredFile],
        state: Option<&str>,
    ) -> Result<(), String> {
        self.commit_with(flows, files, state, |_| Ok(()))
    }

    /// `commit`, with more work of the collector's (fetched packets) in
    /// the same transaction.
    pub fn commit_with(
        &mut self,
        flows: &[StoredFlow],
        files: &[StoredFile],
        state: Option<&str>,
        more: impl FnOnce(&Connection) -> Result<(), String>,
    ) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err("store"))?;
        files::insert(&tx, files)?;
        more(&tx)?;
        if !flows.is_empty() {
            let refs: Vec<&StoredFlow> = flows.iter().collect();
            insert_segment(&tx, &segment::encode(&refs, 0))?;
            compact(&tx)?;
        }
        if let Some(state) = state {
            set_value(&tx, "taps", state)?;
        }
        tx.commit().map_err(err("store: commit"))
    }

    fn value(&self, name: &str) -> Result<Option<String>, String> {
        value(&self.conn, name)
    }

    /// The earliest and latest start of a stored flow (None: no flows).
    pub fn time_bounds(&self) -> Result<Option<(u64, u64)>, String> {
        self.conn
            .query_row(
                "SELECT min(min_start), max(max_start) FROM segments",
                [],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .map(|(lo, hi)| lo.zip(hi).map(|(lo, hi)| (sql_u64(lo), sql_u64(hi))))
            .map_err(err("store"))
    }

    /// Changes whenever a commit stored flows: (newest segment, flows).
    pub fn change_mark(&self) -> Result<(i64, u64), String> {
        self.conn
            .query_row(
                "SELECT coalesce(max(id), 0), coalesce(sum(rows), 0) FROM segments",
                [],
                |r| Ok((r.get::<_, i64>(0)?, sql_u64(r.get::<_, i64>(1)?))),
            )
            .map_err(err("store"))
    }

    /// What the taps last said of themselves (JSON by tap: last_seen_ms,
    /// health), saved by the collector with its commits.
    pub fn saved_health(&self) -> Result<Option<String>, String> {
        self.value("health")
    }

    pub fn save_health(&mut self, text: &str) -> Result<(), String> {
        set_value(&self.conn, "health", text)
    }

    /// The collector state saved with the last commit.
    pub fn saved_state(&self) -> Result<Option<String>, String> {
        self.value("taps")
    }

    /// Remembers the named networks the collector runs with, for queries
    /// and reports that are given no collector.toml.
    pub fn save_networks(&mut self, networks: &Networks) -> Result<(), String> {
        let text = serde_json::to_string(&networks.table()).map_err(|e| e.to_string())?;
        set_value(&self.conn, "networks", &text)
    }

    /// `networks` if given, else the ones the collector last ran with.
    pub fn networks(&self, given: Option<Networks>) -> Result<Networks, String> {
        match given {
            Some(n) => Ok(n),
            None => saved_networks(&self.conn),
        }
    }

    /// The connection, for the fetch tables' functions.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The stored files that match, newest first.
    pub fn files(&self, filter: &FileFilter) -> Result<Vec<StoredFile>, String> {
        files::list(&self.conn, filter)
    }

    /// Deletes what the retention settings no longer keep; returns the rows deleted.
    pub fn apply_retention(&mut self, retention: Retention, now_ms: u64) -> Result<u64, String> {
        let mut deleted = 0u64;
        let tx = self.conn.transaction().map_err(err("store: retention"))?;
        if let Some(age) = retention.max_age_ms {
            let cut = now_ms.saturating_sub(age);
            for m in metas(&tx, "WHERE min_end < ?1", params![sql_int(cut)])? {
                deleted += keep_rows(&tx, &m, |d| rows_ending_from(d, cut))?;
            }
        }
        tx.commit().map_err(err("store: retention"))?;
        if let Some(max) = retention.max_bytes {
            // Pages in use (freed pages are reused, so the file stops growing).
            loop {
                let used = self.used_bytes()?;
                if used <= max {
                    break;
                }
                let tx = self.conn.transaction().map_err(err("store: retention"))?;
                let Some(oldest) = metas(&tx, "ORDER BY min_start, id LIMIT 1", [])?.pop() else {
                    break;
                };
                let size = segment_bytes(&tx, oldest.id)?.max(1);
                // Drop the oldest part of the oldest segment: what is over
                // the limit and a tenth more, at least one row.
                let over = (used - max) as f64 / size as f64;
                let drop =
                    ((oldest.rows as f64 * (over * 1.1)).ceil() as usize).clamp(1, oldest.rows);
                deleted += keep_rows(&tx, &oldest, |d| newest_rows(d, d.rows - drop))?;
                tx.commit().map_err(err("store: retention"))?;
            }
        }
        // Files go with the flows they crossed: none is older than the
        // oldest flow left (a file ends after its flow starts).
        if let Some(age) = retention.max_age_ms {
            files::delete_before(&self.conn, now_ms.saturating_sub(age))?;
        }
        if let Some((oldest, _)) = self.time_bounds()? {
            files::delete_before(&self.conn, oldest)?;
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
            .query_row("SELECT coalesce(sum(rows), 0) FROM segments", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(sql_u64)
            .map_err(err("store"))
    }

    /// A device's addresses, the most recently seen first: (address, first_ms, last_ms).
    pub fn device_addrs(&self, mac: &str) -> Result<Vec<(String, u64, u64)>, String> {
        let tx = self.conn.unchecked_transaction().map_err(err("store"))?;
        Ok(uncounted(&tx)?.addrs_over(mac, devices::addrs(&tx, mac)?))
    }

    /// Every hostname a device's leases gave it, the most recently seen
    /// first: (hostname, first_ms, last_ms).
    pub fn device_hostnames(&self, mac: &str) -> Result<Vec<(String, u64, u64)>, String> {
        let tx = self.conn.unchecked_transaction().map_err(err("store"))?;
        Ok(uncounted(&tx)?.hostnames_over(mac, devices::hostnames(&tx, mac)?))
    }

    /// Devices (MACs), first seen first.
    pub fn devices(&self) -> Result<Vec<Device>, String> {
        // One read transaction: a merge between the two reads would count
        // its rows twice.
        let tx = self.conn.unchecked_transaction().map_err(err("store"))?;
        Ok(uncounted(&tx)?.over(devices::all(&tx)?))
    }
}

fn set_value(conn: &Connection, name: &str, value: &str) -> Result<(), String> {
    conn.execute(
        "INSERT INTO collector_state (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )
    .map(|_| ())
    .map_err(err("store: state"))
}

fn segment_bytes(conn: &Connection, id: i64) -> Result<u64, String> {
    conn.query_row(
        "SELECT coalesce(sum(length(data)), 0) FROM columns WHERE segment = ?1",
        params![id],
        |r| r.get::<_, i64>(0),
    )
    .map(sql_u64)
    .map_err(err("store"))
}

fn rows_ending_from(d: &Decoded, cut: u64) -> Vec<usize> {
    let end = segment::column_of("end_ms");
    (0..d.rows)
        .filter(|&row| {
            d.columns
                .get(end)
                .and_then(|c| c.value(row))
                .is_some_and(|v| matches!(v, crate::fields::FieldValue::Num(n) if n >= cut))
        })
        .collect()
}

/// The `keep` rows that ended last.
fn newest_rows(d: &Decoded, keep: usize) -> Vec<usize> {
    let end = segment::column_of("end_ms");
    let mut rows: Vec<(u64, usize)> = (0..d.rows)
        .map(|row| {
            let e = match d.columns.get(end).and_then(|c| c.value(row)) {
                Some(crate::fields::FieldValue::Num(n)) => n,
                _ => 0,
            };
            (e, row)
        })
        .collect();
    rows.sort_unstable();
    let mut kept: Vec<usize> = rows[rows.len() - keep..].iter().map(|r| r.1).collect();
    kept.sort_unstable();
    kept
}

/// Rewrites a segment with only the rows `keep` picks (or deletes it);
/// returns the rows removed.
fn keep_rows(
    conn: &Connection,
    m: &Meta,
    keep: impl FnOnce(&Decoded) -> Vec<usize>,
) -> Result<u64, String> {
    let d = read_all(conn, m)?;
    let kept = keep(&d);
    if kept.len() == m.rows {
        return Ok(0);
    }
    // Flows leave the store, not the devices tables.
    if !m.counted {
        let mut seen = Seen::default();
        count_devices(&mut seen, &d, &saved_networks(conn)?);
        seen.write(conn)?;
    }
    delete_segment(conn, m.id)?;
    if !kept.is_empty() {
        let mut s = segment::select(&d, &kept, m.level);
        s.meta.counted = true;
        insert_segment(conn, &s)?;
    }
    Ok((m.rows - kept.len()) as u64)
}

#[cfg(test)]
mod tests;
