//! `--format ecs` against the Elastic Common Schema itself: every field of
//! every document, for every real capture, is a field of ECS with a value
//! of its type (`tests/data/ecs_fields.csv`, rows of elastic/ecs's
//! generated field list), the categorisation fields take only ECS's
//! allowed values, MACs are written as ECS asks, and the values are the
//! JSON line's.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::*;
use serde_json::Value;

struct Ecs {
    types: BTreeMap<String, String>,
    allowed: BTreeMap<String, Vec<String>>,
}

fn ecs() -> Ecs {
    let text = include_str!("data/ecs_fields.csv");
    let mut types = BTreeMap::new();
    let mut allowed = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("allowed:") {
            let (field, values) = rest.split_once(':').unwrap();
            allowed.insert(
                field.to_string(),
                values.split('|').map(String::from).collect(),
            );
        } else {
            let (field, ty) = line.split_once(',').unwrap();
            types.insert(field.to_string(), ty.to_string());
        }
    }
    Ecs { types, allowed }
}

/// Every leaf of a document with its dotted path (arrays are one leaf).
fn leaves(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        _ => out.push((path.to_string(), v.clone())),
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() >= 20
        && s.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
}

fn check_type(path: &str, ty: &str, v: &Value) -> Result<(), String> {
    let scalar_ok = |v: &Value| match ty {
        "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "long" => v.as_u64().is_some(),
        "date" => v.as_str().is_some_and(is_date),
        "keyword" | "wildcard" | "match_only_text" => v.is_string(),
        _ => false,
    };
    let ok = match v {
        Value::Array(items) => !items.is_empty() && items.iter().all(scalar_ok),
        v => scalar_ok(v),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{path}: {v} is not an ECS {ty}"))
    }
}

#[test]
fn every_field_is_ecs_with_its_type() {
    let schema = ecs();
    let mut documents = 0;
    let mut seen = std::collections::BTreeSet::new();
    for file in real_pcaps() {
        let path = file.to_str().unwrap();
        let json = flows_json(&file, &[]);
        let out = pitapd(&["--read", path, "--print", "--format", "ecs", "--quiet"]);
        assert!(out.status.success(), "{path}");
        let docs: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs.len(), json.len(), "{path}");
        for (doc, j) in docs.iter().zip(&json) {
            documents += 1;
            let mut all = Vec::new();
            leaves(doc, "", &mut all);
            for (field, v) in &all {
                seen.insert(field.clone());
                if field.starts_with("labels.") {
                    // Custom key/value pairs: ECS asks for keyword values.
                    assert!(v.is_string(), "{path}: {field} = {v}");
                    continue;
                }
                let ty = schema
                    .types
                    .get(field)
                    .unwrap_or_else(|| panic!("{path}: {field} is not an ECS field"));
                check_type(field, ty, v).unwrap_or_else(|e| panic!("{path}: {e}"));
                if let Some(values) = schema.allowed.get(field) {
                    for x in v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]) {
                        let x = x.as_str().unwrap().to_string();
                        assert!(values.contains(&x), "{path}: {field} = {x}");
                    }
                }
            }
            // The JSON line's values, under ECS's names and units.
            assert_eq!(doc["network"]["community_id"], j["community_id"]);
            assert_eq!(doc["source"]["ip"], j["src_addr"]);
            assert_eq!(doc["destination"]["ip"], j["dst_addr"]);
            assert_eq!(doc["source"]["bytes"], j["src_bytes"]);
            assert_eq!(doc["destination"]["packets"], j["dst_pkts"]);
            assert_eq!(doc["network"]["bytes"], j["bytes"]);
            assert_eq!(doc["@timestamp"], j["ts"]);
            let ms = j["end_ms"].as_u64().unwrap() - j["start_ms"].as_u64().unwrap();
            assert_eq!(doc["event"]["duration"], ms * 1_000_000);
            assert_eq!(
                doc["network"]["iana_number"],
                j["proto_num"].as_u64().unwrap().to_string()
            );
            for side in ["source", "destination"] {
                if let Some(mac) = doc[side]["mac"].as_str() {
                    let ok = mac.len() == 17
                        && mac.split('-').all(|o| {
                            o.len() == 2
                                && o.chars()
                                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
                        });
                    assert!(ok, "{path}: {side}.mac {mac}");
                }
            }
        }
    }
    assert!(documents >= 273, "{documents} documents");
    // The captures reach the optional parts too.
    for field in [
        "tls.client.server_name",
        "url.domain",
        "http.request.method",
        "network.vlan.id",
    ] {
        assert!(seen.contains(field), "no capture gave {field}");
    }
}
