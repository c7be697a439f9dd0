//! Edges for the bypass board. Its relays are held by a retriggerable
//! monostable (hardware/bypass/README.md): energized only while edges keep
//! coming, released `hold_ms` after the last one. A level would not do: a
//! hung kernel or a killed pitapd leaves a GPIO line where it was, edges
//! stop with them.
//!
//! A thread of its own makes the edges, so the main loop's long turns (a
//! flush, a slow disk) do not gap them; it makes them only until a deadline
//! the main loop keeps moving ([`Driver::hold`]), so a stalled loop stops
//! them too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bypass::STALL_MS;

/// The line to the board's trigger input.
pub trait BypassLine: Send {
    fn set(&mut self, high: bool);
    fn describe(&self) -> String;
}

pub struct Driver {
    /// Milliseconds since `start` until which edges are made (0: none).
    deadline_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Instant,
    thread: Option<JoinHandle<()>>,
    hold_ms: u64,
    describe: String,
}

impl Driver {
    /// Starts the edge thread; edges every fifth of the board's hold time.
    pub fn start(mut line: Box<dyn BypassLine>, hold_ms: u64) -> Driver {
        let deadline_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let describe = line.describe();
        let period = Duration::from_millis((hold_ms / 5).max(1));
        let (d, s) = (deadline_ms.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bypass".into())
            .spawn(move || {
                let mut level = false;
                while !s.load(Ordering::Relaxed) {
                    let now = start.elapsed().as_millis() as u64;
                    if now < d.load(Ordering::Relaxed) {
                        level = !level;
                        line.set(level);
                    }
                    std::thread::sleep(period);
                }
                if level {
                    line.set(false);
                }
            })
            .ok();
        Driver {
            deadline_ms,
            stop,
            start,
            thread,
            hold_ms,
            describe,
        }
    }

    /// Called from the main loop at each look: energized keeps the edges
    /// coming for up to `STALL_MS` more; released stops them now.
    pub fn hold(&self, energize: bool) {
        let until = if energize {
            self.start.elapsed().as_millis() as u64 + STALL_MS
        } else {
            0
        };
        self.deadline_ms.store(until, Ordering::Relaxed);
    }

    /// Stops the edges and waits until the board has released the relays.
    pub fn release_and_wait(&mut self) {
        self.hold(false);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The monostable runs out, then the relays open (a few ms).
        std::thread::sleep(Duration::from_millis(self.hold_ms + 10));
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
