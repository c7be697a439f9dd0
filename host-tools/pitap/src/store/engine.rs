//! Queries over the segments. A query compiles to a [`Plan`] of tests on
//! columns; each segment in the time window (found by the `segments`
//! table's start times) is tested column by column into a bitmap of
//! matching rows, reading only the columns the query and the output name:
//! a dictionary column tests each distinct value once (an address against
//! a CIDR block, a name against a wildcard, an address against the named
//! networks for `from_internal` or `src_group`), a number column tests a
//! range. `--top`, `--sum --by` and `--count` aggregate the bitmap in the
//! store; only flows that are printed or reported are rebuilt as records.
//! What no column test expresses falls back to the row evaluator
//! ([`Expr::matches`]), which the property tests hold the plan to.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rusqlite::Connection;

use super::codec::{Bits, Column};
use super::segment::{self, column_index, Meta};
use super::{decode_blob, metas, read_blob, read_column, sql_int, Store};
use crate::fields::{Derive, Field, FieldType, FieldValue, Owned, Source};
use crate::flow::StoredFlow;
use crate::networks::Networks;
use crate::progress::Progress;
use crate::query::{Expr, Match};

/// A query as tests on columns.
pub enum Plan {
    All,
    /// `m` on the values of a column (through `derive`, for the fields
    /// the named networks compute from an address).
    Test {
        column: usize,
        derive: Option<Derive>,
        m: Match,
    },
    And(Box<Plan>, Box<Plan>),
    Or(Box<Plan>, Box<Plan>),
    Not(Box<Plan>),
    /// Rebuild the rows and evaluate the expression on each.
    Rows(Expr),
}

pub fn compile(e: &Expr) -> Plan {
    match e {
        Expr::All => Plan::All,
        Expr::And(a, b) => Plan::And(Box::new(compile(a)), Box::new(compile(b))),
        Expr::Or(a, b) => Plan::Or(Box::new(compile(a)), Box::new(compile(b))),
        Expr::Not(a) => Plan::Not(Box::new(compile(a))),
        Expr::Term(f, m) => term(*f, m),
    }
}

fn term(f: Field, m: &Match) -> Plan {
    let (column, derive) = match f.source() {
        Source::Sides([a, b]) => {
            return Plan::Or(Box::new(term(a, m)), Box::new(term(b, m)));
        }
        Source::Column(_) => (column_index(f), None),
        Source::Derived(src, d) => (column_index(src), Some(d)),
        // Resolved into flow terms before the plan (files::resolve); one
        // left over matches nothing.
        Source::File(_) => return Plan::Not(Box::new(Plan::All)),
        Source::Record => (None, None),
    };
    match column {
        Some(column) => Plan::Test {
            column,
            derive,
            m: m.clone(),
        },
        None => Plan::Rows(Expr::Term(f, m.clone())),
    }
}

/// Where a field's values are read for grouping: a column, maybe derived.
fn group_source(f: Field) -> Result<(usize, Option<Derive>), String> {
    let found = match f.source() {
        Source::Column(_) => column_index(f).map(|c| (c, None)),
        Source::Derived(src, d) => column_index(src).map(|c| (c, Some(d))),
        Source::Sides(_) | Source::File(_) | Source::Record => None,
    };
    found.ok_or_else(|| format!("{}: not one value per flow", f.name()))
}

/// One segment's rows in the window, with the columns read so far.
struct View<'a> {
    conn: &'a Connection,
    meta: &'a Meta,
    columns: Vec<Option<Column>>,
    /// The rows in the window: [lo, hi) (rows are sorted by start).
    lo: usize,
    hi: usize,
    networks: &'a Networks,
}

