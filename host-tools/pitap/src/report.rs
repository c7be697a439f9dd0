//! `pitap report`: the questions of network-security monitoring, answered
//! from the store over a time window. Each analysis says what it looks for
//! and gives the `pitap query` that shows the flows behind it.
//!
//! - `inbound`: outside hosts whose connections to internal hosts were
//!   accepted (a service meant to be internal-only answered the outside);
//! - `exfil`: bytes sent by hosts of the `[report] sensitive` groups to
//!   outside addresses (or to outside hosts that connected in), by peer;
//! - `refused`: refused or unanswered TCP attempts by source, with a scan
//!   verdict (many ports: port scan; many hosts: sweep);
//! - `beacons`: a source calling one destination (an address, or the DNS
//!   name it resolved, so rotating addresses stay one series) and port on a
//!   timer, jitter and all, as a C2 implant calls home, scored 0 to 1 by
//!   [`crate::beacon`] (times and sizes only: it works on encrypted traffic);
//! - `devices`: MAC addresses first seen in the window.

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use pitap_wire::format::time_text;
use pitap_wire::proto_name;
use serde::Serialize;

use crate::beacon::{self, BeaconRules};
use crate::flow::StoredFlow;
use crate::networks::Networks;
use crate::progress::Progress;
use crate::query::Expr;
use crate::store::engine::Scope;
use crate::store::Store;

pub const ANALYSES: [&str; 5] = ["inbound", "exfil", "refused", "beacons", "devices"];

#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Distinct ports (to any host) that make a port scan.
    pub scan_ports: usize,
    /// Distinct hosts (on any port) that make a sweep.
    pub scan_hosts: usize,
    /// What a beacon is (`[report] beacon_score` sets its score).
    pub beacon: BeaconRules,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            scan_ports: 15,
            scan_hosts: 15,
            beacon: BeaconRules::default(),
        }
    }
}

pub struct Options {
    pub store: PathBuf,
    pub since_ms: u64,
    pub until_ms: u64,
    pub sensitive: Vec<String>,
    pub only: Option<String>,
    pub limit: usize,
    pub thresholds: Thresholds,
    pub json: bool,
    /// The named networks from the collector.toml given; None: the ones the
    /// collector last ran with.
    pub networks: Option<Networks>,
}

#[derive(Debug, Serialize)]
pub struct Section {
    pub analysis: &'static str,
    pub title: String,
    pub explanation: String,
    /// The query behind the section (per row where rows differ).
    pub query: String,
    pub rows: Vec<serde_json::Value>,
    pub lines: Vec<String>,
}

fn port_text(f: &StoredFlow) -> String {
    let p = proto_name(f.record.proto).map_or_else(|| f.record.proto.to_string(), str::to_string);
    format!("{}/{}", f.record.dst.port, p.to_ascii_lowercase())
}

#[derive(Default)]
struct Inbound {
    flows: u64,
    sources: BTreeSet<IpAddr>,
    /// The sources' countries, with [geoip].
    countries: BTreeSet<String>,
    bytes: u64,
}

#[derive(Default)]
struct Refused {
    attempts: u64,
    ports: BTreeSet<u16>,
    hosts: BTreeSet<IpAddr>,
    rejected: u64,
}

#[derive(Default)]
struct Exfil {
    bytes: u64,
    flows: u64,
    from: BTreeSet<IpAddr>,
    /// The peer's country and AS, with [geoip].
    country: Option<String>,
    asn: Option<u32>,
}

/// The fields [`gather`] reads (and `action` is made of): only these
/// columns are read.
const GATHERED: [&str; 11] = [
    "start_ms",
    "dst_name",
    "proto",
    "src_addr",
    "dst_addr",
    "dst_port",
    "dst_pkts",
    "src_bytes",
    "dst_bytes",
    "conn_state",
    "continuation",
];

/// Everything the analyses gather in one pass over the window.
#[derive(Default)]
struct Gathered {
    inbound: HashMap<(IpAddr, String), Inbound>,
    refused: HashMap<IpAddr, Refused>,
    exfil: HashMap<(String, IpAddr), Exfil>,
    /// (hash of the series, start, flow) of every flow, sorted by the
    /// first two and cut into series at the end: a list, not a map of
    /// lists (a million flows are most of a million series, each an
    /// allocation), of 24-byte entries sorted by two words, with the
    /// series of each flow beside (`series_keys[flow]`).
    series: Vec<(u64, u64, u32)>,
    series_keys: Vec<Series>,
    /// Bytes each flow's source sent, beside `series_keys`.
    series_sizes: Vec<u64>,
    /// The DNS names the series' destinations go by, by their hash.
    names: HashMap<u64, String>,
}

