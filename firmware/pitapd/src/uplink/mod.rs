//! The uplink to the collector: records packed into batches, each batch
//! sealed in an envelope and sent as one UDP datagram, kept until the
//! collector acknowledges it and retransmitted until then.
//!
//! UDP because it passes NAT, has no head-of-line blocking (one lost
//! datagram delays only itself) and keeps the tap simple; the guarantees TCP
//! would give are rebuilt here, bounded in memory: the buffer holds
//! `buffer_batches` batches, and when it is full the oldest is dropped and
//! counted; every batch header says the lowest seq the tap still holds, so
//! the collector tells a batch lost for good from one still coming.
//!
//! A boot of the tap first says `Hello`; the collector's reply gives the
//! challenge every later datagram of this boot carries (the collector takes
//! no data of a boot without it, so nothing of a past boot can be replayed)
//! and its clock (`clock`). Replies acknowledge cumulatively with ranges
//! above (a lost reply costs nothing: the next says it all), echo the
//! datagram they answer (round trips for `pacing`, replays refused by
//! `sent`), and say how much the collector can take in flight.
//!
//! Until the clock is synchronised, a live tap's records wait in batches on
//! its own clock; at the sync those batches are moved onto the collector's
//! (their header's base time), so no record leaves with a time from before.

mod answers;
mod clock;
mod pacing;
mod sent;
mod transport;

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

pub use answers::AnswerCounters;
pub use clock::{Sample, TapClock};
pub use transport::{KernelUdp, Transport};

use answers::Answers;
use pacing::{Rtt, Window};
use pitap_wire::codec::{self, FLAG_CAPTURE_TIME, FLAG_CLOCK_SYNCED, FLAG_FINAL};
use pitap_wire::envelope::{self, Challenge, DatagramKind, Header, Key};
use pitap_wire::messages::{
    self, ClockHealth, Health, Hello, PacketRequest, Reply, UpdateData, UpdateStatus, UplinkHealth,
};
use pitap_wire::{
    BatchHeader, BatchWriter, ClockState, FileRecord, FlowRecord, FlowSink, WireError,
};
use sent::SentLog;

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

/// Where the records' times come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockMode {
    /// A live tap: its own clock, synchronised with the collector's before
    /// any record leaves.
    Sync,
    /// A replay: the capture's timestamps, as they are.
    Capture,
}

#[derive(Clone, Debug)]
pub struct UplinkSettings {
    pub tap_id: String,
    pub sealing: Sealing,
    /// Batches kept for retransmission.
    pub buffer_batches: usize,
    /// A batch that is not full is sent after this long.
    pub flush_interval: Duration,
    pub clock: ClockMode,
    /// The batch encoding (see `pitap_wire::codec::VERSION`).
    pub wire_version: u8,
    /// Version 2 batches deflated when smaller.
    pub deflate: bool,
}

/// What the uplink has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkCounters {
    /// Batches made.
    pub batches: u64,
    pub records: u64,
    /// File records put in batches.
    pub files: u64,
    /// Batch datagrams sent, retransmissions included.
    pub transmissions: u64,
    /// Bytes of the sealed batch datagrams as first sent (without
    /// retransmissions): what the records cost on the link.
    pub batch_bytes: u64,
    /// Batch datagrams sent again (lost, or acknowledged too late).
    pub retransmits: u64,
    pub acked: u64,
    /// Batches dropped unacknowledged because the buffer was full and never
    /// acknowledged afterwards.
    pub dropped: u64,
    pub send_errors: u64,
    pub hellos: u64,
    /// Batches waiting for an acknowledgement now, and of them in flight.
    pub pending: u64,
    pub in_flight: u64,
}

/// Why a datagram from the collector's address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It did not open under the key (or is not a reply of ours).
    Forged,
    /// A reply to another boot of this tap.
    OtherBoot,
    /// It answers a datagram already answered, or one not sent lately.
    Replayed,
    /// It opened but does not decode.
    Malformed,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::Forged,
        Refusal::OtherBoot,
        Refusal::Replayed,
        Refusal::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Forged => "forged",
            Refusal::OtherBoot => "other boot",
            Refusal::Replayed => "replayed",
            Refusal::Malformed => "malformed",
        }
    }
}

