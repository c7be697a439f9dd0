//! The pages, each built from the store in one request: the overview,
//! search, reports, devices, a device, a flow. Every value from the wire
//! goes through `esc` (html.rs); links carry queries built by `term`.

use std::collections::HashMap;
use std::fmt::Write;

use pitap_wire::fields::RECORD_FIELDS;
use pitap_wire::format::{mac_text, time_text};

use super::html::{self, bytes, count, esc, query_string, term};
use super::svg;
use crate::fields::{single_field, Field, Owned};
use crate::flow::StoredFlow;
use crate::networks::Networks;
use crate::progress::Progress;
use crate::query::{self, Expr};
use crate::report;
use crate::search::{now_ms, parse_time};
use crate::store::engine::{Aggregate, Scope, Tally};
use crate::store::Store;

/// What every page is given besides its parameters.
pub struct Site {
    pub store: std::path::PathBuf,
    /// From collector.toml; None: the networks the collector saved.
    pub networks: Option<Networks>,
    pub sensitive: Vec<String>,
    /// The report's thresholds, from `[report]`.
    pub thresholds: report::Thresholds,
    /// JSON lines files the alert rules write (`file:` actions).
    pub alert_files: Vec<std::path::PathBuf>,
}

/// A request's parameters by name (the last one wins).
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn get(&self, k: &str) -> &str {
        self.0.get(k).map_or("", String::as_str)
    }
}

/// The ranges the picker offers, and what a page shows by default.
const RANGES: [&str; 8] = ["15m", "1h", "6h", "24h", "7d", "30d", "all", "custom"];
const DEFAULT_RANGE: &str = "24h";

/// A page's time window, resolved.
struct Window {
    range: String,
    since: u64,
    until: u64,
}

impl Window {
    fn of(p: &Params, store: &Store) -> Result<Window, String> {
        let range = match p.get("range") {
            "" if !p.get("since").is_empty() => "custom",
            "" => DEFAULT_RANGE,
            r => r,
        }
        .to_string();
        let now = now_ms();
        let (since, until) = match range.as_str() {
            "all" => store
                .time_bounds()?
                .map_or((0, 1), |(lo, hi)| (lo, hi.saturating_add(1))),
            "custom" => {
                let since = parse_time(p.get("since"), now).map_err(|e| format!("since: {e}"))?;
                let until = match p.get("until") {
                    "" => u64::MAX,
                    u => parse_time(u, now).map_err(|e| format!("until: {e}"))?,
                };
                (since, until)
            }
            r => (
                parse_time(r, now).map_err(|e| format!("range: {e}"))?,
                now.saturating_add(1),
            ),
        };
        Ok(Window {
            range,
            since,
            until,
        })
    }

    /// The parameters that keep this window in a link.
    fn pairs(&self, p: &Params) -> Vec<(&'static str, String)> {
        let mut v = vec![("range", self.range.clone())];
        if self.range == "custom" {
            v.push(("since", p.get("since").to_string()));
            v.push(("until", p.get("until").to_string()));
        }
        v
    }

    /// Buckets of a time series over the window: at most ~120.
    fn buckets(&self, store_bounds: Option<(u64, u64)>) -> (u64, u64, usize) {
        let (lo, hi) = match store_bounds {
            Some((a, b)) => (self.since.max(a), self.until.min(b.saturating_add(1))),
            None => (self.since, self.until),
        };
        let span = hi.saturating_sub(lo).max(1);
        let steps = [
            1_000u64,
            10_000,
            60_000,
            300_000,
            900_000,
            3_600_000,
            10_800_000,
            86_400_000,
            604_800_000,
        ];
        let width = steps
            .iter()
            .copied()
            .find(|w| span / w <= 120)
            .unwrap_or(span / 120 + 1);
        let origin = lo / width * width;
        let n = (hi.saturating_sub(origin)).div_ceil(width).clamp(1, 200) as usize;
        (origin, width, n)
    }
}