/// Where a series goes: the name the client resolved, else the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Destination {
    Name(u64),
    Addr(IpAddr),
}

type Series = (IpAddr, Destination, u16, u8);

/// A fixed seed: the hash only orders the list.
static SERIES_HASH: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5e71e5);

impl Gathered {
    /// Adds what another worker gathered.
    fn merge(&mut self, other: Gathered) {
        for (k, v) in other.inbound {
            let e = self.inbound.entry(k).or_default();
            e.flows += v.flows;
            e.bytes = e.bytes.saturating_add(v.bytes);
            e.sources.extend(v.sources);
            e.countries.extend(v.countries);
        }
        for (k, v) in other.refused {
            let e = self.refused.entry(k).or_default();
            e.attempts += v.attempts;
            e.rejected += v.rejected;
            e.ports.extend(v.ports);
            e.hosts.extend(v.hosts);
        }
        for (k, v) in other.exfil {
            let e = self.exfil.entry(k).or_default();
            e.bytes = e.bytes.saturating_add(v.bytes);
            e.flows += v.flows;
            e.from.extend(v.from);
            if e.country.is_none() {
                e.country = v.country;
                e.asn = v.asn;
            }
        }
        // Both sorted; the stable sort in `beacons` merges two sorted
        // runs in one linear pass.
        let offset = self.series_keys.len() as u32;
        self.series_keys.extend(other.series_keys);
        self.series_sizes.extend(other.series_sizes);
        self.names.extend(other.names);
        self.series
            .extend(other.series.into_iter().map(|(h, t, i)| (h, t, i + offset)));
    }
}

fn gather(flow: &StoredFlow, sensitive: &[String], g: &mut Gathered) {
    let r = &flow.record;
    let e = &flow.enrichment;
    let action = r.action();
    if !e.from_internal && e.to_internal && action == pitap_wire::Action::Accept {
        let entry = g.inbound.entry((r.dst.addr, port_text(flow))).or_default();
        entry.flows += 1;
        entry.sources.insert(r.src.addr);
        if let Some(c) = &e.src_country {
            if !entry.countries.contains(c) {
                entry.countries.insert(c.clone());
            }
        }
        entry.bytes = entry.bytes.saturating_add(r.total_bytes());
    }
    if r.proto == pitap_wire::proto::TCP && action != pitap_wire::Action::Accept {
        let entry = g.refused.entry(r.src.addr).or_default();
        entry.attempts += 1;
        entry.ports.insert(r.dst.port);
        entry.hosts.insert(r.dst.addr);
        entry.rejected += u64::from(action == pitap_wire::Action::Reject);
    }
    // A refused or unanswered attempt carries no data (an RST is not an exfil).
    let sensitive = if action == pitap_wire::Action::Accept {
        sensitive
    } else {
        &[]
    };
    for group in sensitive {
        // Bytes the sensitive side sent to an outside peer.
        let (sent, peer, member, country, asn) =
            if e.src_group.as_deref() == Some(group) && !e.to_internal {
                (
                    r.src.counters.bytes,
                    r.dst.addr,
                    r.src.addr,
                    &e.dst_country,
                    e.dst_asn,
                )
            } else if e.dst_group.as_deref() == Some(group) && !e.from_internal {
                (
                    r.dst.counters.bytes,
                    r.src.addr,
                    r.dst.addr,
                    &e.src_country,
                    e.src_asn,
                )
            } else {
                continue;
            };
        let entry = g.exfil.entry((group.clone(), peer)).or_default();
        if entry.country.is_none() {
            entry.country.clone_from(country);
            entry.asn = asn;
        }
        entry.bytes = entry.bytes.saturating_add(sent);
        entry.flows += 1;
        entry.from.insert(member);
    }
    if !r.continuation {
        let name = r.names.responder_name.as_str();
        let dst = if name.is_empty() {
            Destination::Addr(r.dst.addr)
        } else {
            let h = SERIES_HASH.hash_one(name);
            g.names.entry(h).or_insert_with(|| name.to_string());
            Destination::Name(h)
        };
        let key = (r.src.addr, dst, r.dst.port, r.proto);
        let flow = g.series_keys.len() as u32;
        g.series_keys.push(key);
        g.series_sizes.push(r.src.counters.bytes);
        g.series.push((SERIES_HASH.hash_one(key), r.start_ms, flow));
    }
}