/// A batch waiting for its acknowledgement.
struct Pending {
    seq: u64,
    bytes: Vec<u8>,
    /// Where its records' times come from; `Unsynced` ones wait for the sync.
    clock: ClockState,
    /// When its last transmission left, while it is in flight.
    sent_at: Option<Instant>,
    transmissions: u32,
}

/// Dropped batches remembered in case an acknowledgement still comes.
const DROPPED_REMEMBERED: usize = 4096;
/// The first hellos go this often; then less often, up to `MAX_HELLO` (a
/// hello is small: one a second costs nothing while a collector is away).
const FIRST_HELLO: Duration = Duration::from_millis(250);
const MAX_HELLO: Duration = Duration::from_secs(1);

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

/// The kernel's clock, µs since the Unix epoch.
pub fn kernel_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub struct Uplink {
    transport: Box<dyn Transport>,
    settings: UplinkSettings,
    boot: [u8; 16],
    /// The next envelope counter.
    counter: u64,
    sent: SentLog,
    challenge: Option<Challenge>,
    /// When the first hello left.
    first_hello: Option<Instant>,
    /// How long the first challenge took to come after it.
    challenge_after: Option<Duration>,
    next_hello: Instant,
    hello_every: Duration,
    clock: TapClock,
    last_sync: Option<Instant>,
    /// The clock the tap stamps records with (the kernel's; a test's).
    wall_us: fn() -> u64,
    rtt: Rtt,
    window: Window,
    /// The retransmission timer, armed at this instant.
    timer: Option<Instant>,
    /// Probe timeouts since the last reply.
    probes_unanswered: u32,
    /// When the window last went to its floor for a silence: a reply to a
    /// datagram sent before shows the silence was only a slow path.
    last_timeout: Option<Instant>,
    seq: u64,
    batch: BatchWriter,
    batch_records: u64,
    batch_started: Option<Instant>,
    batch_clock: ClockState,
    queue: VecDeque<Pending>,
    /// Every queue entry before this index is in flight.
    cursor: usize,
    in_flight: usize,
    dropped_in_flight: VecDeque<u64>,
    /// When the window was last halved for a loss: a loss of a batch sent
    /// before then is part of the same episode.
    recovery_since: Option<Instant>,
    counters: UplinkCounters,
    refused: [u64; Refusal::ALL.len()],
    last_ack: Option<Instant>,
    first_error: Option<io::Error>,
    recv_buf: Vec<u8>,
    /// Answers to the collector's packet requests.
    answers: Answers,
    /// Update data from the collector, for the updater (`take_update_data`).
    update_data: Vec<UpdateData>,
}

/// Update datagrams kept between two looks of the updater: a window of
/// chunks and some to spare (more are dropped; the updater asks again).
const MAX_UPDATE_DATA: usize = 2 * messages::MAX_WANT;

impl Uplink {
    pub fn new(transport: Box<dyn Transport>, settings: UplinkSettings) -> Result<Self, String> {
        Self::with_clock(transport, settings, kernel_clock_us)
    }

    /// An uplink whose tap reads the time from `wall_us` (tests give a
    /// clock years off).
    pub fn with_clock(
        transport: Box<dyn Transport>,
        settings: UplinkSettings,
        wall_us: fn() -> u64,
    ) -> Result<Self, String> {
        pitap_wire::codec::check_tap_id(&settings.tap_id)?;
        let now = Instant::now();
        let mut batch = BatchWriter::with_version(settings.wire_version);
        batch.set_deflate(settings.deflate);
        Ok(Uplink {
            transport,
            settings,
            boot: new_boot(),
            counter: 0,
            sent: SentLog::new(now),
            challenge: None,
            first_hello: None,
            challenge_after: None,
            next_hello: now,
            hello_every: FIRST_HELLO,
            clock: TapClock::default(),
            last_sync: None,
            wall_us,
            rtt: Rtt::default(),
            window: Window::default(),
            timer: None,
            probes_unanswered: 0,
            last_timeout: None,
            seq: 0,
            batch,
            batch_records: 0,
            batch_started: None,
            batch_clock: ClockState::Unsynced,
            queue: VecDeque::new(),
            cursor: 0,
            in_flight: 0,
            dropped_in_flight: VecDeque::new(),
            recovery_since: None,
            counters: UplinkCounters::default(),
            refused: [0; Refusal::ALL.len()],
            last_ack: None,
            first_error: None,
            recv_buf: vec![0; 65_536],
            answers: Answers::default(),
            update_data: Vec::new(),
        })
    }

