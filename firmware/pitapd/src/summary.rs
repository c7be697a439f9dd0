//! The end-of-run lines on stderr: what the engine saw (frames, flows,
//! malformed frames by reason, non-IP ethertypes, what the parsers learned)
//! and what the uplink did. `pitapd --read` and the live tap print both.

use std::io::{self, Write};

use pitap_flow_core::files::FileStats;
use pitap_flow_core::ring::PacketRing;
use pitap_flow_core::{Anomaly, EngineStats};

use crate::uplink::Uplink;

/// What the uplink did, for the end of a run.
pub fn uplink(u: &Uplink) -> String {
    let c = u.counters();
    let percent = |n: u64| {
        if c.transmissions == 0 {
            0.0
        } else {
            n as f64 * 100.0 / c.transmissions as f64
        }
    };
    let mut line = format!(
        "pitapd: uplink ({}): {} batches ({} records, {} bytes), {} datagrams, {} retransmitted ({:.2} %), {} acknowledged, {} dropped, {} unacknowledged",
        u.describe(),
        c.batches,
        c.records,
        c.batch_bytes,
        c.transmissions,
        c.retransmits,
        percent(c.retransmits),
        c.acked,
        c.dropped,
        c.pending,
    );
    match u.challenge_after() {
        Some(d) => line.push_str(&format!(
            ", challenge after {:.1} ms",
            d.as_secs_f64() * 1e3
        )),
        None => line.push_str(", no challenge from the collector"),
    }
    if let Some(rtt) = u.round_trip() {
        line.push_str(&format!(", round trip {:.1} ms", rtt.as_secs_f64() * 1e3));
    }
    let a = u.answer_counters();
    if a.requests > 0 {
        line.push_str(&format!(
            ", {} packet requests ({} answered whole, {} chunks, {} times resent from the collector's mark)",
            a.requests, a.answered, a.chunks, a.resent
        ));
    }
    for (why, n) in u.refused().filter(|(_, n)| *n > 0) {
        line.push_str(&format!(", {n} replies refused ({})", why.as_str()));
    }
    line
}

/// What the file tracker did, for the end of a run (None: it followed no
/// HTTP connection).
pub fn files(f: &FileStats) -> Option<String> {
    if f.streams == 0 && f.streams_full == 0 {
        return None;
    }
    let mut line = format!(
        "pitapd: files: {} HTTP connections followed, {} objects, {} hashed ({} bytes)",
        f.streams, f.objects, f.hashed, f.bytes_hashed
    );
    for (n, what) in [
        (
            f.streams_full,
            "connections not followed (every slot taken)",
        ),
        (f.too_large, "too large"),
        (f.over_budget, "over the hashing budget"),
        (f.incomplete, "incomplete"),
        (f.encoded, "with a coding not undone"),
        (f.inflate_errors, "not inflating"),
        (f.reordered, "segments held over reordering"),
        (f.lost_sync, "directions not followed to the end"),
    ] {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    }
    Some(line)
}

/// What the packet ring kept, for the end of a run.
pub fn ring(r: &PacketRing) -> String {
    let s = r.stats();
    format!(
        "pitapd: packet ring: {} of {} MiB in use, {} packets kept ({} bytes), {} cut off ({} bytes), {} overwritten ({} bytes), {} flows forgotten by the directory, {} flagged",
        r.used() >> 20,
        r.capacity() >> 20,
        s.packets_kept,
        s.bytes_kept,
        s.packets_cut,
        s.bytes_cut,
        s.packets_overwritten,
        s.bytes_overwritten,
        s.flows_forgotten,
        s.flows_flagged
    )
}

/// The end-of-run summary line.
pub fn engine(path: &str, s: &EngineStats) -> String {
    let mut line = format!(
        "pitapd: {path}: {} frames ({} bytes), {} IP, {} flows, {} records, {} evicted, {} dropped",
        s.frames,
        s.bytes,
        s.ip_frames,
        s.flows_created,
        s.records,
        s.evictions,
        s.dropped()
    );
    for a in Anomaly::ALL {
        let n = s.anomaly(a);
        if n > 0 {
            line.push_str(&format!(" {}={n}", a.as_str()));
        }
    }
    let non_ip: Vec<String> = s
        .non_ip
        .iter()
        .map(|(t, n)| format!("0x{t:04x}={n}"))
        .collect();
    if !non_ip.is_empty() || s.non_ip.other > 0 {
        line.push_str(&format!(" non_ip[{}", non_ip.join(" ")));
        if s.non_ip.other > 0 {
            line.push_str(&format!(" other={}", s.non_ip.other));
        }
        line.push(']');
    }
    let a = &s.apps;
    for (name, n) in [
        ("dns_responses", a.dns_responses),
        ("dns_malformed", a.dns_malformed),
        ("dhcp", a.dhcp_messages),
        ("dhcp_malformed", a.dhcp_malformed),
        ("tls_hellos", a.tls_hellos),
        ("tls_joined", a.tls_joined),
        ("tls_malformed", a.tls_malformed),
        ("http_requests", a.http_requests),
        ("http_malformed", a.http_malformed),
        ("app_slab_full", a.slab_full),
    ] {
        if n > 0 {
            line.push_str(&format!(" {name}={n}"));
        }
    }
    let _ = io::stderr().flush();
    line
}
