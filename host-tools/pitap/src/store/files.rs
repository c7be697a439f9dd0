//! The files that crossed the taps' flows (HTTP bodies), one row each in a
//! plain table: they are few beside the flows, and looked up by hash. A
//! row names its flow by tap, start and ends, as the web UI's flow links
//! do; `file_*` query terms become terms on those flows here, before a
//! query's plan is made.

use std::net::IpAddr;

use pitap_wire::file::hex;
use pitap_wire::FileRecord;
use rusqlite::{params, Connection};

use super::{err, sql_int};
use crate::fields::{Field, FieldValue, Source};
use crate::query::{Expr, Match};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files (
    id            INTEGER PRIMARY KEY,
    tap           TEXT NOT NULL,
    ts_ms         INTEGER NOT NULL,
    flow_start_ms INTEGER NOT NULL,
    src_addr      TEXT NOT NULL,
    src_port      INTEGER NOT NULL,
    dst_addr      TEXT NOT NULL,
    dst_port      INTEGER NOT NULL,
    direction     TEXT NOT NULL,
    method        TEXT NOT NULL,
    url           TEXT NOT NULL,
    status        INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    missing       INTEGER NOT NULL,
    mime          TEXT NOT NULL,
    sha256        TEXT,
    sha1          TEXT,
    md5           TEXT,
    flags         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files(sha256);
CREATE INDEX IF NOT EXISTS files_by_sha1 ON files(sha1);
CREATE INDEX IF NOT EXISTS files_by_md5 ON files(md5);
CREATE INDEX IF NOT EXISTS files_by_time ON files(ts_ms);
";

/// A flow's start in a file record and in its flow record are stamped at
/// different moments on a live tap (the clock correction may move in
/// between): the flow is found within this much of it.
const START_SLACK_MS: u64 = 2_000;

/// A file as stored, with the tap that saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFile {
    pub tap: String,
    pub file: FileRecord,
}

impl StoredFile {
    /// One file as a JSON object, by the names `pitapd --files` uses.
    pub fn json(&self) -> serde_json::Value {
        pitap_wire::format::file_json(&self.file, &self.tap)
    }
}

/// Stores files in the transaction of their commit.
pub fn insert(conn: &Connection, files: &[StoredFile]) -> Result<(), String> {
    let mut st = conn
        .prepare_cached(
            "INSERT INTO files (tap, ts_ms, flow_start_ms, src_addr, src_port, dst_addr, dst_port,
             direction, method, url, status, size, missing, mime, sha256, sha1, md5, flags)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )
        .map_err(err("store: files"))?;
    for s in files {
        let f = &s.file;
        let h = f.hashes.as_ref();
        st.execute(params![
            s.tap,
            sql_int(f.ts_ms),
            sql_int(f.flow_start_ms),
            f.src_addr.to_string(),
            f.src_port,
            f.dst_addr.to_string(),
            f.dst_port,
            f.direction.as_str(),
            f.method.as_str(),
            f.url.as_str(),
            f.status,
            sql_int(f.size),
            sql_int(f.missing),
            f.mime.as_str(),
            h.map(|h| hex(&h.sha256)),
            h.map(|h| hex(&h.sha1)),
            h.map(|h| hex(&h.md5)),
            f.flag_names().collect::<Vec<_>>().join(","),
        ])
        .map_err(err("store: files"))?;
    }
    Ok(())
}

/// Which files to list.
#[derive(Clone, Debug, Default)]
pub struct FileFilter {
    /// A SHA-256, SHA-1 or MD5 in hex (which, by its length).
    pub hash: Option<String>,
    /// Case-insensitive part of the URL.
    pub url: Option<String>,
    pub mime: Option<String>,
    pub since_ms: u64,
    pub until_ms: u64,
    pub limit: usize,
}

