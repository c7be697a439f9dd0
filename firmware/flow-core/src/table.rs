//! The fixed-size flow table: flow slots allocated once at start-up, a hash
//! index over them, and two recency lists (open flows, and TCP flows that
//! ended and linger for their last packets) for timeouts and eviction.
//!
//! The index ([`crate::index::FlowIndex`]) maps a key's hash to its slot in
//! one cache line per lookup; the table allocates nothing after `new`.

use alloc::vec::Vec;
use core::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::flow::Flow;
use crate::index::FlowIndex;
use crate::key::FlowKey;

const NIL: u32 = u32::MAX;

/// The recency lists a flow can be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    /// Open flows whose responder has answered, expired by the idle timeout.
    Open = 0,
    /// TCP flows closed by FIN/FIN or RST, expired after a short linger.
    Ended = 1,
    /// Open flows whose responder never sent a packet (a lone SYN, a scan
    /// probe, one-way UDP): idle timeout too, and evicted first when the
    /// table is full, so a flood of spoofed SYNs cannot push out
    /// established conversations.
    Embryonic = 2,
}

#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    /// Packet time of the last relink, milliseconds (wrapping).
    at_ms: u32,
    list: u8,
}

#[derive(Clone, Copy)]
struct Ends {
    /// Most recently touched.
    head: u32,
    /// Least recently touched.
    tail: u32,
}

pub struct FlowTable {
    flows: Vec<Flow>,
    links: Vec<Link>,
    index: FlowIndex,
    hasher: FixedState,
    free: Vec<u32>,
    lists: [Ends; 3],
}

