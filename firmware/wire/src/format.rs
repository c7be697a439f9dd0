//! The line formats, shared by `pitapd --print` and `pitap collect` so both
//! print the same bytes for the same flow: PiTap's text and JSON lines, and
//! Zeek's conn.log as TSV and as JSON ([`crate::zeek`]).
//!
//! Text: `TIME ACTION PROTO INITIATOR -> RESPONDER` then `key=value` fields.
//! The first part never changes shape: people grep it.

use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;

use serde_json::Value;

use crate::digits::{push_2, push_3, push_ipv4, push_ipv6, push_u64};
use crate::fields::RECORD_FIELDS;
use crate::file::{hex, FileRecord};
use crate::record::{has_ports, proto_name, ClockState, FlowRecord};
use crate::FlowSink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    Text,
    Json,
    /// Zeek's conn.log, TSV with its header.
    Zeek,
    /// Zeek's conn.log as Zeek's JSON writer writes it.
    ZeekJson,
    /// Elastic Common Schema documents, one a line.
    Ecs,
}

impl LineFormat {
    /// Every format by the name options take.
    pub const NAMES: [(&'static str, LineFormat); 5] = [
        ("text", LineFormat::Text),
        ("json", LineFormat::Json),
        ("zeek", LineFormat::Zeek),
        ("zeek-json", LineFormat::ZeekJson),
        ("ecs", LineFormat::Ecs),
    ];
}

impl std::str::FromStr for LineFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LineFormat::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = LineFormat::NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown format {s:?} (expected {})", names.join(", "))
            })
    }
}

/// A time as [`time_text`] writes it.
pub struct Time(pub u64, pub char);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ms, sep) = (self.0, self.1);
        let secs = (ms / 1000) as i64;
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}{sep}{:02}:{:02}:{:02}.{:03}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            ms % 1000
        )
    }
}

