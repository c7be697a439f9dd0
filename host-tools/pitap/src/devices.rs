//! `pitap devices`: the inventory of devices (MAC addresses) the taps have
//! seen, with the hostname their DHCP lease gave, their last address and
//! when they were first and last seen.

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
            "{:<17}  {:<23}  {:<23}  {:<39}  {:<24}  {:>8}",
            "mac", "first seen (UTC)", "last seen (UTC)", "last address", "hostname", "flows"
        )
        .map_err(w)?;
    }
    for d in &devices {
        if json {
            let v = serde_json::json!({"mac": d.mac, "first_ms": d.first_ms, "last_ms": d.last_ms,
                "first_seen": time_text(d.first_ms, 'T') + "Z", "last_seen": time_text(d.last_ms, 'T') + "Z",
                "last_addr": d.last_addr, "hostname": d.hostname, "flows": d.flows});
            writeln!(out, "{v}").map_err(w)?;
        } else {
            writeln!(
                out,
                "{:<17}  {:<23}  {:<23}  {:<39}  {:<24}  {:>8}",
                d.mac,
                time_text(d.first_ms, ' '),
                time_text(d.last_ms, ' '),
                d.last_addr,
                d.hostname.as_deref().unwrap_or("-"),
                d.flows
            )
            .map_err(w)?;
        }
    }
    Ok(devices.len())
}