    pub fn counters(&self) -> UplinkCounters {
        UplinkCounters {
            pending: self.queue.len() as u64,
            in_flight: self.in_flight as u64,
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

    pub fn clock(&self) -> &TapClock {
        &self.clock
    }

    /// When the clock last had a sample from the collector.
    pub fn last_sync(&self) -> Option<Instant> {
        self.last_sync
    }

    /// How long the first challenge took to come after the first hello.
    pub fn challenge_after(&self) -> Option<Duration> {
        self.challenge_after
    }

    pub fn round_trip(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Replies refused so far, by reason.
    pub fn refused(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL.into_iter().zip(self.refused)
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

    /// Packet requests from the collector for the owner of the packet ring
    /// to answer (`answer`).
    pub fn packet_requests(&mut self) -> Vec<PacketRequest> {
        self.answers.new_requests()
    }

    /// Sends the answer to request `id`, in chunks, from the next tick.
    pub fn answer(&mut self, id: u64, answer: crate::forensics::Answer) {
        self.answers.start(id, answer, Instant::now());
        self.send_answers(Instant::now());
    }

    /// Update data the collector sent since the last call, oldest first.
    pub fn take_update_data(&mut self) -> Vec<UpdateData> {
        std::mem::take(&mut self.update_data)
    }

    /// Sends an update status (answered with `UpdateData`). Without a
    /// challenge yet the collector would refuse it: none goes.
    pub fn send_update_status(&mut self, status: &UpdateStatus) -> bool {
        if self.challenge.is_none() {
            return false;
        }
        match messages::encode(status) {
            Ok(payload) => self
                .seal_and_send(DatagramKind::UpdateStatus, &payload, Instant::now())
                .is_ok(),
            Err(_) => {
                self.counters.send_errors += 1;
                false
            }
        }
    }

    pub fn answer_counters(&self) -> AnswerCounters {
        self.answers.counters
    }

    /// What the tap adds to its clock to be on the collector's, µs (0 for
    /// a capture's times, or before the first sync).
    pub fn correction_us(&self) -> i64 {
        match self.settings.clock {
            ClockMode::Sync if self.clock.is_synced() => self.clock.correction_us(),
            _ => 0,
        }
    }

    fn send_answers(&mut self, now: Instant) {
        if !self.answers.busy() {
            return;
        }
        let mut answers = std::mem::take(&mut self.answers);
        answers.send(now, |chunk| {
            messages::encode(chunk)
                .map(|payload| {
                    self.seal_and_send(DatagramKind::Packets, &payload, now)
                        .is_ok()
                })
                .unwrap_or(false)
        });
        self.answers = answers;
    }

    /// Where the times of what leaves now come from.
    fn clock_state(&self) -> ClockState {
        match self.settings.clock {
            ClockMode::Capture => ClockState::Capture,
            ClockMode::Sync if self.clock.is_synced() => ClockState::Synced,
            ClockMode::Sync => ClockState::Unsynced,
        }
    }

    /// A file record's times on the clock `stamp` puts flows on.
    pub fn stamp_file(&self, file: &FileRecord) -> FileRecord {
        let mut f = *file;
        if self.clock_state() == ClockState::Synced {
            f.ts_ms = self.clock.correct_ms(f.ts_ms);
            f.flow_start_ms = self.clock.correct_ms(f.flow_start_ms);
        }
        f
    }

    /// The record as it leaves the tap: on the collector's clock once the
    /// tap is synchronised, marked with where its times come from.
    pub fn stamp(&self, record: &FlowRecord) -> FlowRecord {
        let mut r = *record;
        match self.settings.clock {
            ClockMode::Capture => r.clock = ClockState::Capture,
            ClockMode::Sync if self.clock.is_synced() => {
                r.start_ms = self.clock.correct_ms(r.start_ms);
                r.end_ms = self.clock.correct_ms(r.end_ms);
                r.clock = ClockState::Synced;
            }
            ClockMode::Sync => r.clock = ClockState::Unsynced,
        }
        r
    }

    /// The tap's clock state for a health report.
    pub fn clock_health(&self) -> ClockHealth {
        match self.settings.clock {
            ClockMode::Capture => ClockHealth {
                source: "capture".into(),
                ..ClockHealth::default()
            },
            ClockMode::Sync => ClockHealth {
                synced: self.clock.is_synced(),
                source: if self.clock.is_synced() {
                    "collector".into()
                } else {
                    String::new()
                },
                offset_ms: self.clock.correction_ms(),
                uncertainty_us: self.clock.uncertainty_us(),
                steps: self.clock.steps(),
            },
        }
    }

    pub fn uplink_health(&self) -> UplinkHealth {
        let c = self.counters();
        UplinkHealth {
            batches: c.batches,
            retransmits: c.retransmits,
            srtt_us: self.rtt.srtt().map_or(0, |d| d.as_micros() as u64),
            rto_ms: self.rtt.rto().as_millis() as u64,
            window: self.window.allowed() as u64,
            refused: self
                .refused()
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.as_str().to_string(), n))
                .collect(),
        }
    }

    /// Seals and sends one datagram with the next counter; its length.
    fn seal_and_send(
        &mut self,
        kind: DatagramKind,
        payload: &[u8],
        now: Instant,
    ) -> io::Result<usize> {
        let header = Header {
            sealed: self.settings.sealing.key().is_some(),
            kind,
            tap_id: &self.settings.tap_id,
            boot: self.boot,
            counter: self.counter,
            challenge: self.challenge.unwrap_or_default(),
        };
        let datagram = envelope::seal(&header, self.settings.sealing.key(), payload)
            .map_err(|e| io::Error::other(e.to_string()))?;
        match self.transport.send(&datagram) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) => {
                self.counters.send_errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
            }
            Ok(()) => {}
        }
        // Every datagram, retransmissions included, gets a fresh counter:
        // nonces never repeat, the collector's replay window stays exact,
        // and a reply names the one transmission it answers.
        self.sent.sent(self.counter, now);
        self.counter += 1;
        Ok(datagram.len())
    }

