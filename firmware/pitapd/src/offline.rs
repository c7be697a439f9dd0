//! `pitapd --read`: a capture file through the flow engine to the sinks,
//! offline (the packets' own times; the uplink waits for the collector).

use pitap_flow_core::{EngineStats, FlowEngine, PacketSource};

use crate::cli::Options;
use crate::sinks::Sinks;
use crate::source::{CaptureError, CaptureReader};
use crate::summary;
use crate::uplink::{ClockMode, KernelUdp, Uplink};

/// The progress bar of `--progress`: indicatif on stderr, which draws
/// only on a terminal (redirected, nothing is written) and at most a few
/// times a second; the position is bytes of the capture read.
fn progress_bar(total: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr_with_hz(5),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("[{bar:25}] {percent:>3}% {elapsed} {msg}")
    {
        bar.set_style(style.progress_chars("#>."));
    }
    bar
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
    let progress = opts.progress.then(|| progress_bar(reader.progress().1));
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
        if let Some(bar) = &progress {
            // indicatif draws at most 5 times a second whatever we set.
            if engine.stats().frames.is_multiple_of(256) {
                let stats = engine.stats();
                bar.set_position(reader.progress().0 as u64);
                bar.set_message(format!(
                    "{} frames, {} flows open, {} records",
                    stats.frames,
                    engine.active_flows(),
                    stats.records
                ));
            }
        }
    }
    engine.flush(&mut sinks);
    if let Some(bar) = progress {
        bar.finish_and_clear();
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

/// The records a capture makes through an engine with the default
/// configuration, in the order they are emitted, and no sink: what the
/// wire-size test and the uplink-size bench pack into batches.
pub fn records_of(path: &std::path::Path) -> Result<Vec<pitap_wire::FlowRecord>, String> {
    let mut reader = CaptureReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut engine = FlowEngine::new(pitap_flow_core::EngineConfig::default());
    let mut out = Vec::new();
    while let Some(frame) = reader
        .next_frame()
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        engine.process(&frame, &mut out);
    }
    engine.flush(&mut out);
    Ok(out)
}
