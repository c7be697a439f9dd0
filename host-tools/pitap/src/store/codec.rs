//! One column of a segment: the values of one field for every row, as
//! bytes and back. Numbers (and booleans) are LEB128 varints, either as
//! offsets from the column's minimum or, where that is smaller, as zigzag
//! deltas from the previous row (start times, sorted, take a byte or two);
//! a column of one value is just that value. Everything else (addresses,
//! MACs, names, enums by their names, protocols) goes through a dictionary
//! of the segment's distinct values, and its rows are numbers into it: a
//! query tests each distinct value once, not each row. Rows without a
//! value are 0 in a dictionary column and a cleared bit in a number
//! column's presence bitmap.
//!
//! Hand-written: columnar crates (arrow, parquet, polars) are large builds
//! for what is here a few hundred lines, and a flow store needs no more
//! than this.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use crate::fields::{FieldType, FieldValue, Owned};

const NUM_CONST: u8 = 0;
const NUM_OFFSET: u8 = 1;
const NUM_DELTA: u8 = 2;
const FLAG_NULLS: u8 = 1;

const COLUMN_NUM: u8 = 0;
const COLUMN_DICT: u8 = 1;

const TAG_TEXT: u8 = 0;
const TAG_V4: u8 = 1;
const TAG_V6: u8 = 2;
const TAG_MAC: u8 = 3;
const TAG_PROTO: u8 = 4;
const TAG_NUM: u8 = 5;
const TAG_BOOL: u8 = 6;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Reads from a column's bytes; every read checks the length.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

pub type Error = &'static str;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.bytes.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or("truncated")?;
        let s = self.bytes.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(s)
    }

    pub fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    /// `n` varints into `out`: the hot loop of every query.
    fn varints(&mut self, n: usize, out: &mut Vec<u64>) -> Result<(), Error> {
        out.reserve(n);
        let bytes = self.bytes;
        let mut pos = self.pos;
        for _ in 0..n {
            // One-byte values (sorted times' deltas, small ids, flags)
            // are most of them: no loop for those.
            let b = *bytes.get(pos).ok_or("truncated")?;
            pos += 1;
            if b < 0x80 {
                out.push(u64::from(b));
                continue;
            }
            let mut v = u64::from(b & 0x7f);
            let mut shift = 7;
            loop {
                let b = *bytes.get(pos).ok_or("truncated")?;
                pos += 1;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
                shift += 7;
                if shift > 63 {
                    return Err("varint too long");
                }
            }
            out.push(v);
        }
        self.pos = pos;
        Ok(())
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// A bit per row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    pub fn new(len: usize, set: bool) -> Bits {
        let mut b = Bits {
            words: vec![if set { u64::MAX } else { 0 }; len.div_ceil(64)],
            len,
        };
        b.trim();
        b
    }

    fn trim(&mut self) {
        if !self.len.is_multiple_of(64) {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << (self.len % 64)) - 1;
            }
        }
    }

    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> bool) -> Bits {
        let mut words = Vec::with_capacity(len.div_ceil(64));
        for w in 0..len.div_ceil(64) {
            let mut word = 0u64;
            for bit in 0..64.min(len - w * 64) {
                word |= u64::from(f(w * 64 + bit)) << bit;
            }
            words.push(word);
        }
        Bits { words, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn none(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn all(&self) -> bool {
        self.count() == self.len as u64
    }

    pub fn and(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    pub fn or(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    pub fn not(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        self.trim();
    }

    /// The set rows, in order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + bit
                })
            })
        })
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(self.len.div_ceil(8))
    }

    fn from_bytes(bytes: &[u8], len: usize) -> Bits {
        let mut words = vec![0u64; len.div_ceil(64)];
        for (i, b) in bytes.iter().enumerate().take(len.div_ceil(8)) {
            words[i / 8] |= u64::from(*b) << (8 * (i % 8));
        }
        let mut bits = Bits { words, len };
        bits.trim();
        bits
    }
}

