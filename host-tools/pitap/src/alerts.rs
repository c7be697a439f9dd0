//! Alert rules from collector.toml, evaluated as flows arrive:
//!
//! ```toml
//! [[alert]]
//! name = "port scan"
//! query = "action:REJECT"          # which flows count (the query language)
//! aggregate = "distinct:dst_port"  # count | sum:FIELD | distinct:FIELD
//! by = "src_addr"                  # one window per value (optional)
//! window_s = 60
//! threshold = 20                   # fires when the aggregate reaches it
//! actions = ["print", "file:alerts.jsonl", "webhook:http://127.0.0.1:9000/hook",
//!            "blocklist:blocked.txt", "nft:blocked.nft", "nft-apply:blocked.nft",
//!            "pcap:alert-pcaps"]
//! ```
//!
//! Windows slide over the flows' own end times (so a replayed capture
//! alerts as the live traffic did). A group fires once when it reaches the
//! threshold and again only after it fell below. `blocklist` keeps a plain
//! list of the group's addresses; `nft` writes an nftables table with those
//! sets and a drop rule, `nft-apply` also loads it with `nft -f`. `pcap`
//! fetches the packets of the flow that fired the alert from its tap's
//! packet ring (and keeps every later packet of that flow there) into
//! DIR/ALERT-TIME-TAP-PORT.pcapng (PORT: the initiator's); the alert's JSON
//! names the file.
//!
//! `aggregate = "beacon"` scores each source's calls to a destination (its
//! DNS name, else its address) and port over the window as `pitap report`
//! does, from its 20th call in the window, and fires when the score reaches
//! `threshold` (0 to 1), once while the window holds the series:
//!
//! ```toml
//! [[alert]]
//! name = "beacon"
//! query = "from_internal:true AND to_internal:false"
//! aggregate = "beacon"
//! window_s = 7200
//! threshold = 0.75
//! ```
//!

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fields::{single_field, Field, FieldType, FieldValue};
use crate::flow::StoredFlow;
use crate::query::{self, Expr};

/// Calls a series needs before an alert scores it as a beacon.
pub const ALERT_BEACON_CALLS: usize = 20;

/// At most this many groups are tracked per rule; the stalest go first.
const MAX_GROUPS: usize = 100_000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    #[serde(default)]
    pub query: String,
    #[serde(default = "default_aggregate")]
    pub aggregate: String,
    pub by: Option<String>,
    pub window_s: f64,
    pub threshold: f64,
    #[serde(default = "default_actions")]
    pub actions: Vec<String>,
}

fn default_aggregate() -> String {
    "count".into()
}

fn default_actions() -> Vec<String> {
    vec!["print".into()]
}

#[derive(Clone, Debug, PartialEq)]
enum Aggregate {
    Count,
    Sum(Field),
    Distinct(Field),
    /// The beacon score (0 to 1) of each source's calls to a destination.
    Beacon,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Print,
    File(PathBuf),
    /// POST the alert to a URL, put as its receiver reads it.
    Webhook(String, crate::webhook::Style),
    Blocklist(PathBuf),
    Nft {
        path: PathBuf,
        apply: bool,
    },
    /// Fetch the packets of the flow that fired into this directory.
    Pcap(PathBuf),
}

/// Packets an alert wants from a tap: the collector asks for them.
#[derive(Clone, Debug, PartialEq)]
pub struct PcapOrder {
    pub tap: String,
    pub flow: pitap_wire::messages::FlowEnds,
    pub since_ms: u64,
    pub until_ms: u64,
    pub output: PathBuf,
    pub comment: String,
}