    fn batch_flags(&self) -> u8 {
        match self.batch_clock {
            ClockState::Capture => FLAG_CAPTURE_TIME,
            ClockState::Synced => FLAG_CLOCK_SYNCED,
            ClockState::Unsynced => 0,
        }
    }

    fn start_batch(&mut self, base_ms: u64, flags: u8) -> Result<(), WireError> {
        let header = BatchHeader {
            tap_id: &self.settings.tap_id,
            boot_id: envelope::boot_id(&self.boot),
            seq: self.seq,
            base_ms,
            flags: flags | self.batch_flags(),
            dropped_batches: self.counters.dropped,
            low_seq: self.queue.front().map_or(self.seq, |p| p.seq),
            attachments: &[],
        };
        self.batch_started = Some(Instant::now());
        self.batch_records = 0;
        self.batch.start(&header)
    }

    /// Moves the batch being filled into the queue and sends what may go.
    fn close_batch(&mut self) {
        if !self.batch.is_started() {
            return;
        }
        if self.queue.len() >= self.settings.buffer_batches.max(1) {
            self.drop_oldest();
        }
        let datagram = self.batch.to_datagram();
        self.queue.push_back(Pending {
            seq: self.seq,
            bytes: datagram.bytes,
            clock: self.batch_clock,
            sent_at: None,
            transmissions: 0,
        });
        let carried = datagram.carried_over;
        self.counters.batches += 1;
        self.counters.records += self.batch_records - carried.len() as u64;
        self.seq += 1;
        self.batch.clear();
        self.batch_started = None;
        self.pump(Instant::now());
        // Records cut off a batch that deflated worse than the writer
        // aimed for (rare): they open the next one.
        for record in &carried {
            self.emit(record);
        }
    }

    fn drop_oldest(&mut self) {
        let Some(p) = self.queue.pop_front() else {
            return;
        };
        if p.sent_at.is_some() {
            self.in_flight -= 1;
            // It may still arrive; if an acknowledgement says so, it was
            // not dropped after all.
            if self.dropped_in_flight.len() >= DROPPED_REMEMBERED {
                self.dropped_in_flight.pop_front();
            }
            self.dropped_in_flight.push_back(p.seq);
        }
        self.cursor = self.cursor.saturating_sub(1);
        self.counters.dropped += 1;
    }

