//! The two line formats, shared by `pitapd --print` and `pitap collect` so both
//! print the same bytes for the same flow.
//!
//! Text: `TIME ACTION PROTO INITIATOR -> RESPONDER` then `key=value` fields.
//! The first part never changes shape: people grep it.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::record::{proto, proto_name, FlowRecord};
use crate::FlowSink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    Text,
    Json,
}

impl std::str::FromStr for LineFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LineFormat::Text),
            "json" => Ok(LineFormat::Json),
            other => Err(format!("unknown format {other:?} (expected text or json)")),
        }
    }
}

/// Protocols whose records carry real port numbers.
fn has_ports(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP | proto::SCTP | 33 | 136)
}

fn proto_label(p: u8) -> String {
    proto_name(p).map_or_else(|| p.to_string(), str::to_string)
}

fn endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, None) => a.to_string(),
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
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}{sep}{:02}:{:02}:{:02}.{:03}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms % 1000
    )
}

/// One flow as a text line (no newline).
pub fn text_line(r: &FlowRecord, tap: &str) -> String {
    let ports = has_ports(r.proto);
    let mut line = format!(
        "{} {} {} {} -> {}",
        time_text(r.start_ms, ' '),
        r.action().as_str(),
        proto_label(r.proto),
        endpoint(r.src.addr, ports.then_some(r.src.port)),
        endpoint(r.dst.addr, ports.then_some(r.dst.port)),
    );
    let (s, d) = (&r.src.counters, &r.dst.counters);
    // Writing to a String cannot fail.
    let _ = write!(
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
    );
    if !r.history.is_empty() {
        let _ = write!(line, " hist={}", r.history.as_str());
    }
    if let Some((t, c)) = r.icmp {
        let _ = write!(line, " icmp={t}/{c}");
    }
    if r.vlan != 0 || r.inner_vlan != 0 {
        let _ = write!(line, " vlan={}", r.vlan);
        if r.inner_vlan != 0 {
            let _ = write!(line, ".{}", r.inner_vlan);
        }
    }
    if r.continuation {
        line.push_str(" cont");
    }
    if r.ingress != crate::TapPort::Unknown {
        let _ = write!(line, " port={}", r.ingress.as_str());
    }
    if !tap.is_empty() {
        let _ = write!(line, " tap={tap}");
    }
    line
}

/// One flow as a JSON object; field names are the query fields.
pub fn json_value(r: &FlowRecord, tap: &str) -> Value {
    let ports = has_ports(r.proto);
    let port = |p: u16| if ports { json!(p) } else { Value::Null };
    json!({
        "ts": time_text(r.start_ms, 'T') + "Z",
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "duration_ms": r.duration_ms(),
        "tap": tap,
        "action": r.action().as_str(),
        "proto": proto_label(r.proto),
        "proto_num": r.proto,
        "src_addr": r.src.addr.to_string(),
        "src_port": port(r.src.port),
        "dst_addr": r.dst.addr.to_string(),
        "dst_port": port(r.dst.port),
        "src_mac": mac_text(&r.src.mac),
        "dst_mac": mac_text(&r.dst.mac),
        "src_pkts": r.src.counters.packets,
        "src_bytes": r.src.counters.bytes,
        "dst_pkts": r.dst.counters.packets,
        "dst_bytes": r.dst.counters.bytes,
        "bytes": r.total_bytes(),
        "pkts": r.total_packets(),
        "src_tcp_flags": r.src.counters.tcp_flags,
        "dst_tcp_flags": r.dst.counters.tcp_flags,
        "conn_state": r.conn_state.as_str(),
        "history": r.history.as_str(),
        "end_reason": r.end_reason.as_str(),
        "continuation": r.continuation,
        "ingress": r.ingress.as_str(),
        "vlan": r.vlan,
        "inner_vlan": r.inner_vlan,
        "icmp_type": r.icmp.map(|(t, _)| t),
        "icmp_code": r.icmp.map(|(_, c)| c),
    })
}

pub fn format_line(r: &FlowRecord, tap: &str, format: LineFormat) -> String {
    match format {
        LineFormat::Text => text_line(r, tap),
        LineFormat::Json => json_value(r, tap).to_string(),
    }
}

/// A sink that writes one line per flow. Keeps the first write error (a
/// closed pipe, a full disk) for its owner to report.
pub struct LineSink<W: Write> {
    out: W,
    tap: String,
    format: LineFormat,
    error: Option<io::Error>,
    lines: u64,
}

impl<W: Write> LineSink<W> {
    pub fn new(out: W, tap: &str, format: LineFormat) -> Self {
        LineSink {
            out,
            tap: tap.to_string(),
            format,
            error: None,
            lines: 0,
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

    /// Flushes and returns the first error seen, if any.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

impl<W: Write> FlowSink for LineSink<W> {
    fn emit(&mut self, record: &FlowRecord) {
        if self.error.is_some() {
            return;
        }
        let line = format_line(record, &self.tap, self.format);
        match writeln!(self.out, "{line}") {
            Ok(()) => self.lines += 1,
            Err(e) => self.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2016-07-21 16:28:49.523 UTC
        assert_eq!(time_text(1_469_118_529_523, ' '), "2016-07-21 16:28:49.523");
    }
}