pub fn run(o: &Options, out: &mut dyn Write) -> Result<Vec<Section>, String> {
    if let Some(only) = &o.only {
        if !ANALYSES.contains(&only.as_str()) {
            return Err(format!("--only {only}: one of {}", ANALYSES.join(", ")));
        }
    }
    let store = Store::open_existing(&o.store)?;
    let networks = store.networks(o.networks.clone())?;
    let scope = Scope {
        since_ms: o.since_ms,
        until_ms: o.until_ms,
        networks: &networks,
    };
    let mut progress = Progress::stderr("report");
    let fields: Vec<crate::fields::Field> = GATHERED
        .iter()
        .filter_map(|n| crate::fields::single_field(n).ok())
        .collect();
    // Gathered on every core, each worker into its own, merged after.
    let (flows, parts) = store.visit_parallel(
        &Expr::All,
        &scope,
        &fields,
        &mut progress,
        || (Gathered::default(), false),
        |(g, any_internal), f| {
            *any_internal |= f.enrichment.from_internal || f.enrichment.to_internal;
            gather(f, &o.sensitive, g);
        },
    )?;
    // Each part's beacon series sorted on a core of its own, then merged:
    // the sort is most of what is left of a report over a million flows.
    let mut parts = parts;
    std::thread::scope(|s| {
        for (part, _) in parts.iter_mut() {
            s.spawn(|| part.series.sort_unstable_by_key(|e| (e.0, e.1)));
        }
    });
    let mut g = Gathered::default();
    let mut any_internal = false;
    for (part, internal) in parts {
        g.merge(part);
        any_internal |= internal;
    }
    let want = |name: &str| o.only.as_deref().is_none_or(|o| o == name);
    let mut sections = Vec::new();
    if want("inbound") {
        sections.push(inbound(&g, o.limit, any_internal));
    }
    if want("exfil") {
        sections.push(exfil(&g, o));
    }
    if want("refused") {
        sections.push(refused(&g, o));
    }
    if want("beacons") {
        sections.push(beacons(&mut g, o));
    }
    if want("devices") {
        sections.push(devices(&store, o)?);
    }
    let w = |e: std::io::Error| format!("writing the report: {e}");
    if o.json {
        for s in &sections {
            let v = serde_json::json!({
                "analysis": s.analysis, "title": s.title, "explanation": s.explanation,
                "query": s.query, "rows": s.rows,
            });
            writeln!(out, "{v}").map_err(w)?;
        }
    } else {
        writeln!(
            out,
            "PiTap report: {flows} flows from {} to {} (UTC)",
            time_text(o.since_ms, ' '),
            time_text(o.until_ms.min(crate::search::now_ms().max(o.since_ms)), ' ')
        )
        .map_err(w)?;
        for s in &sections {
            writeln!(out, "\n== {}", s.title).map_err(w)?;
            writeln!(out, "{}", s.explanation).map_err(w)?;
            writeln!(out, "query: pitap query '{}'", s.query).map_err(w)?;
            if s.lines.is_empty() {
                writeln!(out, "  (nothing)").map_err(w)?;
            }
            for l in &s.lines {
                writeln!(out, "  {l}").map_err(w)?;
            }
        }
    }
    Ok(sections)
}

fn inbound(g: &Gathered, limit: usize, any_internal: bool) -> Section {
    let mut rows: Vec<_> = g.inbound.iter().collect();
    rows.sort_by(|a, b| b.1.flows.cmp(&a.1.flows).then(a.0.cmp(b.0)));
    rows.truncate(limit);
    let mut explanation = "Connections from outside addresses to internal ones that were accepted: \
        each line is an internal service the outside reached. Anything not meant to be public is a finding."
        .to_string();
    if !any_internal {
        explanation += " (No flow touched an `internal` network: define [networks] internal in collector.toml.)";
    }
    Section {
        analysis: "inbound",
        title: "Outside hosts reaching internal services".into(),
        explanation,
        query: "from_internal:false AND to_internal:true AND action:ACCEPT".into(),
        lines: rows
            .iter()
            .map(|((addr, port), i)| {
                let sources: Vec<String> = i.sources.iter().take(3).map(|a| a.to_string()).collect();
                let countries = if i.countries.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", i.countries.iter().cloned().collect::<Vec<_>>().join(", "))
                };
                format!(
                    "{addr} {port}: {} flows from {} outside hosts ({}{}){countries}, {} bytes",
                    i.flows,
                    i.sources.len(),
                    sources.join(", "),
                    if i.sources.len() > 3 { ", ..." } else { "" },
                    i.bytes
                )
            })
            .collect(),
        rows: rows
            .iter()
            .map(|((addr, port), i)| {
                serde_json::json!({"dst_addr": addr.to_string(), "service": port, "flows": i.flows,
                    "sources": i.sources.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "bytes": i.bytes,
                    "countries": i.countries.iter().collect::<Vec<_>>()})
            })
            .collect(),
    }
}

