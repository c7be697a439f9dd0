//! Batches of flow records as they travel in one datagram.
//!
//! Layout (version 1):
//!
//! ```text
//! "PTAP" | version u8 | varint len | header | { varint len | record }*
//! record = postcard(core fields) | { varint tag | varint len | bytes }*
//! ```
//!
//! Every header and record is length-prefixed, and a record's core fields are
//! followed by tagged extensions. A decoder takes the fields it knows and skips
//! the rest, so later versions can append header fields and add enrichment
//! extensions (DNS name, DHCP hostname, TLS SNI) without breaking collectors
//! already deployed, and new collectors read old records (extensions absent).
//! Integers are postcard varints and record times are relative to the batch's
//! base time, which keeps a typical TCP record around 60 bytes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::record::{
    ClockState, ConnState, EndReason, Endpoint, FlowRecord, History, Names, SideCounters, TapPort,
    Text,
};

pub const MAGIC: [u8; 4] = *b"PTAP";
/// The version taps write: records encoded against their batch's tables
/// (`compact`). Collectors read this and [`VERSION_1`].
pub const VERSION: u8 = 2;
/// The first version: each record on its own (postcard core fields).
pub const VERSION_1: u8 = 1;
/// Largest batch a tap makes. Sealed (the envelope adds at most
/// `envelope::MAX_OVERHEAD`, 87 bytes) it fits the 1,452-byte UDP payload of
/// a 1500-byte MTU under IPv6, with room for the few bytes a header grows
/// when a batch made before the clock was synchronised is rebased.
pub const MAX_DATAGRAM: usize = 1344;
/// What a rewritten header may add to a full batch.
pub const REWRITE_ROOM: usize = 16;
/// How large a version 2 batch may be before its records are deflated:
/// twice a datagram, so that a batch which deflates to a datagram carries
/// half again as many records (fewer envelopes and headers a record, and
/// more for deflate to find). The datagram itself stays within
/// [`MAX_DATAGRAM`]; a collector refuses anything that inflates past this.
pub const MAX_INFLATED: usize = 2 * MAX_DATAGRAM;
/// Records one batch may hold (their ends are kept to cut a batch that
/// deflates worse than expected).
const MAX_BATCH_RECORDS: usize = 256;
/// Longest tap id.
pub const MAX_TAP_ID: usize = 32;

/// Whether `id` may be a tap id: 1 to [`MAX_TAP_ID`] bytes of
/// `[A-Za-z0-9._-]`, not starting with a dot. Tap ids name files (keys,
/// captures), so nothing that walks out of a directory or hides a file.
/// (With `std`: only the tap's config and the collector check ids.)
#[cfg(feature = "std")]
pub fn check_tap_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_TAP_ID {
        return Err(format!("a tap id is 1 to {MAX_TAP_ID} bytes: {id:?}"));
    }
    if id.starts_with('.') {
        return Err(format!("a tap id does not start with a dot: {id:?}"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "a tap id is letters, digits, '.', '_' and '-': {id:?} has {c:?}"
        ));
    }
    Ok(())
}
/// Header flag: the tap is shutting down; this is its last batch.
pub const FLAG_FINAL: u8 = 0x01;
/// Header flag: the records' times are on the collector's clock (the tap
/// synchronised with it before the batch left).
pub const FLAG_CLOCK_SYNCED: u8 = 0x02;
/// Header flag: the records' times are a capture file's timestamps.
pub const FLAG_CAPTURE_TIME: u8 = 0x04;
/// Header flag (version 2): the records after the header are deflated
/// (RFC 1951, no zlib header); inflated they are at most
/// [`MAX_DATAGRAM`] bytes.
pub const FLAG_DEFLATED: u8 = 0x08;

const RECORD_FLAG_CONTINUATION: u8 = 0x01;
/// Scratch space for one encoded record; the largest possible (IPv6, every
/// counter at u64::MAX, a full history, every name at its longest: about
/// 800 bytes) stays below it.
const MAX_RECORD: usize = 1024;

/// Record extension tags (version 1 readers skip them all).
const EXT_RESPONDER_NAME: u32 = 1;
const EXT_CLIENT_HOSTNAME: u32 = 2;
const EXT_SNI: u32 = 3;
const EXT_ALPN: u32 = 4;
const EXT_HTTP_HOST: u32 = 5;
const EXT_HTTP_REQUEST: u32 = 6;
/// Frames the tap's rings dropped while the flow was open (a varint).
const EXT_RING_DROPS: u32 = 7;
const EXT_SERVER_HOSTNAME: u32 = 8;
/// IP and payload bytes of each side: postcard varints (src IP, src
/// payload, dst IP, dst payload).
const EXT_SIDE_BYTES: u32 = 9;
/// TCP bytes in sequence gaps (a varint).
const EXT_MISSED_BYTES: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The datagram does not start with the PiTap magic.
    BadMagic,
    /// A version this decoder does not speak.
    UnsupportedVersion(u8),
    /// The datagram ends inside a length-prefixed part.
    Truncated,
    /// A field holds a value no encoder writes; names the field.
    Malformed(&'static str),
    /// The batch has no room for this record; send it and start another.
    Full,
    /// The tap id is longer than MAX_TAP_ID.
    TapIdTooLong,
    /// Authentication failed: forged, damaged, or sealed under another key.
    Forged,
    /// A plaintext datagram where only sealed ones are accepted.
    PlaintextRefused,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::BadMagic => write!(f, "not a PiTap datagram (bad magic)"),
            WireError::UnsupportedVersion(v) => write!(f, "unsupported wire version {v}"),
            WireError::Truncated => write!(f, "datagram truncated"),
            WireError::Malformed(field) => write!(f, "malformed field {field}"),
            WireError::Full => write!(f, "batch full"),
            WireError::TapIdTooLong => write!(f, "tap id longer than {MAX_TAP_ID} bytes"),
            WireError::Forged => write!(f, "authentication failed (forged, damaged or wrong key)"),
            WireError::PlaintextRefused => write!(f, "plaintext datagram refused"),
        }
    }
}