    /// Whether a queued batch may be sent: data needs the challenge, and a
    /// live tap's records the synchronised clock.
    fn may_send(&self, p: &Pending) -> bool {
        self.challenge.is_some() && (p.clock != ClockState::Unsynced || self.clock.is_synced())
    }

    /// Sends what the window allows: batches never sent, and lost ones
    /// again, oldest first.
    fn pump(&mut self, now: Instant) {
        while self.in_flight < self.window.allowed() && self.cursor < self.queue.len() {
            let i = self.cursor;
            if self.queue[i].sent_at.is_some() {
                self.cursor += 1;
                continue;
            }
            if !self.may_send(&self.queue[i]) || !self.transmit(i, now) {
                break;
            }
            self.in_flight += 1;
            self.cursor += 1;
        }
    }

    /// Sends queue entry `i` (again); false if the socket is full and
    /// nothing was sent. The caller keeps the in-flight count.
    fn transmit(&mut self, i: usize, now: Instant) -> bool {
        let bytes = std::mem::take(&mut self.queue[i].bytes);
        let result = self.seal_and_send(DatagramKind::Batch, &bytes, now);
        let p = &mut self.queue[i];
        p.bytes = bytes;
        let Ok(len) = result else {
            return false;
        };
        p.sent_at = Some(now);
        if p.transmissions > 0 {
            self.counters.retransmits += 1;
        } else {
            self.counters.batch_bytes += len as u64;
        }
        p.transmissions += 1;
        self.counters.transmissions += 1;
        self.timer.get_or_insert(now);
        true
    }

    /// Puts an in-flight batch back to be sent again.
    fn mark_lost(&mut self, i: usize) {
        if self.queue[i].sent_at.take().is_some() {
            self.in_flight -= 1;
            self.cursor = self.cursor.min(i);
        }
    }

    fn mark_all_lost(&mut self) {
        for i in 0..self.queue.len() {
            self.mark_lost(i);
        }
        self.timer = None;
    }

    fn refuse(&mut self, why: Refusal) {
        self.refused[why as usize] += 1;
    }

