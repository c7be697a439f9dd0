//! `pitap query`: a query over the store in a time window, printed as flow
//! lines, JSON lines, quick values (`--top FIELD`: counts and percentages,
//! as Graylog shows them) or sums (`--sum FIELD --by FIELD`).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use pitap_wire::format::text_line;

use crate::fields::{single_field, Field, FieldType, Owned};
use crate::networks::Networks;
use crate::progress::Progress;
use crate::query::{self, Expr};
use crate::store::engine::{Aggregate, Scope};
use crate::store::Store;

#[derive(Clone, Copy)]
pub enum Output {
    Lines,
    Json,
    Count,
    Top {
        field: Field,
        limit: usize,
    },
    Sum {
        field: Field,
        by: Field,
        limit: usize,
    },
}

pub struct Options {
    pub store: PathBuf,
    pub query: String,
    pub since_ms: u64,
    pub until_ms: u64,
    pub output: Output,
    /// The named networks from the collector.toml given; None: the ones the
    /// collector last ran with.
    pub networks: Option<Networks>,
    /// `--count`, `--top` and `--sum` as one JSON object.
    pub json: bool,
}

/// `30s`, `15m`, `1h`, `1h30m`, `7d`, `2w` before `now_ms`, or a date:
/// `2026-11-25` (UTC midnight), `2026-11-25T10:30:00` (UTC),
/// `2026-11-25T10:30:00Z` or `...+01:00`, or milliseconds since 1970.
/// Dates are read by `jiff`, which refuses what is no date (2011-02-31).
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    let unit = |c: char| match c {
        's' => Some(1_000u64),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        'w' => Some(604_800_000),
        _ => None,
    };
    let before_now = |ms: f64| now_ms.saturating_sub(ms as u64);
    // One unit, a fraction allowed (1.5d).
    if let Some(last) = text.chars().last() {
        if let (Some(ms), Ok(n)) = (unit(last), text[..text.len() - 1].parse::<f64>()) {
            if n.is_finite() && n >= 0.0 {
                return Ok(before_now(n * ms as f64));
            }
        }
    }
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    // Several units (1h30m, 2d 4h): jiff's friendly spans, days of 24 h.
    if let Ok(span) = text.parse::<jiff::Span>() {
        let relative = jiff::SpanRelativeTo::days_are_24_hours();
        if let Ok(ms) = span.total((jiff::Unit::Millisecond, relative)) {
            if ms >= 0.0 {
                return Ok(before_now(ms));
            }
        }
    }
    parse_date(text).ok_or_else(|| {
        format!("{text:?}: give a span before now (30s, 15m, 1h30m, 7d, 2w) or a date (2026-11-25, 2026-11-25T10:30:00Z or +01:00; UTC without an offset)")
    })
}

fn parse_date(text: &str) -> Option<u64> {
    let ms = |t: jiff::Timestamp| u64::try_from(t.as_millisecond()).ok();
    // With an offset (Z, +01:00).
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return ms(t);
    }
    let utc = |dt: jiff::civil::DateTime| dt.to_zoned(jiff::tz::TimeZone::UTC).ok();
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return ms(utc(dt)?.timestamp());
    }
    let d = text.parse::<jiff::civil::Date>().ok()?;
    ms(utc(d.to_datetime(jiff::civil::Time::midnight()))?.timestamp())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Counts (or sums) per value of a field as printed, largest first, ties
/// by value.
pub struct Tally {
    pub total: u64,
    pub groups: HashMap<String, u64>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            total: 0,
            groups: HashMap::new(),
        }
    }

    pub fn add(&mut self, key: String, n: u64) {
        self.total = self.total.saturating_add(n);
        let g = self.groups.entry(key).or_insert(0);
        *g = g.saturating_add(n);
    }

    /// The store's groups by their printed text ("-" for none).
    fn of(groups: HashMap<Option<Owned>, u64>) -> Tally {
        let mut t = Tally::new();
        for (key, n) in groups {
            t.add(
                key.map_or_else(|| "-".into(), |k| k.as_value().to_string()),
                n,
            );
        }
        t
    }

    pub fn ranked(&self, limit: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.groups.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(limit);
        v
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

fn percent(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 * 100.0 / total as f64
    }
}

