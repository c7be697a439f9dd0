//! What the collector knows of each tap: batches, records, sequence gaps and
//! reboots, from the batch headers.

use std::collections::BTreeMap;
use std::time::SystemTime;

use pitap_wire::BatchHeader;

#[derive(Debug, Default, Clone)]
pub struct TapState {
    pub boot_id: u64,
    /// The next sequence number expected from this boot.
    pub next_seq: u64,
    pub batches: u64,
    pub records: u64,
    /// Batches missing in the sequence.
    pub lost_batches: u64,
    /// Batches seen twice (retransmissions) or out of order.
    pub duplicates: u64,
    pub reboots: u64,
    pub last_seen: Option<SystemTime>,
    pub said_final: bool,
}

/// What a batch means for its tap.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next batch, or one after a gap.
    New,
    /// Already had it (or an older one): skip its records.
    Duplicate,
}

#[derive(Default)]
pub struct Taps {
    taps: BTreeMap<String, TapState>,
}

impl Taps {
    pub fn arrive(&mut self, header: &BatchHeader<'_>, records: u64) -> Arrival {
        let tap = self.taps.entry(header.tap_id.to_string()).or_default();
        tap.last_seen = Some(SystemTime::now());
        if tap.batches > 0 && tap.boot_id != header.boot_id {
            tap.reboots += 1;
            tap.next_seq = 0;
        }
        if tap.batches == 0 || tap.boot_id != header.boot_id {
            tap.boot_id = header.boot_id;
        }
        if header.seq < tap.next_seq {
            tap.duplicates += 1;
            return Arrival::Duplicate;
        }
        tap.lost_batches += header.seq - tap.next_seq;
        tap.next_seq = header.seq + 1;
        tap.batches += 1;
        tap.records += records;
        if header.flags & pitap_wire::codec::FLAG_FINAL != 0 {
            tap.said_final = true;
        }
        Arrival::New
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &TapState)> {
        self.taps.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tap: &str, boot: u64, seq: u64) -> BatchHeader<'_> {
        BatchHeader {
            tap_id: tap,
            boot_id: boot,
            seq,
            base_ms: 0,
            flags: 0,
        }
    }

    #[test]
    fn gaps_duplicates_and_reboots_are_counted() {
        let mut taps = Taps::default();
        assert_eq!(taps.arrive(&header("a", 1, 0), 3), Arrival::New);
        assert_eq!(taps.arrive(&header("a", 1, 3), 2), Arrival::New);
        assert_eq!(taps.arrive(&header("a", 1, 3), 2), Arrival::Duplicate);
        assert_eq!(taps.arrive(&header("b", 9, 0), 1), Arrival::New);
        assert_eq!(taps.arrive(&header("a", 2, 0), 1), Arrival::New);
        let a = &taps.taps["a"];
        assert_eq!(
            (
                a.batches,
                a.records,
                a.lost_batches,
                a.duplicates,
                a.reboots
            ),
            (3, 6, 2, 1, 1)
        );
        assert_eq!(taps.taps["b"].records, 1);
    }
}
