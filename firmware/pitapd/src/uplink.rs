//! The uplink to the collector: records are packed into batches (one UDP
//! datagram each) and sent as a batch fills.
//!
//! UDP because it passes NAT, has no head-of-line blocking and keeps the tap
//! simple; delivery guarantees (acknowledgement, retransmission, sealing)
//! are layered on these batches by the secure uplink.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pitap_wire::codec::FLAG_FINAL;
use pitap_wire::{BatchHeader, BatchWriter, FlowRecord, FlowSink, WireError};

/// A random 64-bit value, new at every start of the process.
pub fn new_boot_id() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    // No /dev/urandom (a very bare system): time and pid still differ per boot.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

pub struct UdpUplink {
    socket: UdpSocket,
    collector: SocketAddr,
    tap_id: String,
    boot_id: u64,
    seq: u64,
    batch: BatchWriter,
    /// When the batch being filled got its first record.
    batch_started: Option<Instant>,
    error: Option<io::Error>,
    sent_batches: u64,
    sent_records: u64,
    send_errors: u64,
}

/// What the uplink has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkCounters {
    pub batches: u64,
    pub records: u64,
    pub send_errors: u64,
}

impl UdpUplink {
    pub fn open(collector: SocketAddr, tap_id: &str) -> io::Result<Self> {
        if tap_id.len() > pitap_wire::codec::MAX_TAP_ID {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tap id {tap_id:?} is longer than {} bytes",
                    pitap_wire::codec::MAX_TAP_ID
                ),
            ));
        }
        let bind: SocketAddr = if collector.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|_| io::Error::other("bad bind address"))?;
        // Not connected: a collector without a route yet (a link still
        // coming up) is a send error to count, not a reason to stop tapping.
        let socket = UdpSocket::bind(bind)?;
        Ok(UdpUplink {
            socket,
            collector,
            tap_id: tap_id.to_string(),
            boot_id: new_boot_id(),
            seq: 0,
            batch: BatchWriter::default(),
            batch_started: None,
            error: None,
            sent_batches: 0,
            sent_records: 0,
            send_errors: 0,
        })
    }

    fn start_batch(&mut self, base_ms: u64, flags: u8) -> Result<(), WireError> {
        let header = BatchHeader {
            tap_id: &self.tap_id,
            boot_id: self.boot_id,
            seq: self.seq,
            base_ms,
            flags,
        };
        self.batch_started = Some(Instant::now());
        self.batch.start(&header)
    }

    fn send_batch(&mut self) {
        if !self.batch.is_started() {
            return;
        }
        match self.socket.send_to(self.batch.as_bytes(), self.collector) {
            Ok(_) => {
                self.sent_batches += 1;
                self.sent_records += self.batch.record_count() as u64;
            }
            Err(e) => {
                // A live tap goes on when the collector is unreachable; the
                // secure uplink will retransmit. Offline, the error is kept
                // and reported.
                self.send_errors += 1;
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
        self.seq += 1;
        self.batch.clear();
        self.batch_started = None;
    }

    /// Sends the batch being filled if its first record waited `max_age`.
    pub fn flush_if_older(&mut self, max_age: Duration) {
        if self.batch_started.is_some_and(|t| t.elapsed() >= max_age) {
            self.send_batch();
        }
    }

    pub fn counters(&self) -> UplinkCounters {
        UplinkCounters {
            batches: self.sent_batches,
            records: self.sent_records,
            send_errors: self.send_errors,
        }
    }

    /// Forgets send errors seen so far (a live tap keeps going).
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Sends what is pending, then a last batch flagged final.
    pub fn finish(&mut self, now_ms: u64) -> io::Result<(u64, u64)> {
        self.send_batch();
        self.start_batch(now_ms, FLAG_FINAL)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.send_batch();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok((self.sent_batches, self.sent_records)),
        }
    }
}

impl FlowSink for UdpUplink {
    fn emit(&mut self, record: &FlowRecord) {
        for _ in 0..2 {
            if !self.batch.is_started() && self.start_batch(record.start_ms, 0).is_err() {
                return;
            }
            match self.batch.push(record) {
                Ok(()) => return,
                // Full: send this batch and put the record in the next one.
                Err(WireError::Full) => self.send_batch(),
                Err(_) => return,
            }
        }
    }
}