/// The header of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchHeader<'a> {
    /// Name of the tap, chosen by its owner.
    pub tap_id: &'a str,
    /// Random per start of the tap process: a new value is a reboot.
    pub boot_id: u64,
    /// Batch sequence number, counting from 0 at each boot.
    pub seq: u64,
    /// Base time of the records' start times, ms since the Unix epoch.
    pub base_ms: u64,
    /// FLAG_* bits.
    pub flags: u8,
    /// Batches this boot of the tap dropped unacknowledged because its
    /// retransmission buffer was full (cumulative): a gap in `seq` is always
    /// explained, never silent.
    pub dropped_batches: u64,
    /// The lowest seq the tap still held when it made this batch: every seq
    /// below was acknowledged or dropped (and counted) by the tap, so a
    /// collector tells batches lost for good from batches still coming.
    pub low_seq: u64,
    /// Records of other kinds than flows (file records), framed as
    /// `{ varint kind | varint len | bytes }*`. They ride at the end of the
    /// header, which readers of version 1 skip past by design, so a
    /// collector that does not know a kind still takes the batch's flows.
    pub attachments: &'a [u8],
}

impl BatchHeader<'_> {
    /// Where the records' times come from, by the header's flags.
    pub fn clock(&self) -> ClockState {
        if self.flags & FLAG_CAPTURE_TIME != 0 {
            ClockState::Capture
        } else if self.flags & FLAG_CLOCK_SYNCED != 0 {
            ClockState::Synced
        } else {
            ClockState::Unsynced
        }
    }
}

/// The header fields of version 1, frozen.
#[derive(Serialize, Deserialize)]
struct HeaderV1<'a> {
    tap_id: &'a str,
    boot_id: u64,
    seq: u64,
    base_ms: u64,
    flags: u8,
}

/// Fields appended to the header since: absent in older batches.
#[derive(Serialize, Deserialize, Default)]
struct HeaderExt {
    dropped_batches: u64,
    low_seq: u64,
}

fn encode_header(h: &BatchHeader<'_>, scratch: &mut [u8]) -> Result<usize, WireError> {
    let v1 = HeaderV1 {
        tap_id: h.tap_id,
        boot_id: h.boot_id,
        seq: h.seq,
        base_ms: h.base_ms,
        flags: h.flags,
    };
    let n = postcard::to_slice(&v1, scratch)
        .map_err(|_| WireError::Malformed("header"))?
        .len();
    let ext = HeaderExt {
        dropped_batches: h.dropped_batches,
        low_seq: h.low_seq,
    };
    let m = postcard::to_slice(&ext, &mut scratch[n..])
        .map_err(|_| WireError::Malformed("header"))?
        .len();
    let end = n + m + h.attachments.len();
    scratch
        .get_mut(n + m..end)
        .ok_or(WireError::Full)?
        .copy_from_slice(h.attachments);
    Ok(end)
}

fn decode_header(bytes: &[u8]) -> Result<BatchHeader<'_>, WireError> {
    let (v1, rest): (HeaderV1<'_>, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|_| WireError::Malformed("header"))?;
    let (ext, attachments) = if rest.is_empty() {
        (HeaderExt::default(), rest)
    } else {
        postcard::take_from_bytes::<HeaderExt>(rest).map_err(|_| WireError::Malformed("header"))?
    };
    Ok(BatchHeader {
        tap_id: v1.tap_id,
        boot_id: v1.boot_id,
        seq: v1.seq,
        base_ms: v1.base_ms,
        flags: v1.flags,
        dropped_batches: ext.dropped_batches,
        low_seq: ext.low_seq,
        attachments,
    })
}

#[derive(Serialize, Deserialize)]
pub(crate) enum WireAddr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl From<IpAddr> for WireAddr {
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => WireAddr::V4(a.octets()),
            IpAddr::V6(a) => WireAddr::V6(a.octets()),
        }
    }
}

impl From<WireAddr> for IpAddr {
    fn from(addr: WireAddr) -> Self {
        match addr {
            WireAddr::V4(o) => IpAddr::V4(Ipv4Addr::from(o)),
            WireAddr::V6(o) => IpAddr::V6(Ipv6Addr::from(o)),
        }
    }
}

/// The core fields of a record as serialized; frozen for wire version 1.
#[derive(Serialize, Deserialize)]
struct WireFlow<'a> {
    start_rel_ms: i64,
    duration_ms: u64,
    proto: u8,
    src_addr: WireAddr,
    src_port: u16,
    src_mac: [u8; 6],
    src_packets: u64,
    src_bytes: u64,
    src_tcp_flags: u8,
    dst_addr: WireAddr,
    dst_port: u16,
    dst_mac: [u8; 6],
    dst_packets: u64,
    dst_bytes: u64,
    dst_tcp_flags: u8,
    vlan: u16,
    inner_vlan: u16,
    conn_state: u8,
    history: &'a str,
    end_reason: u8,
    flags: u8,
    ingress: u8,
    icmp: Option<(u8, u8)>,
}

pub(crate) fn put_varint(buf: &mut [u8], pos: &mut usize, mut value: u32) -> Result<(), WireError> {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let out = buf.get_mut(*pos).ok_or(WireError::Full)?;
        *pos += 1;
        if value == 0 {
            *out = byte;
            return Ok(());
        }
        *out = byte | 0x80;
    }
}

pub(crate) fn take_varint(bytes: &[u8], pos: &mut usize) -> Result<u32, WireError> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*pos).ok_or(WireError::Truncated)?;
        *pos += 1;
        let part = u32::from(byte & 0x7f);
        if shift == 28 && part > 0x0f {
            return Err(WireError::Malformed("varint"));
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::Malformed("varint"))
}

/// Takes one length-prefixed part.
pub(crate) fn take_part<'a>(bytes: &'a [u8], pos: &mut usize) -> Result<&'a [u8], WireError> {
    let len = take_varint(bytes, pos)? as usize;
    let end = pos.checked_add(len).ok_or(WireError::Truncated)?;
    let part = bytes.get(*pos..end).ok_or(WireError::Truncated)?;
    *pos = end;
    Ok(part)
}

