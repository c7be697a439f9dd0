//! The collector's core, without sockets: a datagram in, its records (or a
//! reason to refuse it); the replies to send once what arrived is stored.
//! `pitap collect`, the ingest benchmark and the fuzz test all drive this.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use pitap_wire::codec::FLAG_FINAL;
use pitap_wire::envelope::{self, DatagramKind, Header, Key};
use pitap_wire::messages::{
    self, Health, PacketChunk, PacketRequest, Reply, UpdateData, UpdateStatus,
};
use pitap_wire::{BatchReader, FileRecord, FlowRecord, WireError};

use crate::taps::{Admission, TapState};

/// Why a datagram was refused. Each is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    NotPitap,
    Truncated,
    UnsupportedVersion,
    MalformedEnvelope,
    UnknownTap,
    /// Authentication failed: forged, damaged, or the wrong key.
    Forged,
    PlaintextRefused,
    /// A datagram already accepted, sent again.
    Replayed,
    /// Authentic, but its challenge is not the one of the boot taken now
    /// nor the one offered to a new boot: a datagram of an earlier boot,
    /// or of an earlier run of this collector (which lost its state).
    StaleChallenge,
    /// Authentic envelope, but the batch or message inside does not decode.
    MalformedContent,
    /// A kind a collector never receives (a reply).
    UnexpectedKind,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NotPitap => "not a PiTap datagram",
            Reject::Truncated => "truncated",
            Reject::UnsupportedVersion => "unsupported version",
            Reject::MalformedEnvelope => "malformed envelope",
            Reject::UnknownTap => "unknown tap",
            Reject::Forged => "forged or wrong key",
            Reject::PlaintextRefused => "plaintext refused",
            Reject::Replayed => "replayed",
            Reject::StaleChallenge => "stale challenge (an earlier boot or collector run)",
            Reject::MalformedContent => "malformed content",
            Reject::UnexpectedKind => "unexpected kind",
        }
    }

    fn from_wire(e: WireError) -> Reject {
        match e {
            WireError::BadMagic => Reject::NotPitap,
            WireError::Truncated => Reject::Truncated,
            WireError::UnsupportedVersion(_) => Reject::UnsupportedVersion,
            WireError::Forged => Reject::Forged,
            WireError::PlaintextRefused => Reject::PlaintextRefused,
            _ => Reject::MalformedEnvelope,
        }
    }
}

/// What a datagram amounted to.
#[derive(Debug)]
pub enum Outcome {
    /// A batch: its records (empty if it was a retransmission already
    /// delivered).
    Batch {
        tap: String,
        records: Vec<FlowRecord>,
        /// The file records attached to the batch.
        files: Vec<FileRecord>,
        duplicate: bool,
    },
    Health {
        tap: String,
    },
    /// A piece of a tap's answer to a packet request.
    Packets {
        tap: String,
        boot: [u8; 16],
        chunk: PacketChunk,
    },
    /// A tap's update status, which asks for image chunks: answered at
    /// once (`Collector::seal_update`), not with the group's reply.
    UpdateStatus {
        tap: String,
        boot: [u8; 16],
        from: SocketAddr,
        status: UpdateStatus,
    },
    Hello {
        tap: String,
    },
    Goodbye {
        tap: String,
    },
    Rejected(Reject),
}

/// A reply owed to one boot of a tap: to the first datagram of it since
/// the last replies went out (the longest wait, so the tap's retransmission
/// timeout covers every batch of the group).
struct Owed {
    to: SocketAddr,
    echo: u64,
    received: Instant,
    /// A hello or a refused datagram: answer without waiting for a group.
    urgent: bool,
}

/// Replies owed at once, at most (refused datagrams of many old boots
/// cannot make the collector a reflector).
const MAX_OWED: usize = 256;

