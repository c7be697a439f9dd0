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
}

/// `30s`, `15m`, `1h`, `7d`, `2w` before `now_ms`, or a date:
/// `2026-11-25`, `2026-11-25T10:30:00Z` (UTC), or milliseconds since 1970.
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
    if let Some(last) = text.chars().last() {
        if let (Some(ms), Ok(n)) = (unit(last), text[..text.len() - 1].parse::<f64>()) {
            if n.is_finite() && n >= 0.0 {
                return Ok(now_ms.saturating_sub((n * ms as f64) as u64));
            }
        }
    }
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    parse_date(text).ok_or_else(|| {
        format!("{text:?}: give a span before now (30s, 15m, 1h, 7d, 2w) or a UTC date (2026-11-25 or 2026-11-25T10:30:00Z)")
    })
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_date(text: &str) -> Option<u64> {
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let mut hms = t.split(':');
        let h: i64 = hms.next()?.parse().ok()?;
        let mi: i64 = hms.next().unwrap_or("0").parse().ok()?;
        let s: f64 = hms.next().unwrap_or("0").parse().ok()?;
        if h > 23 || mi > 59 || !(0.0..61.0).contains(&s) {
            return None;
        }
        secs += h * 3600 + mi * 60;
        return u64::try_from(secs * 1000 + (s * 1000.0) as i64).ok();
    }
    u64::try_from(secs * 1000).ok()
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
        return match write_error {
            Some(e) => Err(w(e)),
            None => Ok(matched),
        };
    };
    let result = store.aggregate(&expr, &scope, aggregate, &mut Progress::stderr("query"))?;
    let matched = result.matched;
    let tally = Tally::of(result.groups);
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
    }
}
