//! Where a tap's records go: the uplink, stdout, or both. Each record is
//! stamped once (its times on the synchronised clock, and where they come
//! from), so the printed line and the one the collector writes agree.

use std::io;
use std::time::{Duration, Instant};

use pitap_wire::format::{LineFormat, LineSink};
use pitap_wire::{ClockState, FileRecord, FlowRecord, FlowSink};

use crate::status::talkers::TopTalkers;
use crate::uplink::{ClockMode, Uplink, UplinkCounters};

pub struct Sinks {
    pub print: Option<LineSink<io::BufWriter<io::Stdout>>>,
    pub uplink: Option<Uplink>,
    /// Where times come from when there is no uplink to synchronise with.
    clock: ClockMode,
    /// Bytes per host from the records, for the display.
    pub talkers: TopTalkers,
    /// Whether the talkers are kept (a live tap with a display; a replay
    /// has nobody to show them to).
    pub track_talkers: bool,
    /// When an uplink error was last written, and how many came since.
    last_error_note: Option<Instant>,
    errors_unsaid: u64,
}

/// How often a waiting tap says that it waits.
const WAIT_NOTE_EVERY: Duration = Duration::from_secs(5);
/// Uplink errors (a collector without a route) are written at most this
/// often, with the count of those in between.
const ERROR_NOTE_EVERY: Duration = Duration::from_secs(10);

impl Sinks {
    /// `print`: the line format, and whether flows and file records get
    /// lines.
    pub fn new(
        print: Option<(LineFormat, bool, bool)>,
        tap_id: &str,
        uplink: Option<Uplink>,
        clock: ClockMode,
    ) -> Sinks {
        Sinks {
            print: print.map(|(f, flows, files)| {
                LineSink::new(io::BufWriter::new(io::stdout()), tap_id, f).select(flows, files)
            }),
            uplink,
            clock,
            talkers: TopTalkers::default(),
            track_talkers: false,
            last_error_note: None,
            errors_unsaid: 0,
        }
    }

    /// Periodic work: replies, retransmissions, a batch that waited long
    /// enough, printed lines made visible. Errors are reported, not fatal:
    /// the tap keeps tapping.
    pub fn tick(&mut self) {
        if let Some(u) = &mut self.uplink {
            u.tick();
            if let Some(e) = u.take_error() {
                if self
                    .last_error_note
                    .is_some_and(|t| t.elapsed() < ERROR_NOTE_EVERY)
                {
                    self.errors_unsaid += 1;
                } else {
                    let more = match std::mem::take(&mut self.errors_unsaid) {
                        0 => String::new(),
                        n => format!(" ({n} more since the last)"),
                    };
                    eprintln!("pitapd: uplink ({}): {e}{more}", u.describe());
                    self.last_error_note = Some(Instant::now());
                }
            }
        }
        if let Some(p) = &mut self.print {
            if p.reader_gone() {
                return;
            }
            if let Err(e) = p.finish() {
                eprintln!("pitapd: writing flows: {e}");
            }
        }
    }

    /// The reader of the printed lines has gone and nothing else takes
    /// the flows: a replay may stop (`pitapd --read --print | head`).
    pub fn nobody_reads(&self) -> bool {
        self.uplink.is_none() && self.print.as_ref().is_some_and(LineSink::reader_gone)
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

    /// Ticks until the uplink's buffer has room again, saying on stderr
    /// every few seconds that it waits. `Err` after `limit` (if one is set).
    pub fn wait_for_room(&mut self, limit: Option<Duration>) -> Result<(), String> {
        self.wait_until("room in the buffer", limit, |u| !u.is_full())
    }

    fn wait_until(
        &mut self,
        what: &str,
        limit: Option<Duration>,
        done: impl Fn(&Uplink) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut next_note = started + WAIT_NOTE_EVERY;
        loop {
            let Some(u) = &self.uplink else {
                return Ok(());
            };
            if done(u) {
                return Ok(());
            }
            let waited = started.elapsed();
            if limit.is_some_and(|l| waited >= l) {
                return Err(format!(
                    "uplink ({}): {} batches not acknowledged by the collector after {} s",
                    u.describe(),
                    u.unacknowledged(),
                    waited.as_secs()
                ));
            }
            if Instant::now() >= next_note {
                eprintln!(
                    "pitapd: waiting {} s for the collector ({}): {} batches unacknowledged, waiting for {what}",
                    waited.as_secs(),
                    u.describe(),
                    u.unacknowledged(),
                );
                next_note += WAIT_NOTE_EVERY;
            }
            std::thread::sleep(Duration::from_millis(2));
            self.tick();
        }
    }

    /// Flushes the printer, sends the last batch (flagged final) and waits
    /// for every batch to be acknowledged: without `limit` as long as the
    /// collector needs, saying so every few seconds.
    pub fn finish(&mut self, now_ms: u64, limit: Option<Duration>) -> Result<(), String> {
        if let Some(p) = &mut self.print {
            // A reader that went away ends the output quietly, as `head`
            // expects of the programs it reads.
            if !p.reader_gone() {
                match p.finish() {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    r => r.map_err(|e| format!("writing flows: {e}"))?,
                }
            }
        }
        if let Some(u) = &mut self.uplink {
            u.finish(now_ms);
        }
        self.wait_until("the last acknowledgements", limit, |u| {
            u.unacknowledged() == 0
        })?;
        if let Some(u) = &mut self.uplink {
            u.goodbye();
        }
        Ok(())
    }

    /// The record as it leaves the tap (see `Uplink::stamp`).
    fn stamp(&self, record: &FlowRecord) -> FlowRecord {
        match &self.uplink {
            Some(u) => u.stamp(record),
            None => FlowRecord {
                clock: match self.clock {
                    ClockMode::Capture => ClockState::Capture,
                    ClockMode::Sync => ClockState::Unsynced,
                },
                ..*record
            },
        }
    }
}

impl FlowSink for Sinks {
    fn file(&mut self, file: &FileRecord) {
        let file = match &self.uplink {
            Some(u) => u.stamp_file(file),
            None => *file,
        };
        if let Some(p) = &mut self.print {
            p.file(&file);
        }
        if let Some(u) = &mut self.uplink {
            u.file(&file);
        }
    }

    fn emit(&mut self, record: &FlowRecord) {
        let record = self.stamp(record);
        if self.track_talkers {
            self.talkers.record(&record);
        }
        if let Some(p) = &mut self.print {
            p.emit(&record);
        }
        if let Some(u) = &mut self.uplink {
            u.emit(&record);
        }
    }
}
