//! The devices tables: every unicast MAC seen in flows, its DHCP hostname,
//! first and last seen, and its local addresses over time. Updated when
//! level-0 segments are merged (or trimmed), in that transaction: a row a
//! commit per device was a fifth of an ingest's time. Until then a
//! segment is "uncounted" and readers lay its rows over the tables.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use pitap_wire::format::mac_text;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use super::codec::Column;
use super::err;
use crate::fields::FieldValue;
use crate::networks::Networks;

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

/// What some flows saw of a device (a MAC).
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

/// One end of a flow as the devices tables see it.
pub struct Sighting<'a> {
    pub mac: [u8; 6],
    pub addr: IpAddr,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The hostname the end's DHCP lease gave it.
    pub hostname: Option<&'a str>,
    /// In a named internal network.
    pub internal: bool,
}

/// What some flows say of devices: added up in memory, then written to
/// the tables (or laid over what they hold, for a reader).
#[derive(Default)]
pub struct Seen {
    devices: HashMap<[u8; 6], DeviceSeen, RandomState>,
    addrs: HashMap<([u8; 6], IpAddr), (u64, u64), RandomState>,
    /// Every hostname a device's leases gave it, with when.
    hostnames: HashMap<([u8; 6], String), (u64, u64), RandomState>,
}

impl Seen {
    pub fn add(&mut self, s: Sighting<'_>) {
        // Only unicast station MACs name a device.
        if s.mac == [0; 6] || s.mac[0] & 1 == 1 {
            return;
        }
        let d = self.devices.entry(s.mac).or_insert(DeviceSeen {
            first_ms: s.start_ms,
            last_ms: s.end_ms,
            last_addr: s.addr,
            flows: 0,
            hostname: None,
        });
        if let Some(name) = s.hostname.filter(|n| !n.is_empty()) {
            if d.hostname.as_deref() != Some(name) {
                d.hostname = Some(name.to_string());
            }
            let h = self
                .hostnames
                .entry((s.mac, name.to_string()))
                .or_insert((s.start_ms, s.end_ms));
            h.0 = h.0.min(s.start_ms);
            h.1 = h.1.max(s.end_ms);
        }
        d.first_ms = d.first_ms.min(s.start_ms);
        if s.end_ms >= d.last_ms {
            d.last_ms = s.end_ms;
            d.last_addr = s.addr;
        }
        d.flows += 1;
        // Addresses over time, for local addresses only: a router's MAC
        // stands for every outside address.
        if s.internal || is_local(&s.addr) {
            let a = self
                .addrs
                .entry((s.mac, s.addr))
                .or_insert((s.start_ms, s.end_ms));
            a.0 = a.0.min(s.start_ms);
            a.1 = a.1.max(s.end_ms);
        }
    }

    /// The rows of a segment, from its columns ([`COLUMNS`] in order).
    pub fn add_columns(&mut self, columns: &[&Column], rows: usize, networks: &Networks) {
        let [src_mac, dst_mac, src_addr, dst_addr, start, end, src_host, dst_host] = columns else {
            return;
        };
        let num = |c: &Column, row| match c.value(row) {
            Some(FieldValue::Num(n)) => n,
            _ => 0,
        };
        for row in 0..rows {
            let (start_ms, end_ms) = (num(start, row), num(end, row));
            fn text(c: &Column, row: usize) -> Option<&str> {
                match c.value(row) {
                    Some(FieldValue::Text(t)) => Some(t),
                    _ => None,
                }
            }
            let sides = [
                (src_mac, src_addr, text(src_host, row)),
                (dst_mac, dst_addr, text(dst_host, row)),
            ];
            for (mac, addr, hostname) in sides {
                let (Some(FieldValue::Mac(mac)), Some(FieldValue::Addr(addr))) =
                    (mac.value(row), addr.value(row))
                else {
                    continue;
                };
                self.add(Sighting {
                    mac,
                    addr,
                    start_ms,
                    end_ms,
                    hostname,
                    internal: networks.is_internal(&addr),
                });
            }
        }
    }