fn exfil(g: &Gathered, o: &Options) -> Section {
    let mut rows: Vec<_> = g.exfil.iter().collect();
    rows.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
    rows.truncate(o.limit);
    let groups = o.sensitive.join(" OR ");
    let query = if o.sensitive.is_empty() {
        "(no [report] sensitive groups configured)".to_string()
    } else {
        format!("action:ACCEPT AND ((src_group:({groups}) AND to_internal:false) OR (dst_group:({groups}) AND from_internal:false))")
    };
    Section {
        analysis: "exfil",
        title: "Bytes leaving sensitive groups".into(),
        explanation: format!(
            "Bytes sent by hosts of the sensitive groups ({}) to outside addresses in accepted \
             connections, by destination, whichever side opened the connection. Large or unfamiliar destinations deserve a look.",
            if o.sensitive.is_empty() { "none configured: set [report] sensitive".into() } else { o.sensitive.join(", ") }
        ),
        query,
        lines: rows
            .iter()
            .map(|((group, peer), x)| {
                let from: Vec<String> = x.from.iter().map(|a| a.to_string()).collect();
                let place = match (&x.country, x.asn) {
                    (Some(c), Some(a)) => format!(" [{c}, AS{a}]"),
                    (Some(c), None) => format!(" [{c}]"),
                    (None, Some(a)) => format!(" [AS{a}]"),
                    (None, None) => String::new(),
                };
                format!("{group} -> {peer}{place}: {} bytes in {} flows (from {})", x.bytes, x.flows, from.join(", "))
            })
            .collect(),
        rows: rows
            .iter()
            .map(|((group, peer), x)| {
                serde_json::json!({"group": group, "peer": peer.to_string(), "bytes": x.bytes, "flows": x.flows,
                    "from": x.from.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "country": x.country, "asn": x.asn})
            })
            .collect(),
    }
}

pub fn scan_verdict(ports: usize, hosts: usize, t: &Thresholds) -> &'static str {
    match (ports >= t.scan_ports, hosts >= t.scan_hosts) {
        (true, true) => "port scan and host sweep",
        (true, false) => "port scan",
        (false, true) => "host sweep",
        (false, false) => "refused",
    }
}

fn refused(g: &Gathered, o: &Options) -> Section {
    let mut rows: Vec<_> = g.refused.iter().collect();
    rows.sort_by(|a, b| {
        let score = |r: &Refused| r.ports.len().max(r.hosts.len());
        score(b.1)
            .cmp(&score(a.1))
            .then(b.1.attempts.cmp(&a.1.attempts))
            .then(a.0.cmp(b.0))
    });
    rows.truncate(o.limit);
    let t = &o.thresholds;
    Section {
        analysis: "refused",
        title: "Refused and unanswered connection attempts, by source".into(),
        explanation: format!(
            "TCP attempts that were refused (RST) or never answered, per source. A source trying \
             {} or more ports is a port scan, {} or more hosts a sweep.",
            t.scan_ports, t.scan_hosts
        ),
        query: "proto:TCP AND action:(REJECT OR NOREPLY)".into(),
        lines: rows
            .iter()
            .map(|(src, r)| {
                format!(
                    "{src}: {} ({} attempts, {} refused, {} ports, {} hosts)",
                    scan_verdict(r.ports.len(), r.hosts.len(), t),
                    r.attempts,
                    r.rejected,
                    r.ports.len(),
                    r.hosts.len()
                )
            })
            .collect(),
        rows: rows
            .iter()
            .map(|(src, r)| {
                serde_json::json!({"src_addr": src.to_string(), "verdict": scan_verdict(r.ports.len(), r.hosts.len(), t),
                    "attempts": r.attempts, "refused": r.rejected, "ports": r.ports.len(), "hosts": r.hosts.len()})
            })
            .collect(),
    }
}

