//! What the collector knows of each tap: its key, the boot it takes data
//! from and that boot's challenge, which batches of it arrived, its last
//! health report.
//!
//! A boot is taken only with a challenge: the collector derives the
//! challenge for a boot from a secret drawn at its own start and the tap's
//! generation (its count of boots taken), and a tap's datagrams carry the
//! challenge of their boot. Switching to a new boot starts a new
//! generation, so every challenge given out before is void: datagrams of
//! any earlier boot, replayed now, and datagrams of any boot replayed into
//! a collector that lost its state (a new secret) are refused, with no list
//! of old boots to outgrow.

use std::collections::{BTreeSet, VecDeque};
use std::time::SystemTime;

use pitap_wire::envelope::{derive_challenge, Challenge, Key};
use pitap_wire::messages::Health;
use pitap_wire::replay_window::ReplayWindow;
use serde::{Deserialize, Serialize};

/// Out-of-order batches remembered above the contiguous prefix.
const MAX_AHEAD: usize = 1 << 16;
/// Seqs counted lost remembered, so one that arrives late after all is
/// taken (and no longer counted lost).
const LOST_REMEMBERED: usize = 4096;
/// Ranges of stored batches a reply lists above its cumulative point.
pub const MAX_ACK_RANGES: usize = 64;

/// The sequence state of one boot of a tap.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BootState {
    #[serde(with = "hex")]
    pub boot: [u8; 16],
    /// The challenge this boot's datagrams carry.
    #[serde(with = "hex")]
    pub challenge: Challenge,
    /// Every seq below this arrived, or the tap gave it up.
    pub next_seq: u64,
    /// Seqs at or above `next_seq` that arrived out of order.
    pub ahead: BTreeSet<u64>,
    pub highest: Option<u64>,
    /// Batches the tap gave up (its buffer was full) that never arrived.
    pub lost: u64,
    pub lost_recent: VecDeque<u64>,
    /// The highest message counter accepted, for the replay window after a
    /// restart of the collector.
    pub top_counter: Option<u64>,
    #[serde(skip)]
    window: ReplayWindow,
}

impl BootState {
    fn new(boot: [u8; 16], challenge: Challenge) -> Self {
        BootState {
            boot,
            challenge,
            ..BootState::default()
        }
    }

    /// Rebuilds the replay window after loading: every counter up to the
    /// highest accepted one counts as seen.
    pub fn restore_window(&mut self) {
        self.window = ReplayWindow::default();
        if let Some(top) = self.top_counter {
            for c in top.saturating_sub(pitap_wire::replay_window::WINDOW - 1)..=top {
                self.window.accept(c);
            }
        }
    }

    pub fn accept_counter(&mut self, counter: u64) -> bool {
        let fresh = self.window.accept(counter);
        if fresh {
            self.top_counter = Some(self.top_counter.map_or(counter, |t| t.max(counter)));
        }
        fresh
    }

    fn advance(&mut self) {
        while self.ahead.remove(&self.next_seq) {
            self.next_seq += 1;
        }
    }

    /// The tap holds nothing below `low_seq` any more: what of it never
    /// arrived is lost. The first batch of a boot this collector sees sets
    /// where it starts counting (a collector that lost its state does not
    /// know what an earlier run stored).
    fn gave_up_below(&mut self, low_seq: u64) {
        if self.highest.is_none() {
            self.next_seq = self.next_seq.max(low_seq);
            return;
        }
        if low_seq <= self.next_seq {
            return;
        }
        let end = low_seq.min(self.next_seq + MAX_AHEAD as u64);
        for s in self.next_seq..end {
            if !self.ahead.remove(&s) {
                self.lost += 1;
                if self.lost_recent.len() >= LOST_REMEMBERED {
                    self.lost_recent.pop_front();
                }
                self.lost_recent.push_back(s);
            }
        }
        self.next_seq = low_seq;
        self.advance();
    }

