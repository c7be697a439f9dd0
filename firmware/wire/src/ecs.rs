//! A flow as an Elastic Common Schema document (`--format ecs`): nested
//! objects under ECS's names, built from the JSON line so every value has
//! one source. Which ECS fields: `event.*` (kind `event`, category
//! `network`, type `connection` and `end`, start, end, duration in ns),
//! `source.*`/`destination.*` (ip, port, mac as RFC 7042 upper-case with
//! hyphens, bytes, packets, domain), `network.*` (transport, iana_number,
//! type, bytes, packets, community_id, vlan), `observer.*` (the tap),
//! `related.*`, `tls.client.server_name`, `url.domain`, `url.path`,
//! `http.request.method`, and `labels` for what ECS has no field for
//! (Zeek's conn_state and history, the end reason).

use serde_json::{json, Map, Value};

use crate::format::{json_value, time_text};
use crate::record::FlowRecord;

/// The ECS release whose names these are.
pub const ECS_VERSION: &str = "8.11.0";

/// `00:1a:2b:...` as ECS writes a MAC: `00-1A-2B-...`.
fn ecs_mac(mac: &str) -> String {
    mac.replace(':', "-").to_ascii_uppercase()
}

fn put(o: &mut Map<String, Value>, key: &str, v: &Value) {
    if !v.is_null() {
        o.insert(key.into(), v.clone());
    }
}

fn side(j: &Value, p: &str, domain: &Value) -> Value {
    let mut o = Map::new();
    put(&mut o, "ip", &j[format!("{p}_addr")]);
    put(&mut o, "address", &j[format!("{p}_addr")]);
    put(&mut o, "port", &j[format!("{p}_port")]);
    if let Some(mac) = j[format!("{p}_mac")].as_str() {
        o.insert("mac".into(), ecs_mac(mac).into());
    }
    put(&mut o, "bytes", &j[format!("{p}_bytes")]);
    put(&mut o, "packets", &j[format!("{p}_pkts")]);
    put(&mut o, "domain", domain);
    Value::Object(o)
}

/// The ECS document of one flow.
pub fn ecs_value(r: &FlowRecord, tap: &str) -> Value {
    let j = json_value(r, tap);
    let transport = match r.proto {
        58 => "ipv6-icmp".to_string(),
        _ => j["proto"].as_str().unwrap_or("").to_ascii_lowercase(),
    };
    let mut network = Map::new();
    network.insert("transport".into(), transport.into());
    network.insert("iana_number".into(), r.proto.to_string().into());
    let ipv6 = j["src_addr"].as_str().is_some_and(|a| a.contains(':'));
    network.insert("type".into(), if ipv6 { "ipv6" } else { "ipv4" }.into());
    put(&mut network, "bytes", &j["bytes"]);
    put(&mut network, "packets", &j["pkts"]);
    put(&mut network, "community_id", &j["community_id"]);
    if r.vlan != 0 {
        network.insert("vlan".into(), json!({ "id": r.vlan.to_string() }));
    }
    if r.inner_vlan != 0 {
        network.insert(
            "inner".into(),
            json!({ "vlan": { "id": r.inner_vlan.to_string() } }),
        );
    }
    let protocol = match (&j["sni"], &j["http_host"]) {
        (Value::String(_), _) => Some("tls"),
        (_, Value::String(_)) => Some("http"),
        _ => None,
    };
    if let Some(p) = protocol {
        network.insert("protocol".into(), p.into());
    }
    let outcome = match j["action"].as_str() {
        Some("ACCEPT") => "success",
        Some("REJECT") => "failure",
        _ => "unknown",
    };
    let mut doc = json!({
        "@timestamp": j["ts"],
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "end"],
            "action": j["action"].as_str().map(str::to_ascii_lowercase),
            "outcome": outcome,
            "start": j["ts"],
            "end": time_text(r.end_ms, 'T') + "Z",
            "duration": r.end_ms.saturating_sub(r.start_ms).saturating_mul(1_000_000),
        },
        "source": side(&j, "src", &Value::Null),
        "destination": side(&j, "dst", &j["dst_name"]),
        "network": Value::Object(network),
        "observer": {
            "name": tap,
            "type": "tap",
            "vendor": "PiTap",
            "product": "PiTap",
            "ingress": { "interface": { "name": j["ingress"] } },
        },
        "labels": {
            "conn_state": j["conn_state"],
            "history": j["history"],
            "end_reason": j["end_reason"],
        },
    });
    let related_ip: Vec<&Value> = [&j["src_addr"], &j["dst_addr"]]
        .into_iter()
        .filter(|v| !v.is_null())
        .collect();
    let related_hosts: Vec<&Value> = [&j["src_hostname"], &j["dst_hostname"], &j["dst_name"]]
        .into_iter()
        .filter(|v| v.is_string())
        .collect();
    let mut related = json!({ "ip": related_ip });
    if !related_hosts.is_empty() {
        related["hosts"] = json!(related_hosts);
    }
    doc["related"] = related;
    if let Some(sni) = j["sni"].as_str() {
        doc["tls"] = json!({ "client": { "server_name": sni } });
    }
    let mut url = Map::new();
    put(&mut url, "domain", &j["http_host"]);
    if let Some((method, path)) = j["http_request"].as_str().and_then(|l| l.split_once(' ')) {
        url.insert("path".into(), path.into());
        doc["http"] = json!({ "request": { "method": method } });
    }
    if !url.is_empty() {
        doc["url"] = Value::Object(url);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_as_ecs_writes_them() {
        assert_eq!(ecs_mac("00:1a:2b:3c:4d:ef"), "00-1A-2B-3C-4D-EF");
    }
}
