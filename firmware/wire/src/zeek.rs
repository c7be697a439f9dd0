//! Zeek's conn.log, as TSV (the `#separator`/`#fields`/`#types` header
//! Zeek writes) and as Zeek's JSON lines, so the tools that read Zeek logs
//! (zat, RITA, Security Onion, zeek-cut) read PiTap's flows. One table of
//! columns serves both. `uid` is derived from the tap, the start time and
//! the Community ID, so `pitapd --print` and `pitap collect` give a flow the
//! same one. `missed_bytes` is the bytes in TCP sequence gaps (0 for other
//! protocols, as Zeek writes).

use std::net::IpAddr;

use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use crate::community_id::CommunityId;
use crate::record::{proto, FlowRecord};

/// Whether an address is local (Zeek's `Site::local_nets`): the
/// collector's internal networks; `None` where there are none (the tap).
pub type Locality<'a> = Option<&'a dyn Fn(&IpAddr) -> bool>;
/// An owned [`Locality`], as a line sink keeps it.
pub type LocalNets = Box<dyn Fn(&IpAddr) -> bool + Send>;

/// One value of a row.
enum Cell {
    Time(u64),
    Text(String),
    Addr(IpAddr),
    Count(u64),
    Interval(u64),
    Bool(bool),
    Unset,
}

/// conn.log's columns and their Zeek types, in Zeek's order.
const COLUMNS: [(&str, &str); 21] = [
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
];

/// Zeek's connection uid: "C" and base62 of 96 bits.
/// The `uid` of the conn.log row of the flow that carried a file: what
/// Zeek's files.log calls `conn_uids`, on the file's JSON line.
pub fn file_conn_uid(f: &crate::file::FileRecord, tap: &str) -> String {
    let mut r = FlowRecord {
        start_ms: f.flow_start_ms,
        proto: 6,
        ..FlowRecord::default()
    };
    r.src.addr = f.src_addr;
    r.src.port = f.src_port;
    r.dst.addr = f.dst_addr;
    r.dst.port = f.dst_port;
    uid(&r, tap)
}

pub fn uid(r: &FlowRecord, tap: &str) -> String {
    let mut h = Sha1::new();
    h.update(tap.as_bytes());
    h.update([0]);
    h.update(r.start_ms.to_be_bytes());
    h.update(CommunityId::of(r, 0).as_str().as_bytes());
    let d: [u8; 20] = h.finalize().into();
    let mut n = d[..12].iter().fold(0u128, |n, &b| n << 8 | u128::from(b));
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(18);
    while n > 0 {
        out.push(DIGITS[(n % 62) as usize]);
        n /= 62;
    }
    out.push(b'C');
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The service as Zeek names it, from what the tap's parsers saw.
fn service(r: &FlowRecord) -> Option<&'static str> {
    let n = &r.names;
    if !n.sni.is_empty() || !n.alpn.is_empty() {
        Some("ssl")
    } else if !n.http_host.is_empty() || !n.http_request.is_empty() {
        Some("http")
    } else if r.proto == proto::UDP && matches!((r.src.port, r.dst.port), (68, 67) | (67, 68)) {
        Some("dhcp")
    } else if r.proto == proto::UDP && r.dst.port == 53 && r.dst.counters.packets > 0 {
        Some("dns")
    } else {
        None
    }
}

fn cells(r: &FlowRecord, tap: &str, local: Locality<'_>) -> [Cell; 21] {
    let proto = match r.proto {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP | proto::ICMPV6 => "icmp",
        _ => "unknown_transport",
    };
    let (s, d) = (&r.src.counters, &r.dst.counters);
    let history = r.history.as_str();
    [
        Cell::Time(r.start_ms),
        Cell::Text(uid(r, tap)),
        Cell::Addr(r.src.addr),
        Cell::Count(r.src.port.into()),
        Cell::Addr(r.dst.addr),
        Cell::Count(r.dst.port.into()),
        Cell::Text(proto.into()),
        service(r).map_or(Cell::Unset, |s| Cell::Text(s.into())),
        Cell::Interval(r.end_ms.saturating_sub(r.start_ms)),
        Cell::Count(s.payload_bytes),
        Cell::Count(d.payload_bytes),
        Cell::Text(r.conn_state.as_str().into()),
        local.map_or(Cell::Unset, |f| Cell::Bool(f(&r.src.addr))),
        local.map_or(Cell::Unset, |f| Cell::Bool(f(&r.dst.addr))),
        Cell::Count(r.missed_bytes.into()),
        if history.is_empty() {
            Cell::Unset
        } else {
            Cell::Text(history.into())
        },
        Cell::Count(s.packets),
        Cell::Count(crate::zeek::ip_bytes(s)),
        Cell::Count(d.packets),
        Cell::Count(crate::zeek::ip_bytes(d)),
        Cell::Unset,
    ]
}

