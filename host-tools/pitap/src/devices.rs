//! `pitap devices`: the inventory of devices (MAC addresses) the taps have
//! seen, with their vendor (IEEE OUI), every hostname their DHCP leases gave
//! them and their local addresses over time, and when they were first and
//! last seen.

use std::io::Write;
use std::path::Path;

use pitap_wire::format::time_text;

use crate::store::Store;

/// A MAC written aa:bb:cc:dd:ee:ff as bytes.
fn mac_bytes(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub fn run(store: &Path, json: bool, out: &mut dyn Write) -> Result<usize, String> {
    let store = Store::open_existing(store)?;
    let devices = store.devices()?;
    let w = |e: std::io::Error| format!("writing: {e}");
    if !json {
        writeln!(
            out,
            "{:<17}  {:<23}  {:<23}  {:<24}  {:<24}  {:>8}  addresses (latest first)",
            "mac",
            "first seen (UTC)",
            "last seen (UTC)",
            "hostnames (latest first)",
            "vendor",
            "flows"
        )
        .map_err(w)?;
    }
    for d in &devices {
        let addrs = store.device_addrs(&d.mac)?;
        let hostnames = store.device_hostnames(&d.mac)?;
        let vendor = mac_bytes(&d.mac).and_then(|m| crate::oui::vendor(&m));
        if json {
            let addrs: Vec<serde_json::Value> = addrs
                .iter()
                .map(|(a, f, l)| serde_json::json!({"addr": a, "first_ms": f, "last_ms": l}))
                .collect();
            let v = serde_json::json!({"mac": d.mac, "first_ms": d.first_ms, "last_ms": d.last_ms,
                "first_seen": time_text(d.first_ms, 'T') + "Z", "last_seen": time_text(d.last_ms, 'T') + "Z",
                "last_addr": d.last_addr, "hostname": d.hostname, "flows": d.flows, "addrs": addrs,
                "vendor": vendor,
                "hostnames": hostnames.iter().map(|(h, f, l)| serde_json::json!({"hostname": h, "first_ms": f, "last_ms": l})).collect::<Vec<_>>()});
            writeln!(out, "{v}").map_err(w)?;
        } else {
            let list: Vec<&str> = addrs.iter().take(4).map(|(a, _, _)| a.as_str()).collect();
            let more = if addrs.len() > 4 {
                format!(" (+{})", addrs.len() - 4)
            } else {
                String::new()
            };
            let names: Vec<&str> = hostnames.iter().map(|(h, _, _)| h.as_str()).collect();
            let vendor: String = vendor.unwrap_or("-").chars().take(24).collect();
            writeln!(
                out,
                "{:<17}  {:<23}  {:<23}  {:<24}  {:<24}  {:>8}  {}{more}",
                d.mac,
                time_text(d.first_ms, ' '),
                time_text(d.last_ms, ' '),
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(",")
                },
                vendor,
                d.flows,
                if list.is_empty() {
                    d.last_addr.clone()
                } else {
                    list.join(", ")
                }
            )
            .map_err(w)?;
        }
    }
    Ok(devices.len())
}