/// Writes one length-prefixed part.
pub(crate) fn put_part(buf: &mut [u8], pos: &mut usize, part: &[u8]) -> Result<(), WireError> {
    let mut p = *pos;
    put_varint(buf, &mut p, part.len() as u32)?;
    let end = p + part.len();
    buf.get_mut(p..end)
        .ok_or(WireError::Full)?
        .copy_from_slice(part);
    *pos = end;
    Ok(())
}

/// Builds one datagram in a fixed buffer: no allocation, so the firmware can
/// batch records on its hot path.
pub struct BatchWriter {
    buf: [u8; MAX_INFLATED],
    len: usize,
    /// Where the batch may end before it is deflated: [`MAX_DATAGRAM`],
    /// or more when deflating, after how well the batches before deflated.
    limit: usize,
    /// Where each record ends in `buf`.
    ends: [u16; MAX_BATCH_RECORDS],
    base_ms: u64,
    records: usize,
    /// Bytes of the header part (after its length prefix at offset 5),
    /// which grows as file records are attached.
    header_len: usize,
    files: usize,
    version: u8,
    /// Version 2: what the batch has carried.
    tables: crate::compact::Tables,
    /// Version 2: records deflated when that is smaller.
    deflate: bool,
    /// Its tables, made at the first batch that deflates and kept.
    #[cfg(feature = "std")]
    deflater: Option<std::boxed::Box<crate::deflate::Deflater>>,
}

impl Default for BatchWriter {
    fn default() -> Self {
        BatchWriter::with_version(VERSION)
    }
}

