//! Where a tap's records go: the uplink, stdout, or both.

use std::io;
use std::time::Duration;

use pitap_wire::format::{LineFormat, LineSink};
use pitap_wire::{FlowRecord, FlowSink};

use crate::status::talkers::TopTalkers;
use crate::uplink::{Uplink, UplinkCounters};

pub struct Sinks {
    pub print: Option<LineSink<io::BufWriter<io::Stdout>>>,
    pub uplink: Option<Uplink>,
    /// Bytes per host from the records, for the display.
    pub talkers: TopTalkers,
    /// Whether the talkers are kept (a live tap with a display; a replay
    /// has nobody to show them to).
    pub track_talkers: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Sinks {
    pub fn new(print: Option<LineFormat>, tap_id: &str, uplink: Option<Uplink>) -> Sinks {
        Sinks {
            print: print.map(|f| LineSink::new(io::BufWriter::new(io::stdout()), tap_id, f)),
            uplink,
            talkers: TopTalkers::default(),
            track_talkers: false,
        }
    }

    /// Periodic work: acknowledgements, retransmissions, a batch that waited
    /// long enough, printed lines made visible. Errors are reported, not
    /// fatal: the tap keeps tapping.
    pub fn tick(&mut self) {
        if let Some(u) = &mut self.uplink {
            u.tick();
            if let Some(e) = u.take_error() {
                eprintln!("pitapd: uplink ({}): {e}", u.describe());
            }
        }
        if let Some(p) = &mut self.print {
            if let Err(e) = p.finish() {
                eprintln!("pitapd: writing flows: {e}");
            }
        }
    }

    /// Whether the uplink's buffer is full (an offline replay then waits).
    pub fn uplink_full(&self) -> bool {
        self.uplink.as_ref().is_some_and(Uplink::is_full)
    }

    pub fn uplink_counters(&self) -> UplinkCounters {
        self.uplink
            .as_ref()
            .map(Uplink::counters)
            .unwrap_or_default()
    }

    /// Flushes the printer, sends the last batch (flagged final) and waits
    /// up to `wait` for every batch to be acknowledged.
    pub fn finish(&mut self, wait: Duration) -> Result<(), String> {
        if let Some(p) = &mut self.print {
            p.finish().map_err(|e| format!("writing flows: {e}"))?;
        }
        if let Some(u) = &mut self.uplink {
            let unacked = u.finish(now_ms(), wait);
            if unacked > 0 {
                return Err(format!(
                    "uplink ({}): {unacked} batches not acknowledged by the collector",
                    u.describe()
                ));
            }
        }
        Ok(())
    }
}

impl FlowSink for Sinks {
    fn emit(&mut self, record: &FlowRecord) {
        if self.track_talkers {
            self.talkers.record(record);
        }
        if let Some(p) = &mut self.print {
            p.emit(record);
        }
        if let Some(u) = &mut self.uplink {
            u.emit(record);
        }
    }
}