/// IP bytes of a side (frame bytes less 14 a packet from taps too old to
/// count them).
pub fn ip_bytes(c: &crate::record::SideCounters) -> u64 {
    if c.ip_bytes == 0 && c.bytes > 0 {
        c.bytes.saturating_sub(14 * c.packets)
    } else {
        c.ip_bytes
    }
}

/// Zeek escapes the separator, backslash and non-printable bytes as \xNN;
/// a value that is only "-" or "(empty)" is escaped too, to stay a value.
fn escape(t: &str, out: &mut String) {
    if t.is_empty() {
        out.push_str("(empty)");
        return;
    }
    if t == "-" || t == "(empty)" {
        for b in t.bytes() {
            out.push_str(&format!("\\x{b:02x}"));
        }
        return;
    }
    for c in t.chars() {
        match c {
            '\t' | '\\' | ',' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}000", ms / 1000, ms % 1000)
}

/// The TSV header, opened at `open_ms` (Zeek's `#open`).
pub fn header(open_ms: u64) -> String {
    let mut h = String::from("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n");
    h += &format!("#open\t{}\n", stamp(open_ms));
    h += "#fields";
    for (name, _) in COLUMNS {
        h.push('\t');
        h += name;
    }
    h += "\n#types";
    for (_, ty) in COLUMNS {
        h.push('\t');
        h += ty;
    }
    h
}

/// The TSV trailer Zeek writes when it closes a log.
pub fn trailer(close_ms: u64) -> String {
    format!("#close\t{}", stamp(close_ms))
}

fn stamp(ms: u64) -> String {
    // Zeek's format: 2026-12-02-07-19-02.
    let t = crate::format::time_text(ms, '-');
    t.get(..19).unwrap_or(&t).replace(':', "-")
}

/// One conn.log TSV row.
pub fn tsv_line(r: &FlowRecord, tap: &str, local: Locality<'_>) -> String {
    let mut out = String::with_capacity(200);
    for (i, cell) in cells(r, tap, local).into_iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match cell {
            Cell::Time(ms) | Cell::Interval(ms) => out += &seconds(ms),
            Cell::Text(t) => escape(&t, &mut out),
            Cell::Addr(a) => out += &a.to_string(),
            Cell::Count(n) => out += &n.to_string(),
            Cell::Bool(b) => out.push(if b { 'T' } else { 'F' }),
            Cell::Unset => out.push('-'),
        }
    }
    out
}

/// One conn.log row as Zeek's JSON writer has it: unset columns left out,
/// times and intervals as seconds.
pub fn json_line(r: &FlowRecord, tap: &str, local: Locality<'_>) -> Value {
    let mut o = Map::new();
    for ((name, _), cell) in COLUMNS.iter().zip(cells(r, tap, local)) {
        let v: Value = match cell {
            Cell::Time(ms) | Cell::Interval(ms) => (ms as f64 / 1000.0).into(),
            Cell::Text(t) => t.into(),
            Cell::Addr(a) => a.to_string().into(),
            Cell::Count(n) => n.into(),
            Cell::Bool(b) => b.into(),
            Cell::Unset => continue,
        };
        o.insert((*name).into(), v);
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_stays_one_value() {
        let mut out = String::new();
        escape("a\tb\\c,d\ne", &mut out);
        assert_eq!(out, "a\\x09b\\x5cc\\x2cd\\x0ae");
        out.clear();
        escape("-", &mut out);
        assert_eq!(out, "\\x2d");
        out.clear();
        escape("", &mut out);
        assert_eq!(out, "(empty)");
    }

    #[test]
    fn a_uid_is_zeeks_shape_and_stable() {
        let r = FlowRecord::default();
        let u = uid(&r, "lab");
        assert!(u.starts_with('C') && (15..=18).contains(&u.len()), "{u}");
        assert!(u[1..].bytes().all(|b| b.is_ascii_alphanumeric()), "{u}");
        assert_eq!(u, uid(&r, "lab"));
        assert_ne!(u, uid(&r, "other"));
    }
}