    /// Records batch `seq` (whose header says the tap holds nothing below
    /// `low_seq`); false if it arrived before.
    pub fn receive(&mut self, seq: u64, low_seq: u64) -> bool {
        self.gave_up_below(low_seq.min(seq));
        if seq < self.next_seq {
            // Counted lost, but here after all.
            if let Some(i) = self.lost_recent.iter().position(|&s| s == seq) {
                self.lost_recent.remove(i);
                self.lost -= 1;
                return true;
            }
            return false;
        }
        if self.ahead.contains(&seq) {
            return false;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        if seq == self.next_seq {
            self.next_seq += 1;
            self.advance();
        } else {
            self.ahead.insert(seq);
            if self.ahead.len() > MAX_AHEAD {
                // A gap that old will not be filled: give it up.
                if let Some(first) = self.ahead.pop_first() {
                    self.lost += first - self.next_seq;
                    self.next_seq = first + 1;
                    self.advance();
                }
            }
        }
        true
    }

    /// Batches below the highest seen that have not arrived yet (the tap
    /// still holds them: they may come).
    pub fn missing(&self) -> u64 {
        match self.highest {
            Some(h) if h >= self.next_seq => h + 1 - self.next_seq - self.ahead.len() as u64,
            _ => 0,
        }
    }

    /// The stored batches above `next_seq`, as ranges `[start, end)`,
    /// lowest first, at most `MAX_ACK_RANGES`.
    pub fn ack_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &s in &self.ahead {
            if let Some((_, end)) = ranges.last_mut() {
                if *end == s {
                    *end += 1;
                    continue;
                }
            }
            if ranges.len() == MAX_ACK_RANGES {
                break;
            }
            ranges.push((s, s + 1));
        }
        ranges
    }
}

/// Whether a datagram's boot and challenge let it in.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// The boot the collector takes data from, with its challenge.
    Current,
    /// A boot not taken yet, with the challenge this collector offers it
    /// now: the tap (re)started, or this collector lost what it knew.
    NewBoot(Challenge),
    /// Any other challenge: from a past boot or a past collector.
    Stale,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TapState {
    #[serde(skip)]
    pub key: Option<Key>,
    /// Drawn at each collector start: challenges of an earlier run are void.
    #[serde(skip)]
    pub secret: Option<Key>,
    pub current: Option<BootState>,
    /// Boots taken so far; part of every challenge.
    pub generation: u64,
    pub batches: u64,
    pub records: u64,
    pub duplicates: u64,
    pub reboots: u64,
    pub hellos: u64,
    /// Batches lost in earlier boots (missing or lost when the tap rebooted).
    pub lost_before_reboot: u64,
    #[serde(skip)]
    pub last_seen: Option<SystemTime>,
    #[serde(skip)]
    pub health: Option<Health>,
    /// The seq of the current boot's final batch, once it arrived.
    #[serde(skip)]
    pub final_seq: Option<u64>,
    /// The current boot said goodbye: everything it sent is acknowledged.
    #[serde(skip)]
    pub said_goodbye: bool,
}

impl TapState {
    /// The challenge this collector gives `boot` now.
    pub fn challenge_for(&self, boot: &[u8; 16]) -> Challenge {
        match &self.current {
            Some(c) if c.boot == *boot => c.challenge,
            _ => match &self.secret {
                Some(secret) => derive_challenge(secret, boot, self.generation),
                // Without a secret no new boot can be taken (never happens:
                // the collector gives every tap one).
                None => [0xff; 8],
            },
        }
    }

    pub fn admit(&self, boot: &[u8; 16], challenge: &Challenge) -> Admission {
        match &self.current {
            Some(c) if c.boot == *boot && c.challenge == *challenge => Admission::Current,
            _ if self.current.as_ref().is_none_or(|c| c.boot != *boot)
                && self.secret.is_some()
                && self.challenge_for(boot) == *challenge =>
            {
                Admission::NewBoot(*challenge)
            }
            _ => Admission::Stale,
        }
    }

