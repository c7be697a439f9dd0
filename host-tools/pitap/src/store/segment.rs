//! Segments: the flows of one commit (level 0) or of many merged (level 1,
//! [`SEGMENT_ROWS`] rows), sorted by start time and kept column by column,
//! one column per stored field ([`stored_fields`]: every field of the
//! record and the tap). A query reads only the columns it names.

use pitap_wire::fields::RECORD_FIELDS;
use pitap_wire::FlowRecord;

use super::codec::{Builder, Column};
use crate::fields::{Field, FieldValue};
use crate::flow::StoredFlow;
use crate::networks::Enrichment;

/// Rows of a merged segment: large enough that a query over 10M flows
/// opens ~150 of them, small enough that one decoded column is 512 kB.
pub const SEGMENT_ROWS: usize = 65_536;

/// The stored columns in order: every field of the record, then the tap.
pub fn stored_fields() -> impl Iterator<Item = Field> {
    (0..RECORD_FIELDS.len())
        .map(|i| Field::Record(i as u8))
        .chain([Field::Tap])
}

/// A stored field's place in [`stored_fields`].
pub fn column_index(f: Field) -> Option<usize> {
    match f {
        Field::Record(i) => Some(usize::from(i)),
        Field::Tap => Some(RECORD_FIELDS.len()),
        _ => None,
    }
}

pub fn column_count() -> usize {
    RECORD_FIELDS.len() + 1
}

/// What the segments table says of a segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub id: i64,
    pub level: i64,
    pub rows: usize,
    pub min_start: u64,
    pub max_start: u64,
    pub min_end: u64,
    pub max_end: u64,
    /// Its rows are in the devices tables (see [`super::devices`]).
    pub counted: bool,
}

/// A segment ready to be written.
pub struct Encoded {
    pub meta: Meta,
    /// (column name, bytes), in [`stored_fields`] order.
    pub columns: Vec<(&'static str, Vec<u8>)>,
}

fn meta_of(level: i64, starts: impl Iterator<Item = (u64, u64)>) -> Meta {
    let mut m = Meta {
        level,
        min_start: u64::MAX,
        min_end: u64::MAX,
        ..Meta::default()
    };
    for (start, end) in starts {
        m.rows += 1;
        m.min_start = m.min_start.min(start);
        m.max_start = m.max_start.max(start);
        m.min_end = m.min_end.min(end);
        m.max_end = m.max_end.max(end);
    }
    m
}

/// Flows as one segment, sorted by start time (ties keep their order).
pub fn encode(flows: &[&StoredFlow], level: i64) -> Encoded {
    let mut order: Vec<usize> = (0..flows.len()).collect();
    order.sort_by_key(|&i| flows[i].record.start_ms);
    let meta = meta_of(
        level,
        flows.iter().map(|f| (f.record.start_ms, f.record.end_ms)),
    );
    let fields: Vec<Field> = stored_fields().collect();
    let columns = in_parallel(flows.len(), |part| {
        let mut builders: Vec<Builder> = part
            .iter()
            .map(|&c| Builder::new(fields[c].field_type()))
            .collect();
        // Row by row: a record (most of a kilobyte with its names) is
        // read once, while it is in the cache, not once per column.
        for &i in &order {
            for (b, &c) in builders.iter_mut().zip(part) {
                b.push(fields[c].value(flows[i]));
            }
        }
        builders
            .iter()
            .map(|b| {
                let mut bytes = Vec::new();
                b.encode(&mut bytes);
                bytes
            })
            .collect()
    });
    Encoded { meta, columns }
}

/// A segment with every column decoded.
pub struct Decoded {
    pub rows: usize,
    /// In [`stored_fields`] order.
    pub columns: Vec<Column>,
}

/// The column of a record field by name (one of the table's own names).
pub fn column_of(name: &str) -> usize {
    Field::parse(name).and_then(column_index).unwrap_or(0)
}

fn num_at(column: Option<&Column>, row: usize) -> Option<u64> {
    match column.and_then(|c| c.value(row)) {
        Some(FieldValue::Num(n)) => Some(n),
        _ => None,
    }
}

/// The record fields a row's columns hold, written back into a flow
/// (whose enrichment the caller fills in).
pub fn materialize(
    columns: &[&Column],
    row: usize,
    flow: &mut StoredFlow,
) -> Result<(), &'static str> {
    let mut r = FlowRecord::default();
    for (field, column) in stored_fields().zip(columns) {
        let Some(v) = column.value(row) else {
            continue;
        };
        match field.record().and_then(|f| f.set) {
            Some(set) if !set(&mut r, v) => return Err(field.name()),
            Some(_) => {}
            None if field == Field::Tap => {
                let FieldValue::Text(t) = v else {
                    return Err("tap");
                };
                if flow.tap != t {
                    flow.tap = t.to_string();
                }
            }
            None => {}
        }
    }
    flow.record = r;
    Ok(())
}