    fn receive_replies(&mut self) {
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
            let (kind, payload) = match opened {
                Ok((h, payload))
                    if matches!(h.kind, DatagramKind::Reply | DatagramKind::UpdateData)
                        && h.tap_id == self.settings.tap_id =>
                {
                    (h.kind, payload)
                }
                _ => {
                    self.refuse(Refusal::Forged);
                    continue;
                }
            };
            if kind == DatagramKind::UpdateData {
                // Authentic, for this boot; a replayed piece of the image
                // is the same bytes at the same place, and the image is
                // checked whole against its signed digest anyway.
                match messages::decode::<UpdateData>(&payload) {
                    Ok(d) if d.tap_boot == self.boot => {
                        if self.update_data.len() < MAX_UPDATE_DATA {
                            self.update_data.push(d);
                        }
                    }
                    Ok(_) => self.refuse(Refusal::OtherBoot),
                    Err(_) => self.refuse(Refusal::Malformed),
                }
                continue;
            }
            match messages::decode::<Reply>(&payload) {
                Ok(reply) if reply.tap_boot == self.boot => self.on_reply(&reply, Instant::now()),
                Ok(_) => self.refuse(Refusal::OtherBoot),
                Err(_) => self.refuse(Refusal::Malformed),
            }
        }
    }

    fn on_reply(&mut self, reply: &Reply, now: Instant) {
        let Some(sent_at) = self.sent.answer(reply.echo) else {
            self.refuse(Refusal::Replayed);
            return;
        };
        let round_trip = now.saturating_duration_since(sent_at);
        self.rtt.sample(round_trip);
        // The network's part of it: without the time the collector held our
        // datagram (it said how long).
        let network = round_trip.saturating_sub(Duration::from_micros(reply.held_us));
        self.probes_unanswered = 0;
        if let Some(fired) = self.last_timeout.take() {
            if sent_at < fired {
                self.window.undo_timeout();
            } else {
                self.window.keep_timeout();
            }
        }
        if self.settings.clock == ClockMode::Sync {
            // The collector's clock now lies in [time, time + network].
            let kernel = (self.wall_us)();
            let first = self.clock.sample(
                kernel,
                reply.time_us,
                reply.time_us + network.as_micros() as u64,
            );
            if first != Sample::TooUncertain {
                self.last_sync = Some(now);
            }
            if first == Sample::First {
                self.move_unsynced_batches();
            }
        }
        if self.challenge != Some(reply.challenge) {
            if self.challenge.is_none() {
                self.challenge_after = self.first_hello.map(|t| now.duration_since(t));
            } else {
                // The collector lost what it knew of us (a restart without
                // its state): what is in flight carries the old challenge.
                self.mark_all_lost();
            }
            self.challenge = Some(reply.challenge);
        }
        self.window.set_receive_window(reply.window);
        self.take_acks(reply, now);
        self.answers.take(&reply.requests, now);
        self.pump(now);
    }

    /// Forgets what the reply says is stored; batches sent before the
    /// newest one acknowledged, and not acknowledged themselves, were lost.
    fn take_acks(&mut self, reply: &Reply, now: Instant) {
        let mut newly = 0u32;
        let mut newest_acked: Option<Instant> = None;
        let mut in_flight = self.in_flight;
        self.queue.retain(|p| {
            if !reply.acks(p.seq) {
                return true;
            }
            newly += 1;
            if let Some(at) = p.sent_at {
                in_flight -= 1;
                newest_acked = newest_acked.max(Some(at));
            }
            false
        });
        self.in_flight = in_flight;
        let before = self.dropped_in_flight.len();
        self.dropped_in_flight.retain(|s| !reply.acks(*s));
        let arrived_after_all = (before - self.dropped_in_flight.len()) as u64;
        self.counters.dropped -= arrived_after_all;
        self.counters.acked += u64::from(newly) + arrived_after_all;
        if newly > 0 {
            self.window.on_acked(newly);
            self.last_ack = Some(now);
            self.timer = (self.in_flight > 0).then_some(now);
        }
        // Entries moved: find the first one not in flight again.
        self.cursor = self
            .queue
            .iter()
            .position(|p| p.sent_at.is_none())
            .unwrap_or(self.queue.len());
        let Some(newest) = newest_acked else {
            return;
        };
        let reorder = self.rtt.reorder_window();
        let in_flight = self.in_flight;
        let mut lost_sent_at = None;
        for i in 0..self.queue.len() {
            match self.queue[i].sent_at {
                Some(at) if at + reorder < newest => {
                    lost_sent_at = lost_sent_at.max(Some(at));
                    self.mark_lost(i);
                }
                _ => {}
            }
        }
        if let Some(at) = lost_sent_at {
            if self.recovery_since.is_none_or(|r| at > r) {
                self.window.on_loss(in_flight);
                self.recovery_since = Some(now);
            }
        }
    }

    /// The clock is synchronised: batches made before go onto the
    /// collector's clock, the one being filled included.
    fn move_unsynced_batches(&mut self) {
        if self.batch.is_started() && self.batch_clock == ClockState::Unsynced {
            self.close_batch();
        }
        let shift = self.clock.correction_ms();
        for p in self.queue.iter_mut() {
            if p.clock != ClockState::Unsynced {
                continue;
            }
            let moved = codec::rewrite_header(&p.bytes, |h| {
                h.base_ms = (h.base_ms as i64).saturating_add(shift).max(0) as u64;
                h.flags |= FLAG_CLOCK_SYNCED;
            });
            // A batch that cannot be rewritten (never seen) leaves as it is,
            // marked unsynced.
            if let Ok(bytes) = moved {
                p.bytes = bytes;
                p.clock = ClockState::Synced;
            }
        }
    }

    /// Nothing came back for a probe timeout: the two oldest batches in
    /// flight go again, whatever the window (a reply to either acknowledges
    /// all that arrived and shows what was lost), the next timeout is
    /// longer; only a silence through several takes the window to its floor
    /// (QUIC, RFC 9002).
    fn on_probe_timeout(&mut self, now: Instant) {
        self.probes_unanswered += 1;
        if self.probes_unanswered >= 3 {
            self.window.on_persistent_timeout(self.in_flight);
            self.last_timeout = Some(now);
        }
        self.rtt.back_off();
        let oldest: Vec<usize> = (0..self.queue.len())
            .filter(|&i| self.queue[i].sent_at.is_some())
            .take(2)
            .collect();
        for i in oldest {
            self.transmit(i, now);
        }
        self.timer = Some(now);
    }

    /// Replies in, timeouts, hellos, batches out. Call it often.
    pub fn tick(&mut self) {
        self.receive_replies();
        let now = Instant::now();
        self.send_answers(now);
        if self
            .timer
            .is_some_and(|armed| self.in_flight > 0 && now >= armed + self.rtt.rto())
        {
            self.on_probe_timeout(now);
        }
        let wants_hello = self.challenge.is_none()
            || (self.settings.clock == ClockMode::Sync && !self.clock.is_synced());
        if wants_hello && now >= self.next_hello {
            let hello = messages::encode(&Hello {
                version: env!("CARGO_PKG_VERSION").to_string(),
            });
            if let Ok(payload) = hello {
                if self
                    .seal_and_send(DatagramKind::Hello, &payload, now)
                    .is_ok()
                {
                    self.counters.hellos += 1;
                    self.first_hello.get_or_insert(now);
                }
            }
            self.next_hello = now + self.hello_every;
            self.hello_every = (self.hello_every * 2).min(MAX_HELLO);
        }
        self.pump(now);
        if self
            .batch_started
            .is_some_and(|t| t.elapsed() >= self.settings.flush_interval)
        {
            self.close_batch();
        }
    }

    /// Sends a health report (not retransmitted: the next one replaces it).
    /// Without a challenge yet the collector would refuse it: none goes.
    pub fn send_health(&mut self, health: &Health) {
        if self.challenge.is_none() {
            return;
        }
        match messages::encode(health) {
            Ok(payload) => {
                let _ = self.seal_and_send(DatagramKind::Health, &payload, Instant::now());
            }
            Err(_) => self.counters.send_errors += 1,
        }
    }

    /// Whether the buffer is full, so an offline replay should wait.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.settings.buffer_batches.max(1)
    }

    /// Batches not acknowledged yet.
    pub fn unacknowledged(&self) -> u64 {
        self.queue.len() as u64
    }

    /// Says goodbye once everything is acknowledged (twice: the collector
    /// may be waiting for it to stop, and a datagram can be lost).
    pub fn goodbye(&mut self) {
        if self.challenge.is_none() || !self.queue.is_empty() {
            return;
        }
        for _ in 0..2 {
            let _ = self.seal_and_send(DatagramKind::Goodbye, &[], Instant::now());
        }
    }

    /// Queues what is left and a last batch flagged final; then call
    /// `tick` until `unacknowledged` is 0.
    pub fn finish(&mut self, now_ms: u64) {
        // Records a closed batch gives back open another: close until none
        // is left (each close sends at least one record).
        while self.batch.is_started() {
            self.close_batch();
        }
        // On the uplink's own clock: a replay that made no record has no
        // record's clock to go by, and its final batch must still leave.
        self.batch_clock = self.clock_state();
        if self.start_batch(now_ms, FLAG_FINAL).is_ok() {
            self.close_batch();
        }
    }
}

