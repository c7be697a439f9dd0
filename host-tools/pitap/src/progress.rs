//! A progress line on a terminal for queries and reports that run longer
//! than a second: flows scanned of the flows in the window, on stderr,
//! redrawn in place at most a few times a second and erased at the end.
//! Nothing is written when stderr is not a terminal (scripts and pipes
//! see only the result), nor while flow lines go to the same terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A query shows progress once it has run this long.
const AFTER: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    what: &'static str,
    started: Instant,
    last: Option<Instant>,
    show: bool,
    after: Duration,
}

impl Progress {
    /// Progress of `what` ("query", "report") on stderr if it is a terminal.
    /// `PITAP_PROGRESS_AFTER_MS` changes the one-second wait (tests).
    pub fn stderr(what: &'static str) -> Progress {
        let after = std::env::var("PITAP_PROGRESS_AFTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(AFTER, Duration::from_millis);
        Progress {
            what,
            started: Instant::now(),
            last: None,
            show: std::io::stderr().is_terminal(),
            after,
        }
    }

    /// No output at all.
    pub fn silent() -> Progress {
        Progress {
            show: false,
            ..Progress::stderr("")
        }
    }

    /// `done` of `total` flows scanned so far.
    pub fn update(&mut self, done: u64, total: u64) {
        if !self.show || self.started.elapsed() < self.after {
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let pct = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kpitap {}: {done} of {total} flows scanned ({pct:.0}%), {:.1} s",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
        let _ = err.flush();
    }

    /// Erases the line before the result is written, so it stands alone.
    pub fn finish(&mut self) {
        if self.last.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        self.show = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