impl<'a> View<'a> {
    fn open(
        conn: &'a Connection,
        meta: &'a Meta,
        since: u64,
        until: u64,
        networks: &'a Networks,
    ) -> Result<View<'a>, String> {
        let mut v = View {
            conn,
            meta,
            columns: (0..segment::column_count()).map(|_| None).collect(),
            lo: 0,
            hi: meta.rows,
            networks,
        };
        if meta.min_start < since || meta.max_start >= until {
            let start = segment::column_of("start_ms");
            let Column::Num { nums, .. } = v.column(start)? else {
                return Err(format!(
                    "store: segment {}: start_ms is not numbers",
                    meta.id
                ));
            };
            let lo = nums.values.partition_point(|&s| s < since);
            let hi = nums.values.partition_point(|&s| s < until);
            (v.lo, v.hi) = (lo, hi.max(lo));
        }
        Ok(v)
    }

    fn len(&self) -> usize {
        self.hi - self.lo
    }

    fn column(&mut self, i: usize) -> Result<&Column, String> {
        if self.columns.get(i).is_some_and(Option::is_none) {
            let field = segment::stored_fields()
                .nth(i)
                .ok_or("store: no such column")?;
            let c = read_column(self.conn, self.meta, field.name(), field.field_type())?;
            self.columns[i] = Some(c);
        }
        self.columns
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| "store: no such column".to_string())
    }

    fn load_all(&mut self) -> Result<(), String> {
        for i in 0..self.columns.len() {
            self.column(i)?;
        }
        Ok(())
    }

    /// Row `row` of the window as a flow (every column loaded).
    fn flow(&self, row: usize, flow: &mut StoredFlow) -> Result<(), String> {
        let columns: Vec<&Column> = self.columns.iter().flatten().collect();
        segment::materialize(&columns, self.lo + row, flow)
            .map_err(|field| format!("store: segment {}: a bad {field} value", self.meta.id))?;
        self.networks
            .enrich_into(&flow.record, &mut flow.enrichment);
        Ok(())
    }

    fn eval(&mut self, plan: &Plan) -> Result<Bits, String> {
        let n = self.len();
        Ok(match plan {
            Plan::All => Bits::new(n, true),
            Plan::And(a, b) => {
                let mut bits = self.eval(a)?;
                if !bits.none() {
                    bits.and(&self.eval(b)?);
                }
                bits
            }
            Plan::Or(a, b) => {
                let mut bits = self.eval(a)?;
                if !bits.all() {
                    bits.or(&self.eval(b)?);
                }
                bits
            }
            Plan::Not(a) => {
                let mut bits = self.eval(a)?;
                bits.not();
                bits
            }
            Plan::Test { column, derive, m } => {
                let (lo, networks) = (self.lo, self.networks);
                let c = self.column(*column)?;
                test_column(c, lo, n, *derive, m, networks)
            }
            Plan::Rows(e) => {
                self.load_all()?;
                let mut flow = segment::blank();
                let mut err = None;
                let bits = Bits::from_fn(n, |row| match self.flow(row, &mut flow) {
                    Ok(()) => e.matches(&flow),
                    Err(e) => {
                        err.get_or_insert(e);
                        false
                    }
                });
                if let Some(e) = err {
                    return Err(e);
                }
                bits
            }
        })
    }
}

/// A dictionary entry's value, through `derive` where given.
fn entry_value<'v>(
    v: FieldValue<'v>,
    derive: Option<Derive>,
    networks: &'v Networks,
) -> Option<FieldValue<'v>> {
    match derive {
        None => Some(v),
        Some(d) => d(networks, v),
    }
}

/// `m` on rows [lo, lo + n) of a column.
fn test_column(
    c: &Column,
    lo: usize,
    n: usize,
    derive: Option<Derive>,
    m: &Match,
    networks: &Networks,
) -> Bits {
    match c {
        Column::Dict { entries, ids } => {
            let none_ok = m.test(None);
            let ok: Vec<bool> = std::iter::once(none_ok)
                .chain(
                    entries
                        .iter()
                        .map(|e| m.test(entry_value(e.as_value(), derive, networks))),
                )
                .collect();
            if ok.iter().all(|o| !o) {
                return Bits::new(n, false);
            }
            if ok.iter().all(|o| *o) {
                return Bits::new(n, true);
            }
            let ids = &ids.values[lo..lo + n];
            Bits::from_fn(n, |i| ok.get(ids[i] as usize).copied().unwrap_or(false))
        }
        Column::Num { nums, boolean } => {
            let range = match (m, *boolean, derive) {
                (_, _, Some(_)) => None,
                (Match::Num(v), false, None) => Some((*v, *v)),
                (Match::Range(a, b), false, None) => Some((a.unwrap_or(0), b.unwrap_or(u64::MAX))),
                (Match::Bool(v), true, None) => Some((u64::from(*v), u64::from(*v))),
                _ => None,
            };
            let values = &nums.values[lo..lo + n];
            match (range, m) {
                (Some((a, b)), _) => {
                    if b < nums.min || a > nums.max {
                        return Bits::new(n, false);
                    }
                    Bits::from_fn(n, |i| {
                        let v = values[i];
                        v >= a && v <= b && nums.has(lo + i)
                    })
                }
                (None, Match::Exists) if derive.is_none() => Bits::from_fn(n, |i| nums.has(lo + i)),
                (None, _) => Bits::from_fn(n, |i| {
                    let v = c.value(lo + i);
                    m.test(match derive {
                        Some(d) => v.and_then(|v| entry_value(v, Some(d), networks)),
                        None => v,
                    })
                }),
            }
        }
    }
}