fn link(path: &str, pairs: &[(&str, String)]) -> String {
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let q = query_string(&refs);
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

fn picker(action: &str, w: &Window, p: &Params, extra: &[(&str, &str)]) -> String {
    let mut s = format!("<form class=\"picker\" method=\"get\" action=\"{action}\">");
    for (k, v) in extra {
        let _ = write!(
            s,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
    }
    s.push_str("<label>Range <select name=\"range\">");
    for r in RANGES {
        let sel = if r == w.range { " selected" } else { "" };
        let _ = write!(s, "<option value=\"{r}\"{sel}>{r}</option>");
    }
    let _ = write!(
        s,
        "</select></label> <label>from <input name=\"since\" value=\"{}\" placeholder=\"2026-11-25T10:00:00Z\" size=\"22\"></label> \
         <label>to <input name=\"until\" value=\"{}\" placeholder=\"now\" size=\"22\"></label> <button>Show</button></form>",
        esc(p.get("since")),
        esc(p.get("until"))
    );
    s
}

fn open(site: &Site) -> Result<(Store, Networks), String> {
    let store = Store::open_existing(&site.store)?;
    let networks = store.networks(site.networks.clone())?;
    Ok((store, networks))
}

fn aggregate(store: &Store, expr: &Expr, scope: &Scope, what: Aggregate) -> Result<Tally, String> {
    store.aggregate(expr, scope, what, &mut Progress::silent())
}

fn ranked(t: &Tally, limit: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = t
        .groups
        .iter()
        .map(|(k, n)| {
            (
                k.as_ref()
                    .map_or_else(|| "-".into(), |k| k.as_value().to_string()),
                *n,
            )
        })
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

fn field(name: &str) -> Field {
    // Names of the field table: always there.
    single_field(name).unwrap_or(Field::Tap)
}

/// `base AND term`, written so the query language reads it back.
fn narrow(base: &str, field: &str, value: &str) -> String {
    and_base(base, term(field, value))
}

/// `base` narrowed to the flows without a value of `field` (a quick
/// value's "-" bar).
fn narrow_missing(base: &str, field: &str) -> String {
    and_base(base, format!("NOT _exists_:{field}"))
}

fn and_base(base: &str, t: String) -> String {
    if base.trim().is_empty() {
        t
    } else {
        format!("({}) AND {t}", base.trim())
    }
}

fn series_values(t: &Tally, n: usize) -> Vec<u64> {
    let mut v = vec![0u64; n];
    for (k, sum) in &t.groups {
        if let Some(Owned::Num(b)) = k {
            if let Some(slot) = v.get_mut(*b as usize) {
                *slot = slot.saturating_add(*sum);
            }
        }
    }
    v
}

fn search_link(q: &str, w: &Window, p: &Params) -> String {
    let mut pairs = vec![("q", q.to_string())];
    pairs.extend(w.pairs(p));
    link("/search", &pairs)
}

fn quick_bars(
    t: &Tally,
    fieldname: &str,
    base: &str,
    w: &Window,
    p: &Params,
    fmt: fn(u64) -> String,
) -> String {
    let rows: Vec<(String, u64, String)> = ranked(t, 10)
        .into_iter()
        .map(|(v, n)| {
            let href = if v == "-" {
                search_link(&narrow_missing(base, fieldname), w, p)
            } else {
                search_link(&narrow(base, fieldname, &v), w, p)
            };
            (v, n, href)
        })
        .collect();
    svg::bars(&rows, fmt)
}

/// A world map of `t` (grouped by a country field); without a GeoIP
/// database, the map and how to add one.
#[allow(clippy::too_many_arguments)]
fn map_section(
    title: &str,
    networks: &Networks,
    t: Option<&Tally>,
    fieldname: &str,
    base: &str,
    w: &Window,
    p: &Params,
    fmt: fn(u64) -> String,
) -> String {
    let has_db = networks.has_countries();
    let values: HashMap<String, u64> = match (has_db, t) {
        (true, Some(t)) => t
            .groups
            .iter()
            .filter_map(|(k, n)| k.as_ref().map(|k| (k.as_value().to_string(), *n)))
            .collect(),
        _ => HashMap::new(),
    };
    let note = if has_db {
        String::new()
    } else {
        "<p class=\"empty\" id=\"no-geoip\">No GeoIP database: put <code>[geoip] country = \"/path/GeoLite2-Country.mmdb\"</code> \
         (MaxMind GeoLite2 or DB-IP Lite) into collector.toml and start <code>pitap serve --config collector.toml</code>.</p>"
            .to_string()
    };
    let href = |code: &str| search_link(&narrow(base, fieldname, code), w, p);
    format!(
        "<section class=\"map\" id=\"map-{}\"><h2>{}</h2>{note}{}</section>",
        esc(fieldname),
        esc(title),
        svg::world(&values, &href, fmt)
    )
}

type QuickChart<'a> = (&'a str, &'a Tally, &'a str, &'a str, fn(u64) -> String);

pub fn overview(site: &Site, p: &Params) -> Result<String, String> {
    let (store, networks) = open(site)?;
    let w = Window::of(p, &store)?;
    let tap = p.get("tap");
    let base = if tap.is_empty() {
        String::new()
    } else {
        term("tap", tap)
    };
    let expr = query::parse(&base).map_err(|e| e.to_string())?;
    let scope = Scope {
        since_ms: w.since,
        until_ms: w.until,
        networks: &networks,
    };
    let by_tap = |f: &str| Aggregate::Sum {
        field: field(f),
        by: field("tap"),
    };
    let flows = aggregate(&store, &expr, &scope, Aggregate::Top(field("tap")))?;
    let total_bytes = aggregate(&store, &expr, &scope, by_tap("bytes"))?;
    let total_pkts = aggregate(&store, &expr, &scope, by_tap("pkts"))?;
    let (origin, width, n) = w.buckets(store.time_bounds()?);
    let over_time = |weight: Option<&str>| {
        aggregate(
            &store,
            &expr,
            &scope,
            Aggregate::Series {
                weight: weight.map(field),
                origin_ms: origin,
                width_ms: width,
            },
        )
    };
    let series = over_time(Some("bytes"))?;
    let flow_series = over_time(None)?;
    let pkt_series = over_time(Some("pkts"))?;
    let sum_by = |by: &str| Aggregate::Sum {
        field: field("bytes"),
        by: field(by),
    };
    let talkers = aggregate(&store, &expr, &scope, sum_by("src_addr"))?;
    let dests = aggregate(&store, &expr, &scope, sum_by("dst_addr"))?;
    let services = aggregate(&store, &expr, &scope, Aggregate::Top(field("dst_port")))?;
    let refused_q = if base.is_empty() {
        "action:(REJECT OR NOREPLY)".to_string()
    } else {
        format!("{base} AND action:(REJECT OR NOREPLY)")
    };
    let refused_expr = query::parse(&refused_q).map_err(|e| e.to_string())?;
    let refused = aggregate(
        &store,
        &refused_expr,
        &scope,
        Aggregate::Top(field("src_addr")),
    )?;
    let geo = networks.has_countries();
    let (to_countries, refused_from) = if geo {
        (
            Some(aggregate(&store, &expr, &scope, sum_by("dst_country"))?),
            Some(aggregate(
                &store,
                &refused_expr,
                &scope,
                Aggregate::Top(field("src_country")),
            )?),
        )
    } else {
        (None, None)
    };

    let mut b = String::new();
    let title = if tap.is_empty() {
        "All taps".to_string()
    } else {
        format!("Tap {tap}")
    };
    let _ = write!(b, "<h1>{}</h1>", esc(&title));
    b.push_str(&picker("/", &w, p, &[("tap", tap)]));
    let _ = write!(
        b,
        "<section class=\"totals\"><div><span class=\"n\" id=\"total-flows\">{}</span> flows</div>\
         <div><span class=\"n\" id=\"total-bytes\" data-bytes=\"{}\">{}</span> bytes</div>\
         <div><span class=\"n\" id=\"total-pkts\">{}</span> packets</div></section>",
        count(flows.matched),
        total_bytes.total,
        esc(&bytes(total_bytes.total)),
        count(total_pkts.total)
    );
    let _ = write!(
        b,
        "<section><h2>Bytes over time</h2>{}</section><div class=\"grid\">\
         <section><h2>Flows over time</h2>{}</section><section><h2>Packets over time</h2>{}</section></div>",
        svg::series(&series_values(&series, n), origin, width, bytes),
        svg::series(&series_values(&flow_series, n), origin, width, count),
        svg::series(&series_values(&pkt_series, n), origin, width, count)
    );
    b.push_str("<div class=\"grid\">");
    // (title, values, field, the query its bars narrow, how a value prints)
    let quick: [QuickChart; 4] = [
        (
            "Top talkers (bytes sent and received, by initiator)",
            &talkers,
            "src_addr",
            &base,
            bytes,
        ),
        ("Top destinations (bytes)", &dests, "dst_addr", &base, bytes),
        (
            "Services (flows by destination port)",
            &services,
            "dst_port",
            &base,
            count,
        ),
        (
            "Refused and unanswered, by source",
            &refused,
            "src_addr",
            &refused_q,
            count,
        ),
    ];
    for (title, tally, fieldname, query, fmt) in quick {
        let _ = write!(
            b,
            "<section><h2>{title}</h2>{}</section>",
            quick_bars(tally, fieldname, query, &w, p, fmt)
        );
    }
    b.push_str("</div><div class=\"maps\">");
    b.push_str(&map_section(
        "Where the bytes go (destination countries)",
        &networks,
        to_countries.as_ref(),
        "dst_country",
        &base,
        &w,
        p,
        bytes,
    ));
    b.push_str(&map_section(
        "Where refused and unanswered connections come from",
        &networks,
        refused_from.as_ref(),
        "src_country",
        &refused_q,
        &w,
        p,
        count,
    ));
    b.push_str("</div>");
    b.push_str(&taps_section(&store, &flows, &w, p)?);
    b.push_str(&alerts_section(site));
    Ok(html::page("Overview", "overview", &b, true))
}

/// Each tap: its flows in the window, what the collector last heard of it.
fn taps_section(store: &Store, flows: &Tally, w: &Window, p: &Params) -> Result<String, String> {
    let saved: serde_json::Value = store
        .saved_state()?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let state = &saved["taps"];
    let health: serde_json::Value = store
        .saved_health()?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let mut b = String::from(
        "<section><h2>Taps</h2><table class=\"taps\"><thead><tr><th>tap</th><th>flows here</th>\
         <th>batches</th><th>records</th><th>last seen</th><th>links</th><th>ring drops</th>\
         <th>flow table</th><th>clock</th><th>uplink</th><th>version and updates</th><th>LEDs</th></tr></thead><tbody>",
    );
    let updates = crate::store::updates::statuses(store.conn())?;
    // Every tap known: by its delivery state, its health, or its flows.
    let mut ids: Vec<String> = state
        .as_object()
        .into_iter()
        .chain(health.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    for k in flows.groups.keys().flatten() {
        let id = k.as_value().to_string();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort();
    for id in ids {
        let s = &state[&id];
        let h = &health[&id];
        let here = flows
            .groups
            .iter()
            .find(|(k, _)| k.as_ref().is_some_and(|k| k.as_value().to_string() == id))
            .map_or(0, |(_, n)| *n);
        let num = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), count);
        let hh = &h["health"];
        let links = hh["ports"]
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .map(|port| {
                        format!(
                            "{} ({}) {}{}",
                            port["port"].as_str().unwrap_or("?"),
                            port["name"].as_str().unwrap_or("?"),
                            if port["carrier"].as_bool().unwrap_or(false) {
                                "up"
                            } else {
                                "down"
                            },
                            port["speed_mbps"]
                                .as_u64()
                                .map_or(String::new(), |s| format!(" {s} Mb/s"))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "-".into());
        let drops: u64 = hh["ports"]
            .as_array()
            .map(|ports| ports.iter().filter_map(|p| p["ring_drops"].as_u64()).sum())
            .unwrap_or(0);
        let table = match (hh["flows_active"].as_u64(), hh["flows_capacity"].as_u64()) {
            (Some(a), Some(c)) => format!("{} / {}", count(a), count(c)),
            _ => "-".into(),
        };
        let clock = if hh.is_null() {
            "-".to_string()
        } else if hh["clock"]["synced"].as_bool().unwrap_or(false) {
            format!("synced ({})", hh["clock"]["source"].as_str().unwrap_or("?"))
        } else {
            "unsynced".into()
        };
        let up = &hh["uplink"];
        let uplink = match (up["srtt_us"].as_u64(), up["retransmits"].as_u64()) {
            (Some(rtt), Some(re)) => format!(
                "rtt {:.1} ms, {} retransmitted, window {}",
                rtt as f64 / 1000.0,
                count(re),
                up["window"].as_u64().unwrap_or(0)
            ),
            _ => "-".into(),
        };
        let seen = h["last_seen_ms"]
            .as_u64()
            .map_or("-".into(), |t| time_text(t, ' '));
        let leds = svg::leds(
            &hh["leds"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|e| {
                            Some((e[0].as_str()?.to_string(), e[1].as_str()?.to_string()))
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
        // What the tap said of its updates, else the version its health says.
        let version = match updates.iter().find(|u| u.tap == id) {
            Some(u) => u.summary(),
            None => hh["version"].as_str().unwrap_or("-").to_string(),
        };
        let mut pairs = vec![("tap", id.clone())];
        pairs.extend(w.pairs(p));
        let _ = write!(
            b,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{leds}</td></tr>",
            esc(&link("/", &pairs)),
            esc(&id),
            count(here),
            num(&s["batches"]),
            num(&s["records"]),
            esc(&seen),
            esc(&links),
            count(drops),
            esc(&table),
            esc(&clock),
            esc(&uplink),
            esc(&version),
        );
    }
    b.push_str("</tbody></table></section>");
    Ok(b)
}

fn alerts_section(site: &Site) -> String {
    let mut lines: Vec<serde_json::Value> = Vec::new();
    for f in &site.alert_files {
        if let Ok(text) = std::fs::read_to_string(f) {
            lines.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
            );
        }
    }
    let mut b = String::from("<section><h2>Latest alerts</h2>");
    if site.alert_files.is_empty() {
        b.push_str(
            "<p class=\"empty\">No alert rule writes a file: add a <code>file:PATH</code> action to an <code>[[alert]]</code> in collector.toml to see alerts here.</p>",
        );
    } else if lines.is_empty() {
        b.push_str("<p class=\"empty\">No alerts.</p>");
    } else {
        b.push_str("<table><thead><tr><th>alert</th><th>group</th><th>value</th><th>window end</th></tr></thead><tbody>");
        for a in lines.iter().rev().take(10) {
            let text = |k: &str| match &a[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                v => v.to_string(),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&text("alert")),
                esc(&text("key")),
                esc(&text("value")),
                esc(&a["end_ms"]
                    .as_u64()
                    .map_or(text("end_ms"), |t| time_text(t, ' ')))
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");
    b
}

/// Fields a result table sorts by.
const SORTS: [&str; 5] = ["start_ms", "bytes", "pkts", "duration_ms", "end_ms"];
const PAGE_ROWS: usize = 50;

pub fn search(site: &Site, p: &Params) -> Result<String, String> {
    let (store, networks) = open(site)?;
    let w = Window::of(p, &store)?;
    let q = p.get("q");
    let mut b = String::from("<h1>Search</h1>");
    let _ = write!(
        b,
        "<form class=\"query\" method=\"get\" action=\"/search\">\
         <input name=\"q\" id=\"q\" value=\"{}\" placeholder=\"from_internal:false AND action:ACCEPT\" size=\"80\" autofocus>\
         <input type=\"hidden\" name=\"range\" value=\"{}\"><button>Search</button></form>",
        esc(q),
        esc(&w.range)
    );
    b.push_str(&picker("/search", &w, p, &[("q", q)]));
    let expr = match query::parse(q) {
        Ok(e) => e,
        Err(e) => {
            let _ = write!(
                b,
                "<pre class=\"error\" id=\"query-error\">query error at column {}: {}\n{}\n{}^</pre>",
                e.column,
                esc(&e.message),
                esc(&e.query),
                " ".repeat(e.column.saturating_sub(1))
            );
            return Ok(html::page("Search", "search", &b, false));
        }
    };
    let scope = Scope {
        since_ms: w.since,
        until_ms: w.until,
        networks: &networks,
    };
    let qv = match p.get("qv") {
        "" => "dst_addr",
        f => f,
    };
    let qv_field = single_field(qv).map_err(|e| format!("quick values: {e}"))?;
    let sort = if SORTS.contains(&p.get("sort")) {
        p.get("sort")
    } else {
        "start_ms"
    };
    let asc = p.get("order") == "asc";
    // Past the last page is an empty page, not an overflow.
    let page_no: usize = p.get("page").parse::<usize>().unwrap_or(0).min(1 << 32);
    let (origin, width, n) = w.buckets(store.time_bounds()?);
    let hist = aggregate(
        &store,
        &expr,
        &scope,
        Aggregate::Series {
            weight: None,
            origin_ms: origin,
            width_ms: width,
        },
    )?;
    let quick = aggregate(&store, &expr, &scope, Aggregate::Top(qv_field))?;
    let countries = if networks.has_countries() {
        Some(aggregate(
            &store,
            &expr,
            &scope,
            Aggregate::Top(field("dst_country")),
        )?)
    } else {
        None
    };
    let (matched, rows) = store.page(
        &expr,
        &scope,
        field(sort),
        !asc,
        page_no.saturating_mul(PAGE_ROWS),
        PAGE_ROWS,
    )?;
    let _ = write!(
        b,
        "<p class=\"matched\"><span id=\"matched\">{}</span> flows match.</p>",
        count(matched)
    );
    let _ = write!(
        b,
        "<section><h2>Matching flows over time</h2>{}</section>",
        svg::series(&series_values(&hist, n), origin, width, count)
    );
    // Quick values: any field.
    let mut keep = vec![("q", q.to_string())];
    keep.extend(w.pairs(p));
    let _ = write!(
        b,
        "<section><h2>Quick values of <form class=\"inline\" method=\"get\" action=\"/search\">"
    );
    for (k, v) in &keep {
        let _ = write!(
            b,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
    }
    b.push_str("<select name=\"qv\" id=\"qv\">");
    for name in Field::names() {
        if single_field(name).is_err() {
            continue;
        }
        let sel = if name == qv { " selected" } else { "" };
        let _ = write!(b, "<option{sel}>{name}</option>");
    }
    let _ = write!(
        b,
        "</select><button>Show</button></form></h2><div id=\"quick\">{}</div></section>",
        quick_bars(&quick, qv, q, &w, p, count)
    );
    b.push_str(&map_section(
        "Matching flows by destination country",
        &networks,
        countries.as_ref(),
        "dst_country",
        q,
        &w,
        p,
        count,
    ));
    // The table.
    let head = |name: &str, label: &str| -> String {
        if !SORTS.contains(&name) {
            return format!("<th>{}</th>", esc(label));
        }
        let order = if sort == name && !asc { "asc" } else { "desc" };
        let mut pairs = keep.clone();
        pairs.push(("qv", qv.to_string()));
        pairs.push(("sort", name.to_string()));
        pairs.push(("order", order.to_string()));
        let mark = if sort == name {
            if asc {
                " ▲"
            } else {
                " ▼"
            }
        } else {
            ""
        };
        format!(
            "<th><a href=\"{}\">{}{mark}</a></th>",
            esc(&link("/search", &pairs)),
            esc(label)
        )
    };
    b.push_str("<section><h2>Flows</h2><table class=\"flows\" id=\"flows\"><thead><tr>");
    for (name, label) in [
        ("start_ms", "start"),
        ("tap", "tap"),
        ("action", "action"),
        ("proto", "proto"),
        ("src", "source"),
        ("dst", "destination"),
        ("bytes", "bytes"),
        ("pkts", "packets"),
        ("duration_ms", "ms"),
        ("conn_state", "state"),
        ("names", "names"),
    ] {
        b.push_str(&head(name, label));
    }
    b.push_str("</tr></thead><tbody>");
    for f in &rows {
        b.push_str(&flow_row(f));
    }
    b.push_str("</tbody></table>");
    let pages = (matched as usize).div_ceil(PAGE_ROWS);
    let page_link = |n: usize| {
        let mut pairs = keep.clone();
        pairs.push(("qv", qv.to_string()));
        pairs.push(("sort", sort.to_string()));
        pairs.push(("order", if asc { "asc" } else { "desc" }.to_string()));
        pairs.push(("page", n.to_string()));
        esc(&link("/search", &pairs))
    };
    b.push_str("<p class=\"pager\">");
    if page_no > 0 {
        let _ = write!(
            b,
            "<a href=\"{}\" id=\"prev\">← newer</a> ",
            page_link(page_no - 1)
        );
    }
    let _ = write!(b, "page {} of {}", page_no.saturating_add(1), pages.max(1));
    if page_no + 1 < pages {
        let _ = write!(
            b,
            " <a href=\"{}\" id=\"next\">older →</a>",
            page_link(page_no + 1)
        );
    }
    b.push_str("</p></section>");
    Ok(html::page("Search", "search", &b, true))
}

fn text_of(f: &StoredFlow, name: &str) -> String {
    match single_field(name) {
        Ok(field) => field.text(f),
        Err(_) => "-".into(),
    }
}

/// The link that finds one flow again.
fn flow_link(f: &StoredFlow) -> String {
    let r = &f.record;
    link(
        "/flow",
        &[
            ("tap", f.tap.clone()),
            ("start", r.start_ms.to_string()),
            ("proto", r.proto.to_string()),
            ("src", r.src.addr.to_string()),
            ("sport", r.src.port.to_string()),
            ("dst", r.dst.addr.to_string()),
            ("dport", r.dst.port.to_string()),
        ],
    )
}

fn device_link(mac: &[u8; 6]) -> String {
    link("/device", &[("mac", mac_text(mac))])
}

fn flow_row(f: &StoredFlow) -> String {
    let r = &f.record;
    let names: Vec<String> = ["sni", "dst_name", "http_host", "src_hostname"]
        .iter()
        .map(|n| text_of(f, n))
        .filter(|t| t != "-")
        .collect();
    let end = |addr: &std::net::IpAddr, port: u16| {
        if r.proto == pitap_wire::proto::TCP || r.proto == pitap_wire::proto::UDP {
            format!("{addr}:{port}")
        } else {
            addr.to_string()
        }
    };
    format!(
        "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"names\">{}</td></tr>",
        esc(&flow_link(f)),
        esc(&time_text(r.start_ms, ' ')),
        esc(&f.tap),
        esc(&text_of(f, "action")),
        esc(&text_of(f, "proto")),
        esc(&end(&r.src.addr, r.src.port)),
        esc(&end(&r.dst.addr, r.dst.port)),
        count(r.total_bytes()),
        count(r.total_packets()),
        r.end_ms.saturating_sub(r.start_ms),
        esc(&text_of(f, "conn_state")),
        esc(&names.join(" · ")),
    )
}

pub fn flow(site: &Site, p: &Params) -> Result<String, String> {
    let (store, networks) = open(site)?;
    let mut terms = vec![
        term("tap", p.get("tap")),
        term("start_ms", p.get("start")),
        term("proto_num", p.get("proto")),
        term("src_addr", p.get("src")),
        term("dst_addr", p.get("dst")),
    ];
    for (k, f) in [("sport", "src_port"), ("dport", "dst_port")] {
        if p.get(k) != "0" {
            terms.push(term(f, p.get(k)));
        }
    }
    let q = terms.join(" AND ");
    let expr = query::parse(&q).map_err(|e| format!("this flow's link: {e}"))?;
    let scope = Scope {
        since_ms: 0,
        until_ms: u64::MAX,
        networks: &networks,
    };
    let (_, found) = store.page(&expr, &scope, field("start_ms"), true, 0, 1)?;
    let Some(f) = found.first() else {
        return Ok(html::page(
            "Flow",
            "search",
            "<h1>Flow</h1><p class=\"empty\">No such flow in the store (retention may have removed it).</p>",
            false,
        ));
    };
    let mut b = format!(
        "<h1>Flow</h1><p>{}</p>",
        esc(&pitap_wire::format::text_line(&f.record, &f.tap))
    );
    b.push_str("<table class=\"fields\" id=\"fields\"><tbody>");
    let mut names: Vec<&str> = RECORD_FIELDS.iter().map(|f| f.name).collect();
    names.extend([
        "tap",
        "from_internal",
        "to_internal",
        "src_group",
        "dst_group",
    ]);
    for name in names {
        let value = text_of(f, name);
        let shown = match name {
            "src_mac" => format!(
                "<a href=\"{}\">{}</a>",
                esc(&device_link(&f.record.src.mac)),
                esc(&value)
            ),
            "dst_mac" => format!(
                "<a href=\"{}\">{}</a>",
                esc(&device_link(&f.record.dst.mac)),
                esc(&value)
            ),
            _ => esc(&value),
        };
        let _ = write!(
            b,
            "<tr><th>{}</th><td data-field=\"{}\">{shown}</td></tr>",
            esc(name),
            esc(name)
        );
    }
    b.push_str("</tbody></table>");
    Ok(html::page("Flow", "search", &b, false))
}

pub fn devices(site: &Site, _p: &Params) -> Result<String, String> {
    let (store, _) = open(site)?;
    let mut b = String::from(
        "<h1>Devices</h1><table class=\"devices\"><thead><tr><th>MAC</th><th>hostname</th>\
         <th>last address</th><th>flows</th><th>first seen</th><th>last seen</th></tr></thead><tbody>",
    );
    for d in store.devices()? {
        let _ = write!(
            b,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&link("/device", &[("mac", d.mac.clone())])),
            esc(&d.mac),
            esc(d.hostname.as_deref().unwrap_or("-")),
            esc(&d.last_addr),
            count(d.flows),
            esc(&time_text(d.first_ms, ' ')),
            esc(&time_text(d.last_ms, ' ')),
        );
    }
    b.push_str("</tbody></table>");
    Ok(html::page("Devices", "devices", &b, true))
}

pub fn device(site: &Site, p: &Params) -> Result<String, String> {
    let (store, networks) = open(site)?;
    let mac = p.get("mac").to_ascii_lowercase();
    let Some(d) = store.devices()?.into_iter().find(|d| d.mac == mac) else {
        return Ok(html::page(
            "Device",
            "devices",
            &format!(
                "<h1>Device {}</h1><p class=\"empty\">No flows from or to this MAC.</p>",
                esc(&mac)
            ),
            false,
        ));
    };
    let mut b = format!(
        "<h1>Device <span id=\"mac\">{}</span></h1><table class=\"fields\"><tbody>\
         <tr><th>hostname (DHCP)</th><td id=\"hostname\">{}</td></tr>\
         <tr><th>last address</th><td>{}</td></tr><tr><th>flows</th><td>{}</td></tr>\
         <tr><th>first seen</th><td>{}</td></tr><tr><th>last seen</th><td>{}</td></tr></tbody></table>",
        esc(&d.mac),
        esc(d.hostname.as_deref().unwrap_or("-")),
        esc(&d.last_addr),
        count(d.flows),
        esc(&time_text(d.first_ms, ' ')),
        esc(&time_text(d.last_ms, ' ')),
    );
    // Every hostname its flows carried (a device renamed keeps its past).
    let named = term("src_mac", &d.mac);
    let named_expr = query::parse(&named).map_err(|e| e.to_string())?;
    let all_time = Scope {
        since_ms: 0,
        until_ms: u64::MAX,
        networks: &networks,
    };
    let names = aggregate(
        &store,
        &named_expr,
        &all_time,
        Aggregate::Top(field("src_hostname")),
    )?;
    let mut hostnames: Vec<(String, u64)> = ranked(&names, 50)
        .into_iter()
        .filter(|(n, _)| n != "-")
        .collect();
    hostnames.sort();
    let _ = write!(
        b,
        "<h2>Hostnames (DHCP) in its flows</h2><p id=\"hostnames\">{}</p>",
        if hostnames.is_empty() {
            "none".to_string()
        } else {
            hostnames
                .iter()
                .map(|(n, c)| format!("{} ({} flows)", esc(n), count(*c)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    b.push_str("<h2>Addresses over time</h2><table><thead><tr><th>address</th><th>first seen</th><th>last seen</th></tr></thead><tbody>");
    for (addr, first, last) in store.device_addrs(&d.mac)? {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&addr),
            esc(&time_text(first, ' ')),
            esc(&time_text(last, ' '))
        );
    }
    b.push_str("</tbody></table>");
    let q = term("mac", &d.mac);
    let expr = query::parse(&q).map_err(|e| e.to_string())?;
    let scope = Scope {
        since_ms: 0,
        until_ms: u64::MAX,
        networks: &networks,
    };
    let (matched, rows) = store.page(&expr, &scope, field("start_ms"), true, 0, PAGE_ROWS)?;
    let _ = write!(
        b,
        "<h2>Its flows ({}; <a href=\"{}\">search them</a>)</h2><table class=\"flows\"><tbody>",
        count(matched),
        esc(&link(
            "/search",
            &[("q", q.clone()), ("range", "all".into())]
        ))
    );
    for f in &rows {
        b.push_str(&flow_row(f));
    }
    b.push_str("</tbody></table>");
    Ok(html::page("Device", "devices", &b, true))
}

pub fn reports(site: &Site, p: &Params) -> Result<String, String> {
    let (store, _) = open(site)?;
    let w = Window::of(p, &store)?;
    drop(store);
    let sections = report::run(
        &report::Options {
            store: site.store.clone(),
            since_ms: w.since,
            until_ms: w.until,
            sensitive: site.sensitive.clone(),
            only: None,
            limit: 20,
            thresholds: site.thresholds.clone(),
            json: false,
            networks: site.networks.clone(),
        },
        &mut std::io::sink(),
    )?;
    let mut b = String::from("<h1>Reports</h1>");
    b.push_str(&picker("/reports", &w, p, &[]));
    for s in sections {
        let _ = write!(
            b,
            "<section class=\"report\" id=\"report-{}\"><h2>{}</h2><p>{}</p><p><a href=\"{}\">The flows behind it</a></p>",
            esc(s.analysis),
            esc(&s.title),
            esc(&s.explanation),
            esc(&search_link(&s.query, &w, p))
        );
        if s.rows.is_empty() {
            b.push_str("<p class=\"empty\">Nothing found.</p>");
        } else {
            let keys: Vec<String> = s.rows[0]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            b.push_str("<table><thead><tr>");
            for k in &keys {
                let _ = write!(b, "<th>{}</th>", esc(k));
            }
            b.push_str("</tr></thead><tbody>");
            for row in &s.rows {
                b.push_str("<tr>");
                for k in &keys {
                    let v = match &row[k] {
                        serde_json::Value::String(t) => t.clone(),
                        v => v.to_string(),
                    };
                    let _ = write!(b, "<td>{}</td>", esc(&v));
                }
                b.push_str("</tr>");
            }
            b.push_str("</tbody></table>");
        }
        b.push_str("</section>");
    }
    Ok(html::page("Reports", "reports", &b, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitap_wire::messages::{ClockHealth, Health, PortHealth, UplinkHealth};

    /// A quick value's bars keep the search they narrow, the "-" bar too
    /// (it once searched for the missing field alone); both parse.
    #[test]
    fn quick_values_narrow_the_search_they_came_from() {
        assert_eq!(
            narrow_missing("proto:tcp OR proto:udp", "dst_port"),
            "(proto:tcp OR proto:udp) AND NOT _exists_:dst_port"
        );
        assert_eq!(narrow_missing(" ", "sni"), "NOT _exists_:sni");
        for q in [
            narrow_missing("proto:tcp", "sni"),
            narrow("proto:tcp", "sni", "x.example"),
        ] {
            assert!(crate::query::parse(&q).is_ok(), "{q}");
        }
    }

    /// The taps table reads the health the collector saves: a real
    /// `Health`, serialized as collect.rs does.
    #[test]
    fn the_taps_table_shows_what_a_tap_reported() {
        let dir = std::env::temp_dir().join(format!("pitap-taps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(&dir.join("s.db")).unwrap();
        let health = Health {
            flows_active: 1_234,
            flows_capacity: 65_536,
            ports: vec![PortHealth {
                port: "A".into(),
                name: "eth0<b>".into(),
                carrier: true,
                speed_mbps: Some(1000),
                ring_drops: 7,
                ..PortHealth::default()
            }],
            leds: vec![
                ("power".into(), "heartbeat".into()),
                ("link_a".into(), "blink100".into()),
                ("alert".into(), "off".into()),
            ],
            clock: ClockHealth {
                synced: true,
                source: "collector".into(),
                ..ClockHealth::default()
            },
            uplink: UplinkHealth {
                srtt_us: 1_500,
                retransmits: 3,
                window: 64,
                ..UplinkHealth::default()
            },
            ..Health::default()
        };
        let saved = serde_json::json!({ "edge": { "last_seen_ms": 1_700_000_000_000u64, "health": health } });
        store.save_health(&saved.to_string()).unwrap();
        // Its update status, with a version string from the wire.
        let status = pitap_wire::messages::UpdateStatus {
            running: "0.1.0".into(),
            partition: 3,
            state: pitap_wire::messages::UpdateState::Receiving,
            version: "0.2<script>".into(),
            have: 512,
            total: 2048,
            ..Default::default()
        };
        crate::store::updates::save_status(store.conn(), "edge", &status, 1).unwrap();
        let html = taps_section(
            &store,
            &Tally::default(),
            &Window {
                range: "all".into(),
                since: 0,
                until: u64::MAX,
            },
            &Params(HashMap::new()),
        )
        .unwrap();
        for want in [
            "A (eth0&lt;b&gt;) up 1000 Mb/s",
            "<td>7</td>",
            "1,234 / 65,536",
            "synced (collector)",
            "rtt 1.5 ms, 3 retransmitted, window 64",
            "2023-11-14 22:13:20.000",
            "class=\"led heartbeat\"><title>power: heartbeat</title>",
            "class=\"led blink-fast\"><title>link_a: blink100</title>",
            "class=\"led off\"><title>alert: off</title>",
            "runs 0.1.0 from partition 3: receiving 0.2&lt;script&gt; 512/2048 bytes (25 %)",
        ] {
            assert!(html.contains(want), "{want} not in {html}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
