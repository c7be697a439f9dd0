//! Updates: what `pitap update` offers a tap (a row with the signed
//! manifest and the image as it will travel, deflated when that is smaller,
//! picked up by the running collector), and what
//! each tap last said of its updates (its version, the state, how far an
//! image has come), for `pitap update --list` and the web UI.

use pitap_wire::messages::{ImageEncoding, UpdateStatus};
use rusqlite::{params, Connection, OptionalExtension};

use super::{err, sql_int, sql_u64};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS updates (
    id         INTEGER PRIMARY KEY,
    tap        TEXT NOT NULL,
    version    TEXT NOT NULL,
    manifest   BLOB NOT NULL,
    sha256     BLOB NOT NULL,
    size       INTEGER NOT NULL,
    -- the image as it travels: raw, or deflate (one RFC 1951 stream)
    encoding   TEXT NOT NULL,
    stream     BLOB NOT NULL,
    -- offered, done, refused, rolled back, replaced, cancelled
    state      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    ended_ms   INTEGER
);
CREATE TABLE IF NOT EXISTS update_status (
    tap      TEXT PRIMARY KEY,
    running  TEXT NOT NULL,
    partition INTEGER NOT NULL,
    state    TEXT NOT NULL,
    version  TEXT NOT NULL,
    have     INTEGER NOT NULL,
    total    INTEGER NOT NULL,
    detail   TEXT NOT NULL,
    seen_ms  INTEGER NOT NULL
);
";

/// An update as stored, without its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub id: u64,
    pub tap: String,
    pub version: String,
    pub manifest: Vec<u8>,
    pub sha256: [u8; 32],
    pub size: u64,
    pub state: String,
    pub detail: String,
    pub created_ms: u64,
}

/// The image as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub encoding: ImageEncoding,
    pub bytes: Vec<u8>,
}

impl Stream {
    /// The image deflated when that is smaller, else as it is.
    pub fn of(image: &[u8]) -> Stream {
        let deflated = miniz_oxide::deflate::compress_to_vec(image, 6);
        if deflated.len() < image.len() {
            Stream {
                encoding: ImageEncoding::Deflate,
                bytes: deflated,
            }
        } else {
            Stream {
                encoding: ImageEncoding::Raw,
                bytes: image.to_vec(),
            }
        }
    }
}

fn encoding_name(e: ImageEncoding) -> &'static str {
    match e {
        ImageEncoding::Raw => "raw",
        ImageEncoding::Deflate => "deflate",
    }
}

/// Offers an update to `tap` (`size`: the image's, as the manifest says);
/// an offer to it not taken yet is replaced.
#[allow(clippy::too_many_arguments)]
pub fn offer(
    conn: &Connection,
    tap: &str,
    version: &str,
    manifest: &[u8],
    sha256: &[u8; 32],
    size: u64,
    stream: &Stream,
    now_ms: u64,
) -> Result<u64, String> {
    let tx = conn.unchecked_transaction().map_err(err("store: update"))?;
    tx.execute(
        "UPDATE updates SET state = 'replaced', ended_ms = ?2
         WHERE tap = ?1 AND state = 'offered'",
        params![tap, sql_int(now_ms)],
    )
    .map_err(err("store: update"))?;
    tx.execute(
        "INSERT INTO updates (tap, version, manifest, sha256, size, encoding, stream, state, detail, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'offered', '', ?8)",
        params![
            tap,
            version,
            manifest,
            &sha256[..],
            sql_int(size),
            encoding_name(stream.encoding),
            stream.bytes,
            sql_int(now_ms)
        ],
    )
    .map_err(err("store: update"))?;
    let id = tx.last_insert_rowid();
    tx.commit().map_err(err("store: update"))?;
    Ok(id as u64)
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Update> {
    let digest: Vec<u8> = r.get(4)?;
    let mut sha256 = [0u8; 32];
    if digest.len() == 32 {
        sha256.copy_from_slice(&digest);
    }
    Ok(Update {
        id: sql_u64(r.get(0)?),
        tap: r.get(1)?,
        version: r.get(2)?,
        manifest: r.get(3)?,
        sha256,
        size: sql_u64(r.get(5)?),
        state: r.get(6)?,
        detail: r.get(7)?,
        created_ms: sql_u64(r.get(8)?),
    })
}

const COLUMNS: &str = "id, tap, version, manifest, sha256, size, state, detail, created_ms";

/// The offers not taken, refused or replaced yet.
pub fn offered(conn: &Connection) -> Result<Vec<Update>, String> {
    let mut st = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM updates WHERE state = 'offered' ORDER BY id"
        ))
        .map_err(err("store: update"))?;
    let rows = st.query_map([], read).map_err(err("store: update"))?;
    rows.collect::<Result<_, _>>().map_err(err("store: update"))
}