    /// Adds what was seen to the tables.
    pub fn write(self, tx: &Connection) -> Result<(), String> {
        let devices = self.devices.into_iter().map(|(mac, d)| {
            [
                Value::Text(mac_text(&mac)),
                Value::Integer(super::sql_int(d.first_ms)),
                Value::Integer(super::sql_int(d.last_ms)),
                Value::Text(d.last_addr.to_string()),
                Value::Integer(super::sql_int(d.flows)),
                d.hostname.map_or(Value::Null, Value::Text),
            ]
        });
        upsert_rows(
            tx,
            "INSERT INTO devices (mac, first_ms, last_ms, last_addr, flows, hostname) VALUES",
            "ON CONFLICT(mac) DO UPDATE SET
               hostname = coalesce(excluded.hostname, hostname),
               first_ms = min(first_ms, excluded.first_ms),
               last_addr = CASE WHEN excluded.last_ms >= last_ms
                           THEN excluded.last_addr ELSE last_addr END,
               last_ms = max(last_ms, excluded.last_ms),
               flows = flows + excluded.flows",
            devices,
        )
        .map_err(err("store: devices"))?;
        let addrs = self.addrs.into_iter().map(|((mac, addr), (first, last))| {
            [
                Value::Text(mac_text(&mac)),
                Value::Text(addr.to_string()),
                Value::Integer(super::sql_int(first)),
                Value::Integer(super::sql_int(last)),
            ]
        });
        upsert_rows(
            tx,
            "INSERT INTO device_addrs (mac, addr, first_ms, last_ms) VALUES",
            "ON CONFLICT(mac, addr) DO UPDATE SET
               first_ms = min(first_ms, excluded.first_ms),
               last_ms = max(last_ms, excluded.last_ms)",
            addrs,
        )
        .map_err(err("store: device addresses"))?;
        let hostnames = self
            .hostnames
            .into_iter()
            .map(|((mac, name), (first, last))| {
                [
                    Value::Text(mac_text(&mac)),
                    Value::Text(name),
                    Value::Integer(super::sql_int(first)),
                    Value::Integer(super::sql_int(last)),
                ]
            });
        upsert_rows(
            tx,
            "INSERT INTO device_hostnames (mac, hostname, first_ms, last_ms) VALUES",
            "ON CONFLICT(mac, hostname) DO UPDATE SET
               first_ms = min(first_ms, excluded.first_ms),
               last_ms = max(last_ms, excluded.last_ms)",
            hostnames,
        )
        .map_err(err("store: device hostnames"))
    }

    /// Devices as the tables hold them with what was seen laid over, the
    /// way [`Seen::write`] would change them; first seen first.
    pub fn over(&self, mut all: Vec<Device>) -> Vec<Device> {
        let mut at: HashMap<String, usize> = all
            .iter()
            .enumerate()
            .map(|(i, d)| (d.mac.clone(), i))
            .collect();
        for (mac, seen) in &self.devices {
            let text = mac_text(mac);
            let i = *at.entry(text.clone()).or_insert_with(|| {
                all.push(Device {
                    mac: text,
                    first_ms: seen.first_ms,
                    last_ms: seen.last_ms,
                    last_addr: seen.last_addr.to_string(),
                    flows: 0,
                    hostname: None,
                });
                all.len() - 1
            });
            let d = &mut all[i];
            if seen.hostname.is_some() {
                d.hostname.clone_from(&seen.hostname);
            }
            d.first_ms = d.first_ms.min(seen.first_ms);
            if seen.last_ms >= d.last_ms {
                d.last_addr = seen.last_addr.to_string();
            }
            d.last_ms = d.last_ms.max(seen.last_ms);
            d.flows = d.flows.saturating_add(seen.flows);
        }
        // Ties in order of MAC: the same store prints the same list.
        all.sort_by(|a, b| (a.first_ms, &a.mac).cmp(&(b.first_ms, &b.mac)));
        all
    }