/// Bytes of `value` as a varint.
fn varint_len(value: usize) -> usize {
    let mut n = 1;
    let mut v = value >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

impl BatchWriter {
    /// A writer of `version` ([`VERSION`], or [`VERSION_1`] for collectors
    /// older than version 2); any other is taken as [`VERSION`].
    pub fn with_version(version: u8) -> Self {
        BatchWriter {
            buf: [0; MAX_INFLATED],
            len: 0,
            limit: MAX_DATAGRAM,
            ends: [0; MAX_BATCH_RECORDS],
            base_ms: 0,
            records: 0,
            header_len: 0,
            files: 0,
            version: if version == VERSION_1 {
                VERSION_1
            } else {
                VERSION
            },
            tables: crate::compact::Tables::new(0),
            deflate: true,
            #[cfg(feature = "std")]
            deflater: None,
        }
    }

    /// Whether [`BatchWriter::to_datagram`] deflates (it does by default).
    pub fn set_deflate(&mut self, on: bool) {
        self.deflate = on;
        self.limit = MAX_DATAGRAM;
    }

    /// Whether batches are deflated, and so may be built past a datagram
    /// (only with `std`: the inflater is miniz_oxide's).
    #[cfg(feature = "std")]
    fn deflating(&self) -> bool {
        self.deflate && self.version == VERSION
    }

    /// Starts a new batch, discarding what was there.
    pub fn start(&mut self, header: &BatchHeader<'_>) -> Result<(), WireError> {
        if header.tap_id.len() > MAX_TAP_ID {
            return Err(WireError::TapIdTooLong);
        }
        let mut scratch = [0u8; MAX_RECORD];
        let n = encode_header(header, &mut scratch)?;
        self.buf[..4].copy_from_slice(&MAGIC);
        self.buf[4] = self.version;
        self.tables.reset(header.base_ms);
        let mut pos = 5;
        put_part(&mut self.buf, &mut pos, &scratch[..n])?;
        self.len = pos;
        self.base_ms = header.base_ms;
        self.records = 0;
        self.header_len = n;
        self.files = 0;
        Ok(())
    }

    /// Attaches a file record to the header (see
    /// `BatchHeader::attachments`). `Err(WireError::Full)` leaves the
    /// batch as it was.
    pub fn push_file(&mut self, file: &crate::FileRecord) -> Result<(), WireError> {
        let mut scratch = [0u8; MAX_RECORD];
        let framed = crate::attach::encode_file(file, self.base_ms, &mut scratch)?;
        let n = framed.len();
        let (old_vl, new_vl) = (varint_len(self.header_len), varint_len(self.header_len + n));
        let grow = n + new_vl - old_vl;
        // The header is never deflated: it must fit a datagram alone.
        if self.len + grow > self.limit || 5 + new_vl + self.header_len + n > MAX_DATAGRAM {
            return Err(WireError::Full);
        }
        let header_start = 5 + old_vl;
        let header_end = header_start + self.header_len;
        // Records move up by what the header grows, the header by what its
        // length prefix grows.
        self.buf
            .copy_within(header_end..self.len, header_end + grow);
        self.buf.copy_within(header_start..header_end, 5 + new_vl);
        let mut pos = 5;
        put_varint(&mut self.buf, &mut pos, (self.header_len + n) as u32)?;
        let at = 5 + new_vl + self.header_len;
        self.buf[at..at + n].copy_from_slice(framed);
        self.header_len += n;
        self.len += grow;
        for end in &mut self.ends[..self.records] {
            *end += grow as u16;
        }
        self.files += 1;
        Ok(())
    }

    /// File records attached so far.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// Appends a record. `Err(WireError::Full)` leaves the batch as it was.
    pub fn push(&mut self, record: &FlowRecord) -> Result<(), WireError> {
        if self.records == MAX_BATCH_RECORDS {
            return Err(WireError::Full);
        }
        let mark = self.tables.mark();
        let result = if self.version == VERSION_1 {
            self.push_v1(record)
        } else {
            self.push_compact(record)
        };
        match result {
            Ok(end) => {
                self.len = end;
                self.ends[self.records] = end as u16;
                self.records += 1;
                Ok(())
            }
            Err(e) => {
                self.tables.restore(mark);
                Err(e)
            }
        }
    }

    /// Whether a record of `n` bytes, behind its length, fits the batch.
    fn room_for(&self, n: usize) -> Result<(), WireError> {
        if self.len + varint_len(n) + n > self.limit {
            return Err(WireError::Full);
        }
        Ok(())
    }

    /// A version 1 record after the batch: where it ends.
    fn push_v1(&mut self, record: &FlowRecord) -> Result<usize, WireError> {
        let mut scratch = [0u8; MAX_RECORD];
        let n = encode_record(record, self.base_ms, &mut scratch)?.len();
        self.room_for(n)?;
        let mut pos = self.len;
        put_part(&mut self.buf, &mut pos, &scratch[..n])?;
        Ok(pos)
    }

    /// A version 2 record after the batch, encoded in place behind a
    /// one-byte length (moved up by one in the rare record of 128 bytes or
    /// more): where it ends. A scratch record, cleared and copied for each
    /// record, was some 8 % of what pushing one cost.
    fn push_compact(&mut self, record: &FlowRecord) -> Result<usize, WireError> {
        let body = self.len + 1;
        let room = self.limit.min(body + MAX_RECORD);
        let window = self.buf.get_mut(body..room).ok_or(WireError::Full)?;
        let mut n = crate::compact::encode(record, &mut self.tables, window)?;
        put_extensions(record, false, window, &mut n)?;
        self.room_for(n)?;
        if varint_len(n) > 1 {
            self.buf
                .copy_within(body..body + n, self.len + varint_len(n));
        }
        let mut pos = self.len;
        put_varint(&mut self.buf, &mut pos, n as u32)?;
        Ok(pos + n)
    }

    /// The batch as built, records not deflated.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The batch as it travels: a version 2 batch's records deflated (and
    /// [`FLAG_DEFLATED`] set) when that makes it smaller; else as built.
    /// A deflating batch may have been built past a datagram: when its
    /// records do not deflate into one, the last ones are cut off and come
    /// back decoded in `carried_over`, for the next batch. The writer then
    /// aims lower; after a batch that fitted, it aims at what that one's
    /// deflate ratio allows, up to [`MAX_INFLATED`].
    #[cfg(feature = "std")]
    pub fn to_datagram(&mut self) -> Datagram {
        let start = 5 + varint_len(self.header_len) + self.header_len;
        if !self.deflating() || self.records == 0 || start >= self.len {
            return Datagram {
                bytes: self.as_bytes().to_vec(),
                carried_over: std::vec::Vec::new(),
            };
        }
        // The header a deflated datagram carries, made once for every try;
        // and the raw size one try's ratio says deflates into a datagram
        // (less a margin for records that deflate a little worse).
        let deflated_header = rewrite_header(&self.buf[..start], |h| h.flags |= FLAG_DEFLATED).ok();
        let aim =
            |raw: usize, packed: usize| raw * (MAX_DATAGRAM - start) / packed.max(1) * 15 / 16;
        let mut sent = self.records;
        let bytes = loop {
            let end = match sent {
                0 => start,
                n if n == self.records => self.len,
                n => usize::from(self.ends[n - 1]),
            };
            // One block sized for a batch (crate::deflate), in tables kept
            // from batch to batch.
            let deflater = self.deflater.get_or_insert_with(std::boxed::Box::default);
            let packed = deflater.deflate_here(&self.buf[start..end]);
            let packed_len = packed.map_or(usize::MAX, <[u8]>::len);
            let deflated = deflated_header
                .as_ref()
                .zip(packed.filter(|p| p.len() < end - start))
                .map(|(header, packed)| {
                    let mut out = header.clone();
                    out.extend_from_slice(packed);
                    out
                })
                .filter(|out| out.len() <= MAX_DATAGRAM);
            if let Some(out) = deflated {
                if sent == self.records {
                    // Aim the next batch at this one's ratio.
                    self.limit =
                        (start + aim(end - start, packed_len)).clamp(MAX_DATAGRAM, MAX_INFLATED);
                } else {
                    self.limit = end.max(MAX_DATAGRAM);
                }
                break out;
            }
            if end <= MAX_DATAGRAM {
                self.limit = MAX_DATAGRAM;
                break self.buf[..end].to_vec();
            }
            // Fewer records: as many as the ratio says would fit (at least
            // one fewer), and never below a batch that fits undeflated.
            let want = aim(end - start, packed_len.min(2 * MAX_INFLATED));
            let before = &self.ends[..sent - 1];
            let fewer = before
                .iter()
                .rposition(|&e| usize::from(e) <= start + want)
                .or_else(|| before.iter().rposition(|&e| usize::from(e) <= MAX_DATAGRAM));
            // Down to no record at all: the header alone always fits.
            sent = fewer.map_or(sent - 1, |i| i + 1);
        };
        let carried_over = if sent < self.records {
            BatchReader::new(self.as_bytes())
                .map(|r| r.skip(sent).filter_map(Result::ok).collect())
                .unwrap_or_default()
        } else {
            std::vec::Vec::new()
        };
        Datagram {
            bytes,
            carried_over,
        }
    }

    pub fn record_count(&self) -> usize {
        self.records
    }

    pub fn is_started(&self) -> bool {
        self.len > 0
    }

    /// Forgets the batch (after it was sent).
    pub fn clear(&mut self) {
        self.len = 0;
        self.records = 0;
        self.files = 0;
    }
}

/// A finished batch as it travels, and the records cut off it.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct Datagram {
    pub bytes: std::vec::Vec<u8>,
    /// Records that did not fit once deflated: they go in the next batch.
    pub carried_over: std::vec::Vec<FlowRecord>,
}

/// Packs `records` into datagrams in order, as the tap's uplink does: a
/// batch opens with `header(seq, first record)`, goes when the next record
/// does not fit (or at the end), and the records a deflated batch gives
/// back open the next one. For tests and benchmarks that need the tap's
/// packing without its uplink; `seq` counts from `first_seq`.
#[cfg(feature = "std")]
pub fn pack_all<'h>(
    writer: &mut BatchWriter,
    records: &[FlowRecord],
    first_seq: u64,
    mut header: impl FnMut(u64, &FlowRecord) -> BatchHeader<'h>,
) -> Result<std::vec::Vec<std::vec::Vec<u8>>, WireError> {
    let mut out = std::vec::Vec::new();
    let mut seq = first_seq;
    // Records are taken in place; only those a batch gives back are kept
    // aside (a copy of every record would cost more than packing them).
    let mut next = 0;
    let mut carried: std::collections::VecDeque<FlowRecord> = std::collections::VecDeque::new();
    loop {
        let full = match carried.front().or(records.get(next)) {
            Some(r) => {
                if !writer.is_started() {
                    writer.start(&header(seq, r))?;
                }
                match writer.push(r) {
                    Ok(()) => false,
                    // A record that fits no empty batch would loop forever.
                    Err(WireError::Full) if writer.record_count() == 0 => {
                        return Err(WireError::Full)
                    }
                    Err(WireError::Full) => true,
                    Err(e) => return Err(e),
                }
            }
            None if writer.is_started() => true,
            None => break,
        };
        if !full {
            if carried.pop_front().is_none() {
                next += 1;
            }
            continue;
        }
        let d = writer.to_datagram();
        out.push(d.bytes);
        for c in d.carried_over.into_iter().rev() {
            carried.push_front(c);
        }
        writer.clear();
        seq += 1;
    }
    Ok(out)
}