/// The stored column of a numeric field; None for a derived or
/// non-numeric one (which cannot be summed or sorted by).
fn numeric_column(field: Field) -> Result<Option<usize>, String> {
    let (column, derive) = group_source(field)?;
    Ok((derive.is_none() && field.field_type() == FieldType::Num).then_some(column))
}

/// What a query counts: rows, or a sum, per value of a field.
#[derive(Clone, Copy)]
pub enum Aggregate {
    Count,
    Top(Field),
    Sum {
        field: Field,
        by: Field,
    },
    /// Flows (or the sum of `weight`) per time bucket of `width_ms` from
    /// `origin_ms`, by start time: groups are `Owned::Num(bucket)`.
    Series {
        weight: Option<Field>,
        origin_ms: u64,
        width_ms: u64,
    },
}

/// What an aggregate groups by.
#[derive(Clone, Copy)]
enum GroupBy {
    Field(usize, Option<Derive>),
    Bucket { origin: u64, width: u64 },
}

/// An aggregate's result: flows matched, and per group (None: the flows
/// without a value) the count or sum.
#[derive(Debug, Default)]
pub struct Tally {
    pub matched: u64,
    pub total: u64,
    pub groups: HashMap<Option<Owned>, u64>,
}

impl Tally {
    fn add(&mut self, key: Option<Owned>, n: u64) {
        self.total = self.total.saturating_add(n);
        let g = self.groups.entry(key).or_insert(0);
        *g = g.saturating_add(n);
    }
}

/// A query's time window and the networks its derived fields follow.
pub struct Scope<'a> {
    pub since_ms: u64,
    pub until_ms: u64,
    pub networks: &'a Networks,
}

impl Store {
    /// The segments holding flows that started in the window, by their
    /// first start.
    fn window(&self, s: &Scope) -> Result<Vec<Meta>, String> {
        metas(
            &self.conn,
            "WHERE max_start >= ?1 AND min_start < ?2 ORDER BY min_start, id",
            rusqlite::params![sql_int(s.since_ms), sql_int(s.until_ms)],
        )
    }

    /// What every query starts with: its plan, one read transaction (the
    /// collector's commits and merges do not change what the query sees),
    /// the segments of the window and their rows.
    fn begin(
        &self,
        expr: &Expr,
        scope: &Scope,
    ) -> Result<(Plan, rusqlite::Transaction<'_>, Vec<Meta>, u64), String> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(super::err("store"))?;
        let segments = self.window(scope)?;
        let total = segments.iter().map(|m| m.rows as u64).sum();
        let expr = super::files::resolve(&tx, expr)?;
        Ok((compile(&expr), tx, segments, total))
    }