impl AlertRule {
    fn parsed(&self) -> Result<(Expr, Aggregate, Option<Field>, Vec<Action>), String> {
        let expr = query::parse(&self.query).map_err(|e| format!("query: {e}"))?;
        let aggregate = match self.aggregate.split_once(':') {
            None if self.aggregate == "count" => Aggregate::Count,
            None if self.aggregate == "beacon" => Aggregate::Beacon,
            Some(("sum", f)) => {
                let field = single_field(f).map_err(|e| format!("aggregate: {e}"))?;
                if field.field_type() != FieldType::Num {
                    return Err(format!("aggregate: sum:{f} needs a numeric field"));
                }
                Aggregate::Sum(field)
            }
            Some(("distinct", f)) => {
                Aggregate::Distinct(single_field(f).map_err(|e| format!("aggregate: {e}"))?)
            }
            _ => {
                return Err(format!(
                    "aggregate: {:?}: count, sum:FIELD, distinct:FIELD or beacon",
                    self.aggregate
                ))
            }
        };
        let by = match &self.by {
            Some(b) => Some(single_field(b).map_err(|e| format!("by: {e}"))?),
            None => None,
        };
        if !(self.window_s.is_finite() && self.window_s > 0.0) {
            return Err("window_s: a positive number of seconds".into());
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err("threshold: a positive number".into());
        }
        if aggregate == Aggregate::Beacon && (self.threshold > 1.0 || by.is_some()) {
            return Err(
                "aggregate = \"beacon\": threshold is a score up to 1, and the series are each source's calls to a destination (no by)"
                    .into(),
            );
        }
        let mut actions = Vec::new();
        for a in &self.actions {
            let (kind, arg) = a.split_once(':').unwrap_or((a.as_str(), ""));
            let need_arg = |what: &str| -> Result<(), String> {
                if arg.is_empty() {
                    Err(format!("actions: {kind} needs {what} ({kind}:...)"))
                } else {
                    Ok(())
                }
            };
            actions.push(match kind {
                "print" => Action::Print,
                "pcap" => {
                    need_arg("a directory")?;
                    Action::Pcap(arg.into())
                }
                "file" => {
                    need_arg("a path")?;
                    Action::File(arg.into())
                }
                "webhook" | "slack" | "teams" => {
                    need_arg("a URL")?;
                    crate::webhook::check_url(arg).map_err(|e| format!("actions: {e}"))?;
                    let style = match kind {
                        "slack" => crate::webhook::Style::Slack,
                        "teams" => crate::webhook::Style::Teams,
                        _ => crate::webhook::Style::Json,
                    };
                    Action::Webhook(arg.into(), style)
                }
                "blocklist" | "nft" | "nft-apply" => {
                    need_arg("a path")?;
                    if by.is_none_or(|f| f.field_type() != FieldType::Addr) {
                        return Err(format!(
                            "actions: {kind} blocks the group's address: set by = \"src_addr\" or \"dst_addr\""
                        ));
                    }
                    match kind {
                        "blocklist" => Action::Blocklist(arg.into()),
                        _ => Action::Nft {
                            path: arg.into(),
                            apply: kind == "nft-apply",
                        },
                    }
                }
                _ => {
                    return Err(format!(
                        "actions: {a:?}: print, file:PATH, webhook:URL, slack:URL, teams:URL, blocklist:PATH, nft:PATH, nft-apply:PATH or pcap:DIR"
                    ))
                }
            });
        }
        Ok((expr, aggregate, by, actions))
    }

    pub fn check(&self) -> Result<(), String> {
        self.parsed().map(|_| ())
    }
}

/// One group's window.
#[derive(Default)]
struct Window {
    events: VecDeque<(u64, u64, Option<String>)>,
    sum: u64,
    distinct: HashMap<String, u32>,
    firing: bool,
    last_ms: u64,
}

impl Window {
    fn push(&mut self, t: u64, amount: u64, value: Option<String>) {
        self.sum = self.sum.saturating_add(amount);
        if let Some(v) = &value {
            *self.distinct.entry(v.clone()).or_insert(0) += 1;
        }
        self.events.push_back((t, amount, value));
        self.last_ms = self.last_ms.max(t);
    }