/// Runs the query and writes the result to `out`; returns the flows matched.
pub fn run(o: &Options, out: &mut dyn Write) -> Result<u64, String> {
    let expr: Expr = query::parse(&o.query).map_err(|e| e.to_string())?;
    if let Output::Sum { field, .. } = &o.output {
        if field.field_type() != FieldType::Num {
            return Err(format!("--sum {}: not a numeric field", field.name()));
        }
    }
    let store = Store::open_existing(&o.store)?;
    let networks = store.networks(o.networks.clone())?;
    let scope = Scope {
        since_ms: o.since_ms,
        until_ms: o.until_ms,
        networks: &networks,
    };
    let w = |e: std::io::Error| format!("writing the result: {e}");
    let aggregate = match &o.output {
        Output::Lines | Output::Json => None,
        Output::Count => Some(Aggregate::Count),
        Output::Top { field, .. } => Some(Aggregate::Top(*field)),
        Output::Sum { field, by, .. } => Some(Aggregate::Sum {
            field: *field,
            by: *by,
        }),
    };
    let Some(aggregate) = aggregate else {
        // Flow lines to a terminal would run through a progress line.
        let mut progress = if std::io::stdout().is_terminal() {
            Progress::silent()
        } else {
            Progress::stderr("query")
        };
        let json = matches!(o.output, Output::Json);
        let mut write_error = None;
        let matched = store.scan(&expr, &scope, &mut progress, |flow| {
            let written = if json {
                writeln!(out, "{}", flow.json())
            } else {
                writeln!(out, "{}", text_line(&flow.record, &flow.tap))
            };
            if let Err(e) = written {
                write_error.get_or_insert(e);
            }
        })?;
        if matched == 0 {
            hint_outside_window(&store, o);
        }
        return match write_error {
            Some(e) => Err(w(e)),
            None => Ok(matched),
        };
    };
    let result = store.aggregate(&expr, &scope, aggregate, &mut Progress::stderr("query"))?;
    let matched = result.matched;
    if matched == 0 {
        hint_outside_window(&store, o);
    }
    let tally = Tally::of(result.groups);
    if o.json {
        let rows = |limit: usize, what: &str| -> Vec<serde_json::Value> {
            tally
                .ranked(limit)
                .into_iter()
                .map(|(value, n)| {
                    serde_json::json!({"value": value, what: n, "percent": percent(n, tally.total)})
                })
                .collect()
        };
        let v = match &o.output {
            Output::Count => serde_json::json!({ "matched": matched }),
            Output::Top { field, limit } => serde_json::json!({
                "field": field.name(), "flows": tally.total,
                "distinct": tally.groups.len(), "values": rows(*limit, "count"),
            }),
            Output::Sum { field, by, limit } => serde_json::json!({
                "sum": field.name(), "by": by.name(), "flows": matched,
                "total": tally.total, "values": rows(*limit, "sum"),
            }),
            Output::Lines | Output::Json => serde_json::Value::Null,
        };
        writeln!(out, "{v}").map_err(w)?;
        return Ok(matched);
    }
    match &o.output {
        Output::Count => writeln!(out, "{matched}").map_err(w)?,
        Output::Top { field, limit } => {
            writeln!(out, "{:<40} {:>10} {:>7}", field.name(), "count", "%").map_err(w)?;
            for (value, n) in tally.ranked(*limit) {
                writeln!(out, "{value:<40} {n:>10} {:>6.2}%", percent(n, tally.total))
                    .map_err(w)?;
            }
            writeln!(
                out,
                "{} flows, {} distinct values",
                tally.total,
                tally.groups.len()
            )
            .map_err(w)?;
        }
        Output::Sum { field, by, limit } => {
            writeln!(
                out,
                "{:<40} {:>16} {:>7}",
                by.name(),
                format!("sum({})", field.name()),
                "%"
            )
            .map_err(w)?;
            for (value, n) in tally.ranked(*limit) {
                writeln!(out, "{value:<40} {n:>16} {:>6.2}%", percent(n, tally.total))
                    .map_err(w)?;
            }
            writeln!(out, "{matched} flows, total {}", tally.total).map_err(w)?;
        }
        Output::Lines | Output::Json => {}
    }
    Ok(matched)
}

/// Nothing matched: say so on stderr when the store holds flows outside
/// the window (an old replay under the default `--since 1d`).
fn hint_outside_window(store: &Store, o: &Options) {
    let Ok(Some((first, last))) = store.time_bounds() else {
        return;
    };
    if first < o.since_ms || last >= o.until_ms {
        eprintln!(
            "pitap: no flow matched between {} and {}; the store holds flows from {} to {} (--since 0 searches them all)",
            pitap_wire::format::time_text(o.since_ms, ' '),
            if o.until_ms == u64::MAX { "now".to_string() } else { pitap_wire::format::time_text(o.until_ms, ' ') },
            pitap_wire::format::time_text(first, ' '),
            pitap_wire::format::time_text(last, ' '),
        );
    }
}

/// `--top FIELD` / `--sum F --by G` into an [`Output`].
pub fn output_from_args(
    json: bool,
    count: bool,
    top: Option<&str>,
    sum: Option<&str>,
    by: Option<&str>,
    limit: usize,
) -> Result<Output, String> {
    Ok(match (top, sum, by) {
        (Some(f), None, None) => Output::Top {
            field: single_field(f).map_err(|e| format!("--top: {e}"))?,
            limit,
        },
        (None, Some(f), Some(b)) => Output::Sum {
            field: single_field(f).map_err(|e| format!("--sum: {e}"))?,
            by: single_field(b).map_err(|e| format!("--by: {e}"))?,
            limit,
        },
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err("--sum and --by go together".into())
        }
        (None, None, None) if count => Output::Count,
        (None, None, None) if json => Output::Json,
        (None, None, None) => Output::Lines,
        _ => return Err("one of --top, or --sum with --by".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 10 * 86_400_000;
        assert_eq!(parse_time("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("1.5d", now), Ok(now - 129_600_000));
        assert_eq!(parse_time("1970-01-02", now), Ok(86_400_000));
        assert_eq!(
            parse_time("2016-07-21T16:28:49Z", now),
            Ok(1_469_118_529_000)
        );
        assert_eq!(
            parse_time("2016-07-21 16:28:49.5", now),
            Ok(1_469_118_529_500)
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("2016-13-01", now).is_err());
        assert!(parse_time("2011-02-31", now).is_err(), "no such day");
        assert_eq!(parse_time("1h30m", now), Ok(now - 5_400_000));
        assert_eq!(parse_time("2d 4h", now), Ok(now - 187_200_000));
        assert_eq!(
            parse_time("2016-07-21T17:28:49+01:00", now),
            Ok(1_469_118_529_000)
        );
    }
}