impl FlowTable {
    /// Allocates a table for `capacity` flows (at least 1). `seed` keys the
    /// hash so that nobody outside can aim packets at one bucket.
    pub fn new(capacity: usize, seed: u64) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        let mut flows = Vec::with_capacity(capacity);
        flows.resize(capacity, Flow::default());
        let mut links = Vec::with_capacity(capacity);
        links.resize(
            capacity,
            Link {
                prev: NIL,
                next: NIL,
                at_ms: 0,
                list: 0,
            },
        );
        // Slots are handed out lowest first, which keeps replays deterministic.
        let free = (0..capacity as u32).rev().collect();
        FlowTable {
            flows,
            links,
            index: FlowIndex::new(capacity),
            hasher: FixedState::with_seed(seed),
            free,
            lists: [Ends {
                head: NIL,
                tail: NIL,
            }; 3],
        }
    }

    pub fn capacity(&self) -> usize {
        self.flows.len()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    pub fn find(&self, hash: u64, key: &FlowKey) -> Option<u32> {
        let flows = &self.flows;
        self.index.find(hash, |i| flows[i as usize].key == *key)
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Flow {
        &self.flows[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut Flow {
        &mut self.flows[slot as usize]
    }

    /// Puts a new flow at the head of `list`; `None` when the table is full.
    #[inline]
    pub fn insert(&mut self, hash: u64, flow: Flow, list: List) -> Option<u32> {
        let slot = self.free.pop()?;
        let at_ms = (flow.last_us / 1000) as u32;
        self.flows[slot as usize] = flow;
        self.index.insert(hash, slot);
        self.link_head(slot, list);
        self.links[slot as usize].at_ms = at_ms;
        Some(slot)
    }

    /// Takes a flow out of the table.
    pub fn remove(&mut self, slot: u32) -> Flow {
        let flow = self.flows[slot as usize];
        let hash = self.hash(&flow.key);
        self.index.remove(hash, slot);
        self.unlink(slot);
        self.free.push(slot);
        flow
    }

    /// Marks a flow most recently used on `list`.
    pub fn touch(&mut self, slot: u32, list: List) {
        self.unlink(slot);
        self.link_head(slot, list);
    }

    /// Marks a flow used at `now_us` on `list`, moving it only when its
    /// list changes or its place is a millisecond old or more: a flow that
    /// sends many packets a millisecond relinks once. The lists are then
    /// in order to within a millisecond, so a timeout fires at most that
    /// much later and eviction picks among flows a millisecond apart.
    #[inline]
    pub fn touch_at(&mut self, slot: u32, list: List, now_us: u64) {
        let now_ms = (now_us / 1000) as u32;
        let link = self.links[slot as usize];
        if link.list == list as u8 && link.at_ms == now_ms {
            return;
        }
        if self.lists[list as usize].head != slot || link.list != list as u8 {
            self.touch(slot, list);
        }
        self.links[slot as usize].at_ms = now_ms;
    }

    /// The least recently touched flow on `list`.
    pub fn oldest(&self, list: List) -> Option<u32> {
        let tail = self.lists[list as usize].tail;
        (tail != NIL).then_some(tail)
    }

    #[inline]
    fn link_head(&mut self, slot: u32, list: List) {
        let ends = &mut self.lists[list as usize];
        let old_head = ends.head;
        let at_ms = self.links[slot as usize].at_ms;
        self.links[slot as usize] = Link {
            prev: NIL,
            next: old_head,
            at_ms,
            list: list as u8,
        };
        if old_head != NIL {
            self.links[old_head as usize].prev = slot;
        } else {
            ends.tail = slot;
        }
        ends.head = slot;
    }

    #[inline]
    fn unlink(&mut self, slot: u32) {
        let Link {
            prev, next, list, ..
        } = self.links[slot as usize];
        let ends = &mut self.lists[usize::from(list)];
        if prev != NIL {
            self.links[prev as usize].next = next;
        } else if ends.head == slot {
            ends.head = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        } else if ends.tail == slot {
            ends.tail = prev;
        }
        self.links[slot as usize].prev = NIL;
        self.links[slot as usize].next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> FlowKey {
        FlowKey {
            ports: [n, 80],
            proto: 6,
            ..FlowKey::default()
        }
    }

    fn flow(n: u16) -> Flow {
        let mut f = Flow::default();
        f.key = key(n);
        f
    }

    #[test]
    fn insert_find_remove_and_recency() {
        let mut t = FlowTable::new(3, 7);
        let slots: Vec<u32> = (0..3)
            .map(|n| t.insert(t.hash(&key(n)), flow(n), List::Open).unwrap())
            .collect();
        assert!(t.is_full());
        assert_eq!(t.insert(t.hash(&key(9)), flow(9), List::Open), None);
        assert_eq!(t.oldest(List::Open), Some(slots[0]));
        t.touch(slots[0], List::Open);
        assert_eq!(t.oldest(List::Open), Some(slots[1]));
        t.touch(slots[1], List::Ended);
        assert_eq!(t.oldest(List::Open), Some(slots[2]));
        assert_eq!(t.oldest(List::Ended), Some(slots[1]));
        let removed = t.remove(slots[2]);
        assert_eq!(removed.key, key(2));
        assert_eq!(t.find(t.hash(&key(2)), &key(2)), None);
        assert_eq!(t.find(t.hash(&key(0)), &key(0)), Some(slots[0]));
        assert_eq!(t.oldest(List::Open), Some(slots[0]));
        t.remove(slots[0]);
        assert_eq!(t.oldest(List::Open), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn touches_within_a_millisecond_keep_the_place() {
        let mut t = FlowTable::new(4, 7);
        let slots: Vec<u32> = (0..3)
            .map(|n| t.insert(t.hash(&key(n)), flow(n), List::Open).unwrap())
            .collect();
        // Slot 0 was linked at 0 ms (its last_us): touches in that
        // millisecond leave it oldest.
        t.touch_at(slots[0], List::Open, 999);
        assert_eq!(t.oldest(List::Open), Some(slots[0]));
        // A millisecond on it moves.
        t.touch_at(slots[0], List::Open, 1_000);
        assert_eq!(t.oldest(List::Open), Some(slots[1]));
        // A list change moves at once, whatever the time.
        t.touch_at(slots[1], List::Ended, 1_000);
        assert_eq!(t.oldest(List::Ended), Some(slots[1]));
        assert_eq!(t.oldest(List::Open), Some(slots[2]));
        // The head touched again stays the head, and the list stays whole.
        t.touch_at(slots[0], List::Open, 5_000);
        t.touch_at(slots[2], List::Open, 5_000);
        assert_eq!(t.oldest(List::Open), Some(slots[0]));
        t.remove(slots[0]);
        assert_eq!(t.oldest(List::Open), Some(slots[2]));
        t.remove(slots[2]);
        assert_eq!(t.oldest(List::Open), None);
    }

    #[test]
    fn churn_keeps_index_and_lists_consistent() {
        let mut t = FlowTable::new(64, 1);
        let mut live: Vec<(u16, u32)> = Vec::new();
        for n in 0..10_000u16 {
            if t.is_full() {
                let oldest = t.oldest(List::Open).unwrap();
                let gone = t.remove(oldest);
                live.retain(|(k, _)| key(*k) != gone.key);
            }
            let slot = t.insert(t.hash(&key(n)), flow(n), List::Open).unwrap();
            live.push((n, slot));
        }
        assert_eq!(t.len(), 64);
        for (n, slot) in live {
            assert_eq!(t.find(t.hash(&key(n)), &key(n)), Some(slot));
        }
    }
}
