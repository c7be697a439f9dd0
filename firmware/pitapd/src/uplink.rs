//! The uplink to the collector: records packed into batches, each batch
//! sealed in an envelope and sent as one UDP datagram, kept until the
//! collector acknowledges it and retransmitted until then.
//!
//! UDP because it passes NAT, has no head-of-line blocking (one lost
//! datagram delays only itself) and keeps the tap simple; the guarantees TCP
//! would give are rebuilt here in a few lines, bounded in memory: the
//! retransmission buffer holds `buffer_batches` batches, and when it is full
//! the oldest is dropped and counted, and that count rides in the header of
//! every later batch, so the collector always sees a gap for what it is.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pitap_wire::codec::FLAG_FINAL;
use pitap_wire::envelope::{self, Header, Key, Kind};
use pitap_wire::messages::{self, Ack, Health};
use pitap_wire::{BatchHeader, BatchWriter, FlowRecord, FlowSink, WireError};

/// Where datagrams go: kernel sockets, or a user-space stack on a raw port.
pub trait Transport {
    /// Sends one datagram to the collector.
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
    /// A datagram from the collector, if one waits; never blocks.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Lets a user-space stack do its work (ARP, DHCP, timers).
    fn poll(&mut self) {}
    /// A line for logs: what this transport is and its state.
    fn describe(&self) -> String;
    /// The tap's own address on this transport, when it has one of its own.
    fn address(&self) -> Option<String> {
        None
    }
}

/// The kernel's UDP socket.
pub struct KernelUdp {
    socket: UdpSocket,
    collector: SocketAddr,
}

impl KernelUdp {
    pub fn open(collector: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if collector.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        // Not connected: a collector without a route yet (a link still coming
        // up) is a send error to count and retry, not a reason to stop.
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        Ok(KernelUdp { socket, collector })
    }
}

impl Transport for KernelUdp {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, self.collector).map(|_| ())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.socket.recv_from(buf) {
                // Only the collector's datagrams are read; others are noise.
                Ok((n, from)) if from == self.collector => return Ok(Some(n)),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // An ICMP error from an earlier send surfaces here: not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn describe(&self) -> String {
        format!("udp to {}", self.collector)
    }
}

/// How datagrams are protected.
#[derive(Clone, Debug)]
pub enum Sealing {
    Key(Key),
    /// No encryption, no authentication: tests only, by explicit consent.
    Plaintext,
}

impl Sealing {
    fn key(&self) -> Option<&Key> {
        match self {
            Sealing::Key(k) => Some(k),
            Sealing::Plaintext => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct UplinkSettings {
    pub tap_id: String,
    pub sealing: Sealing,
    /// Batches kept for retransmission.
    pub buffer_batches: usize,
    /// A batch that is not full is sent after this long.
    pub flush_interval: Duration,
}

/// What the uplink has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkCounters {
    /// Batches made (each sent at least once).
    pub batches: u64,
    pub records: u64,
    pub retransmits: u64,
    pub acked: u64,
    /// Batches dropped unacknowledged because the buffer was full.
    pub dropped: u64,
    pub send_errors: u64,
    /// Datagrams from the collector's address that did not open.
    pub bad_replies: u64,
    /// Batches waiting for an acknowledgement now.
    pub pending: u64,
}

struct Pending {
    seq: u64,
    batch: Vec<u8>,
    next_send: Instant,
    backoff: Duration,
}

const FIRST_RTO: Duration = Duration::from_millis(500);
const MAX_RTO: Duration = Duration::from_secs(8);
/// Retransmissions per tick, so a returning collector is not flooded.
const RETRANSMITS_PER_TICK: usize = 64;

/// 16 random bytes for this process start (the nonce prefix and boot id).
pub fn new_boot() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .is_ok()
    {
        return bytes;
    }
    // Without /dev/urandom (a very bare system) time and pid still differ.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    bytes.copy_from_slice(&(nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    bytes
}

/// A random 64-bit value (hash seeds).
pub fn new_boot_id() -> u64 {
    envelope::boot_id(&new_boot())
}

pub struct Uplink {
    transport: Box<dyn Transport>,
    settings: UplinkSettings,
    boot: [u8; 16],
    counter: u64,
    seq: u64,
    batch: BatchWriter,
    batch_records: u64,
    batch_started: Option<Instant>,
    pending: VecDeque<Pending>,
    counters: UplinkCounters,
    last_ack: Option<Instant>,
    first_error: Option<io::Error>,
    recv_buf: Vec<u8>,
}

impl Uplink {
    pub fn new(transport: Box<dyn Transport>, settings: UplinkSettings) -> Result<Self, String> {
        if settings.tap_id.is_empty() || settings.tap_id.len() > pitap_wire::codec::MAX_TAP_ID {
            return Err(format!(
                "tap id {:?} must be 1 to 32 bytes",
                settings.tap_id
            ));
        }
        Ok(Uplink {
            transport,
            settings,
            boot: new_boot(),
            counter: 0,
            seq: 0,
            batch: BatchWriter::default(),
            batch_records: 0,
            batch_started: None,
            pending: VecDeque::new(),
            counters: UplinkCounters::default(),
            last_ack: None,
            first_error: None,
            recv_buf: vec![0; 65_536],
        })
    }

