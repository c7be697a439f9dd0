//! The flow index: an open-addressing hash table of (hash tag, slot) pairs
//! in one array of `u64`, linear probing, backward-shift deletion.
//!
//! Hand-written instead of hashbrown's `HashTable`: deletion shifts entries
//! back instead of leaving tombstones, so a full table under churn (a SYN
//! flood) never stops to rehash (hashbrown's worst replacement 1.0 ms, this
//! one's 0.12 ms in `benches/flow_index.rs` of the bench kit), and the
//! whole program is a little faster with it (README). Sized at start-up to
//! twice the flows (load at most 1/2), it never grows and never allocates
//! after `new`.

use alloc::vec;
use alloc::vec::Vec;

/// 0 marks an empty entry; a full one is `hash_low32 << 32 | (slot + 1)`.
const EMPTY: u64 = 0;

pub struct FlowIndex {
    entries: Vec<u64>,
    mask: usize,
}

#[inline]
fn tag(hash: u64) -> u32 {
    hash as u32
}

impl FlowIndex {
    /// Room for `capacity` slots at a load factor of at most one half.
    pub fn new(capacity: usize) -> FlowIndex {
        let size = (capacity.max(1) * 2).next_power_of_two();
        FlowIndex {
            entries: vec![EMPTY; size],
            mask: size - 1,
        }
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// The slot whose tag matches and for which `is_it(slot)` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut is_it: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag(hash);
        let mut i = self.home(t);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return None;
            }
            if (e >> 32) as u32 == t {
                let slot = (e as u32).wrapping_sub(1);
                if is_it(slot) {
                    return Some(slot);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Adds `slot` under `hash` (the caller knows it is not there yet).
    #[inline]
    pub fn insert(&mut self, hash: u64, slot: u32) {
        let t = tag(hash);
        let mut i = self.home(t);
        while self.entries[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = u64::from(t) << 32 | u64::from(slot + 1);
    }

    /// Removes `slot` (filed under `hash`), shifting back the entries of its
    /// probe run so that lookups never need tombstones.
    pub fn remove(&mut self, hash: u64, slot: u32) {
        let want = u64::from(tag(hash)) << 32 | u64::from(slot + 1);
        let mut i = self.home(tag(hash));
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return; // not filed: nothing to do
            }
            if e == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: move later entries of the run into the hole when
        // their home is not between the hole and them (cyclically).
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if e == EMPTY {
                break;
            }
            let home = self.home((e >> 32) as u32);
            let between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !between {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = EMPTY;
    }

    /// Entries in use (tests).
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|&&e| e != EMPTY).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_entries_survive_removals_in_any_order() {
        // A tiny index where every hash lands on few homes: long runs that
        // wrap around the end of the array.
        let mut idx = FlowIndex::new(8); // 16 entries
        let hashes: Vec<u64> = (0..8u64).map(|n| (n % 3) * 5 + 13 + (n << 40)).collect();
        for (slot, h) in hashes.iter().enumerate() {
            idx.insert(*h, slot as u32);
        }
        for order in [[3usize, 0, 7, 5, 1, 6, 2, 4], [7, 6, 5, 4, 3, 2, 1, 0]] {
            let mut idx2 = FlowIndex::new(8);
            for (slot, h) in hashes.iter().enumerate() {
                idx2.insert(*h, slot as u32);
            }
            let mut gone = Vec::new();
            for &slot in &order {
                idx2.remove(hashes[slot], slot as u32);
                gone.push(slot);
                for (s, h) in hashes.iter().enumerate() {
                    let found = idx2.find(*h, |x| x == s as u32);
                    assert_eq!(
                        found.is_some(),
                        !gone.contains(&s),
                        "slot {s} after removing {gone:?}"
                    );
                }
            }
            assert!(idx2.is_empty());
        }
        assert_eq!(idx.len(), 8);
    }
}
