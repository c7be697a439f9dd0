//! The collector's core, without sockets: a datagram in, its records (or a
//! reason to reject it) and the acknowledgement to send back out. `pitap
//! collect`, the ingest benchmark and the fuzz test all drive this.

use std::collections::BTreeMap;
use std::time::SystemTime;

use pitap_wire::codec::FLAG_FINAL;
use pitap_wire::envelope::{self, Header, Key, Kind};
use pitap_wire::messages::{self, Ack, Health};
use pitap_wire::{BatchReader, FlowRecord, WireError};

use crate::taps::{BootCheck, TapState};

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
    /// Authentic but from an earlier boot of the tap: an old datagram replayed.
    StaleBoot,
    /// Authentic envelope, but the batch or message inside does not decode.
    MalformedContent,
    /// A kind a collector never receives (an acknowledgement).
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
            Reject::StaleBoot => "from an earlier boot (replayed)",
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
    /// delivered) and the acknowledgement to send back.
    Batch {
        tap: String,
        records: Vec<FlowRecord>,
        duplicate: bool,
        ack: Vec<u8>,
    },
    Health {
        tap: String,
    },
    Rejected(Reject),
}

pub struct Collector {
    taps: BTreeMap<String, TapState>,
    allow_plaintext: bool,
    rejected: BTreeMap<Reject, u64>,
    /// Nonce prefix of this collector's acknowledgements.
    boot: [u8; 16],
    counter: u64,
}

impl Collector {
    /// `keys`: tap id -> key. With `allow_plaintext`, plaintext datagrams
    /// from tap ids without a key are accepted too (tests only).
    pub fn new(keys: BTreeMap<String, Key>, allow_plaintext: bool, boot: [u8; 16]) -> Self {
        let taps = keys
            .into_iter()
            .map(|(id, key)| {
                (
                    id,
                    TapState {
                        key: Some(key),
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
        }
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

    pub fn handle(&mut self, datagram: &[u8], now: SystemTime) -> Outcome {
        let header = match envelope::parse(datagram) {
            Ok((h, _)) => h,
            Err(e) => return self.reject(Reject::from_wire(e)),
        };
        let tap_id = header.tap_id.to_string();
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
        // Authentic from here on: the boot and counter can be trusted.
        let tap = self.taps.entry(tap_id.clone()).or_default();
        match tap.check_boot(&header.boot) {
            BootCheck::Stale => return self.reject(Reject::StaleBoot),
            BootCheck::New => tap.start_boot(header.boot),
            BootCheck::Current => {}
        }
        let Some(boot) = tap.current.as_mut() else {
            return self.reject(Reject::MalformedEnvelope);
        };
        if !boot.accept_counter(header.counter) {
            return self.reject(Reject::Replayed);
        }
        tap.last_seen = Some(now);
        match header.kind {
            Kind::Batch => self.batch(&tap_id, &header, &payload, key.as_ref()),
            Kind::Health => match messages::decode::<Health>(&payload) {
                Ok(h) => {
                    if let Some(t) = self.taps.get_mut(&tap_id) {
                        t.health = Some(h);
                    }
                    Outcome::Health { tap: tap_id }
                }
                Err(_) => self.reject(Reject::MalformedContent),
            },
            Kind::Ack => self.reject(Reject::UnexpectedKind),
        }
    }

    fn batch(
        &mut self,
        tap_id: &str,
        env: &Header<'_>,
        payload: &[u8],
        key: Option<&Key>,
    ) -> Outcome {
        let decoded = BatchReader::new(payload).and_then(|reader| {
            let header = reader.header;
            let records = reader.collect::<Result<Vec<_>, _>>()?;
            Ok((header, records))
        });
        let (header, records) = match decoded {
            Ok((h, r)) if h.tap_id == tap_id => (h, r),
            _ => return self.reject(Reject::MalformedContent),
        };
        let Some(tap) = self.taps.get_mut(tap_id) else {
            return self.reject(Reject::MalformedContent);
        };
        let Some(boot) = tap.current.as_mut() else {
            return self.reject(Reject::MalformedContent);
        };
        let fresh = boot.receive(header.seq);
        if fresh {
            tap.batches += 1;
            tap.records += records.len() as u64;
            tap.tap_dropped = tap.tap_dropped.max(header.dropped_batches);
            if header.flags & FLAG_FINAL != 0 {
                tap.final_seq = Some(header.seq);
            }
        } else {
            tap.duplicates += 1;
        }
        let ack = Ack {
            tap_boot: env.boot,
            seqs: vec![header.seq],
        };
        let ack = self.seal_ack(tap_id, &ack, key);
        Outcome::Batch {
            tap: tap_id.to_string(),
            records: if fresh { records } else { Vec::new() },
            duplicate: !fresh,
            ack,
        }
    }

    fn seal_ack(&mut self, tap_id: &str, ack: &Ack, key: Option<&Key>) -> Vec<u8> {
        let header = Header {
            sealed: key.is_some(),
            kind: Kind::Ack,
            tap_id,
            boot: self.boot,
            counter: self.counter,
        };
        self.counter += 1;
        messages::encode(ack)
            .and_then(|payload| envelope::seal(&header, key, &payload))
            .unwrap_or_default()
    }

    /// Whether a tap has finished: its final batch (the end of a replay or
    /// a shutdown) and every batch before it arrived.
    pub fn any_finished(&self) -> bool {
        self.taps.values().any(TapState::finished)
    }
}