    /// Starts taking data from a new boot (after its datagram opened and
    /// carried the challenge offered to it).
    pub fn start_boot(&mut self, boot: [u8; 16], challenge: Challenge) {
        if let Some(old) = self.current.take() {
            self.reboots += 1;
            self.lost_before_reboot += old.missing() + old.lost;
        }
        self.generation += 1;
        self.final_seq = None;
        self.said_goodbye = false;
        self.current = Some(BootState::new(boot, challenge));
    }

    /// The tap said goodbye and every batch up to its last one is here.
    pub fn finished(&self) -> bool {
        match (&self.current, self.final_seq) {
            (Some(b), Some(last)) => b.next_seq > last,
            _ => false,
        }
    }
}

/// Byte arrays as hex strings in the state file.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("expected {} hex digits", 2 * N));
        if s.len() != 2 * N {
            return Err(bad());
        }
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = s
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_tracking_dedups_and_sees_gaps() {
        let mut b = BootState::new([1; 16], [0; 8]);
        assert!(b.receive(0, 0));
        assert!(b.receive(2, 0));
        assert!(!b.receive(2, 0));
        assert!(!b.receive(0, 0));
        assert_eq!(b.missing(), 1);
        assert_eq!(b.ack_ranges(), vec![(2, 3)]);
        assert!(b.receive(1, 0));
        assert_eq!((b.next_seq, b.missing()), (3, 0));
        assert!(b.receive(10, 3));
        assert_eq!((b.missing(), b.lost), (7, 0));
        // The tap gave up 3..8: five lost; 8 and 9 may still come.
        assert!(b.receive(11, 8));
        assert_eq!((b.next_seq, b.lost, b.missing()), (8, 5, 2));
        // One "lost" batch arrives late after all: taken, no longer lost.
        assert!(b.receive(4, 8));
        assert_eq!(b.lost, 4);
        assert!(!b.receive(4, 8));
    }

    #[test]
    fn a_boot_first_seen_midway_starts_where_the_tap_holds() {
        // A collector that lost its state meets a tap at seq 500.
        let mut b = BootState::new([1; 16], [0; 8]);
        assert!(b.receive(502, 500));
        assert_eq!((b.next_seq, b.missing(), b.lost), (500, 2, 0));
    }

    fn tap() -> TapState {
        TapState {
            secret: Some(Key::from_bytes([9; 32])),
            ..TapState::default()
        }
    }

    #[test]
    fn a_boot_is_taken_only_with_the_challenge_offered_to_it() {
        let mut t = tap();
        let offer = t.challenge_for(&[1; 16]);
        assert_eq!(
            t.admit(&[1; 16], &[0; 8]),
            Admission::Stale,
            "a hello's zeros"
        );
        assert_eq!(t.admit(&[1; 16], &offer), Admission::NewBoot(offer));
        t.start_boot([1; 16], offer);
        assert_eq!(t.admit(&[1; 16], &offer), Admission::Current);
        // The tap reboots: the new boot is offered a challenge and taken.
        let second = t.challenge_for(&[2; 16]);
        t.start_boot([2; 16], second);
        assert_eq!(t.reboots, 1);
        // The first boot's datagrams carry a challenge void since.
        assert_eq!(t.admit(&[1; 16], &offer), Admission::Stale);
        // So is everything offered before the switch, to any boot.
        assert_ne!(t.challenge_for(&[1; 16]), offer);
    }

    #[test]
    fn a_collector_without_its_state_takes_no_old_boot() {
        let mut first = tap();
        let offer = first.challenge_for(&[1; 16]);
        first.start_boot([1; 16], offer);
        let fresh = TapState {
            secret: Some(Key::from_bytes([10; 32])),
            ..TapState::default()
        };
        assert_eq!(fresh.admit(&[1; 16], &offer), Admission::Stale);
    }

    #[test]
    fn restored_window_refuses_old_counters() {
        let mut b = BootState::new([1; 16], [4; 8]);
        for c in 0..100 {
            assert!(b.accept_counter(c));
        }
        let text = serde_json::to_string(&b).unwrap();
        let mut back: BootState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.challenge, [4; 8]);
        back.restore_window();
        assert!(!back.accept_counter(99));
        assert!(!back.accept_counter(50));
        assert!(back.accept_counter(100));
    }
}
