//! Compresses the IEEE OUI registry Debian ships (`ieee-data`:
//! /usr/share/ieee-data/oui.csv, or $PITAP_OUI_CSV) into the collector:
//! MAC prefixes sorted with an index into their vendors' names, deflated.
//! The tap stays small; only the collector names vendors.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The fields of one CSV line (quoted fields may hold commas and "").
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn main() {
    println!("cargo:rerun-if-env-changed=PITAP_OUI_CSV");
    let path = std::env::var("PITAP_OUI_CSV")
        .unwrap_or_else(|_| "/usr/share/ieee-data/oui.csv".to_string());
    println!("cargo:rerun-if-changed={path}");
    let mut prefixes: BTreeMap<[u8; 3], String> = BTreeMap::new();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            for line in text.lines().skip(1) {
                let f = fields(line);
                let (Some(assignment), Some(name)) = (f.get(1), f.get(2)) else {
                    continue;
                };
                let Ok(v) = u32::from_str_radix(assignment, 16) else {
                    continue;
                };
                if assignment.len() != 6 {
                    continue;
                }
                let name = name.trim();
                if !name.is_empty() {
                    prefixes.insert([(v >> 16) as u8, (v >> 8) as u8, v as u8], name.to_string());
                }
            }
        }
        Err(e) => println!(
            "cargo:warning={path}: {e}: the collector will name no MAC vendors (install ieee-data, or set PITAP_OUI_CSV)"
        ),
    }
    let mut names: Vec<String> = prefixes.values().cloned().collect();
    names.sort();
    names.dedup();
    let mut raw = Vec::new();
    raw.extend_from_slice(&(prefixes.len() as u32).to_le_bytes());
    for (p, name) in &prefixes {
        let i = names.binary_search(name).unwrap_or(0) as u16;
        raw.extend_from_slice(p);
        raw.extend_from_slice(&i.to_le_bytes());
    }
    raw.extend_from_slice(names.join("\n").as_bytes());
    let packed = miniz_oxide::deflate::compress_to_vec(&raw, 9);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("oui.bin");
    std::fs::write(&out, packed).expect("write oui.bin");
}
