//! `pitapd --read`: a capture file through the flow engine to the sinks,
//! offline (the packets' own times; the uplink waits for the collector).

use std::time::{Duration, Instant};

use pitap_flow_core::{EngineStats, FlowEngine, PacketSource};

use crate::cli::Options;
use crate::sinks::Sinks;
use crate::source::{CaptureError, CaptureReader};
use crate::summary;
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
        (opts.print || opts.files).then_some((opts.format, opts.print, opts.files)),
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
            if let Some(u) = &mut sinks.uplink {
                crate::forensics::serve(&mut engine, u);
            }
            if sinks.uplink_full() {
                sinks.wait_for_room(opts.ack_timeout)?;
            }
        }
        // Every 2,048 frames (a megabyte or so) the pages read leave the RSS.
        if engine.stats().frames.is_multiple_of(2_048) {
            reader.release_consumed();
            if sinks.nobody_reads() {
                break;
            }
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
        eprintln!("{}", summary::engine(&path, &stats));
        if let Some(line) = summary::files(engine.file_stats()) {
            eprintln!("{line}");
        }
        if let Some(u) = &sinks.uplink {
            eprintln!("{}", summary::uplink(u));
        }
    }
    finished?;
    match read_error {
        Some(e) => Err(format!("{path}: {e}")),
        None => Ok(stats),
    }
}