pub fn mac_text(mac: &[u8; 6]) -> String {
    let m = mac;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Converts days since 1970-01-01 to a civil date. Howard Hinnant's
/// `civil_from_days`; a date library would be a dependency for ten lines.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2016-07-21 16:28:49.523` (UTC); `sep` is ' ' or 'T'.
pub fn time_text(ms: u64, sep: char) -> String {
    Time(ms, sep).to_string()
}

/// One flow as a text line (no newline).
pub fn text_line(r: &FlowRecord, tap: &str) -> String {
    let mut line = Vec::with_capacity(160);
    push_text_line(&mut line, r, tap);
    // Only ASCII and the tap id (a &str) went in.
    String::from_utf8(line).unwrap_or_default()
}

/// The text line appended to `buf`, digits written by hand: `core::fmt`
/// costs several thousand instructions per line, which made printing the
/// records dearer than finding them. The `fmt` version it must match byte
/// for byte lives in the tests.
pub fn push_text_line(buf: &mut Vec<u8>, r: &FlowRecord, tap: &str) {
    let ports = has_ports(r.proto);
    push_time(buf, r.start_ms, b' ');
    buf.push(b' ');
    buf.extend_from_slice(r.action().as_str().as_bytes());
    buf.push(b' ');
    match proto_name(r.proto) {
        Some(name) => buf.extend_from_slice(name.as_bytes()),
        None => push_u64(buf, r.proto.into()),
    }
    buf.push(b' ');
    push_end(buf, r.src.addr, ports.then_some(r.src.port));
    buf.extend_from_slice(b" -> ");
    push_end(buf, r.dst.addr, ports.then_some(r.dst.port));
    let (s, d) = (&r.src.counters, &r.dst.counters);
    for (key, value) in [
        (&b" src_pkts="[..], s.packets),
        (b" src_bytes=", s.bytes),
        (b" dst_pkts=", d.packets),
        (b" dst_bytes=", d.bytes),
    ] {
        buf.extend_from_slice(key);
        push_u64(buf, value);
    }
    buf.extend_from_slice(b" state=");
    buf.extend_from_slice(r.conn_state.as_str().as_bytes());
    buf.extend_from_slice(b" end=");
    buf.extend_from_slice(r.end_reason.as_str().as_bytes());
    buf.extend_from_slice(b" dur=");
    push_u64(buf, r.duration_ms() / 1000);
    buf.push(b'.');
    push_3(buf, r.duration_ms() % 1000);
    if !r.history.is_empty() {
        buf.extend_from_slice(b" hist=");
        buf.extend_from_slice(r.history.as_bytes());
    }
    if let Some((t, c)) = r.icmp {
        buf.extend_from_slice(b" icmp=");
        push_u64(buf, t.into());
        buf.push(b'/');
        push_u64(buf, c.into());
    }
    if r.vlan != 0 || r.inner_vlan != 0 {
        buf.extend_from_slice(b" vlan=");
        push_u64(buf, r.vlan.into());
        if r.inner_vlan != 0 {
            buf.push(b'.');
            push_u64(buf, r.inner_vlan.into());
        }
    }
    if r.continuation {
        buf.extend_from_slice(b" cont");
    }
    if r.ingress != crate::TapPort::Unknown {
        buf.extend_from_slice(b" port=");
        buf.extend_from_slice(r.ingress.as_str().as_bytes());
    }
    if r.ring_drops > 0 {
        buf.extend_from_slice(b" drops=");
        push_u64(buf, r.ring_drops.into());
    }
    if r.missed_bytes > 0 {
        buf.extend_from_slice(b" missed=");
        push_u64(buf, r.missed_bytes.into());
    }
    if r.clock == ClockState::Unsynced {
        buf.extend_from_slice(b" clock=unsynced");
    }
    if !tap.is_empty() {
        buf.extend_from_slice(b" tap=");
        buf.extend_from_slice(tap.as_bytes());
    }
    for (key, text) in text_names(&r.names) {
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(text);
    }
}

/// The names a text line carries after the tap id (no spaces in any of
/// them; the HTTP request line is in the JSON only).
/// Bytes, not `&str`: `Text` holds printable ASCII only, and its UTF-8
/// check was a seventh of what a line cost.
fn text_names(n: &crate::record::Names) -> impl Iterator<Item = (&'static str, &[u8])> {
    [
        (" dst_name=", n.responder_name.as_bytes()),
        (" src_hostname=", n.client_hostname.as_bytes()),
        (" dst_hostname=", n.server_hostname.as_bytes()),
        (" sni=", n.sni.as_bytes()),
        (" alpn=", n.alpn.as_bytes()),
        (" http_host=", n.http_host.as_bytes()),
    ]
    .into_iter()
    .filter(|(_, t)| !t.is_empty() && !t.contains(&b' '))
}

fn push_time(buf: &mut Vec<u8>, ms: u64, sep: u8) {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    if (0..=9999).contains(&y) {
        push_2(buf, y as u64 / 100);
        push_2(buf, y as u64);
    } else {
        // Outside four digits: what `{:04}` prints.
        buf.extend_from_slice(format!("{y:04}").as_bytes());
    }
    buf.push(b'-');
    push_2(buf, mo.into());
    buf.push(b'-');
    push_2(buf, d.into());
    buf.push(sep);
    push_2(buf, sod / 3600);
    buf.push(b':');
    push_2(buf, sod / 60 % 60);
    buf.push(b':');
    push_2(buf, sod % 60);
    buf.push(b'.');
    push_3(buf, ms % 1000);
}

fn push_end(buf: &mut Vec<u8>, addr: IpAddr, port: Option<u16>) {
    match (addr, port) {
        (IpAddr::V4(a), _) => push_ipv4(buf, a),
        (IpAddr::V6(a), Some(_)) => {
            buf.push(b'[');
            push_ipv6(buf, a);
            buf.push(b']');
        }
        (IpAddr::V6(a), None) => push_ipv6(buf, a),
    }
    if let Some(p) = port {
        buf.push(b':');
        push_u64(buf, p.into());
    }
}

/// One flow as a JSON object: every field of [`crate::fields`] by its name,
/// the time as text (`ts`), the tap and the flow's Community ID.
pub fn json_value(r: &FlowRecord, tap: &str) -> Value {
    let mut o = serde_json::Map::with_capacity(RECORD_FIELDS.len() + 3);
    o.insert("ts".into(), (time_text(r.start_ms, 'T') + "Z").into());
    o.insert("tap".into(), tap.into());
    for f in RECORD_FIELDS {
        o.insert(
            f.name.into(),
            (f.get)(r).map_or(Value::Null, |v| v.to_json()),
        );
    }
    o.insert(
        "community_id".into(),
        crate::community_id::CommunityId::of(r, 0).as_str().into(),
    );
    Value::Object(o)
}

pub fn format_line(r: &FlowRecord, tap: &str, format: LineFormat) -> String {
    match format {
        LineFormat::Text => text_line(r, tap),
        LineFormat::Json => json_value(r, tap).to_string(),
        LineFormat::Zeek => crate::zeek::tsv_line(r, tap, None),
        LineFormat::ZeekJson => crate::zeek::json_line(r, tap, None).to_string(),
        LineFormat::Ecs => crate::ecs::ecs_value(r, tap).to_string(),
    }
}

/// One file record as a JSON object: its fields by the names queries use
/// (`file_*`), the time as text, the tap, and its flow's start and ends.
pub fn file_json(f: &FileRecord, tap: &str) -> Value {
    let hashes = f.hashes.as_ref();
    serde_json::json!({
        "ts": time_text(f.ts_ms, 'T') + "Z",
        "tap": tap,
        "file_direction": f.direction.as_str(),
        "file_method": f.method.as_str(),
        "file_url": f.url.as_str(),
        "file_status": f.status,
        "file_size": f.size,
        "file_missing": f.missing,
        "file_mime": f.mime.as_str(),
        "file_sha256": hashes.map(|h| hex(&h.sha256)),
        "file_sha1": hashes.map(|h| hex(&h.sha1)),
        "file_md5": hashes.map(|h| hex(&h.md5)),
        "file_flags": f.flag_names().collect::<Vec<_>>(),
        "flow_start": time_text(f.flow_start_ms, 'T') + "Z",
        "start_ms": f.flow_start_ms,
        "proto": "TCP",
        "src_addr": f.src_addr.to_string(),
        "src_port": f.src_port,
        "dst_addr": f.dst_addr.to_string(),
        "dst_port": f.dst_port,
        "conn_uid": crate::zeek::file_conn_uid(f, tap),
    })
}

/// One file record as a text line: `TIME FILE DIRECTION INITIATOR ->
/// RESPONDER` and `key=value` fields, like a flow line.
pub fn file_text_line(f: &FileRecord, tap: &str) -> String {
    use fmt::Write as _;
    let mut s = format!(
        "{} FILE {} {} -> {} sha256={} size={} mime={} status={} url={}",
        Time(f.ts_ms, 'T'),
        f.direction.as_str(),
        Endpoint(f.src_addr, f.src_port),
        Endpoint(f.dst_addr, f.dst_port),
        f.hashes.map_or_else(|| "-".to_string(), |h| hex(&h.sha256)),
        f.size,
        if f.mime.is_empty() {
            "-"
        } else {
            f.mime.as_str()
        },
        f.status,
        if f.url.is_empty() {
            "-"
        } else {
            f.url.as_str()
        },
    );
    let flags: Vec<_> = f.flag_names().collect();
    if !flags.is_empty() {
        let _ = write!(s, " flags={}", flags.join(","));
    }
    if f.missing > 0 {
        let _ = write!(s, " missing={}", f.missing);
    }
    let _ = write!(s, " flow_start={} tap={tap}", Time(f.flow_start_ms, 'T'));
    s
}

/// An address and port as a text line writes them.
struct Endpoint(IpAddr, u16);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
        }
    }
}