impl FlowSink for Uplink {
    /// Takes a file record as `stamp_file` made it, in a batch of the
    /// clock state it was stamped in.
    fn file(&mut self, file: &FileRecord) {
        let clock = self.clock_state();
        while self.batch.is_started() && self.batch_clock != clock {
            self.close_batch();
        }
        self.batch_clock = clock;
        for _ in 0..2 {
            if !self.batch.is_started() && self.start_batch(file.flow_start_ms, 0).is_err() {
                return;
            }
            match self.batch.push_file(file) {
                Ok(()) => {
                    self.counters.files += 1;
                    return;
                }
                Err(WireError::Full) => self.close_batch(),
                Err(_) => return,
            }
        }
    }

    /// Takes a record as `stamp` made it.
    fn emit(&mut self, record: &FlowRecord) {
        // Until no batch of the other clock state is open (one closed may
        // give records back, which open another of its state).
        while self.batch.is_started() && self.batch_clock != record.clock {
            self.close_batch();
        }
        self.batch_clock = record.clock;
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
            clock: ClockState::Capture,
            ..FlowRecord::default()
        }
    }

    fn settings(clock: ClockMode) -> UplinkSettings {
        UplinkSettings {
            tap_id: "t".into(),
            sealing: Sealing::Plaintext,
            buffer_batches: 3,
            flush_interval: Duration::from_secs(60),
            clock,
            wire_version: pitap_wire::codec::VERSION,
            deflate: true,
        }
    }

    /// Records a deflated batch gives back (it deflated worse than its
    /// writer aimed) go out in the next batch, also when the batch was the
    /// last before the final one: every record once, in order.
    #[test]
    fn records_a_batch_gives_back_are_all_sent() {
        let sent = Rc::new(RefCell::new(Vec::new()));
        let mut uplink = Uplink::new(
            Box::new(Void { sent: sent.clone() }),
            UplinkSettings {
                buffer_batches: 10_000,
                ..settings(ClockMode::Capture)
            },
        )
        .unwrap();
        let mut all = Vec::new();
        // Alike records deflate well and raise the writer's aim; then
        // records with names nothing shortens.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut finished = false;
        for i in 0..3_000u64 {
            let mut r = record(i);
            if i >= 2_000 {
                let name: Vec<u8> = (0..100)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        b'!' + (state % 94) as u8
                    })
                    .collect();
                r.names.sni = pitap_wire::Text::from_bytes(&name);
            }
            uplink.emit(&r);
            all.push(r);
            // The end of a replay while the open batch is past a datagram
            // with records that will not deflate into one.
            if i >= 2_000
                && !finished
                && uplink.batch.as_bytes().len() > codec::MAX_DATAGRAM + 1_000
            {
                uplink.finish(0);
                finished = true;
            }
        }
        assert!(finished, "the case did not come up");
        uplink.finish(0);
        let mut got = Vec::new();
        let mut seqs = Vec::new();
        for p in &uplink.queue {
            let reader = BatchReader::new(&p.bytes).unwrap();
            assert!(p.bytes.len() <= pitap_wire::codec::MAX_DATAGRAM);
            seqs.push(reader.header.seq);
            got.extend(reader.map(Result::unwrap));
        }
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert_eq!(got.len(), all.len());
        assert_eq!(got, all);
        assert_eq!(uplink.counters().records, all.len() as u64);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_says_so() {
        let sent = Rc::new(RefCell::new(Vec::new()));
        let mut uplink = Uplink::new(
            Box::new(Void { sent: sent.clone() }),
            settings(ClockMode::Capture),
        )
        .unwrap();
        // Enough records for at least five full batches (version 2 packs
        // about 90 of these in one).
        for i in 0..1000 {
            uplink.emit(&record(i));
        }
        let c = uplink.counters();
        assert!(c.batches >= 5, "{c:?}");
        assert_eq!(c.pending, 3, "the buffer holds its size, no more");
        assert_eq!(c.dropped, c.batches - 3);
        // Nothing but hellos leaves before the collector gave a challenge.
        uplink.tick();
        let sent = sent.borrow();
        assert!(!sent.is_empty());
        for d in sent.iter() {
            let (h, _) = envelope::parse(d).unwrap();
            assert_eq!((h.kind, h.challenge), (DatagramKind::Hello, [0; 8]));
        }
        // Each batch header says the lowest seq still held when it was
        // made (the oldest of three went when it joined them).
        let newest = &uplink.queue.back().unwrap().bytes;
        let header = BatchReader::new(newest).unwrap().header;
        assert_eq!(header.low_seq, header.seq - 3);
        assert_eq!(header.dropped_batches, c.dropped - 1);
    }

    #[test]
    fn unsynced_records_wait_and_carry_their_clock() {
        let sent = Rc::new(RefCell::new(Vec::new()));
        let uplink = Uplink::new(
            Box::new(Void { sent: sent.clone() }),
            settings(ClockMode::Sync),
        )
        .unwrap();
        let raw = FlowRecord {
            start_ms: 10_000,
            end_ms: 12_000,
            ..FlowRecord::default()
        };
        let stamped = uplink.stamp(&raw);
        assert_eq!(
            (stamped.clock, stamped.start_ms),
            (ClockState::Unsynced, 10_000)
        );
        let capture = Uplink::new(
            Box::new(Void { sent: sent.clone() }),
            settings(ClockMode::Capture),
        )
        .unwrap();
        assert_eq!(capture.stamp(&raw).clock, ClockState::Capture);
    }
}