/// The hash column a hex digest of this length belongs to.
pub fn hash_column(hex: &str) -> Result<&'static str, String> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{hex:?}: a hash is hex digits"));
    }
    match hex.len() {
        64 => Ok("sha256"),
        40 => Ok("sha1"),
        32 => Ok("md5"),
        n => Err(format!(
            "{hex:?}: {n} hex digits is no SHA-256 (64), SHA-1 (40) or MD5 (32)"
        )),
    }
}

fn text(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    row.get(i)
}

fn digest<const N: usize>(hex: Option<String>) -> Option<[u8; N]> {
    let hex = hex?;
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The files that match, newest first.
pub fn list(conn: &Connection, f: &FileFilter) -> Result<Vec<StoredFile>, String> {
    let mut sql = String::from(
        "SELECT tap, ts_ms, flow_start_ms, src_addr, src_port, dst_addr, dst_port, direction,
         method, url, status, size, missing, mime, sha256, sha1, md5, flags
         FROM files WHERE ts_ms >= ?1 AND ts_ms < ?2",
    );
    let mut args: Vec<rusqlite::types::Value> =
        vec![sql_int(f.since_ms).into(), sql_int(f.until_ms).into()];
    if let Some(h) = &f.hash {
        sql += &format!(" AND {} = ?{}", hash_column(h)?, args.len() + 1);
        args.push(h.to_ascii_lowercase().into());
    }
    if let Some(u) = &f.url {
        sql += &format!(" AND instr(lower(url), lower(?{})) > 0", args.len() + 1);
        args.push(u.clone().into());
    }
    if let Some(m) = &f.mime {
        sql += &format!(" AND lower(mime) = lower(?{})", args.len() + 1);
        args.push(m.clone().into());
    }
    sql += &format!(" ORDER BY ts_ms DESC, id DESC LIMIT {}", f.limit.max(1));
    let mut st = conn.prepare(&sql).map_err(err("store: files"))?;
    let rows = st
        .query_map(rusqlite::params_from_iter(args), |r| {
            let addr = |i: usize| -> rusqlite::Result<IpAddr> {
                text(r, i)?.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        i,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            };
            let flags: String = r.get(17)?;
            let (sha256, sha1, md5) = (
                digest::<32>(r.get(14)?),
                digest::<20>(r.get(15)?),
                digest::<16>(r.get(16)?),
            );
            Ok(StoredFile {
                tap: r.get(0)?,
                file: FileRecord {
                    ts_ms: r.get::<_, i64>(1)?.max(0) as u64,
                    flow_start_ms: r.get::<_, i64>(2)?.max(0) as u64,
                    src_addr: addr(3)?,
                    src_port: r.get(4)?,
                    dst_addr: addr(5)?,
                    dst_port: r.get(6)?,
                    direction: pitap_wire::FileDirection::from_name(&text(r, 7)?)
                        .unwrap_or_default(),
                    method: pitap_wire::Text::from_bytes(text(r, 8)?.as_bytes()),
                    url: pitap_wire::Text::from_bytes(text(r, 9)?.as_bytes()),
                    status: r.get(10)?,
                    size: r.get::<_, i64>(11)?.max(0) as u64,
                    missing: r.get::<_, i64>(12)?.max(0) as u64,
                    mime: pitap_wire::Text::from_bytes(text(r, 13)?.as_bytes()),
                    hashes: match (sha256, sha1, md5) {
                        (Some(sha256), Some(sha1), Some(md5)) => {
                            Some(pitap_wire::FileHashes { sha256, sha1, md5 })
                        }
                        _ => None,
                    },
                    flags: pitap_wire::file_flags::NAMES
                        .iter()
                        .filter(|(_, n)| flags.split(',').any(|f| f == *n))
                        .fold(0, |acc, (bit, _)| acc | bit),
                },
            })
        })
        .map_err(err("store: files"))?;
    rows.collect::<Result<_, _>>().map_err(err("store: files"))
}

/// Deletes the files older than `cut_ms`.
pub fn delete_before(conn: &Connection, cut_ms: u64) -> Result<u64, String> {
    conn.execute(
        "DELETE FROM files WHERE ts_ms < ?1",
        params![sql_int(cut_ms)],
    )
    .map(|n| n as u64)
    .map_err(err("store: files"))
}

/// `expr` with every `file_*` term replaced by the flows whose files
/// match it (nothing, when no file does).
pub fn resolve(conn: &Connection, expr: &Expr) -> Result<Expr, String> {
    Ok(match expr {
        Expr::All => Expr::All,
        Expr::And(a, b) => Expr::And(Box::new(resolve(conn, a)?), Box::new(resolve(conn, b)?)),
        Expr::Or(a, b) => Expr::Or(Box::new(resolve(conn, a)?), Box::new(resolve(conn, b)?)),
        Expr::Not(a) => Expr::Not(Box::new(resolve(conn, a)?)),
        Expr::Term(f, m) => match f.source() {
            Source::File(column) => flows_of(conn, column, m)?,
            _ => expr.clone(),
        },
    })
}

fn flows_of(conn: &Connection, column: &str, m: &Match) -> Result<Expr, String> {
    // A hash given whole is looked up by its index; anything else is
    // tested on every file (there are few).
    let (sql, arg) = match m {
        Match::Text(t) if column != "mime" && column != "url" => (
            format!(
                "SELECT DISTINCT tap, flow_start_ms, src_addr, src_port, dst_addr, dst_port, {column}
                 FROM files WHERE {column} = ?1"
            ),
            Some(t.to_ascii_lowercase()),
        ),
        _ => (
            format!(
                "SELECT DISTINCT tap, flow_start_ms, src_addr, src_port, dst_addr, dst_port, {column}
                 FROM files"
            ),
            None,
        ),
    };
    let mut st = conn.prepare(&sql).map_err(err("store: files"))?;
    let read = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?.max(0) as u64,
            r.get::<_, String>(2)?,
            r.get::<_, u16>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, u16>(5)?,
            r.get::<_, Option<String>>(6)?,
        ))
    };
    let rows: Vec<_> = match &arg {
        Some(a) => st.query_map(params![a], read),
        None => st.query_map([], read),
    }
    .map_err(err("store: files"))?
    .collect::<Result<_, _>>()
    .map_err(err("store: files"))?;
    let field = |name: &str| Field::parse(name).ok_or_else(|| format!("no field {name}"));
    let (tap, start, src, sport, dst, dport) = (
        field("tap")?,
        field("start_ms")?,
        field("src_addr")?,
        field("src_port")?,
        field("dst_addr")?,
        field("dst_port")?,
    );
    let mut any: Option<Expr> = None;
    for (t, s, a, p, b, q, value) in rows {
        if !m.test(value.as_deref().map(FieldValue::Text)) {
            continue;
        }
        let (Ok(a), Ok(b)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>()) else {
            continue;
        };
        let terms = [
            Expr::Term(tap, Match::Text(t)),
            Expr::Term(src, Match::Addr(a)),
            Expr::Term(sport, Match::Num(u64::from(p))),
            Expr::Term(dst, Match::Addr(b)),
            Expr::Term(dport, Match::Num(u64::from(q))),
            Expr::Term(
                start,
                Match::Range(
                    Some(s.saturating_sub(START_SLACK_MS)),
                    Some(s.saturating_add(START_SLACK_MS)),
                ),
            ),
        ];
        let flow = terms
            .into_iter()
            .reduce(|x, y| Expr::And(Box::new(x), Box::new(y)))
            .unwrap_or(Expr::All);
        any = Some(match any {
            Some(e) => Expr::Or(Box::new(e), Box::new(flow)),
            None => flow,
        });
    }
    Ok(any.unwrap_or_else(|| Expr::Not(Box::new(Expr::All))))
}
