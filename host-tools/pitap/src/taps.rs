//! What the collector knows of each tap: its key, its boots, which batches
//! of the current boot arrived, its last health report.

use std::collections::{BTreeSet, VecDeque};
use std::time::SystemTime;

use pitap_wire::envelope::Key;
use pitap_wire::messages::Health;
use pitap_wire::replay::ReplayWindow;
use serde::{Deserialize, Serialize};

/// Boots remembered besides the current one: a datagram from one of them is
/// a replay of the past, not a reboot.
const OLD_BOOTS: usize = 32;
/// Out-of-order batches remembered above the contiguous prefix.
const MAX_AHEAD: usize = 1 << 16;

/// The sequence state of one boot of a tap.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BootState {
    #[serde(with = "hex16")]
    pub boot: [u8; 16],
    /// Every seq below this arrived (or the tap said it dropped it).
    pub next_seq: u64,
    /// Seqs at or above `next_seq` that arrived out of order.
    pub ahead: BTreeSet<u64>,
    pub highest: Option<u64>,
    /// The highest message counter accepted, for the replay window after a
    /// restart of the collector.
    pub top_counter: Option<u64>,
    #[serde(skip)]
    window: ReplayWindow,
}

impl BootState {
    fn new(boot: [u8; 16]) -> Self {
        BootState {
            boot,
            ..BootState::default()
        }
    }

    /// Rebuilds the replay window after loading: every counter up to the
    /// highest accepted one counts as seen.
    pub fn restore_window(&mut self) {
        self.window = ReplayWindow::default();
        if let Some(top) = self.top_counter {
            for c in top.saturating_sub(pitap_wire::replay::WINDOW - 1)..=top {
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

    /// Records a batch; false if it arrived before.
    pub fn receive(&mut self, seq: u64) -> bool {
        if seq < self.next_seq || self.ahead.contains(&seq) {
            return false;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        if seq == self.next_seq {
            self.next_seq += 1;
            while self.ahead.remove(&self.next_seq) {
                self.next_seq += 1;
            }
        } else {
            self.ahead.insert(seq);
            if self.ahead.len() > MAX_AHEAD {
                // A gap that old will not be filled: give it up.
                if let Some(first) = self.ahead.pop_first() {
                    self.next_seq = first + 1;
                    while self.ahead.remove(&self.next_seq) {
                        self.next_seq += 1;
                    }
                }
            }
        }
        true
    }

    /// Batches below the highest seen that have not arrived (yet).
    pub fn missing(&self) -> u64 {
        match self.highest {
            Some(h) if h >= self.next_seq => h + 1 - self.next_seq - self.ahead.len() as u64,
            _ => 0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TapState {
    #[serde(skip)]
    pub key: Option<Key>,
    pub current: Option<BootState>,
    #[serde(with = "hex16_list")]
    pub old_boots: VecDeque<[u8; 16]>,
    pub batches: u64,
    pub records: u64,
    pub duplicates: u64,
    pub reboots: u64,
    /// Batches the tap's current boot dropped unacknowledged (its header).
    pub tap_dropped: u64,
    /// Batches lost in earlier boots (missing when the tap rebooted).
    pub lost_before_reboot: u64,
    #[serde(skip)]
    pub last_seen: Option<SystemTime>,
    #[serde(skip)]
    pub health: Option<Health>,
    /// The seq of the current boot's final batch, once it arrived.
    #[serde(skip)]
    pub final_seq: Option<u64>,
}

/// Where a datagram's boot stands.
#[derive(Debug, PartialEq, Eq)]
pub enum BootCheck {
    Current,
    /// Never seen: the tap (re)started.
    New,
    /// An earlier boot: a replay of the past.
    Stale,
}

impl TapState {
    pub fn check_boot(&self, boot: &[u8; 16]) -> BootCheck {
        match &self.current {
            Some(c) if c.boot == *boot => BootCheck::Current,
            _ if self.old_boots.contains(boot) => BootCheck::Stale,
            _ => BootCheck::New,
        }
    }

    /// Starts tracking a new boot (after the datagram authenticated).
    pub fn start_boot(&mut self, boot: [u8; 16]) {
        if let Some(old) = self.current.take() {
            self.reboots += 1;
            self.lost_before_reboot += old.missing();
            self.old_boots.push_back(old.boot);
            if self.old_boots.len() > OLD_BOOTS {
                self.old_boots.pop_front();
            }
        }
        self.tap_dropped = 0;
        self.final_seq = None;
        self.current = Some(BootState::new(boot));
    }

    /// The tap said goodbye and every batch up to its last one is here.
    pub fn finished(&self) -> bool {
        match (&self.current, self.final_seq) {
            (Some(b), Some(last)) => b.next_seq > last,
            _ => false,
        }
    }
}

/// 16-byte values as hex strings in the state file.
mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn to_hex(b: &[u8; 16]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<[u8; 16]> {
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }

    pub fn serialize<S: Serializer>(b: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
    }
}

mod hex16_list {
    use std::collections::VecDeque;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &VecDeque<[u8; 16]>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(super::hex16::to_hex))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VecDeque<[u8; 16]>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| {
                super::hex16::from_hex(s)
                    .ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_tracking_dedups_and_sees_gaps() {
        let mut b = BootState::new([1; 16]);
        assert!(b.receive(0));
        assert!(b.receive(2));
        assert!(!b.receive(2));
        assert!(!b.receive(0));
        assert_eq!(b.missing(), 1);
        assert!(b.receive(1));
        assert_eq!((b.next_seq, b.missing()), (3, 0));
        assert!(b.receive(10));
        assert_eq!(b.missing(), 7);
    }

    #[test]
    fn boots_new_current_stale() {
        let mut t = TapState::default();
        assert_eq!(t.check_boot(&[1; 16]), BootCheck::New);
        t.start_boot([1; 16]);
        assert_eq!(t.check_boot(&[1; 16]), BootCheck::Current);
        t.start_boot([2; 16]);
        assert_eq!(t.reboots, 1);
        assert_eq!(t.check_boot(&[1; 16]), BootCheck::Stale);
        assert_eq!(t.check_boot(&[3; 16]), BootCheck::New);
    }

    #[test]
    fn restored_window_refuses_old_counters() {
        let mut b = BootState::new([1; 16]);
        for c in 0..100 {
            assert!(b.accept_counter(c));
        }
        let text = serde_json::to_string(&b).unwrap();
        let mut back: BootState = serde_json::from_str(&text).unwrap();
        back.restore_window();
        assert!(!back.accept_counter(99));
        assert!(!back.accept_counter(50));
        assert!(back.accept_counter(100));
    }
}