/// Encodes the core fields of one record (without its length prefix).
fn encode_record<'b>(
    r: &FlowRecord,
    base_ms: u64,
    scratch: &'b mut [u8],
) -> Result<&'b mut [u8], WireError> {
    // Times are well inside i64 ms (year 292 million), so the difference fits.
    let start_rel_ms = (r.start_ms as i64).wrapping_sub(base_ms as i64);
    let wire = WireFlow {
        start_rel_ms,
        duration_ms: r.duration_ms(),
        proto: r.proto,
        src_addr: r.src.addr.into(),
        src_port: r.src.port,
        src_mac: r.src.mac,
        src_packets: r.src.counters.packets,
        src_bytes: r.src.counters.bytes,
        src_tcp_flags: r.src.counters.tcp_flags,
        dst_addr: r.dst.addr.into(),
        dst_port: r.dst.port,
        dst_mac: r.dst.mac,
        dst_packets: r.dst.counters.packets,
        dst_bytes: r.dst.counters.bytes,
        dst_tcp_flags: r.dst.counters.tcp_flags,
        vlan: r.vlan,
        inner_vlan: r.inner_vlan,
        conn_state: r.conn_state as u8,
        history: r.history.as_str(),
        end_reason: r.end_reason as u8,
        flags: if r.continuation {
            RECORD_FLAG_CONTINUATION
        } else {
            0
        },
        ingress: r.ingress as u8,
        icmp: r.icmp,
    };
    let core_len = postcard::to_slice(&wire, &mut scratch[..])
        .map_err(|_| WireError::Malformed("record"))?
        .len();
    let mut pos = core_len;
    put_extensions(r, true, scratch, &mut pos)?;
    Ok(&mut scratch[..pos])
}

/// Writes a record's extensions after its core: the names, the counts
/// that are rarely non-zero, and (version 1, whose core lacks them) the IP
/// and payload bytes.
fn put_extensions(
    r: &FlowRecord,
    side_bytes: bool,
    scratch: &mut [u8],
    pos: &mut usize,
) -> Result<(), WireError> {
    let n = &r.names;
    for (tag, text) in [
        (EXT_RESPONDER_NAME, n.responder_name.as_bytes()),
        (EXT_CLIENT_HOSTNAME, n.client_hostname.as_bytes()),
        (EXT_SERVER_HOSTNAME, n.server_hostname.as_bytes()),
        (EXT_SNI, n.sni.as_bytes()),
        (EXT_ALPN, n.alpn.as_bytes()),
        (EXT_HTTP_HOST, n.http_host.as_bytes()),
        (EXT_HTTP_REQUEST, n.http_request.as_bytes()),
    ] {
        if !text.is_empty() {
            put_varint(scratch, pos, tag)?;
            put_part(scratch, pos, text)?;
        }
    }
    for (tag, count) in [
        (EXT_RING_DROPS, r.ring_drops),
        (EXT_MISSED_BYTES, r.missed_bytes),
    ] {
        if count > 0 {
            let mut value = [0u8; 5];
            let mut n = 0;
            put_varint(&mut value, &mut n, count)?;
            put_varint(scratch, pos, tag)?;
            put_part(scratch, pos, &value[..n])?;
        }
    }
    let (s, d) = (&r.src.counters, &r.dst.counters);
    let sides = [s.ip_bytes, s.payload_bytes, d.ip_bytes, d.payload_bytes];
    if side_bytes && sides != [0; 4] {
        let mut value = [0u8; 40];
        let n = postcard::to_slice(&sides, &mut value)
            .map_err(|_| WireError::Malformed("side bytes"))?
            .len();
        put_varint(scratch, pos, EXT_SIDE_BYTES)?;
        put_part(scratch, pos, &value[..n])?;
    }
    Ok(())
}