/// A sink that writes one line per flow. Keeps the first write error (a
/// closed pipe, a full disk) for its owner to report.
pub struct LineSink<W: Write> {
    out: W,
    /// One line at a time, reused.
    buf: Vec<u8>,
    tap: String,
    format: LineFormat,
    error: Option<io::Error>,
    lines: u64,
    /// Which records get a line.
    flows: bool,
    files: bool,
    /// Zeek's local_orig/local_resp: which addresses are local.
    local: Option<crate::zeek::LocalNets>,
    /// The Zeek TSV header is out (written before the first row), and the
    /// `#close` line.
    header_out: bool,
    closed: bool,
}

impl<W: Write> LineSink<W> {
    /// A sink for flow lines only.
    pub fn new(out: W, tap: &str, format: LineFormat) -> Self {
        LineSink {
            out,
            buf: Vec::with_capacity(256),
            tap: tap.to_string(),
            format,
            error: None,
            lines: 0,
            flows: true,
            files: false,
            local: None,
            header_out: false,
            closed: false,
        }
    }

    /// Which addresses are local, for Zeek's local_orig and local_resp
    /// (unset without).
    pub fn with_locality(mut self, local: crate::zeek::LocalNets) -> Self {
        self.local = Some(local);
        self
    }

    /// Which records get a line: flows, file records, or both.
    pub fn select(mut self, flows: bool, files: bool) -> Self {
        self.flows = flows;
        self.files = files;
        self
    }