/// Collects one column's values for the rows of a segment.
pub enum Builder {
    Num {
        values: Vec<u64>,
        present: Vec<bool>,
    },
    Dict {
        /// Each distinct value -> its id (from 1). Fixed-size values are
        /// keyed by a number: hashing and comparing them costs no byte
        /// loop (this is most of an ingest's time).
        ids_of: HashMap<Key, u32, RandomState>,
        /// Texts by their own bytes, looked up by `&str`.
        texts: HashMap<Box<str>, u32, RandomState>,
        entries: Vec<u8>,
        ids: Vec<u64>,
        /// The last value interned and its id: runs of one value (a tap,
        /// a clock state, a name) skip the hash.
        last: Option<(Key, u32)>,
        /// Reused, so a change of text costs no allocation.
        last_text: (String, u32),
    },
}

/// A fixed-size value as a dictionary key: its tag and its bits.
type Key = (u8, u128);

fn key_of(v: FieldValue<'_>) -> Option<Key> {
    Some(match v {
        FieldValue::Text(_) => return None,
        FieldValue::Addr(IpAddr::V4(a)) => (TAG_V4, u128::from(u32::from(a))),
        FieldValue::Addr(IpAddr::V6(a)) => (TAG_V6, u128::from(a)),
        FieldValue::Mac(m) => {
            let mut b = [0u8; 16];
            b[..6].copy_from_slice(&m);
            (TAG_MAC, u128::from_le_bytes(b))
        }
        FieldValue::Proto(p) => (TAG_PROTO, u128::from(p)),
        FieldValue::Num(n) => (TAG_NUM, u128::from(n)),
        FieldValue::Bool(b) => (TAG_BOOL, u128::from(b)),
    })
}