    /// Aggregates the flows of the window that `expr` matches.
    pub fn aggregate(
        &self,
        expr: &Expr,
        scope: &Scope,
        what: Aggregate,
        progress: &mut Progress,
    ) -> Result<Tally, String> {
        let (plan, tx, segments, total) = self.begin(expr, scope)?;
        let numeric = |field: Field| {
            numeric_column(field)?
                .ok_or_else(|| format!("--sum {}: not a numeric field", field.name()))
        };
        let field_group = |f: Field| group_source(f).map(|(c, d)| GroupBy::Field(c, d));
        let (group, weight) = match what {
            Aggregate::Count => (None, None),
            Aggregate::Top(by) => (Some(field_group(by)?), None),
            Aggregate::Sum { field, by } => (Some(field_group(by)?), Some(numeric(field)?)),
            Aggregate::Series {
                weight,
                origin_ms,
                width_ms,
            } => (
                Some(GroupBy::Bucket {
                    origin: origin_ms,
                    width: width_ms.max(1),
                }),
                weight.map(numeric).transpose()?,
            ),
        };
        let mut tally = Tally::default();
        let mut done = 0u64;
        for meta in &segments {
            let mut v = View::open(&tx, meta, scope.since_ms, scope.until_ms, scope.networks)?;
            let bits = v.eval(&plan)?;
            done += meta.rows as u64;
            progress.update(done, total);
            let matched = bits.count();
            tally.matched += matched;
            let Some(group) = group else {
                tally.total += matched;
                continue;
            };
            if matched == 0 {
                continue;
            }
            let lo = v.lo;
            let weights: Option<Vec<u64>> = match weight {
                Some(c) => {
                    let column = v.column(c)?;
                    Some(bits.ones().map(|i| num(column, lo + i)).collect())
                }
                None => None,
            };
            let w = |k: usize| weights.as_ref().map_or(1, |w| w[k]);
            let networks = v.networks;
            let (by, derive) = match group {
                GroupBy::Field(by, derive) => (by, derive),
                GroupBy::Bucket { origin, width } => {
                    let starts = v.column(segment::column_of("start_ms"))?;
                    let mut local: HashMap<u64, u64> = HashMap::new();
                    for (k, i) in bits.ones().enumerate() {
                        let bucket = num(starts, lo + i).saturating_sub(origin) / width;
                        let e = local.entry(bucket).or_insert(0);
                        *e = e.saturating_add(w(k));
                    }
                    for (bucket, sum) in local {
                        tally.add(Some(Owned::Num(bucket)), sum);
                    }
                    continue;
                }
            };
            match v.column(by)? {
                Column::Dict { entries, ids } => {
                    let mut sums = vec![0u64; entries.len() + 1];
                    let mut seen = vec![false; entries.len() + 1];
                    for (k, i) in bits.ones().enumerate() {
                        let id = ids.values[lo + i] as usize;
                        if let (Some(s), Some(hit)) = (sums.get_mut(id), seen.get_mut(id)) {
                            *s = s.saturating_add(w(k));
                            *hit = true;
                        }
                    }
                    for (id, sum) in sums.into_iter().enumerate() {
                        if !seen[id] {
                            continue;
                        }
                        let key = id
                            .checked_sub(1)
                            .and_then(|e| entries.get(e))
                            .and_then(|e| entry_value(e.as_value(), derive, networks))
                            .map(Owned::of);
                        tally.add(key, sum);
                    }
                }
                c => {
                    let mut local: HashMap<Option<FieldValue>, u64> = HashMap::new();
                    for (k, i) in bits.ones().enumerate() {
                        let e = local.entry(c.value(lo + i)).or_insert(0);
                        *e = e.saturating_add(w(k));
                    }
                    for (key, sum) in local {
                        tally.add(key.map(Owned::of), sum);
                    }
                }
            }
        }
        progress.finish();
        Ok(tally)
    }

    /// Every flow of the window that `expr` matches, by start time (ties
    /// in the order stored): segments overlap in time, so rows are merged
    /// through a heap over the segments open at once.
    pub fn scan(
        &self,
        expr: &Expr,
        scope: &Scope,
        progress: &mut Progress,
        mut visit: impl FnMut(&StoredFlow),
    ) -> Result<u64, String> {
        let (plan, tx, segments, total) = self.begin(expr, scope)?;
        let start = segment::column_of("start_ms");
        // Segments with rows still to emit, by their place in `segments`;
        // the heap orders (start, segment, row) across them.
        let mut open: HashMap<usize, Open> = HashMap::new();
        let mut heap: BinaryHeap<Reverse<(u64, usize, usize)>> = BinaryHeap::new();
        let mut flow = segment::blank();
        let mut n = 0u64;
        let mut done = 0u64;
        // Emits the rows that start before `before` (None: all).
        let mut emit = |heap: &mut BinaryHeap<Reverse<(u64, usize, usize)>>,
                        open: &mut HashMap<usize, Open>,
                        before: Option<u64>|
         -> Result<(), String> {
            while let Some(Reverse((s, seg, row))) = heap.peek().copied() {
                if before.is_some_and(|b| s >= b) {
                    break;
                }
                heap.pop();
                let left = match open.get_mut(&seg) {
                    Some(Open::View(view, left)) => {
                        view.flow(row, &mut flow)?;
                        visit(&flow);
                        *left -= 1;
                        *left
                    }
                    Some(Open::Rows(rows)) => {
                        if let Some(f) = rows.remove(&row) {
                            visit(&f);
                        }
                        rows.len()
                    }
                    None => continue,
                };
                n += 1;
                if left == 0 {
                    open.remove(&seg);
                }
            }
            Ok(())
        };
        for (k, meta) in segments.iter().enumerate() {
            emit(&mut heap, &mut open, Some(meta.min_start))?;
            let mut v = View::open(&tx, meta, scope.since_ms, scope.until_ms, scope.networks)?;
            let bits = v.eval(&plan)?;
            done += meta.rows as u64;
            progress.update(done, total);
            let matched = bits.count() as usize;
            if matched == 0 {
                continue;
            }
            v.load_all()?;
            let lo = v.lo;
            let starts = v.column(start)?;
            for row in bits.ones() {
                heap.push(Reverse((num(starts, lo + row), k, row)));
            }
            // A few rows are rebuilt now and the segment's columns let go
            // (a needle in 10M flows touches every segment); many rows are
            // rebuilt as they are emitted, so memory stays a few segments.
            let entry = if matched <= EAGER_ROWS {
                let mut rows = HashMap::with_capacity(matched);
                for row in bits.ones() {
                    let mut f = segment::blank();
                    v.flow(row, &mut f)?;
                    rows.insert(row, f);
                }
                Open::Rows(rows)
            } else {
                Open::View(v, matched)
            };
            open.insert(k, entry);
        }
        emit(&mut heap, &mut open, None)?;
        progress.finish();
        Ok(n)
    }
}

