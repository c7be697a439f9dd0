//! The devices tables: every unicast MAC seen in flows, its DHCP hostname,
//! first and last seen, and its local addresses over time. Updated in the
//! transaction that stores the flows.

use std::collections::HashMap;
use std::net::IpAddr;

use pitap_wire::format::mac_text;
use rusqlite::{params, Connection};

use super::err;
use crate::flow::StoredFlow;

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

pub fn update(tx: &Connection, flows: &[StoredFlow]) -> Result<(), String> {
    let mut devices: HashMap<[u8; 6], DeviceSeen> = HashMap::new();
    let mut addrs: HashMap<([u8; 6], IpAddr), (u64, u64)> = HashMap::new();
    for StoredFlow {
        record: r,
        enrichment: e,
        ..
    } in flows
    {
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
            // Addresses over time, for local addresses only: a router's
            // MAC stands for every outside address.
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
                super::sql_int(d.first_ms),
                super::sql_int(d.last_ms),
                d.last_addr.to_string(),
                super::sql_int(d.flows),
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
                super::sql_int(first),
                super::sql_int(last)
            ])
            .map_err(err("store: device addresses"))?;
    }
    Ok(())
}

/// A device's addresses, the most recently seen first: (address, first_ms, last_ms).
pub fn addrs(conn: &Connection, mac: &str) -> Result<Vec<(String, u64, u64)>, String> {
    let mut stmt = conn
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
pub fn all(conn: &Connection) -> Result<Vec<Device>, String> {
    let mut stmt = conn
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