/// Decodes the core fields of one record body and its extensions.
fn decode_record(body: &[u8], base_ms: u64, clock: ClockState) -> Result<FlowRecord, WireError> {
    let (w, rest): (WireFlow<'_>, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| WireError::Malformed("record"))?;
    let Extensions {
        names,
        ring_drops,
        missed_bytes,
        side_bytes,
    } = read_extensions(rest)?;
    let start_ms = (base_ms as i64)
        .checked_add(w.start_rel_ms)
        .filter(|v| *v >= 0)
        .ok_or(WireError::Malformed("start time"))? as u64;
    let end_ms = start_ms
        .checked_add(w.duration_ms)
        .ok_or(WireError::Malformed("duration"))?;
    if w.history.len() > History::CAPACITY {
        return Err(WireError::Malformed("history"));
    }
    if w.flags & !RECORD_FLAG_CONTINUATION != 0 {
        return Err(WireError::Malformed("record flags"));
    }
    Ok(FlowRecord {
        start_ms,
        end_ms,
        proto: w.proto,
        src: Endpoint {
            addr: w.src_addr.into(),
            port: w.src_port,
            mac: w.src_mac,
            counters: SideCounters {
                packets: w.src_packets,
                bytes: w.src_bytes,
                ip_bytes: side_bytes[0],
                payload_bytes: side_bytes[1],
                tcp_flags: w.src_tcp_flags,
            },
        },
        dst: Endpoint {
            addr: w.dst_addr.into(),
            port: w.dst_port,
            mac: w.dst_mac,
            counters: SideCounters {
                packets: w.dst_packets,
                bytes: w.dst_bytes,
                ip_bytes: side_bytes[2],
                payload_bytes: side_bytes[3],
                tcp_flags: w.dst_tcp_flags,
            },
        },
        vlan: w.vlan,
        inner_vlan: w.inner_vlan,
        conn_state: ConnState::from_u8(w.conn_state).ok_or(WireError::Malformed("conn_state"))?,
        history: History::from_text(w.history),
        end_reason: EndReason::from_u8(w.end_reason).ok_or(WireError::Malformed("end_reason"))?,
        continuation: w.flags & RECORD_FLAG_CONTINUATION != 0,
        ingress: TapPort::from_u8(w.ingress).ok_or(WireError::Malformed("ingress"))?,
        icmp: w.icmp,
        names,
        clock,
        ring_drops,
        missed_bytes,
    })
}

/// Decodes a version 2 record: its core against the batch's tables, then
/// its extensions.
fn decode_compact(
    body: &[u8],
    tables: &mut crate::compact::Tables,
    clock: ClockState,
) -> Result<FlowRecord, WireError> {
    let (mut r, at) = crate::compact::decode(body, tables)?;
    let ext = read_extensions(&body[at..])?;
    r.names = ext.names;
    r.ring_drops = ext.ring_drops;
    r.missed_bytes = ext.missed_bytes;
    r.clock = clock;
    Ok(r)
}

/// What a record's extensions carry.
#[derive(Default)]
struct Extensions {
    names: Names,
    ring_drops: u32,
    missed_bytes: u32,
    /// src IP, src payload, dst IP, dst payload bytes.
    side_bytes: [u64; 4],
}

/// An extension's value that is one varint and nothing else.
fn one_varint(value: &[u8], field: &'static str) -> Result<u32, WireError> {
    let mut at = 0;
    let n = take_varint(value, &mut at)?;
    if at != value.len() {
        return Err(WireError::Malformed(field));
    }
    Ok(n)
}

/// Walks the tagged extensions after a record's core fields: the ones it
/// knows, and unknown tags skipped so newer taps stay readable.
fn read_extensions(mut rest: &[u8]) -> Result<Extensions, WireError> {
    let mut ext = Extensions::default();
    let names = &mut ext.names;
    while !rest.is_empty() {
        let mut pos = 0;
        let tag = take_varint(rest, &mut pos)?;
        let value = take_part(rest, &mut pos)?;
        match tag {
            EXT_RESPONDER_NAME => names.responder_name = Text::from_bytes(value),
            EXT_CLIENT_HOSTNAME => names.client_hostname = Text::from_bytes(value),
            EXT_SERVER_HOSTNAME => names.server_hostname = Text::from_bytes(value),
            EXT_SNI => names.sni = Text::from_bytes(value),
            EXT_ALPN => names.alpn = Text::from_bytes(value),
            EXT_HTTP_HOST => names.http_host = Text::from_bytes(value),
            EXT_HTTP_REQUEST => names.http_request = Text::from_bytes(value),
            EXT_RING_DROPS => ext.ring_drops = one_varint(value, "ring_drops")?,
            EXT_MISSED_BYTES => ext.missed_bytes = one_varint(value, "missed_bytes")?,
            EXT_SIDE_BYTES => {
                let (sides, left) = postcard::take_from_bytes::<[u64; 4]>(value)
                    .map_err(|_| WireError::Malformed("side bytes"))?;
                if !left.is_empty() {
                    return Err(WireError::Malformed("side bytes"));
                }
                ext.side_bytes = sides;
            }
            _ => {}
        }
        rest = &rest[pos..];
    }
    Ok(ext)
}

/// A decoded batch header plus an iterator over its records. Nothing is
/// allocated: the records are decoded as the iterator is walked.
pub struct BatchReader<'a> {
    pub header: BatchHeader<'a>,
    bytes: &'a [u8],
    /// Where the records start in `bytes` (as they travel); read by
    /// `rewrite_header`, which needs std.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    records_at: usize,
    /// The next record in the records: `bytes`, or `inflated` when the
    /// batch came deflated.
    pos: usize,
    version: u8,
    tables: crate::compact::Tables,
    inflated: Option<([u8; MAX_INFLATED], usize)>,
}

/// Checks that `bytes` start with the PiTap magic and hold at least `min`
/// bytes: a short prefix of the magic is a truncated datagram, anything
/// else is not PiTap's.
pub(crate) fn check_magic(bytes: &[u8], min: usize) -> Result<(), WireError> {
    if bytes.len() < min {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(4)]) {
            WireError::Truncated
        } else {
            WireError::BadMagic
        });
    }
    if bytes[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    Ok(())
}

impl<'a> BatchReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, WireError> {
        check_magic(bytes, MAGIC.len() + 1)?;
        let version = bytes[4];
        if version != VERSION && version != VERSION_1 {
            return Err(WireError::UnsupportedVersion(version));
        }
        let mut pos = 5;
        let header = decode_header(take_part(bytes, &mut pos)?)?;
        if header.tap_id.len() > MAX_TAP_ID {
            return Err(WireError::TapIdTooLong);
        }
        let inflated = if header.flags & FLAG_DEFLATED != 0 {
            if version == VERSION_1 {
                return Err(WireError::Malformed("deflated version 1 batch"));
            }
            let mut out = [0u8; MAX_INFLATED];
            let n = miniz_oxide::inflate::decompress_slice_iter_to_slice(
                &mut out,
                core::iter::once(&bytes[pos..]),
                false,
                true,
            )
            .map_err(|_| WireError::Malformed("deflated records"))?;
            Some((out, n))
        } else {
            None
        };
        Ok(BatchReader {
            tables: crate::compact::Tables::new(header.base_ms),
            header,
            bytes,
            records_at: pos,
            pos: if inflated.is_some() { 0 } else { pos },
            version,
            inflated,
        })
    }

    /// The batch's wire version.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The file records attached to the batch (kinds this version does not
    /// know are skipped).
    pub fn files(&self) -> crate::attach::Files<'a> {
        crate::attach::Files::new(self.header.attachments, self.header.base_ms)
    }
}