    pub fn counters(&self) -> UplinkCounters {
        UplinkCounters {
            pending: self.pending.len() as u64,
            ..self.counters
        }
    }

    pub fn buffer_capacity(&self) -> usize {
        self.settings.buffer_batches
    }

    /// When the collector last acknowledged something.
    pub fn last_ack(&self) -> Option<Instant> {
        self.last_ack
    }

    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    pub fn address(&self) -> Option<String> {
        self.transport.address()
    }

    /// The first send error since the last call (for a log line).
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.first_error.take()
    }

    fn seal_and_send(&mut self, kind: Kind, payload: &[u8]) {
        let header = Header {
            sealed: self.settings.sealing.key().is_some(),
            kind,
            tap_id: &self.settings.tap_id,
            boot: self.boot,
            counter: self.counter,
        };
        // Every datagram, retransmissions included, gets a fresh counter:
        // nonces never repeat and the collector's replay window stays exact.
        self.counter += 1;
        let result = envelope::seal(&header, self.settings.sealing.key(), payload)
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|d| self.transport.send(&d));
        if let Err(e) = result {
            self.counters.send_errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(e);
            }
        }
    }

    fn start_batch(&mut self, base_ms: u64, flags: u8) -> Result<(), WireError> {
        let header = BatchHeader {
            tap_id: &self.settings.tap_id,
            boot_id: envelope::boot_id(&self.boot),
            seq: self.seq,
            base_ms,
            flags,
            dropped_batches: self.counters.dropped,
        };
        self.batch_started = Some(Instant::now());
        self.batch_records = 0;
        self.batch.start(&header)
    }

    /// Moves the batch being filled into the buffer and sends it.
    fn close_batch(&mut self) {
        if !self.batch.is_started() {
            return;
        }
        if self.pending.len() >= self.settings.buffer_batches.max(1) {
            self.pending.pop_front();
            self.counters.dropped += 1;
        }
        let batch = self.batch.as_bytes().to_vec();
        self.seal_and_send(Kind::Batch, &batch);
        self.pending.push_back(Pending {
            seq: self.seq,
            batch,
            next_send: Instant::now() + FIRST_RTO,
            backoff: FIRST_RTO,
        });
        self.counters.batches += 1;
        self.counters.records += self.batch_records;
        self.seq += 1;
        self.batch.clear();
        self.batch_started = None;
    }

    fn receive_acks(&mut self) {
        self.transport.poll();
        loop {
            let n = match self.transport.recv(&mut self.recv_buf) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    if self.first_error.is_none() {
                        self.first_error = Some(e);
                    }
                    return;
                }
            };
            let opened = envelope::open(
                &self.recv_buf[..n],
                self.settings.sealing.key(),
                matches!(self.settings.sealing, Sealing::Plaintext),
            );
            let ack = match opened {
                Ok((h, payload)) if h.kind == Kind::Ack && h.tap_id == self.settings.tap_id => {
                    messages::decode::<Ack>(&payload).ok()
                }
                _ => None,
            };
            match ack {
                Some(ack) if ack.tap_boot == self.boot => {
                    let before = self.pending.len();
                    self.pending.retain(|p| !ack.seqs.contains(&p.seq));
                    self.counters.acked += (before - self.pending.len()) as u64;
                    let now = Instant::now();
                    // The collector answers again after a silence: what
                    // waited through the backoff goes out now, not in 8 s.
                    let was_silent = self
                        .last_ack
                        .is_none_or(|t| now.duration_since(t) > FIRST_RTO * 2);
                    if was_silent {
                        self.resend_all_soon(now);
                    }
                    self.last_ack = Some(now);
                }
                // An ack for an earlier boot of ours: nothing to do.
                Some(_) => {}
                None => self.counters.bad_replies += 1,
            }
        }
    }

    /// Makes every waiting batch due now, with its backoff reset.
    fn resend_all_soon(&mut self, now: Instant) {
        for p in &mut self.pending {
            p.next_send = p.next_send.min(now);
            p.backoff = FIRST_RTO;
        }
    }

    /// Acks in, retransmissions and a waiting batch out. Call it often.
    pub fn tick(&mut self) {
        self.receive_acks();
        let now = Instant::now();
        let due: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.next_send <= now)
            .map(|(i, _)| i)
            .take(RETRANSMITS_PER_TICK)
            .collect();
        for i in due {
            let batch = std::mem::take(&mut self.pending[i].batch);
            self.seal_and_send(Kind::Batch, &batch);
            let p = &mut self.pending[i];
            p.batch = batch;
            p.backoff = (p.backoff * 2).min(MAX_RTO);
            p.next_send = now + p.backoff;
            self.counters.retransmits += 1;
        }
        if self
            .batch_started
            .is_some_and(|t| t.elapsed() >= self.settings.flush_interval)
        {
            self.close_batch();
        }
    }

    /// Sends a health report (not retransmitted: the next one replaces it).
    pub fn send_health(&mut self, health: &Health) {
        match messages::encode(health) {
            Ok(payload) => self.seal_and_send(Kind::Health, &payload),
            Err(_) => self.counters.send_errors += 1,
        }
    }

    /// Whether the buffer is full, so an offline replay should wait.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.settings.buffer_batches.max(1)
    }

    /// Sends what is pending and a last batch flagged final, then waits up
    /// to `wait` for the acknowledgements. Returns the unacknowledged count.
    pub fn finish(&mut self, now_ms: u64, wait: Duration) -> u64 {
        self.close_batch();
        if self.start_batch(now_ms, FLAG_FINAL).is_ok() {
            self.close_batch();
        }
        self.resend_all_soon(Instant::now());
        let deadline = Instant::now() + wait;
        while !self.pending.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.tick();
        }
        self.pending.len() as u64
    }
}

