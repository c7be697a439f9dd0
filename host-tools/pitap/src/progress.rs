//! A progress line on a terminal for queries, reports and fetches that run
//! longer than a second: flows scanned of the flows in the window, on
//! stderr, drawn by indicatif (in place, at most 5 times a second, erased
//! at the end). Nothing is written when stderr is not a terminal (scripts
//! and pipes see only the result), nor while flow lines go to the same
//! terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A query shows progress once it has run this long.
const AFTER: Duration = Duration::from_secs(1);

pub struct Progress {
    what: &'static str,
    /// What is counted: "flows scanned".
    unit: &'static str,
    started: Instant,
    /// Made at the first update past the wait.
    bar: Option<ProgressBar>,
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
            unit: "flows scanned",
            started: Instant::now(),
            bar: None,
            show: std::io::stderr().is_terminal(),
            after,
        }
    }

    /// No output at all.
    pub fn silent() -> Progress {
        Progress {
            what: "",
            unit: "",
            started: Instant::now(),
            bar: None,
            show: false,
            after: AFTER,
        }
    }

    /// Counts something else than flows scanned ("chunks received").
    pub fn counting(mut self, unit: &'static str) -> Progress {
        self.unit = unit;
        self
    }

    /// `done` of `total` flows scanned so far.
    pub fn update(&mut self, done: u64, total: u64) {
        if !self.show || self.started.elapsed() < self.after {
            return;
        }
        let (what, unit) = (self.what, self.unit);
        let bar = self.bar.get_or_insert_with(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(5));
            let template =
                format!("{{prefix}}: {{pos}} of {{len}} {unit} ({{percent}}%), {{elapsed}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.set_prefix(format!("pitap {what}"));
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    /// Erases the line before the result is written, so it stands alone.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.show = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