/// A batch with its header changed by `edit` and its records untouched
/// (their times are relative to the header's base time, so moving
/// `base_ms` moves them all). The tap uses it to put batches made before
/// its clock was synchronised on the collector's clock.
#[cfg(feature = "std")]
pub fn rewrite_header(
    batch: &[u8],
    edit: impl FnOnce(&mut BatchHeader<'_>),
) -> Result<std::vec::Vec<u8>, WireError> {
    let reader = BatchReader::new(batch)?;
    let mut header = reader.header;
    edit(&mut header);
    let mut scratch = [0u8; MAX_DATAGRAM + REWRITE_ROOM];
    let n = encode_header(&header, &mut scratch)?;
    let mut out = std::vec::Vec::with_capacity(batch.len() + 8);
    out.extend_from_slice(&MAGIC);
    out.push(reader.version);
    let mut len = [0u8; 5];
    let mut l = 0;
    put_varint(&mut len, &mut l, n as u32)?;
    out.extend_from_slice(&len[..l]);
    out.extend_from_slice(&scratch[..n]);
    out.extend_from_slice(&batch[reader.records_at..]);
    if out.len() > MAX_DATAGRAM + REWRITE_ROOM {
        return Err(WireError::Full);
    }
    Ok(out)
}

impl Iterator for BatchReader<'_> {
    type Item = Result<FlowRecord, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let records: &[u8] = match &self.inflated {
            Some((buf, n)) => &buf[..*n],
            None => self.bytes,
        };
        if self.pos >= records.len() {
            return None;
        }
        let clock = self.header.clock();
        let result = take_part(records, &mut self.pos).and_then(|body| {
            if self.version == VERSION_1 {
                decode_record(body, self.header.base_ms, clock)
            } else {
                decode_compact(body, &mut self.tables, clock)
            }
        });
        if result.is_err() {
            // A broken record poisons the rest of the datagram.
            self.pos = records.len();
        }
        Some(result)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    #[test]
    fn tap_ids_name_files_safely() {
        for good in ["lab", "rack-3.b_2", "A", &"x".repeat(32)] {
            assert!(super::check_tap_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "../evil",
            "a/b",
            "a b",
            "tap\"",
            "é",
            &"x".repeat(33),
        ] {
            assert!(super::check_tap_id(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    /// A deflating writer builds past a datagram after batches that
    /// deflated well; a batch that then deflates badly (names no table or
    /// deflate can shorten) is cut to a datagram, and the records cut off
    /// come back whole, in order, for the next batch.
    #[test]
    fn a_batch_that_deflates_badly_is_cut_and_gives_records_back() {
        use crate::record::{Names, Text};
        let mut w = BatchWriter::default();
        let header = BatchHeader {
            tap_id: "t",
            ..BatchHeader::default()
        };
        let alike = FlowRecord {
            start_ms: 1_000,
            end_ms: 2_000,
            proto: 17,
            ..FlowRecord::default()
        };
        // Well-deflating batches raise the aim past a datagram.
        for _ in 0..3 {
            w.start(&header).unwrap();
            while w.push(&alike).is_ok() {}
            let d = w.to_datagram();
            assert!(d.bytes.len() <= MAX_DATAGRAM && d.carried_over.is_empty());
        }
        w.start(&header).unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noisy = Vec::new();
        loop {
            let mut name = [0u8; 100];
            for b in &mut name {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = b'a' + (state % 26) as u8;
            }
            let r = FlowRecord {
                names: Names {
                    sni: Text::from_bytes(&name),
                    ..Names::default()
                },
                ..alike
            };
            if w.push(&r).is_err() {
                break;
            }
            noisy.push(r);
        }
        assert!(
            w.as_bytes().len() > MAX_DATAGRAM,
            "built past a datagram: {} bytes",
            w.as_bytes().len()
        );
        let aimed = w.limit;
        let d = w.to_datagram();
        assert!(d.bytes.len() <= MAX_DATAGRAM, "{} bytes", d.bytes.len());
        // The next batch aims lower.
        assert!(w.limit < aimed, "{} then {}", aimed, w.limit);
        let sent: Vec<FlowRecord> = BatchReader::new(&d.bytes)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!d.carried_over.is_empty() && !sent.is_empty());
        let back: Vec<FlowRecord> = sent.into_iter().chain(d.carried_over).collect();
        assert_eq!(back, noisy);
    }

    #[test]
    fn deflated_records_past_a_datagram_are_refused() {
        let mut w = BatchWriter::default();
        w.start(&BatchHeader {
            tap_id: "t",
            ..BatchHeader::default()
        })
        .unwrap();
        let header = rewrite_header(w.as_bytes(), |h| h.flags |= FLAG_DEFLATED).unwrap();
        // 5,000 bytes inflated from a few dozen: more than any batch holds.
        let mut bomb = header.clone();
        bomb.extend(miniz_oxide::deflate::compress_to_vec(&[1u8; 5000], 1));
        assert_eq!(
            BatchReader::new(&bomb).err(),
            Some(WireError::Malformed("deflated records"))
        );
        // Version 1 has no deflated form.
        let mut v1 = header;
        v1[4] = VERSION_1;
        v1.extend(miniz_oxide::deflate::compress_to_vec(&[], 1));
        assert_eq!(
            BatchReader::new(&v1).err(),
            Some(WireError::Malformed("deflated version 1 batch"))
        );
    }

    #[test]
    fn varint_round_trips_edges() {
        for v in [0u32, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let mut buf = [0u8; 5];
            let mut pos = 0;
            put_varint(&mut buf, &mut pos, v).unwrap();
            let mut read = 0;
            assert_eq!(take_varint(&buf[..pos], &mut read).unwrap(), v);
            assert_eq!(read, pos);
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            take_varint(&bytes, &mut 0),
            Err(WireError::Malformed("varint"))
        );
    }

    #[test]
    fn header_extensions_both_ways() {
        let h = BatchHeader {
            tap_id: "t",
            boot_id: 3,
            seq: 9,
            base_ms: 77,
            flags: 1,
            dropped_batches: 12,
            low_seq: 5,
            attachments: &[],
        };
        let mut scratch = [0u8; 64];
        let n = encode_header(&h, &mut scratch).unwrap();
        assert_eq!(decode_header(&scratch[..n]).unwrap(), h);
        // An old tap's header (version 1 fields only) reads as no drops.
        let v1 = HeaderV1 {
            tap_id: "t",
            boot_id: 3,
            seq: 9,
            base_ms: 77,
            flags: 1,
        };
        let old = postcard::to_slice(&v1, &mut scratch).unwrap().len();
        assert_eq!(
            decode_header(&scratch[..old]).unwrap(),
            BatchHeader {
                dropped_batches: 0,
                low_seq: 0,
                ..h
            }
        );
        // An old collector reads a new header's version 1 fields and skips the rest.
        let n = encode_header(&h, &mut scratch).unwrap();
        let (read, rest): (HeaderV1<'_>, &[u8]) = postcard::take_from_bytes(&scratch[..n]).unwrap();
        assert_eq!((read.seq, rest.is_empty()), (9, false));
    }

    #[test]
    fn names_travel_as_extensions_both_ways() {
        let mut rec = FlowRecord {
            start_ms: 5_000,
            end_ms: 6_000,
            proto: 6,
            ..FlowRecord::default()
        };
        let mut scratch = [0u8; MAX_RECORD];
        // A record without names is exactly a version 1 record.
        let plain_len = encode_record(&rec, 4_000, &mut scratch).unwrap().len();
        rec.names.responder_name = Text::from_bytes(b"c2.example.net");
        rec.names.sni = Text::from_bytes(b"c2.example.net");
        rec.names.alpn = Text::from_bytes(b"h2,http/1.1");
        rec.names.client_hostname = Text::from_bytes(b"alice-mbp");
        let encoded = encode_record(&rec, 4_000, &mut scratch).unwrap().to_vec();
        assert!(encoded.len() > plain_len);
        assert_eq!(
            decode_record(&encoded, 4_000, ClockState::Unsynced),
            Ok(rec)
        );
        // An old collector reads the core fields and skips what follows.
        let (core, rest): (WireFlow<'_>, &[u8]) = postcard::take_from_bytes(&encoded).unwrap();
        assert_eq!((core.proto, core.duration_ms), (6, 1_000));
        let mut pos = 0;
        let mut seen = 0;
        while pos < rest.len() {
            take_varint(rest, &mut pos).unwrap();
            take_part(rest, &mut pos).unwrap();
            seen += 1;
        }
        assert_eq!(seen, 4);
        // And a new collector reads an old record: no names.
        let old = &scratch[..0];
        let _ = old;
        let mut old_scratch = [0u8; MAX_RECORD];
        let plain = FlowRecord {
            names: Names::default(),
            ..rec
        };
        let bytes = encode_record(&plain, 4_000, &mut old_scratch)
            .unwrap()
            .to_vec();
        assert_eq!(bytes.len(), plain_len);
        assert!(decode_record(&bytes, 4_000, ClockState::Unsynced)
            .unwrap()
            .names
            .is_empty());
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        let mut scratch = [0u8; MAX_RECORD + 16];
        let rec = FlowRecord {
            start_ms: 5_000,
            end_ms: 6_000,
            proto: 6,
            ..FlowRecord::default()
        };
        let len = encode_record(&rec, 4_000, &mut scratch).unwrap().len();
        // A newer tap appends extension tag 90 with three bytes.
        scratch[len..len + 5].copy_from_slice(&[90, 3, b'a', b'b', b'c']);
        let decoded = decode_record(&scratch[..len + 5], 4_000, ClockState::Unsynced).unwrap();
        assert_eq!(decoded, rec);
        // ...but an extension that claims more bytes than exist is an error.
        scratch[len + 1] = 9;
        assert_eq!(
            decode_record(&scratch[..len + 5], 4_000, ClockState::Unsynced),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn ring_drops_travel_as_an_extension() {
        let rec = FlowRecord {
            start_ms: 5_000,
            end_ms: 6_000,
            proto: 17,
            ring_drops: 300_000,
            ..FlowRecord::default()
        };
        let mut scratch = [0u8; MAX_RECORD];
        let encoded = encode_record(&rec, 4_000, &mut scratch).unwrap().to_vec();
        assert_eq!(
            decode_record(&encoded, 4_000, ClockState::Unsynced),
            Ok(rec)
        );
        // A value with trailing bytes inside its part is refused.
        let mut bad = encoded.clone();
        let n = bad.len();
        bad[n - 4] += 1; // the part's length: one byte more than the varint
        bad.push(0);
        assert!(decode_record(&bad, 4_000, ClockState::Unsynced).is_err());
    }

    #[test]
    fn a_rewritten_header_moves_every_record_and_keeps_them() {
        let mut w = BatchWriter::default();
        w.start(&BatchHeader {
            tap_id: "t",
            seq: 4,
            base_ms: 10_000,
            ..BatchHeader::default()
        })
        .unwrap();
        let mut records = std::vec::Vec::new();
        for i in 0..200u64 {
            let r = FlowRecord {
                start_ms: 9_000 + i * 37,
                end_ms: 9_500 + i * 41,
                proto: 6,
                ..FlowRecord::default()
            };
            if w.push(&r).is_err() {
                break;
            }
            records.push(r);
        }
        assert!(w.as_bytes().len() > MAX_DATAGRAM - 80, "a full batch");
        // From 1970 plus a few seconds to 2026: the base time's varint grows.
        let shift = 1_780_000_000_000u64;
        let moved = rewrite_header(w.as_bytes(), |h| {
            h.base_ms += shift;
            h.flags |= FLAG_CLOCK_SYNCED;
        })
        .unwrap();
        assert!(moved.len() <= MAX_DATAGRAM + REWRITE_ROOM);
        let reader = BatchReader::new(&moved).unwrap();
        assert_eq!(
            (reader.header.seq, reader.header.clock()),
            (4, ClockState::Synced)
        );
        let back: std::vec::Vec<FlowRecord> = reader.map(|r| r.unwrap()).collect();
        assert_eq!(back.len(), records.len());
        for (b, r) in back.iter().zip(&records) {
            assert_eq!(
                (b.start_ms, b.end_ms),
                (r.start_ms + shift, r.end_ms + shift)
            );
            assert_eq!(b.clock, ClockState::Synced);
        }
    }
}