/// A value's dictionary encoding: a tag and its bytes.
fn put_entry(out: &mut Vec<u8>, v: FieldValue<'_>) {
    match v {
        FieldValue::Text(t) => {
            out.push(TAG_TEXT);
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        FieldValue::Addr(IpAddr::V4(a)) => {
            out.push(TAG_V4);
            out.extend_from_slice(&a.octets());
        }
        FieldValue::Addr(IpAddr::V6(a)) => {
            out.push(TAG_V6);
            out.extend_from_slice(&a.octets());
        }
        FieldValue::Mac(m) => {
            out.push(TAG_MAC);
            out.extend_from_slice(&m);
        }
        FieldValue::Proto(p) => out.extend_from_slice(&[TAG_PROTO, p]),
        FieldValue::Num(n) => {
            out.push(TAG_NUM);
            put_varint(out, n);
        }
        FieldValue::Bool(b) => out.extend_from_slice(&[TAG_BOOL, u8::from(b)]),
    }
}

fn read_entry(r: &mut Reader<'_>) -> Result<Owned, Error> {
    Ok(match r.byte()? {
        TAG_TEXT => {
            let n = r.varint()? as usize;
            let text = std::str::from_utf8(r.take(n)?).map_err(|_| "text not UTF-8")?;
            Owned::Text(text.to_string())
        }
        TAG_V4 => {
            let o: [u8; 4] = r.take(4)?.try_into().map_err(|_| "truncated")?;
            Owned::Addr(IpAddr::from(o))
        }
        TAG_V6 => {
            let o: [u8; 16] = r.take(16)?.try_into().map_err(|_| "truncated")?;
            Owned::Addr(IpAddr::from(o))
        }
        TAG_MAC => Owned::Mac(r.take(6)?.try_into().map_err(|_| "truncated")?),
        TAG_PROTO => Owned::Proto(r.byte()?),
        TAG_NUM => Owned::Num(r.varint()?),
        TAG_BOOL => Owned::Bool(r.byte()? != 0),
        _ => return Err("unknown value tag"),
    })
}

impl Builder {
    pub fn new(ty: FieldType) -> Builder {
        match ty {
            FieldType::Num | FieldType::Bool => Builder::Num {
                values: Vec::new(),
                present: Vec::new(),
            },
            FieldType::Text | FieldType::Addr => Builder::Dict {
                ids_of: HashMap::default(),
                texts: HashMap::default(),
                entries: Vec::new(),
                ids: Vec::new(),
                last: None,
                last_text: (String::new(), 0),
            },
        }
    }

    pub fn push(&mut self, v: Option<FieldValue<'_>>) {
        match self {
            Builder::Num { values, present } => {
                let n = match v {
                    Some(FieldValue::Num(n)) => Some(n),
                    Some(FieldValue::Bool(b)) => Some(u64::from(b)),
                    _ => None,
                };
                values.push(n.unwrap_or(0));
                present.push(n.is_some());
            }
            Builder::Dict { .. } => {
                let id = v.map_or(0, |v| self.intern(v));
                self.push_id(id);
            }
        }
    }

    pub fn is_dict(&self) -> bool {
        matches!(self, Builder::Dict { .. })
    }

    /// A number as it is (merging decoded columns).
    pub fn push_num(&mut self, v: u64, has: bool) {
        if let Builder::Num { values, present } = self {
            values.push(v);
            present.push(has);
        }
    }

    /// The id of a value in this dictionary, added if new.
    pub fn intern(&mut self, v: FieldValue<'_>) -> u64 {
        let Builder::Dict {
            ids_of,
            texts,
            entries,
            last,
            last_text,
            ..
        } = self
        else {
            return 0;
        };
        let next = (ids_of.len() + texts.len()) as u32 + 1;
        let id = match (key_of(v), v) {
            (Some(key), _) => {
                if let Some((k, id)) = last {
                    if *k == key {
                        return u64::from(*id);
                    }
                }
                let id = *ids_of.entry(key).or_insert_with(|| {
                    put_entry(entries, v);
                    next
                });
                *last = Some((key, id));
                id
            }
            (None, FieldValue::Text(t)) => {
                if last_text.1 != 0 && last_text.0 == t {
                    return u64::from(last_text.1);
                }
                let id = match texts.get(t) {
                    Some(id) => *id,
                    None => {
                        texts.insert(t.into(), next);
                        put_entry(entries, v);
                        next
                    }
                };
                last_text.0.clear();
                last_text.0.push_str(t);
                last_text.1 = id;
                id
            }
            (None, _) => 0,
        };
        u64::from(id)
    }

    /// A row by its dictionary id (from [`Builder::intern`]; 0: none).
    pub fn push_id(&mut self, id: u64) {
        if let Builder::Dict { ids, .. } = self {
            ids.push(id);
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Builder::Num { values, present } => {
                out.push(COLUMN_NUM);
                let nulls = present.iter().any(|p| !p);
                let bits = nulls.then(|| Bits::from_fn(present.len(), |i| present[i]));
                encode_nums(values, bits.as_ref(), out);
            }
            Builder::Dict {
                ids_of,
                texts,
                entries,
                ids,
                ..
            } => {
                out.push(COLUMN_DICT);
                put_varint(out, (ids_of.len() + texts.len()) as u64);
                out.extend_from_slice(entries);
                encode_nums(ids, None, out);
            }
        }
    }
}

/// kind, flags, min, max, [presence bitmap], values.
fn encode_nums(values: &[u64], present: Option<&Bits>, out: &mut Vec<u8>) {
    // One pass for the range; the sizes of both encodings in a second,
    // without branches (a segment holds 65,536 rows per column).
    let (mut min, mut max) = (u64::MAX, 0u64);
    for &v in values {
        min = min.min(v);
        max = max.max(v);
    }
    if values.is_empty() {
        min = 0;
    }
    let kind = if min == max {
        NUM_CONST
    } else {
        // The first value as it is, then zigzag deltas.
        let first = values.first().copied().unwrap_or(0);
        let (mut offset, mut delta, mut prev) = (0usize, varint_len(first), first);
        for &v in values {
            offset += varint_len(v - min);
            delta += varint_len(zigzag(v.wrapping_sub(prev) as i64));
            prev = v;
        }
        delta -= 1; // the first row's zero delta is not written
        if delta < offset {
            NUM_DELTA
        } else {
            NUM_OFFSET
        }
    };
    out.push(kind);
    out.push(if present.is_some() { FLAG_NULLS } else { 0 });
    put_varint(out, min);
    put_varint(out, max);
    if let Some(bits) = present {
        out.extend(bits.bytes());
    }
    match kind {
        NUM_OFFSET => {
            out.reserve(values.len() * varint_len(max - min));
            for v in values {
                put_varint(out, v - min);
            }
        }
        NUM_DELTA => {
            out.reserve(values.len() * 2);
            let first = values.first().copied().unwrap_or(0);
            put_varint(out, first);
            let mut prev = first;
            for &v in values.iter().skip(1) {
                put_varint(out, zigzag(v.wrapping_sub(prev) as i64));
                prev = v;
            }
        }
        _ => {}
    }
}

/// A column's numbers: values, their range, and which rows have one.
#[derive(Clone, Debug)]
pub struct Nums {
    pub values: Vec<u64>,
    pub min: u64,
    pub max: u64,
    pub present: Option<Bits>,
}

impl Nums {
    pub fn has(&self, row: usize) -> bool {
        self.present.as_ref().is_none_or(|p| p.get(row))
    }
}

/// The head of a number column, before its values: enough to know that
/// no row can match a range.
pub struct NumHead {
    pub min: u64,
    pub max: u64,
    pub nulls: bool,
}

fn decode_nums(r: &mut Reader<'_>, rows: usize) -> Result<Nums, Error> {
    let kind = r.byte()?;
    let flags = r.byte()?;
    let min = r.varint()?;
    let max = r.varint()?;
    let present = if flags & FLAG_NULLS != 0 {
        Some(Bits::from_bytes(r.take(rows.div_ceil(8))?, rows))
    } else {
        None
    };
    let mut values = Vec::new();
    match kind {
        NUM_CONST => values.resize(rows, min),
        NUM_OFFSET => {
            r.varints(rows, &mut values)?;
            for v in &mut values {
                *v = v.wrapping_add(min);
            }
        }
        NUM_DELTA => {
            r.varints(rows, &mut values)?;
            let mut prev = 0u64;
            for (i, v) in values.iter_mut().enumerate() {
                prev = if i == 0 {
                    *v
                } else {
                    prev.wrapping_add(unzigzag(*v) as u64)
                };
                *v = prev;
            }
        }
        _ => return Err("unknown number encoding"),
    }
    Ok(Nums {
        values,
        min,
        max,
        present,
    })
}

/// A decoded column.
#[derive(Clone, Debug)]
pub enum Column {
    Num {
        nums: Nums,
        boolean: bool,
    },
    /// `entries[id - 1]` for a row's id; 0 has no value.
    Dict {
        entries: Vec<Owned>,
        ids: Nums,
    },
}

impl Column {
    /// A column a segment does not have (it was written before the field
    /// existed): no row has a value.
    pub fn missing(rows: usize) -> Column {
        Column::Dict {
            entries: Vec::new(),
            ids: Nums {
                values: vec![0; rows],
                min: 0,
                max: 0,
                present: None,
            },
        }
    }

    pub fn decode(bytes: &[u8], rows: usize, ty: FieldType) -> Result<Column, Error> {
        let mut r = Reader::new(bytes);
        let column = match r.byte()? {
            COLUMN_NUM => Column::Num {
                nums: decode_nums(&mut r, rows)?,
                boolean: ty == FieldType::Bool,
            },
            COLUMN_DICT => {
                let n = r.varint()? as usize;
                let mut entries = Vec::with_capacity(n.min(rows));
                for _ in 0..n {
                    entries.push(read_entry(&mut r)?);
                }
                let ids = decode_nums(&mut r, rows)?;
                if ids.max > n as u64 {
                    return Err("a row names no value of the dictionary");
                }
                Column::Dict { entries, ids }
            }
            _ => return Err("unknown column kind"),
        };
        if !r.at_end() {
            return Err("bytes after the column");
        }
        Ok(column)
    }

    /// Only the range of a number column (no values decoded).
    pub fn head(bytes: &[u8]) -> Option<NumHead> {
        let mut r = Reader::new(bytes);
        if r.byte().ok()? != COLUMN_NUM {
            return None;
        }
        let _kind = r.byte().ok()?;
        let flags = r.byte().ok()?;
        Some(NumHead {
            min: r.varint().ok()?,
            max: r.varint().ok()?,
            nulls: flags & FLAG_NULLS != 0,
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Num { nums, .. } => nums.values.len(),
            Column::Dict { ids, .. } => ids.values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn value(&self, row: usize) -> Option<FieldValue<'_>> {
        match self {
            Column::Num { nums, boolean } => {
                let v = *nums.values.get(row)?;
                nums.has(row).then_some(if *boolean {
                    FieldValue::Bool(v != 0)
                } else {
                    FieldValue::Num(v)
                })
            }
            Column::Dict { entries, ids } => {
                let id = *ids.values.get(row)? as usize;
                entries.get(id.checked_sub(1)?).map(Owned::as_value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(ty: FieldType, values: &[Option<FieldValue<'_>>]) -> usize {
        let mut b = Builder::new(ty);
        for v in values {
            b.push(*v);
        }
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        let c = Column::decode(&bytes, values.len(), ty).unwrap();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(c.value(i), *v, "row {i}");
        }
        // Any cut is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(Column::decode(&bytes[..cut], values.len(), ty).is_err());
        }
        bytes.len()
    }

    #[test]
    fn columns_round_trip_and_pick_the_smaller_encoding() {
        let sorted: Vec<_> = (0..1000u64)
            .map(|i| Some(FieldValue::Num(1_760_000_000_000 + i * 3)))
            .collect();
        assert!(round_trip(FieldType::Num, &sorted) < 1100, "deltas");
        let wide: Vec<_> = (0..1000u64)
            .map(|i| Some(FieldValue::Num(i * 7919 % 1000)))
            .collect();
        round_trip(FieldType::Num, &wide);
        let same = vec![Some(FieldValue::Num(7)); 500];
        assert!(round_trip(FieldType::Num, &same) < 8, "one value");
        let ports: Vec<_> = (0..300u64)
            .map(|i| (i % 3 != 0).then_some(FieldValue::Num(i)))
            .collect();
        round_trip(FieldType::Num, &ports);
        let flags: Vec<_> = (0..77)
            .map(|i| Some(FieldValue::Bool(i % 5 == 0)))
            .collect();
        round_trip(FieldType::Bool, &flags);
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let texts = [
            Some(FieldValue::Addr(a)),
            Some(FieldValue::Addr(b)),
            None,
            Some(FieldValue::Addr(a)),
            Some(FieldValue::Text("<script>ü")),
            Some(FieldValue::Mac([1, 2, 3, 4, 5, 6])),
            Some(FieldValue::Proto(6)),
            Some(FieldValue::Text("")),
        ];
        round_trip(FieldType::Text, &texts);
        round_trip(
            FieldType::Num,
            &[Some(FieldValue::Num(u64::MAX)), Some(FieldValue::Num(0))],
        );
        round_trip(FieldType::Num, &[]);
    }

    #[test]
    fn bits() {
        let mut b = Bits::from_fn(130, |i| i % 3 == 0);
        assert_eq!(b.count(), 44);
        assert_eq!(b.ones().take(3).collect::<Vec<_>>(), vec![0, 3, 6]);
        b.not();
        assert_eq!(b.count(), 86);
        assert!(Bits::new(70, true).all() && Bits::new(70, false).none());
        let again = Bits::from_bytes(&b.bytes().collect::<Vec<_>>(), 130);
        assert_eq!(again, b);
    }
}
