//! Splunk's HTTP Event Collector: flows as JSON events, many to a POST,
//! over HTTPS with the token in `Authorization: Splunk TOKEN`. A thread of
//! its own with a bounded queue of batches: a slow or dead receiver never
//! holds up collection. A batch the receiver refuses for now (a 429, a
//! 5xx, no answer) is retried with doubling waits; one it refuses for good
//! (a 4xx: a bad token) or still cannot take after the retries is dropped
//! and counted, as is a batch that finds the queue full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use super::Exporter;
use crate::flow::StoredFlow;
use crate::webhook::Client;

/// Batches waiting for the receiver.
const QUEUE: usize = 64;
/// Tries per batch (the waits between them double from a quarter second).
const TRIES: u32 = 6;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

pub struct Hec {
    url: String,
    batch: usize,
    index: Option<String>,
    queue: Option<SyncSender<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counts: Arc<Counts>,
    /// Events of the batch being built, as one body.
    body: String,
    events: usize,
}

/// Events queued when the collector stops are still sent (with retries).
impl Drop for Hec {
    fn drop(&mut self) {
        Exporter::finish(self);
    }
}

impl Hec {
    pub fn new(
        url: &str,
        token: &str,
        index: Option<String>,
        batch: usize,
        client: Client,
    ) -> Result<Hec, String> {
        crate::webhook::check_url(url).map_err(|e| format!("export.splunk_hec: {e}"))?;
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let counts = Arc::new(Counts::default());
        let thread = {
            let counts = Arc::clone(&counts);
            let url = url.to_string();
            let auth = format!("Splunk {token}");
            std::thread::spawn(move || {
                for body in rx {
                    let events = body.lines().count() as u64;
                    let headers = [("Authorization", auth.as_str())];
                    match client.post_with_retries(&url, &headers, &body, TRIES, &counts.retries) {
                        Ok(()) => counts.sent.fetch_add(events, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("pitap: splunk_hec {url}: {e}; {events} events dropped");
                            counts.dropped.fetch_add(events, Ordering::Relaxed)
                        }
                    };
                }
            })
        };
        Ok(Hec {
            url: url.to_string(),
            batch: batch.max(1),
            index,
            queue: Some(tx),
            thread: Some(thread),
            counts,
            body: String::new(),
            events: 0,
        })
    }

    fn send_batch(&mut self) {
        if self.events == 0 {
            return;
        }
        let body = std::mem::take(&mut self.body);
        let events = std::mem::take(&mut self.events) as u64;
        let Some(queue) = &self.queue else { return };
        match queue.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(events, Ordering::Relaxed);
            }
        }
    }
}

/// One flow as a HEC event: its JSON line (Community ID included) under
/// `event`, the start as `time`, the tap as `host`.
pub fn event(f: &StoredFlow, index: Option<&str>) -> serde_json::Value {
    let mut e = serde_json::json!({
        "time": f.record.start_ms as f64 / 1000.0,
        "host": f.tap,
        "source": "pitap",
        "sourcetype": "pitap:flow",
        "event": pitap_wire::format::json_value(&f.record, &f.tap),
    });
    if let Some(index) = index {
        e["index"] = serde_json::Value::from(index);
    }
    e
}

impl Exporter for Hec {
    fn export(&mut self, flows: &[StoredFlow]) {
        for f in flows {
            self.body
                .push_str(&event(f, self.index.as_deref()).to_string());
            self.body.push('\n');
            self.events += 1;
            if self.events >= self.batch {
                self.send_batch();
            }
        }
        // What the collector hands over at a flush leaves now.
        self.send_batch();
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
        )
    }

    fn finish(&mut self) {
        self.send_batch();
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn describe(&self) -> String {
        format!(
            "Splunk HEC to {} ({} retries)",
            self.url,
            self.counts.retries.load(Ordering::Relaxed)
        )
    }
}