pub struct Collector {
    taps: BTreeMap<String, TapState>,
    allow_plaintext: bool,
    rejected: BTreeMap<Reject, u64>,
    /// Nonce prefix of this collector's replies.
    boot: [u8; 16],
    counter: u64,
    owed: BTreeMap<(String, [u8; 16]), Owed>,
    /// The secret this run derives challenges from.
    secret: Key,
    /// Packet requests each tap's replies carry.
    requests: BTreeMap<String, Vec<PacketRequest>>,
}

impl Collector {
    /// `keys`: tap id -> key. With `allow_plaintext`, plaintext datagrams
    /// from tap ids without a key are accepted too (tests only). `boot`:
    /// 16 random bytes, `secret`: 32 more, both new at every start.
    pub fn new(
        keys: BTreeMap<String, Key>,
        allow_plaintext: bool,
        boot: [u8; 16],
        secret: [u8; 32],
    ) -> Self {
        let secret = Key::from_bytes(secret);
        let taps = keys
            .into_iter()
            .map(|(id, key)| {
                (
                    id,
                    TapState {
                        key: Some(key),
                        secret: Some(secret.clone()),
                        ..TapState::default()
                    },
                )
            })
            .collect();
        Collector {
            taps,
            allow_plaintext,
            rejected: BTreeMap::new(),
            boot,
            counter: 0,
            owed: BTreeMap::new(),
            secret,
            requests: BTreeMap::new(),
        }
    }

    /// The packet requests the replies to `tap` carry from now on.
    pub fn set_requests(&mut self, tap: &str, requests: Vec<PacketRequest>) {
        if requests.is_empty() {
            self.requests.remove(tap);
        } else {
            self.requests.insert(tap.to_string(), requests);
        }
    }

    /// Taps that have packet requests waiting.
    pub fn requesting(&self) -> impl Iterator<Item = &str> {
        self.requests.keys().map(String::as_str)
    }

    pub fn taps(&self) -> &BTreeMap<String, TapState> {
        &self.taps
    }

    pub fn rejected(&self) -> &BTreeMap<Reject, u64> {
        &self.rejected
    }

    /// Puts back what a previous run of the collector knew (keys stay).
    pub fn restore(&mut self, saved: BTreeMap<String, TapState>) {
        for (id, mut state) in saved {
            let key = self.taps.get(&id).and_then(|t| t.key.clone());
            if key.is_none() && !self.allow_plaintext {
                continue;
            }
            state.key = key;
            state.secret = Some(self.secret.clone());
            if let Some(b) = &mut state.current {
                b.restore_window();
            }
            self.taps.insert(id, state);
        }
    }

    fn reject(&mut self, r: Reject) -> Outcome {
        *self.rejected.entry(r).or_default() += 1;
        Outcome::Rejected(r)
    }

    fn owe(&mut self, tap: &str, boot: [u8; 16], to: SocketAddr, echo: u64, urgent: bool) {
        if self.owed.len() >= MAX_OWED {
            return;
        }
        let owed = self.owed.entry((tap.to_string(), boot)).or_insert(Owed {
            to,
            echo,
            received: Instant::now(),
            urgent,
        });
        owed.urgent |= urgent;
    }

    /// Whether a reply should go out now rather than with the next group.
    pub fn has_urgent_replies(&self) -> bool {
        self.owed.values().any(|o| o.urgent)
    }