fn beacons(g: &mut Gathered, o: &Options) -> Section {
    let rules = &o.thresholds.beacon;
    let mut found = Vec::new();
    // The workers' sorted runs, merged (a stable sort finds the runs).
    g.series.sort_by_key(|s| (s.0, s.1));
    let (mut starts, mut sizes) = (Vec::new(), Vec::new());
    let mut keys: Vec<(Series, u64, u32)> = Vec::new();
    for run in g.series.chunk_by(|a, b| a.0 == b.0) {
        if run.len() < rules.min_connections {
            continue;
        }
        // Series whose hashes collide are told apart by their keys (a run
        // of one key, nearly always, is already in start order).
        keys.clear();
        keys.extend(run.iter().map(|s| (g.series_keys[s.2 as usize], s.1, s.2)));
        if keys.iter().any(|k| k.0 != keys[0].0) {
            keys.sort_unstable();
        }
        for series in keys.chunk_by(|a, b| a.0 == b.0) {
            let (src, dst, port, proto) = series[0].0;
            if rules.ignores(proto, port) {
                continue;
            }
            starts.clear();
            starts.extend(series.iter().map(|s| s.1));
            sizes.clear();
            sizes.extend(series.iter().map(|s| g.series_sizes[s.2 as usize]));
            if let Some(sc) = beacon::score(&mut starts, &sizes, rules) {
                if sc.score >= rules.min_score {
                    let dst = match dst {
                        Destination::Name(h) => {
                            (g.names.get(&h).cloned().unwrap_or_default(), true)
                        }
                        Destination::Addr(a) => (a.to_string(), false),
                    };
                    found.push((src, dst, port, proto, sc));
                }
            }
        }
    }
    found.sort_by(|a, b| {
        b.4.score
            .total_cmp(&a.4.score)
            .then(b.4.connections.cmp(&a.4.connections))
            .then(a.0.cmp(&b.0))
    });
    found.truncate(o.limit);
    let query = |s: &IpAddr, d: &(String, bool), p: &u16| {
        let field = if d.1 { "dst_name" } else { "dst_addr" };
        format!("src_addr:{s} AND {field}:{} AND dst_port:{p}", d.0)
    };
    Section {
        analysis: "beacons",
        title: "Beaconing: connections on a timer".into(),
        explanation: format!(
            "A source calling the same destination (address, or the DNS name it resolved) and port \
             at least {} times on a timer of {} s to {} s, scored 0 to 1 by how regular the \
             intervals are (robust to jitter of half the sleep), how alike the sizes, and how many \
             of the timer's calls were seen; reported from {:.2} ([report] beacon_score). How \
             implants call their command-and-control server; only times and sizes are used, so it \
             works on encrypted traffic. NTP polls are left out.",
            rules.min_connections,
            rules.min_interval_ms / 1000,
            rules.max_interval_ms / 1000,
            rules.min_score,
        ),
        query: "src_addr:SRC AND dst_addr:DST AND dst_port:PORT".into(),
        lines: found
            .iter()
            .map(|(s, d, p, pr, sc)| {
                let proto = proto_name(*pr).map_or_else(|| pr.to_string(), str::to_string);
                format!(
                    "{s} -> {}:{p}/{}: score {:.2}, {} connections every {:.1} s ({})  query: {}",
                    d.0,
                    proto.to_ascii_lowercase(),
                    sc.score,
                    sc.connections,
                    sc.interval_ms / 1000.0,
                    sc.reasons(),
                    query(s, d, p)
                )
            })
            .collect(),
        rows: found
            .iter()
            .map(|(s, d, p, pr, sc)| {
                let mut row = serde_json::json!({"src_addr": s.to_string(), "dst_port": p,
                    "proto": pr, "connections": sc.connections, "interval_s": sc.interval_ms / 1000.0,
                    "jitter": sc.jitter, "score": sc.score, "reasons": sc.reasons()});
                row[if d.1 { "dst_name" } else { "dst_addr" }] = d.0.clone().into();
                row
            })
            .collect(),
    }
}

fn devices(store: &Store, o: &Options) -> Result<Section, String> {
    let new: Vec<_> = store
        .devices()?
        .into_iter()
        .filter(|d| d.first_ms >= o.since_ms && d.first_ms < o.until_ms)
        .take(o.limit)
        .collect();
    Ok(Section {
        analysis: "devices",
        title: "New devices".into(),
        explanation:
            "MAC addresses whose first flow falls in the window: a device that joined the network \
             (or a randomised MAC)."
                .into(),
        query: "mac:MAC".into(),
        lines: new
            .iter()
            .map(|d| {
                format!(
                    "{} first seen {}, last {} as {}, {} flows",
                    d.mac,
                    time_text(d.first_ms, ' '),
                    time_text(d.last_ms, ' '),
                    d.last_addr,
                    d.flows
                )
            })
            .collect(),
        rows: new
            .iter()
            .map(|d| {
                serde_json::json!({"mac": d.mac, "first_ms": d.first_ms, "last_ms": d.last_ms,
                    "last_addr": d.last_addr, "flows": d.flows})
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let t = Thresholds::default();
        assert_eq!(scan_verdict(40, 1, &t), "port scan");
        assert_eq!(scan_verdict(1, 30, &t), "host sweep");
        assert_eq!(scan_verdict(2, 2, &t), "refused");
    }
}
