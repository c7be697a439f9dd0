//! Stores of schemas 1 to 3 kept one row per flow in a `flows` table, with
//! addresses, MACs and enums as text and the enrichment of the collector's
//! networks at ingest. Opening one moves its rows into segments (the
//! enrichment is dropped: it is computed at query time now) in one
//! transaction, then drops the table.

use pitap_wire::{ClockState, ConnState, EndReason, History, TapPort, Text};
use rusqlite::Connection;

use super::err;
use super::segment::{self, SEGMENT_ROWS};
use crate::flow::StoredFlow;

fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

/// Brings a schema-1 or -2 table to schema 3's columns, as the versions
/// before did.
fn add_columns(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    if version == 1 {
        conn.execute_batch(
            "ALTER TABLE flows ADD COLUMN dst_name TEXT;
             ALTER TABLE flows ADD COLUMN src_hostname TEXT;
             ALTER TABLE flows ADD COLUMN sni TEXT;
             ALTER TABLE flows ADD COLUMN alpn TEXT;
             ALTER TABLE flows ADD COLUMN http_host TEXT;
             ALTER TABLE flows ADD COLUMN http_request TEXT;
             ALTER TABLE devices ADD COLUMN hostname TEXT;",
        )?;
    }
    if version <= 2 {
        conn.execute_batch(
            "ALTER TABLE flows ADD COLUMN clock TEXT NOT NULL DEFAULT 'unsynced';
             ALTER TABLE flows ADD COLUMN ring_drops INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    Ok(())
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
    r.conn_state = ConnState::from_name(text(16)?).ok_or_else(|| bad(16, "a conn_state"))?;
    r.history = History::from_text(text(17)?);
    r.end_reason = EndReason::from_name(text(18)?).ok_or_else(|| bad(18, "an end reason"))?;
    r.continuation = num(19)? != 0;
    r.ingress = TapPort::from_name(text(20)?).ok_or_else(|| bad(20, "a tap port"))?;
    r.vlan = num(21)? as u16;
    r.inner_vlan = num(22)? as u16;
    r.icmp = match (
        row.get::<_, Option<i64>>(23)?,
        row.get::<_, Option<i64>>(24)?,
    ) {
        (Some(t), Some(c)) => Some((t as u8, c as u8)),
        _ => None,
    };
    let n = &mut r.names;
    n.responder_name = Text::from_bytes(text(25)?.as_bytes());
    n.client_hostname = Text::from_bytes(text(26)?.as_bytes());
    n.sni = Text::from_bytes(text(27)?.as_bytes());
    n.alpn = Text::from_bytes(text(28)?.as_bytes());
    n.http_host = Text::from_bytes(text(29)?.as_bytes());
    n.http_request = Text::from_bytes(text(30)?.as_bytes());
    r.clock = ClockState::from_name(text(31)?).ok_or_else(|| bad(31, "a clock state"))?;
    r.ring_drops = num(32)? as u32;
    Ok(())
}

/// Moves the rows of a schema-`version` store into segments; the caller
/// holds the transaction. Returns the flows moved.
pub fn migrate(conn: &Connection, version: i64) -> Result<u64, String> {
    let ctx = "store: migrating the flows table";
    add_columns(conn, version).map_err(err(ctx))?;
    let mut stmt = conn
        .prepare(
            "SELECT tap, start_ms, end_ms, proto, src_addr, src_port, dst_addr, dst_port,
             src_mac, dst_mac, src_pkts, src_bytes, dst_pkts, dst_bytes,
             src_tcp_flags, dst_tcp_flags, conn_state, history, end_reason,
             continuation, ingress, vlan, inner_vlan, icmp_type, icmp_code,
             dst_name, src_hostname, sni, alpn, http_host, http_request,
             clock, ring_drops
             FROM flows ORDER BY start_ms, id",
        )
        .map_err(err(ctx))?;
    let mut rows = stmt.query([]).map_err(err(ctx))?;
    let mut chunk: Vec<StoredFlow> = Vec::with_capacity(SEGMENT_ROWS);
    let mut moved = 0u64;
    let mut flush = |chunk: &mut Vec<StoredFlow>| -> Result<(), String> {
        if chunk.is_empty() {
            return Ok(());
        }
        let refs: Vec<&StoredFlow> = chunk.iter().collect();
        let level = i64::from(chunk.len() == SEGMENT_ROWS);
        let mut s = segment::encode(&refs, level);
        // The old store's devices tables hold these rows already.
        s.meta.counted = true;
        super::insert_segment(conn, &s)?;
        moved += chunk.len() as u64;
        chunk.clear();
        Ok(())
    };
    while let Some(row) = rows.next().map_err(err(ctx))? {
        let mut flow = segment::blank();
        read_row(row, &mut flow).map_err(err("store: migrating a row"))?;
        chunk.push(flow);
        if chunk.len() == SEGMENT_ROWS {
            flush(&mut chunk)?;
        }
    }
    flush(&mut chunk)?;
    drop(rows);
    drop(stmt);
    conn.execute_batch("DROP TABLE flows;").map_err(err(ctx))?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_parse_and_bad_ones_become_zeros() {
        assert_eq!(super::parse_mac("02:00:0a:ff:00:01"), [2, 0, 10, 255, 0, 1]);
        assert_eq!(super::parse_mac("zz"), [0; 6]);
    }
}