pub fn get(conn: &Connection, id: u64) -> Result<Option<Update>, String> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM updates WHERE id = ?1"),
        params![id as i64],
        read,
    )
    .optional()
    .map_err(err("store: update"))
}

/// Every update, newest first.
pub fn all(conn: &Connection) -> Result<Vec<Update>, String> {
    let mut st = conn
        .prepare(&format!("SELECT {COLUMNS} FROM updates ORDER BY id DESC"))
        .map_err(err("store: update"))?;
    let rows = st.query_map([], read).map_err(err("store: update"))?;
    rows.collect::<Result<_, _>>().map_err(err("store: update"))
}

pub fn stream(conn: &Connection, id: u64) -> Result<Stream, String> {
    let (encoding, bytes): (String, Vec<u8>) = conn
        .query_row(
            "SELECT encoding, stream FROM updates WHERE id = ?1",
            params![id as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(err("store: update image"))?;
    let encoding = match encoding.as_str() {
        "raw" => ImageEncoding::Raw,
        "deflate" => ImageEncoding::Deflate,
        other => return Err(format!("store: update {id}: unknown encoding {other:?}")),
    };
    Ok(Stream { encoding, bytes })
}

/// An offer ended: `done` (the tap runs it), `refused` (the tap said why).
pub fn end(
    conn: &Connection,
    id: u64,
    state: &str,
    detail: &str,
    now_ms: u64,
) -> Result<(), String> {
    conn.execute(
        "UPDATE updates SET state = ?2, detail = ?3, ended_ms = ?4
         WHERE id = ?1 AND state = 'offered'",
        params![id as i64, state, detail, sql_int(now_ms)],
    )
    .map_err(err("store: update"))?;
    Ok(())
}

/// A tap's last update status as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapUpdate {
    pub tap: String,
    pub running: String,
    pub partition: u8,
    pub state: String,
    pub version: String,
    pub have: u64,
    pub total: u64,
    pub detail: String,
    pub seen_ms: u64,
}

impl TapUpdate {
    /// "runs V from partition N: STATE [VERSION [have/total bytes (P %)]] [(detail)]"
    pub fn summary(&self) -> String {
        let progress = if self.total > 0 && self.state == "receiving" {
            format!(
                " {} {}/{} bytes ({:.0} %)",
                self.version,
                self.have,
                self.total,
                100.0 * self.have as f64 / self.total as f64
            )
        } else if self.version.is_empty() {
            String::new()
        } else {
            format!(" {}", self.version)
        };
        format!(
            "runs {} from partition {}: {}{}{}",
            self.running,
            self.partition,
            self.state,
            progress,
            if self.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.detail)
            }
        )
    }
}

pub fn save_status(
    conn: &Connection,
    tap: &str,
    s: &UpdateStatus,
    now_ms: u64,
) -> Result<(), String> {
    conn.execute(
        "INSERT OR REPLACE INTO update_status
         (tap, running, partition, state, version, have, total, detail, seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            tap,
            s.running,
            i64::from(s.partition),
            s.state.as_str(),
            s.version,
            sql_int(s.have),
            sql_int(s.total),
            s.detail,
            sql_int(now_ms)
        ],
    )
    .map_err(err("store: update status"))?;
    Ok(())
}

pub fn statuses(conn: &Connection) -> Result<Vec<TapUpdate>, String> {
    let mut st = conn
        .prepare(
            "SELECT tap, running, partition, state, version, have, total, detail, seen_ms
             FROM update_status ORDER BY tap",
        )
        .map_err(err("store: update status"))?;
    let rows = st
        .query_map([], |r| {
            Ok(TapUpdate {
                tap: r.get(0)?,
                running: r.get(1)?,
                partition: r.get::<_, i64>(2)?.clamp(0, 255) as u8,
                state: r.get(3)?,
                version: r.get(4)?,
                have: sql_u64(r.get(5)?),
                total: sql_u64(r.get(6)?),
                detail: r.get(7)?,
                seen_ms: sql_u64(r.get(8)?),
            })
        })
        .map_err(err("store: update status"))?;
    rows.collect::<Result<_, _>>()
        .map_err(err("store: update status"))
}
