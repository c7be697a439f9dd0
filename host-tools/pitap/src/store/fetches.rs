//! Packet fetches: what `pitap pcap` and alert actions ask of a tap, and
//! the answer as it arrives. A request is a row here (the collector picks
//! it up); the answer's chunks are rows too, committed with the flows before
//! the collector says it has them, so a collector killed mid-fetch resumes
//! from what it stored and the tap sends the rest.

use pitap_wire::messages::{FlowEnds, PacketRequest};
use rusqlite::{params, Connection, OptionalExtension};

use super::{err, sql_int};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fetches (
    id         INTEGER PRIMARY KEY,
    tap        TEXT NOT NULL,
    request    TEXT NOT NULL,
    comment    TEXT NOT NULL,
    -- waiting, done
    state      TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    -- the tap boot answering (hex), and what it said of the answer
    boot       TEXT,
    total      INTEGER,
    packets    INTEGER,
    left_out   INTEGER,
    -- where a finished answer is written too (alerts), or NULL
    output     TEXT
);
CREATE TABLE IF NOT EXISTS fetch_chunks (
    fetch  INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (fetch, offset)
);
";

/// A fetch as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetch {
    pub id: u64,
    pub tap: String,
    pub request: PacketRequest,
    pub comment: String,
    pub done: bool,
    pub boot: Option<String>,
    pub total: Option<u64>,
    pub packets: u64,
    pub left_out: u64,
    pub output: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RequestText {
    flows: Vec<FlowEnds>,
    since_ms: u64,
    until_ms: u64,
    flag: bool,
}

/// Asks for packets: a new waiting fetch.
pub fn insert(conn: &Connection, f: &Fetch, now_ms: u64) -> Result<(), String> {
    let r = &f.request;
    let text = serde_json::to_string(&RequestText {
        flows: r.flows.clone(),
        since_ms: r.since_ms,
        until_ms: r.until_ms,
        flag: r.flag,
    })
    .map_err(|e| e.to_string())?;
    conn.execute(
        "INSERT INTO fetches (id, tap, request, comment, state, created_ms, output)
         VALUES (?1, ?2, ?3, ?4, 'waiting', ?5, ?6)",
        params![
            f.id as i64,
            f.tap,
            text,
            f.comment,
            sql_int(now_ms),
            f.output
        ],
    )
    .map_err(err("store: fetch"))?;
    Ok(())
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Fetch> {
    let text: String = r.get(2)?;
    let req: RequestText = serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let id = r.get::<_, i64>(0)? as u64;
    Ok(Fetch {
        id,
        tap: r.get(1)?,
        request: PacketRequest {
            id,
            flows: req.flows,
            since_ms: req.since_ms,
            until_ms: req.until_ms,
            flag: req.flag,
            have: 0,
        },
        comment: r.get(3)?,
        done: r.get::<_, String>(4)? == "done",
        boot: r.get(5)?,
        total: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
        packets: r.get::<_, Option<i64>>(7)?.unwrap_or(0).max(0) as u64,
        left_out: r.get::<_, Option<i64>>(8)?.unwrap_or(0).max(0) as u64,
        output: r.get(9)?,
    })
}

const COLUMNS: &str = "id, tap, request, comment, state, boot, total, packets, left_out, output";

/// The fetches not answered whole yet.
pub fn waiting(conn: &Connection) -> Result<Vec<Fetch>, String> {
    let mut st = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM fetches WHERE state = 'waiting' ORDER BY created_ms, id"
        ))
        .map_err(err("store: fetch"))?;
    let rows = st.query_map([], read).map_err(err("store: fetch"))?;
    rows.collect::<Result<_, _>>().map_err(err("store: fetch"))
}

pub fn get(conn: &Connection, id: u64) -> Result<Option<Fetch>, String> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM fetches WHERE id = ?1"),
        params![id as i64],
        read,
    )
    .optional()
    .map_err(err("store: fetch"))
}

/// Bytes of the answer stored from its start without a hole.
pub fn have(conn: &Connection, id: u64) -> Result<u64, String> {
    let mut st = conn
        .prepare_cached(
            "SELECT offset, length(data) FROM fetch_chunks WHERE fetch = ?1 ORDER BY offset",
        )
        .map_err(err("store: fetch"))?;
    let rows = st
        .query_map(params![id as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(err("store: fetch"))?;
    let mut have = 0i64;
    for row in rows {
        let (offset, len) = row.map_err(err("store: fetch"))?;
        if offset != have {
            break;
        }
        have += len;
    }
    Ok(have.max(0) as u64)
}

/// Stores chunks of an answer (a chunk already stored is kept as it was).
pub fn add_chunks(conn: &Connection, id: u64, chunks: &[(u64, Vec<u8>)]) -> Result<(), String> {
    let mut st = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO fetch_chunks (fetch, offset, data) VALUES (?1, ?2, ?3)",
        )
        .map_err(err("store: fetch"))?;
    for (offset, data) in chunks {
        st.execute(params![id as i64, sql_int(*offset), data])
            .map_err(err("store: fetch"))?;
    }
    Ok(())
}

/// The tap boot answering and what it said of the answer; a different
/// boot than before means a new answer: what was stored goes.
pub fn set_answer(
    conn: &Connection,
    id: u64,
    boot: &str,
    total: u64,
    packets: u64,
    left_out: u64,
) -> Result<(), String> {
    conn.execute(
        "DELETE FROM fetch_chunks WHERE fetch = ?1",
        params![id as i64],
    )
    .map_err(err("store: fetch"))?;
    conn.execute(
        "UPDATE fetches SET boot = ?2, total = ?3, packets = ?4, left_out = ?5 WHERE id = ?1",
        params![
            id as i64,
            boot,
            sql_int(total),
            sql_int(packets),
            sql_int(left_out)
        ],
    )
    .map_err(err("store: fetch"))?;
    Ok(())
}

pub fn finish(conn: &Connection, id: u64) -> Result<(), String> {
    conn.execute(
        "UPDATE fetches SET state = 'done' WHERE id = ?1",
        params![id as i64],
    )
    .map(|_| ())
    .map_err(err("store: fetch"))
}

/// The stored answer, whole.
pub fn answer(conn: &Connection, id: u64) -> Result<Vec<u8>, String> {
    let mut st = conn
        .prepare("SELECT data FROM fetch_chunks WHERE fetch = ?1 ORDER BY offset")
        .map_err(err("store: fetch"))?;
    let rows = st
        .query_map(params![id as i64], |r| r.get::<_, Vec<u8>>(0))
        .map_err(err("store: fetch"))?;
    let mut out = Vec::new();
    for row in rows {
        out.extend_from_slice(&row.map_err(err("store: fetch"))?);
    }
    Ok(out)
}