    /// A device's hostnames as the table holds them with what was seen
    /// laid over; the most recently seen first.
    pub fn hostnames_over(
        &self,
        mac: &str,
        mut names: Vec<(String, u64, u64)>,
    ) -> Vec<(String, u64, u64)> {
        for ((m, name), &(first, last)) in &self.hostnames {
            if mac_text(m) != mac {
                continue;
            }
            match names.iter_mut().find(|a| &a.0 == name) {
                Some(a) => {
                    a.1 = a.1.min(first);
                    a.2 = a.2.max(last);
                }
                None => names.push((name.clone(), first, last)),
            }
        }
        names.sort_by(|a, b| (std::cmp::Reverse(a.2), &a.0).cmp(&(std::cmp::Reverse(b.2), &b.0)));
        names
    }

    /// A device's addresses as the table holds them with what was seen
    /// laid over; the most recently seen first.
    pub fn addrs_over(
        &self,
        mac: &str,
        mut addrs: Vec<(String, u64, u64)>,
    ) -> Vec<(String, u64, u64)> {
        for ((m, addr), &(first, last)) in &self.addrs {
            if mac_text(m) != mac {
                continue;
            }
            let text = addr.to_string();
            match addrs.iter_mut().find(|a| a.0 == text) {
                Some(a) => {
                    a.1 = a.1.min(first);
                    a.2 = a.2.max(last);
                }
                None => addrs.push((text, first, last)),
            }
        }
        addrs.sort_by(|a, b| (std::cmp::Reverse(a.2), &a.0).cmp(&(std::cmp::Reverse(b.2), &b.0)));
        addrs
    }
}

/// The columns [`Seen::add_columns`] reads, in its order.
pub const COLUMNS: [&str; 8] = [
    "src_mac",
    "dst_mac",
    "src_addr",
    "dst_addr",
    "start_ms",
    "end_ms",
    "src_hostname",
    "dst_hostname",
];

/// Rows per upsert statement: a statement per row costs more in binding
/// and stepping than the row's B-tree update (4,000 devices a commit
/// under load); SQLite allows 32,766 parameters.
const ROWS_PER_STATEMENT: usize = 256;

/// `insert VALUES (?,..),.. conflict` for every row, many rows a statement.
fn upsert_rows<const N: usize>(
    tx: &Connection,
    insert: &str,
    conflict: &str,
    rows: impl Iterator<Item = [Value; N]>,
) -> rusqlite::Result<()> {
    let sql = |n: usize| {
        let one = format!("({})", vec!["?"; N].join(","));
        format!("{insert} {} {conflict}", vec![one; n].join(","))
    };
    let mut chunk: Vec<Value> = Vec::with_capacity(N * ROWS_PER_STATEMENT);
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        chunk.clear();
        for row in rows.by_ref().take(ROWS_PER_STATEMENT) {
            chunk.extend(row);
        }
        let n = chunk.len() / N;
        let values = params_from_iter(chunk.drain(..));
        if n == ROWS_PER_STATEMENT {
            tx.prepare_cached(&sql(n))?.execute(values)?;
        } else {
            tx.prepare(&sql(n))?.execute(values)?;
        }
    }
    Ok(())
}

/// A device's addresses, the most recently seen first: (address, first_ms, last_ms).
pub fn addrs(conn: &Connection, mac: &str) -> Result<Vec<(String, u64, u64)>, String> {
    spans(
        conn,
        "SELECT addr, first_ms, last_ms FROM device_addrs WHERE mac = ?1 ORDER BY last_ms DESC",
        mac,
    )
}

/// A device's hostnames, the most recently seen first: (hostname, first_ms, last_ms).
pub fn hostnames(conn: &Connection, mac: &str) -> Result<Vec<(String, u64, u64)>, String> {
    spans(
        conn,
        "SELECT hostname, first_ms, last_ms FROM device_hostnames WHERE mac = ?1 ORDER BY last_ms DESC",
        mac,
    )
}

fn spans(conn: &Connection, sql: &str, mac: &str) -> Result<Vec<(String, u64, u64)>, String> {
    let mut stmt = conn.prepare_cached(sql).map_err(err("store"))?;
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
pub fn all(conn: &Connection) -> Result<Vec<Device>, String> {
    let mut stmt = conn
        .prepare(
            "SELECT mac, first_ms, last_ms, last_addr, flows, hostname FROM devices ORDER BY first_ms, mac",
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