impl Store {
    /// One page of the flows `expr` matches, ordered by the numeric field
    /// `sort` (newest start first when `desc` and sorting by start): rows
    /// `offset..offset + limit` of that order, and how many matched. Only
    /// the sort column is read for every match; only the page is rebuilt.
    pub fn page(
        &self,
        expr: &Expr,
        scope: &Scope,
        sort: Field,
        desc: bool,
        offset: usize,
        limit: usize,
    ) -> Result<(u64, Vec<StoredFlow>), String> {
        let (plan, tx, segments, _) = self.begin(expr, scope)?;
        let column = numeric_column(sort)?
            .ok_or_else(|| format!("sort: {} is not a numeric field", sort.name()))?;
        let keep = offset.saturating_add(limit);
        // The best `keep` so far as (key, segment, row), the worst on top;
        // the key is flipped for an ascending order. Ties: the later
        // segment and row rank first when descending.
        let mut best: BinaryHeap<Reverse<(u64, usize, usize)>> = BinaryHeap::new();
        let mut matched = 0u64;
        for (k, meta) in segments.iter().enumerate() {
            let mut v = View::open(&tx, meta, scope.since_ms, scope.until_ms, scope.networks)?;
            let bits = v.eval(&plan)?;
            matched += bits.count();
            if bits.none() || keep == 0 {
                continue;
            }
            let lo = v.lo;
            let c = v.column(column)?;
            for row in bits.ones() {
                let key = num(c, lo + row);
                let key = if desc { key } else { u64::MAX - key };
                let entry = Reverse((key, k, row));
                if best.len() < keep {
                    best.push(entry);
                } else if best.peek().is_some_and(|worst| entry < *worst) {
                    best.pop();
                    best.push(entry);
                }
            }
        }
        let mut ranked: Vec<(u64, usize, usize)> = best.into_iter().map(|Reverse(e)| e).collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let wanted = ranked.get(offset..).unwrap_or(&[]);
        // Rebuild the page, a segment at a time.
        let mut by_segment: HashMap<usize, Vec<usize>> = HashMap::new();
        for &(_, k, row) in wanted {
            by_segment.entry(k).or_default().push(row);
        }
        let mut rebuilt: HashMap<(usize, usize), StoredFlow> = HashMap::new();
        for (k, rows) in by_segment {
            let meta = &segments[k];
            let mut v = View::open(&tx, meta, scope.since_ms, scope.until_ms, scope.networks)?;
            v.load_all()?;
            for row in rows {
                let mut f = segment::blank();
                v.flow(row, &mut f)?;
                rebuilt.insert((k, row), f);
            }
        }
        let page = wanted
            .iter()
            .filter_map(|&(_, k, row)| rebuilt.remove(&(k, row)))
            .collect();
        Ok((matched, page))
    }
}