    fn expire(&mut self, before: u64) {
        while self.events.front().is_some_and(|e| e.0 < before) {
            let Some((_, amount, value)) = self.events.pop_front() else {
                break;
            };
            self.sum = self.sum.saturating_sub(amount);
            if let Some(v) = value {
                if let Some(n) = self.distinct.get_mut(&v) {
                    *n -= 1;
                    if *n == 0 {
                        self.distinct.remove(&v);
                    }
                }
            }
        }
    }
}

struct Rule {
    config: AlertRule,
    expr: Expr,
    aggregate: Aggregate,
    by: Option<Field>,
    actions: Vec<Action>,
    windows: HashMap<String, Window>,
    window_ms: u64,
}

/// An alert that fired.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Fired {
    pub alert: String,
    pub ts: String,
    pub time_ms: u64,
    pub group: Option<String>,
    pub value: f64,
    pub threshold: f64,
    pub window_s: f64,
    pub aggregate: String,
    pub query: String,
    /// The pcapng file the `pcap` action fetches the flow's packets into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<String>,
}

pub struct Alerts {
    rules: Vec<Rule>,
    /// Addresses per blocklist/nft file.
    blocked: HashMap<PathBuf, BTreeSet<IpAddr>>,
    webhook: Option<crate::webhook::Poster>,
    /// Packet fetches the `pcap` actions ordered, for the collector.
    pcap_orders: Vec<PcapOrder>,
    pub fired: u64,
    pub errors: u64,
}