/// A blank flow to materialize rows into.
pub fn blank() -> StoredFlow {
    StoredFlow {
        tap: String::new(),
        record: FlowRecord::default(),
        enrichment: Enrichment::default(),
    }
}

/// Merges segments into level-1 segments of [`SEGMENT_ROWS`] rows, oldest
/// start first, column by column (dictionaries are remapped, not rebuilt
/// row by row). Rows short of a full segment come back as one level-0
/// segment, to be merged with the next commits.
pub fn merge(parts: &[Decoded]) -> Vec<Encoded> {
    let start = column_of("start_ms");
    let mut order: Vec<(u64, usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, d)| {
            (0..d.rows).map(move |row| (num_at(d.columns.get(start), row).unwrap_or(0), p, row))
        })
        .collect();
    order.sort_unstable();
    order
        .chunks(SEGMENT_ROWS)
        .map(|chunk| build(parts, chunk, i64::from(chunk.len() == SEGMENT_ROWS)))
        .collect()
}

/// Some rows of a segment (in their order) as a segment of `level`.
pub fn select(d: &Decoded, rows: &[usize], level: i64) -> Encoded {
    let start = column_of("start_ms");
    let order: Vec<(u64, usize, usize)> = rows
        .iter()
        .map(|&row| (num_at(d.columns.get(start), row).unwrap_or(0), 0, row))
        .collect();
    build(std::slice::from_ref(d), &order, level)
}

/// A segment of the rows `order` names: (start, part, row).
fn build(parts: &[Decoded], order: &[(u64, usize, usize)], level: i64) -> Encoded {
    let end = column_of("end_ms");
    let fields: Vec<Field> = stored_fields().collect();
    let columns = in_parallel(order.len(), |part| {
        part.iter()
            .map(|&c| build_column(parts, order, c, fields[c]))
            .collect()
    });
    let meta = meta_of(
        level,
        order.iter().map(|&(start, p, row)| {
            (
                start,
                num_at(parts[p].columns.get(end), row).unwrap_or(start),
            )
        }),
    );
    Encoded { meta, columns }
}

/// Column `c` of the rows `order` names.
fn build_column(
    parts: &[Decoded],
    order: &[(u64, usize, usize)],
    c: usize,
    field: Field,
) -> Vec<u8> {
    let mut b = Builder::new(field.field_type());
    // Per part: old dictionary id -> new.
    let remaps: Vec<Vec<u64>> = parts
        .iter()
        .map(|d| match d.columns.get(c) {
            Some(Column::Dict { entries, .. }) if b.is_dict() => std::iter::once(0)
                .chain(entries.iter().map(|e| b.intern(e.as_value())))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    for &(_, p, row) in order {
        let column = parts[p].columns.get(c);
        match column {
            Some(Column::Num { nums, .. }) if !b.is_dict() => {
                b.push_num(nums.values[row], nums.has(row));
            }
            Some(Column::Dict { ids, .. }) if b.is_dict() => {
                let id = ids.values[row] as usize;
                b.push_id(remaps[p].get(id).copied().unwrap_or(0));
            }
            // A column stored as another kind than the field's
            // now: value by value.
            _ => b.push(column.and_then(|c| c.value(row))),
        }
    }
    let mut bytes = Vec::new();
    b.encode(&mut bytes);
    bytes
}

/// Rows below which a segment's columns are built on one thread: spawning
/// costs more than it saves.
const PARALLEL_ROWS: usize = 4_096;

/// Threads for work split across the cores (at most 4), looked up once.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
}

/// Builds every stored column, `build(columns)` making the bytes of the
/// given column indices: split across the cores (columns are independent,
/// and encoding is most of an ingest's time), in [`stored_fields`] order.
fn in_parallel<F>(rows: usize, build: F) -> Vec<(&'static str, Vec<u8>)>
where
    F: Fn(&[usize]) -> Vec<Vec<u8>> + Sync,
{
    let threads = cores();
    let fields: Vec<Field> = stored_fields().collect();
    let threads = if rows < PARALLEL_ROWS { 1 } else { threads };
    // Interleaved, so each thread gets dictionary and number columns.
    let parts: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t..fields.len()).step_by(threads).collect())
        .collect();
    let built: Vec<Vec<Vec<u8>>> = if threads == 1 {
        parts.iter().map(|p| build(p)).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter()
                .skip(1)
                .map(|p| scope.spawn(|| build(p)))
                .collect();
            let mut all = vec![build(&parts[0])];
            // A panic in a builder is a bug; carry it on, don't hide it.
            all.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
            );
            all
        })
    };
    let mut columns: Vec<Option<Vec<u8>>> = vec![None; fields.len()];
    for (part, bytes) in parts.iter().zip(built) {
        for (&c, b) in part.iter().zip(bytes) {
            columns[c] = Some(b);
        }
    }
    fields
        .iter()
        .zip(columns)
        .map(|(f, b)| (f.name(), b.unwrap_or_default()))
        .collect()
}