/// Row `row` of `cols` into `flow`: those fields, the rest default, the
/// enrichment from the addresses.
fn fill(
    flow: &mut StoredFlow,
    cols: &[(&Column, Field)],
    row: usize,
    meta: &Meta,
    networks: &Networks,
) -> Result<(), String> {
    flow.record = pitap_wire::FlowRecord::default();
    for &(col, f) in cols {
        let Some(value) = col.value(row) else {
            continue;
        };
        match (f, f.record().and_then(|r| r.set)) {
            (_, Some(set)) if !set(&mut flow.record, value) => {
                return Err(format!(
                    "store: segment {}: a bad {} value",
                    meta.id,
                    f.name()
                ));
            }
            (_, Some(_)) => {}
            (Field::Tap, None) => {
                if let FieldValue::Text(t) = value {
                    if flow.tap != t {
                        flow.tap = t.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    networks.enrich_into(&flow.record, &mut flow.enrichment);
    Ok(())
}

/// A segment's matching rows and the bytes of the columns to fill them
/// from, for a worker of [`Store::visit_parallel`] to decode.
struct Job {
    meta: Meta,
    lo: usize,
    bits: Bits,
    blobs: Vec<(Field, Option<Vec<u8>>)>,
}

impl Store {
    /// Every flow `expr` matches in the window, in no particular order,
    /// with only `fields` filled in (the rest default; the enrichment from
    /// the addresses when they are among them): for analyses that read a
    /// few fields of every flow, at a fraction of [`Store::scan`]'s cost.
    /// On every core: this thread reads each segment's column bytes (one
    /// read transaction, so one snapshot) and workers decode them and
    /// visit the rows, each into a state of its own from `init`. Returns
    /// the flows visited and the states, to be merged.
    pub fn visit_parallel<T, I, V>(
        &self,
        expr: &Expr,
        scope: &Scope,
        fields: &[Field],
        progress: &mut Progress,
        init: I,
        visit: V,
    ) -> Result<(u64, Vec<T>), String>
    where
        T: Send,
        I: Fn() -> T + Sync,
        V: Fn(&mut T, &StoredFlow) + Sync,
    {
        let (plan, tx, segments, total) = self.begin(expr, scope)?;
        let mut columns: Vec<(usize, Field)> = fields
            .iter()
            .filter_map(|&f| column_index(f).map(|c| (c, f)))
            .collect();
        columns.sort_unstable_by_key(|c| c.0);
        columns.dedup_by_key(|c| c.0);
        let threads = segment::cores();
        let networks = scope.networks;
        let work =
            |jobs: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>| -> Result<(u64, T), String> {
                let mut state = init();
                let mut flow = segment::blank();
                let mut n = 0u64;
                loop {
                    let job = match jobs.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return Err("store: a worker failed".into()),
                    };
                    let Ok(job) = job else {
                        return Ok((n, state));
                    };
                    let decoded = job
                        .blobs
                        .iter()
                        .map(|(f, bytes)| {
                            decode_blob(bytes.as_deref(), &job.meta, f.name(), f.field_type())
                                .map(|c| (c, *f))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let cols: Vec<(&Column, Field)> =
                        decoded.iter().map(|(c, f)| (c, *f)).collect();
                    for row in job.bits.ones() {
                        fill(&mut flow, &cols, job.lo + row, &job.meta, networks)?;
                        visit(&mut state, &flow);
                        n += 1;
                    }
                }
            };
        let (send, recv) = std::sync::mpsc::sync_channel::<Job>(threads * 2);
        let recv = std::sync::Mutex::new(recv);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| work(&recv))).collect();
            let mut done = 0u64;
            let mut produced = Ok(());
            for meta in &segments {
                let job = (|| -> Result<Option<Job>, String> {
                    let mut v = View::open(&tx, meta, scope.since_ms, scope.until_ms, networks)?;
                    let bits = v.eval(&plan)?;
                    if bits.none() {
                        return Ok(None);
                    }
                    let blobs = columns
                        .iter()
                        .map(|&(_, f)| read_blob(&tx, meta, f.name()).map(|b| (f, b)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Some(Job {
                        meta: meta.clone(),
                        lo: v.lo,
                        bits,
                        blobs,
                    }))
                })();
                done += meta.rows as u64;
                progress.update(done, total);
                match job {
                    Ok(Some(job)) => {
                        // A worker that stopped on an error lets go of
                        // the channel; its error comes out below.
                        if send.send(job).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        produced = Err(e);
                        break;
                    }
                }
            }
            drop(send);
            progress.finish();
            let mut n = 0;
            let mut states = Vec::new();
            for w in workers {
                let (k, state) = w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
                n += k;
                states.push(state);
            }
            produced.map(|()| (n, states))
        })
    }
}

/// Matches in a segment up to which [`Store::scan`] rebuilds them at once.
const EAGER_ROWS: usize = 256;

/// A segment [`Store::scan`] still has rows of.
enum Open<'a> {
    /// Its columns, and how many rows are left.
    View(View<'a>, usize),
    /// Its rows already rebuilt, by row.
    Rows(HashMap<usize, StoredFlow>),
}

fn num(c: &Column, row: usize) -> u64 {
    match c.value(row) {
        Some(FieldValue::Num(n)) => n,
        _ => 0,
    }
}
