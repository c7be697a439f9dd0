//! `pitap devices`: the inventory of devices (MAC addresses) the taps have
//! seen, with the hostname their DHCP lease gave, their local addresses over
//! time and when they were first and last seen.

use std::io::Write;
use std::path::Path;

use pitap_wire::format::time_text;

use crate::store::Store;

pub fn run(store: &Path, json: bool, out: &mut dyn Write) -> Result<usize, String> {
    let store = Store::open_existing(store)?;
    let devices = store.devices()?;
    let w = |e: std::io::Error| format!("writing: {e}");
    if !json {
        writeln!(
            out,
            "{:<17}  {:<23}  {:<23}  {:<24}  {:>8}  addresses (latest first)",
            "mac", "first seen (UTC)", "last seen (UTC)", "hostname", "flows"
        )
        .map_err(w)?;
    }
    for d in &devices {
        let addrs = store.device_addrs(&d.mac)?;
        if json {
            let addrs: Vec<serde_json::Value> = addrs
                .iter()
                .map(|(a, f, l)| serde_json::json!({"addr": a, "first_ms": f, "last_ms": l}))
                .collect();
            let v = serde_json::json!({"mac": d.mac, "first_ms": d.first_ms, "last_ms": d.last_ms,
                "first_seen": time_text(d.first_ms, 'T') + "Z", "last_seen": time_text(d.last_ms, 'T') + "Z",
                "last_addr": d.last_addr, "hostname": d.hostname, "flows": d.flows, "addrs": addrs});
            writeln!(out, "{v}").map_err(w)?;
        } else {
            let list: Vec<&str> = addrs.iter().take(4).map(|(a, _, _)| a.as_str()).collect();
            let more = if addrs.len() > 4 {
                format!(" (+{})", addrs.len() - 4)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{:<17}  {:<23}  {:<23}  {:<24}  {:>8}  {}{more}",
                d.mac,
                time_text(d.first_ms, ' '),
                time_text(d.last_ms, ' '),
                d.hostname.as_deref().unwrap_or("-"),
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