impl Alerts {
    /// How many rules are in force.
    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// `tls_ca`: the CAs webhooks over https are checked against (default:
    /// the Mozilla roots).
    pub fn new(rules: &[AlertRule], tls_ca: Option<&std::path::Path>) -> Result<Alerts, String> {
        let mut out = Vec::new();
        let mut blocked = HashMap::new();
        let mut webhooks = false;
        for r in rules {
            let (expr, aggregate, by, actions) =
                r.parsed().map_err(|e| format!("alert {:?}: {e}", r.name))?;
            for a in &actions {
                match a {
                    Action::Blocklist(p) | Action::Nft { path: p, .. } => {
                        blocked.insert(p.clone(), read_blocklist(p));
                    }
                    Action::Webhook(..) => webhooks = true,
                    _ => {}
                }
            }
            out.push(Rule {
                window_ms: (r.window_s * 1000.0) as u64,
                config: r.clone(),
                expr,
                aggregate,
                by,
                actions,
                windows: HashMap::new(),
            });
        }
        Ok(Alerts {
            rules: out,
            blocked,
            webhook: match webhooks {
                true => Some(crate::webhook::Poster::start(crate::webhook::Client::new(
                    tls_ca,
                )?)),
                false => None,
            },
            pcap_orders: Vec::new(),
            fired: 0,
            errors: 0,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The packet fetches ordered since the last call.
    pub fn take_pcap_orders(&mut self) -> Vec<PcapOrder> {
        std::mem::take(&mut self.pcap_orders)
    }

    /// Feeds one flow; returns the alerts it fired (after their actions ran).
    pub fn observe(&mut self, flow: &StoredFlow) -> Vec<Fired> {
        let mut fired = Vec::new();
        for rule in &mut self.rules {
            if !rule.expr.matches(flow) {
                continue;
            }
            let beacon = rule.aggregate == Aggregate::Beacon;
            if beacon && flow.record.continuation {
                continue;
            }
            let r = &flow.record;
            let t = if beacon { r.start_ms } else { r.end_ms };
            let group = if beacon {
                let dst = match r.names.responder_name.as_str() {
                    "" => r.dst.addr.to_string(),
                    name => name.to_string(),
                };
                Some(format!("{} -> {dst}:{}", r.src.addr, r.dst.port))
            } else {
                rule.by.map(|f| f.text(flow))
            };
            let (amount, value) = match rule.aggregate {
                Aggregate::Beacon => (r.src.counters.bytes, None),
                Aggregate::Count => (1, None),
                Aggregate::Sum(f) => match f.value(flow) {
                    Some(FieldValue::Num(n)) => (n, None),
                    _ => (0, None),
                },
                Aggregate::Distinct(f) => (0, Some(f.text(flow))),
            };
            if rule.windows.len() >= MAX_GROUPS
                && !rule.windows.contains_key(group.as_deref().unwrap_or(""))
            {
                let horizon = t.saturating_sub(rule.window_ms);
                rule.windows.retain(|_, w| w.last_ms >= horizon);
                if rule.windows.len() >= MAX_GROUPS {
                    continue;
                }
            }
            let w = rule
                .windows
                .entry(group.clone().unwrap_or_default())
                .or_default();
            w.push(t, amount, value);
            w.expire(t.saturating_sub(rule.window_ms));
            let current = match rule.aggregate {
                Aggregate::Count => w.events.len() as f64,
                Aggregate::Sum(_) => w.sum as f64,
                Aggregate::Distinct(_) => w.distinct.len() as f64,
                Aggregate::Beacon => {
                    let mut starts: Vec<u64> = w.events.iter().map(|e| e.0).collect();
                    let sizes: Vec<u64> = w.events.iter().map(|e| e.1).collect();
                    // Scored from 20 calls on: the first few of a browsing
                    // burst can look like a timer.
                    let rules = crate::beacon::BeaconRules {
                        min_connections: ALERT_BEACON_CALLS,
                        ..crate::beacon::BeaconRules::default()
                    };
                    if rules.ignores(r.proto, r.dst.port) {
                        0.0
                    } else {
                        crate::beacon::score(&mut starts, &sizes, &rules).map_or(0.0, |s| s.score)
                    }
                }
            };
            if current >= rule.config.threshold {
                if !w.firing {
                    w.firing = true;
                    let pcap = rule.actions.iter().find_map(|a| match a {
                        Action::Pcap(dir) => Some(pcap_order(dir, &rule.config.name, flow)),
                        _ => None,
                    });
                    let pcap_path = pcap.as_ref().map(|o| o.output.display().to_string());
                    self.pcap_orders.extend(pcap);
                    fired.push((
                        rule.actions.clone(),
                        Fired {
                            pcap: pcap_path,
                            alert: rule.config.name.clone(),
                            ts: pitap_wire::format::time_text(t, 'T') + "Z",
                            time_ms: t,
                            group,
                            value: current,
                            threshold: rule.config.threshold,
                            window_s: rule.config.window_s,
                            aggregate: rule.config.aggregate.clone(),
                            query: rule.config.query.clone(),
                        },
                    ));
                }
            } else if !beacon || w.events.len() < ALERT_BEACON_CALLS {
                // A beacon's score wavers call by call: it fires again only
                // once the window lost the series.
                w.firing = false;
            }
        }
        let mut out = Vec::new();
        for (actions, f) in fired {
            self.fired += 1;
            for a in &actions {
                if let Err(e) = self.act(a, &f) {
                    self.errors += 1;
                    eprintln!("pitap: alert {:?}: {e}", f.alert);
                }
            }
            out.push(f);
        }
        out
    }

    fn act(&mut self, action: &Action, f: &Fired) -> Result<(), String> {
        let json = serde_json::to_string(f).map_err(|e| e.to_string())?;
        let line = format!(
            "ALERT {} {}{}: {} >= {} in {} s",
            f.ts,
            f.alert,
            f.group
                .as_ref()
                .map(|g| format!(" [{g}]"))
                .unwrap_or_default(),
            f.value,
            f.threshold,
            f.window_s
        );
        match action {
            Action::Print => {
                eprintln!("pitap: {line}");
                Ok(())
            }
            Action::File(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| writeln!(file, "{json}"))
                .map_err(|e| format!("{}: {e}", path.display())),
            Action::Webhook(url, style) => match &self.webhook {
                Some(p) => p.post(url, style.body(&json, &line)),
                None => Err("webhook thread missing".into()),
            },
            // Ordered when the alert fired (take_pcap_orders).
            Action::Pcap(_) => Ok(()),
            Action::Blocklist(path) | Action::Nft { path, .. } => {
                let Some(addr) = f.group.as_deref().and_then(|g| g.parse::<IpAddr>().ok()) else {
                    return Ok(());
                };
                let set = self.blocked.entry(path.clone()).or_default();
                if !set.insert(addr) {
                    return Ok(());
                }
                let set = set.clone();
                match action {
                    Action::Nft { apply, .. } => {
                        write_atomic(path, &nft_script(&set))?;
                        if *apply {
                            nft_apply(path)?;
                        }
                        Ok(())
                    }
                    _ => write_atomic(path, &blocklist_text(&set)),
                }
            }
        }
    }
}

/// The fetch of the flow that fired `alert`, into `dir`.
fn pcap_order(dir: &Path, alert: &str, flow: &StoredFlow) -> PcapOrder {
    let r = &flow.record;
    let safe: String = alert
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let tap: String = flow
        .tap
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let when = pitap_wire::format::time_text(r.end_ms, 'T').replace([':', '.'], "");
    let ends = crate::pcap_fetch::FlowEndsText(&pitap_wire::messages::FlowEnds {
        proto: r.proto,
        a: (r.src.addr, r.src.port),
        b: (r.dst.addr, r.dst.port),
    })
    .to_string();
    PcapOrder {
        tap: flow.tap.clone(),
        flow: pitap_wire::messages::FlowEnds {
            proto: r.proto,
            a: (r.src.addr, r.src.port),
            b: (r.dst.addr, r.dst.port),
        },
        since_ms: r.start_ms,
        until_ms: r.end_ms,
        output: dir.join(format!("{safe}-{when}-{tap}-{}.pcapng", r.src.port)),
        comment: format!("pitap: alert {alert:?} on tap {}: flow {ends}", flow.tap),
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The addresses already in a blocklist or nft file (kept across restarts).
fn read_blocklist(path: &Path) -> BTreeSet<IpAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .filter_map(|w| w.parse().ok())
        .collect()
}

pub fn blocklist_text(set: &BTreeSet<IpAddr>) -> String {
    let mut s = String::from("# Addresses blocked by pitap alerts, one per line.\n");
    for a in set {
        s += &format!("{a}\n");
    }
    s
}

/// An nftables script: table `inet pitap` with one set per family and a
/// forward/input drop for sources in them. `nft -f FILE` loads it (and
/// replaces the previous version: the table is deleted first).
pub fn nft_script(set: &BTreeSet<IpAddr>) -> String {
    let list = |v4: bool| {
        set.iter()
            .filter(|a| a.is_ipv4() == v4)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let elements = |l: String| {
        if l.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {l} }};")
        }
    };
    format!(
        "# Written by pitap alerts; load with nft -f.\n\
         table inet pitap\n\
         delete table inet pitap\n\
         table inet pitap {{\n\
         \tset blocked4 {{ type ipv4_addr;{} }}\n\
         \tset blocked6 {{ type ipv6_addr;{} }}\n\
         \tchain input {{ type filter hook input priority -10; ip saddr @blocked4 drop; ip6 saddr @blocked6 drop; }}\n\
         \tchain forward {{ type filter hook forward priority -10; ip saddr @blocked4 drop; ip6 saddr @blocked6 drop; }}\n\
         }}\n",
        elements(list(true)),
        elements(list(false))
    )
}

fn nft_apply(path: &Path) -> Result<(), String> {
    let out = std::process::Command::new("nft")
        .arg("-f")
        .arg(path)
        .output()
        .map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