    fn write_buf(&mut self) {
        self.buf.push(b'\n');
        match self.out.write_all(&self.buf) {
            Ok(()) => self.lines += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Changes the tap id printed with the following lines.
    pub fn set_tap(&mut self, tap: &str) {
        if self.tap != tap {
            self.tap = tap.to_string();
        }
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Whoever read the lines has gone (`| head`): a broken pipe.
    pub fn reader_gone(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Flushes and returns the first error seen, if any. A Zeek TSV log
    /// gets its header (if no row came) and its `#close` line.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.format == LineFormat::Zeek && self.error.is_none() && !self.closed {
            self.zeek_header();
            let now = now_ms();
            self.buf.clear();
            self.buf
                .extend_from_slice(crate::zeek::trailer(now).as_bytes());
            self.buf.push(b'\n');
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
            self.closed = true;
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }

    /// Flushes and returns the first error seen, if any; the log stays
    /// open (no `#close`), for a writer that goes on.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }

    /// Finishes the log on the old writer (a Zeek TSV log gets its
    /// `#close`) and goes on with `out`, which gets a header of its own:
    /// a log rotated under a running collector.
    pub fn reopen(&mut self, out: W) -> io::Result<()> {
        let finished = self.finish();
        self.out = out;
        self.error = None;
        self.header_out = false;
        self.closed = false;
        finished
    }

    fn zeek_header(&mut self) {
        if self.header_out || self.error.is_some() {
            return;
        }
        self.header_out = true;
        let mut h = crate::zeek::header(now_ms()).into_bytes();
        h.push(b'\n');
        if let Err(e) = self.out.write_all(&h) {
            self.error = Some(e);
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<W: Write> FlowSink for LineSink<W> {
    fn file(&mut self, file: &FileRecord) {
        if self.error.is_some() || !self.files {
            return;
        }
        self.buf.clear();
        let line = match self.format {
            LineFormat::Text => file_text_line(file, &self.tap),
            LineFormat::Json => file_json(file, &self.tap).to_string(),
            // conn.log has no place for them; ECS file documents are not written.
            LineFormat::Zeek | LineFormat::ZeekJson | LineFormat::Ecs => return,
        };
        self.buf.extend_from_slice(line.as_bytes());
        self.write_buf();
    }

    fn emit(&mut self, record: &FlowRecord) {
        if self.error.is_some() || !self.flows {
            return;
        }
        if self.format == LineFormat::Zeek {
            self.zeek_header();
        }
        self.buf.clear();
        let local = self.local.as_deref().map(|f| f as &dyn Fn(&IpAddr) -> bool);
        match self.format {
            LineFormat::Text => push_text_line(&mut self.buf, record, &self.tap),
            LineFormat::Json => self
                .buf
                .extend_from_slice(json_value(record, &self.tap).to_string().as_bytes()),
            LineFormat::Zeek => self
                .buf
                .extend_from_slice(crate::zeek::tsv_line(record, &self.tap, local).as_bytes()),
            LineFormat::ZeekJson => self.buf.extend_from_slice(
                crate::zeek::json_line(record, &self.tap, local)
                    .to_string()
                    .as_bytes(),
            ),
            LineFormat::Ecs => self.buf.extend_from_slice(
                crate::ecs::ecs_value(record, &self.tap)
                    .to_string()
                    .as_bytes(),
            ),
        }
        self.write_buf();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::{ConnState, EndReason, Endpoint, History, SideCounters, TapPort};
    use std::fmt;

    fn end_text(addr: IpAddr, port: Option<u16>) -> String {
        match (addr, port) {
            (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
            (a, None) => a.to_string(),
        }
    }

    /// The line as `core::fmt` writes it: the oracle for `push_text_line`.
    fn fmt_text_line(line: &mut impl fmt::Write, r: &FlowRecord, tap: &str) -> fmt::Result {
        let ports = has_ports(r.proto);
        write!(
            line,
            "{} {} {} {} -> {}",
            Time(r.start_ms, ' '),
            r.action().as_str(),
            crate::fields::FieldValue::Proto(r.proto),
            end_text(r.src.addr, ports.then_some(r.src.port)),
            end_text(r.dst.addr, ports.then_some(r.dst.port)),
        )?;
        let (s, d) = (&r.src.counters, &r.dst.counters);
        write!(
            line,
            " src_pkts={} src_bytes={} dst_pkts={} dst_bytes={} state={} end={} dur={}.{:03}",
            s.packets,
            s.bytes,
            d.packets,
            d.bytes,
            r.conn_state.as_str(),
            r.end_reason.as_str(),
            r.duration_ms() / 1000,
            r.duration_ms() % 1000,
        )?;
        if !r.history.is_empty() {
            write!(line, " hist={}", r.history.as_str())?;
        }
        if let Some((t, c)) = r.icmp {
            write!(line, " icmp={t}/{c}")?;
        }
        if r.vlan != 0 || r.inner_vlan != 0 {
            write!(line, " vlan={}", r.vlan)?;
            if r.inner_vlan != 0 {
                write!(line, ".{}", r.inner_vlan)?;
            }
        }
        if r.continuation {
            line.write_str(" cont")?;
        }
        if r.ingress != crate::TapPort::Unknown {
            write!(line, " port={}", r.ingress.as_str())?;
        }
        if r.ring_drops > 0 {
            write!(line, " drops={}", r.ring_drops)?;
        }
        if r.missed_bytes > 0 {
            write!(line, " missed={}", r.missed_bytes)?;
        }
        if r.clock == ClockState::Unsynced {
            line.write_str(" clock=unsynced")?;
        }
        if !tap.is_empty() {
            write!(line, " tap={tap}")?;
        }
        for (key, text) in text_names(&r.names) {
            let text = std::str::from_utf8(text).map_err(|_| fmt::Error)?;
            write!(line, "{key}{text}")?;
        }
        Ok(())
    }

    #[test]
    fn hand_written_line_matches_fmt() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || crate::test_rng::xorshift(&mut seed);
        for i in 0..20_000u64 {
            let n = next();
            let addr = |x: u64| -> IpAddr {
                if x.is_multiple_of(5) {
                    IpAddr::from((u128::from(x) << 64 | u128::from(x >> 7)).to_be_bytes())
                } else {
                    IpAddr::from(((x >> 8) as u32).to_be_bytes())
                }
            };
            let side = |x: u64| Endpoint {
                addr: addr(x),
                port: (x >> 20) as u16,
                mac: [0; 6],
                counters: SideCounters {
                    packets: x >> (x % 60),
                    bytes: x >> (x % 40),
                    ip_bytes: x >> (x % 41),
                    payload_bytes: x >> (x % 43),
                    tcp_flags: x as u8,
                },
            };
            let start = next() % 4_102_444_800_000;
            let r = FlowRecord {
                start_ms: start,
                end_ms: start + next() % 10_000_000,
                proto: [6u8, 17, 1, 58, 132, 47, 250][(n % 7) as usize],
                src: side(next()),
                dst: side(next()),
                vlan: if i % 3 == 0 {
                    (n >> 30) as u16 & 0xfff
                } else {
                    0
                },
                inner_vlan: if i % 9 == 0 {
                    (n >> 40) as u16 & 0xfff
                } else {
                    0
                },
                conn_state: ConnState::ALL[(n % 13) as usize],
                history: History::from_text(["ShADadFf", "", "S", "^hR"][(n % 4) as usize]),
                end_reason: EndReason::ALL[(n % 6) as usize],
                continuation: n % 11 == 0,
                ingress: [TapPort::Unknown, TapPort::A, TapPort::B][(n % 3) as usize],
                icmp: (n % 4 == 0).then_some(((n >> 8) as u8, (n >> 16) as u8)),
                names: Default::default(),
                clock: ClockState::ALL[(n % 3) as usize],
                ring_drops: if n % 5 == 0 { (n >> 20) as u32 } else { 0 },
                missed_bytes: if n % 7 == 0 { (n >> 12) as u32 } else { 0 },
            };
            let tap = ["", "edge", "rack-3"][(i % 3) as usize];
            let mut want = String::new();
            fmt_text_line(&mut want, &r, tap).unwrap();
            assert_eq!(text_line(&r, tap), want);
        }
        let _: fmt::Result = Ok(());
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2016-07-21 16:28:49.523 UTC
        assert_eq!(time_text(1_469_118_529_523, ' '), "2016-07-21 16:28:49.523");
    }
}
