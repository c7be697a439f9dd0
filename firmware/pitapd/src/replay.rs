//! `pitapd --read`: a capture file through the flow engine to the sinks.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use pitap_flow_core::{Anomaly, EngineStats, FlowEngine, PacketSource};

use crate::cli::Options;
use crate::sinks::Sinks;
use crate::source::{CaptureError, CaptureReader};
use crate::uplink::{ClockMode, KernelUdp, Uplink};

/// A one-line progress bar on stderr, redrawn at most five times a second.
struct Progress {
    last: Instant,
}

impl Progress {
    fn show(&mut self, done: usize, total: usize, stats: &EngineStats, flows: usize) {
        if self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
        let bar = "#".repeat(pct / 4) + &".".repeat(25 - pct / 4);
        eprint!(
            "\r[{bar}] {pct:3}% {} frames, {} flows open, {} records   ",
            stats.frames, flows, stats.records
        );
    }
}

/// Replays the capture; returns the engine's counters. A damaged file still
/// gives the flows of everything before the damage, then the error.
pub fn run(opts: &Options) -> Result<EngineStats, String> {
    let path = opts.read.display().to_string();
    let mut reader = CaptureReader::open(&opts.read).map_err(|e| format!("{path}: {e}"))?;
    let uplink = match &opts.uplink {
        Some((addr, settings)) => {
            let transport = KernelUdp::open(*addr).map_err(|e| format!("uplink to {addr}: {e}"))?;
            Some(Uplink::new(Box::new(transport), settings.clone())?)
        }
        None => None,
    };
    let mut sinks = Sinks::new(
        opts.print.then_some(opts.format),
        &opts.tap_id,
        uplink,
        ClockMode::Capture,
    );
    let mut engine = FlowEngine::new(opts.engine);
    let mut progress = opts.progress.then(|| Progress {
        last: Instant::now() - Duration::from_secs(1),
    });
    let mut read_error: Option<CaptureError> = None;
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => engine.process(&frame, &mut sinks),
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
        // A replay outruns any network: when the uplink's buffer is full,
        // wait for acknowledgements (as long as the collector needs, or
        // --ack-timeout) instead of dropping batches.
        if sinks.uplink.is_some() && engine.stats().frames.is_multiple_of(256) {
            sinks.tick();
            if sinks.uplink_full() {
                sinks.wait_for_room(opts.ack_timeout)?;
            }
        }
        // Every 2,048 frames (a megabyte or so) the pages read leave the RSS.
        if engine.stats().frames.is_multiple_of(2_048) {
            reader.release_consumed();
        }
        if let Some(p) = &mut progress {
            if engine.stats().frames.is_multiple_of(4096) {
                let (done, total) = reader.progress();
                p.show(done, total, engine.stats(), engine.active_flows());
            }
        }
    }
    engine.flush(&mut sinks);
    if progress.is_some() {
        eprintln!();
    }
    // The last batch's base time; a capture's records carry their own.
    let last_ms = engine.clock_us() / 1000;
    let finished = sinks.finish(last_ms, opts.ack_timeout);
    let stats = engine.stats().clone();
    if !opts.quiet {
        eprintln!("{}", summary(&path, &stats));
        if let Some(u) = &sinks.uplink {
            eprintln!("{}", uplink_summary(u));
        }
    }
    finished?;
    match read_error {
        Some(e) => Err(format!("{path}: {e}")),
        None => Ok(stats),
    }
}

/// What the uplink did, for the end of a run.
pub fn uplink_summary(u: &Uplink) -> String {
    let c = u.counters();
    let percent = |n: u64| {
        if c.transmissions == 0 {
            0.0
        } else {
            n as f64 * 100.0 / c.transmissions as f64
        }
    };
    let mut line = format!(
        "pitapd: uplink ({}): {} batches ({} records), {} datagrams, {} retransmitted ({:.2} %), {} acknowledged, {} dropped, {} unacknowledged",
        u.describe(),
        c.batches,
        c.records,
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
    for (why, n) in u.refused().filter(|(_, n)| *n > 0) {
        line.push_str(&format!(", {n} replies refused ({})", why.as_str()));
    }
    line
}

/// The end-of-run summary line.
pub fn summary(path: &str, s: &EngineStats) -> String {
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