impl FlowSink for Uplink {
    fn emit(&mut self, record: &FlowRecord) {
        for _ in 0..2 {
            if !self.batch.is_started() && self.start_batch(record.start_ms, 0).is_err() {
                return;
            }
            match self.batch.push(record) {
                Ok(()) => {
                    self.batch_records += 1;
                    return;
                }
                // Full: send this batch and put the record in the next one.
                Err(WireError::Full) => self.close_batch(),
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    use pitap_wire::BatchReader;

    /// A collector that never answers: keeps what was sent.
    struct Void {
        sent: Rc<RefCell<Vec<Vec<u8>>>>,
    }

    impl Transport for Void {
        fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
            self.sent.borrow_mut().push(datagram.to_vec());
            Ok(())
        }
        fn recv(&mut self, _: &mut [u8]) -> io::Result<Option<usize>> {
            Ok(None)
        }
        fn describe(&self) -> String {
            "void".into()
        }
    }

    fn record(i: u64) -> FlowRecord {
        FlowRecord {
            start_ms: 1_000 + i,
            end_ms: 2_000 + i,
            proto: 17,
            ..FlowRecord::default()
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_says_so() {
        let sent = Rc::new(RefCell::new(Vec::new()));
        let mut uplink = Uplink::new(
            Box::new(Void { sent: sent.clone() }),
            UplinkSettings {
                tap_id: "t".into(),
                sealing: Sealing::Plaintext,
                buffer_batches: 3,
                flush_interval: Duration::from_secs(60),
            },
        )
        .unwrap();
        // Enough records for six full batches.
        for i in 0..200 {
            uplink.emit(&record(i));
        }
        let c = uplink.counters();
        assert!(c.batches >= 5, "{c:?}");
        assert_eq!(c.pending, 3, "the buffer holds its size, no more");
        assert_eq!(c.dropped, c.batches - 3);
        // Each batch's header carries the drops so far: the last sent says all.
        let sent = sent.borrow();
        let last = sent.last().unwrap();
        let (_, payload) = envelope::open(last, None, true).unwrap();
        let header = BatchReader::new(&payload).unwrap().header;
        assert_eq!(header.dropped_batches, c.dropped - 1);
        // Every datagram got its own counter (nonce).
        let counters: std::collections::BTreeSet<u64> = sent
            .iter()
            .map(|d| envelope::parse(d).unwrap().0.counter)
            .collect();
        assert_eq!(counters.len(), sent.len());
    }
}