    pub fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: SystemTime) -> Outcome {
        let header = match envelope::parse(datagram) {
            Ok((h, _)) => h,
            Err(e) => return self.reject(Reject::from_wire(e)),
        };
        let tap_id = header.tap_id.to_string();
        // Tap ids name files and reach a browser: only what a tap may be
        // named, even where plaintext from any tap is allowed.
        if pitap_wire::codec::check_tap_id(&tap_id).is_err() {
            return self.reject(Reject::MalformedEnvelope);
        }
        let key = match self.taps.get(&tap_id) {
            Some(t) => t.key.clone(),
            None if !header.sealed && self.allow_plaintext => None,
            None => return self.reject(Reject::UnknownTap),
        };
        if header.sealed && key.is_none() {
            return self.reject(Reject::UnknownTap);
        }
        // A tap with a key always seals: a plaintext datagram in its name is
        // refused even where plaintext is allowed for taps without keys.
        if !header.sealed && key.is_some() {
            return self.reject(Reject::PlaintextRefused);
        }
        let (header, payload) = match envelope::open(datagram, key.as_ref(), self.allow_plaintext) {
            Ok(opened) => opened,
            Err(e) => return self.reject(Reject::from_wire(e)),
        };
        // Authentic from here on: the boot, counter and challenge can be
        // trusted to be the tap's (not that they are recent).
        if matches!(header.kind, DatagramKind::Reply | DatagramKind::UpdateData) {
            return self.reject(Reject::UnexpectedKind);
        }
        let secret = self.secret.clone();
        let tap = self.taps.entry(tap_id.clone()).or_insert_with(|| TapState {
            secret: Some(secret),
            ..TapState::default()
        });
        if header.kind == DatagramKind::Hello {
            // A hello changes nothing; it is answered with the challenge
            // for its boot (a replayed one only makes a reply nobody can use).
            if let Some(b) = tap.current.as_mut().filter(|b| b.boot == header.boot) {
                if !b.accept_counter(header.counter) {
                    return self.reject(Reject::Replayed);
                }
                tap.last_seen = Some(now);
            }
            tap.hellos += 1;
            self.owe(&tap_id, header.boot, from, header.counter, true);
            return Outcome::Hello { tap: tap_id };
        }
        match tap.admit(&header.boot, &header.challenge) {
            Admission::Current => {}
            Admission::NewBoot(challenge) => tap.start_boot(header.boot, challenge),
            Admission::Stale => {
                // Tell the sender the challenge of its boot: a tap whose
                // collector lost its state carries on with the new one.
                self.owe(&tap_id, header.boot, from, header.counter, true);
                return self.reject(Reject::StaleChallenge);
            }
        }
        let Some(boot) = tap.current.as_mut() else {
            return self.reject(Reject::MalformedEnvelope);
        };
        if !boot.accept_counter(header.counter) {
            return self.reject(Reject::Replayed);
        }
        tap.last_seen = Some(now);
        if header.kind == DatagramKind::Goodbye {
            tap.said_goodbye = true;
            return Outcome::Goodbye { tap: tap_id };
        }
        if header.kind == DatagramKind::UpdateStatus {
            // Answered with update data, which says everything a reply
            // would not: no reply owed.
            return match messages::decode::<UpdateStatus>(&payload) {
                Ok(status) => Outcome::UpdateStatus {
                    tap: tap_id,
                    boot: header.boot,
                    from,
                    status,
                },
                Err(_) => self.reject(Reject::MalformedContent),
            };
        }
        self.owe(&tap_id, header.boot, from, header.counter, false);
        match header.kind {
            DatagramKind::Batch => self.batch(&tap_id, &payload),
            DatagramKind::Health => match messages::decode::<Health>(&payload) {
                Ok(h) => {
                    if let Some(t) = self.taps.get_mut(&tap_id) {
                        t.health = Some(h);
                    }
                    Outcome::Health { tap: tap_id }
                }
                Err(_) => self.reject(Reject::MalformedContent),
            },
            DatagramKind::Packets => match messages::decode::<PacketChunk>(&payload) {
                Ok(chunk) => Outcome::Packets {
                    tap: tap_id,
                    boot: header.boot,
                    chunk,
                },
                Err(_) => self.reject(Reject::MalformedContent),
            },
            DatagramKind::Hello
            | DatagramKind::Reply
            | DatagramKind::Goodbye
            | DatagramKind::UpdateStatus
            | DatagramKind::UpdateData => self.reject(Reject::UnexpectedKind),
        }
    }

    fn batch(&mut self, tap_id: &str, payload: &[u8]) -> Outcome {
        let decoded = BatchReader::new(payload).and_then(|reader| {
            let header = reader.header;
            let files = reader.files().collect::<Result<Vec<_>, _>>()?;
            let records = reader.collect::<Result<Vec<_>, _>>()?;
            Ok((header, records, files))
        });
        let (header, records, files) = match decoded {
            Ok((h, r, f)) if h.tap_id == tap_id => (h, r, f),
            _ => return self.reject(Reject::MalformedContent),
        };
        let Some(tap) = self.taps.get_mut(tap_id) else {
            return self.reject(Reject::MalformedContent);
        };
        let Some(boot) = tap.current.as_mut() else {
            return self.reject(Reject::MalformedContent);
        };
        let fresh = boot.receive(header.seq, header.low_seq);
        if fresh {
            tap.batches += 1;
            tap.records += records.len() as u64;
            if header.flags & FLAG_FINAL != 0 {
                tap.final_seq = Some(header.seq);
            }
        } else {
            tap.duplicates += 1;
        }
        Outcome::Batch {
            tap: tap_id.to_string(),
            records: if fresh { records } else { Vec::new() },
            files: if fresh { files } else { Vec::new() },
            duplicate: !fresh,
        }
    }

    /// The replies owed, sealed, with where they go. Call it only once what
    /// arrived so far is stored: a reply says so. `window`: batches the
    /// collector can take in flight, shared among the taps that sent.
    pub fn take_replies(&mut self, window: u32) -> Vec<(Vec<u8>, SocketAddr)> {
        let owed = std::mem::take(&mut self.owed);
        let senders = owed.len().max(1) as u32;
        let now = Instant::now();
        let mut out = Vec::with_capacity(owed.len());
        for ((tap_id, boot), o) in owed {
            let Some(tap) = self.taps.get(&tap_id) else {
                continue;
            };
            let mut reply = Reply {
                tap_boot: boot,
                echo: o.echo,
                held_us: now.duration_since(o.received).as_micros() as u64,
                time_us: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64),
                challenge: tap.challenge_for(&boot),
                window: (window / senders).max(4),
                ..Reply::default()
            };
            if let Some(b) = tap.current.as_ref().filter(|b| b.boot == boot) {
                reply.acked_below = b.next_seq;
                reply.acked = b.ack_ranges();
                reply.requests = self.requests.get(&tap_id).cloned().unwrap_or_default();
            }
            let key = tap.key.clone();
            if let Some(datagram) = self.seal_reply(&tap_id, &reply, key.as_ref()) {
                out.push((datagram, o.to));
            }
        }
        out
    }

    fn seal_reply(&mut self, tap_id: &str, reply: &Reply, key: Option<&Key>) -> Option<Vec<u8>> {
        self.seal(
            DatagramKind::Reply,
            tap_id,
            &messages::encode(reply).ok()?,
            key,
        )
    }

    /// Update data for a tap, sealed under its key.
    pub fn seal_update(&mut self, tap_id: &str, data: &UpdateData) -> Option<Vec<u8>> {
        let key = self.taps.get(tap_id)?.key.clone();
        let payload = messages::encode(data).ok()?;
        self.seal(DatagramKind::UpdateData, tap_id, &payload, key.as_ref())
    }

    fn seal(
        &mut self,
        kind: DatagramKind,
        tap_id: &str,
        payload: &[u8],
        key: Option<&Key>,
    ) -> Option<Vec<u8>> {
        let header = Header {
            sealed: key.is_some(),
            kind,
            tap_id,
            boot: self.boot,
            counter: self.counter,
            challenge: [0; envelope::CHALLENGE_LEN],
        };
        self.counter += 1;
        envelope::seal(&header, key, payload).ok()
    }

    /// Whether a tap has finished: its final batch (the end of a replay or
    /// a shutdown) and every batch before it arrived.
    pub fn any_finished(&self) -> bool {
        self.taps.values().any(TapState::finished)
    }

    /// Whether a finished tap also said goodbye: it has every reply it
    /// needed, nobody waits for this collector any more.
    pub fn any_gone(&self) -> bool {
        self.taps.values().any(|t| t.finished() && t.said_goodbye)
    }
}
