//! Remembers the ports of first IP fragments so that later fragments (which
//! carry no transport header) join the same flow.
//!
//! A direct-mapped cache of fixed size: a collision replaces the older entry,
//! and an entry is trusted for `MAX_AGE_US` only (IP ids wrap). A later
//! fragment that finds nothing is counted by the engine.

use alloc::vec::Vec;
use core::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::decode::Packet;

/// How long a first fragment's ports are remembered (the reassembly
/// timeout of Linux and most stacks).
const MAX_AGE_US: u64 = 30_000_000;

#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct FragKey {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    vlans: u32,
    proto: u8,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    key: FragKey,
    ports: (u16, u16),
    seen_us: u64,
    valid: bool,
}

pub struct FragmentCache {
    entries: Vec<Entry>,
    hasher: FixedState,
}

impl FragmentCache {
    /// `slots` is rounded up to a power of two (at least 1).
    pub fn new(slots: usize, seed: u64) -> Self {
        let slots = slots.max(1).next_power_of_two();
        let mut entries = Vec::with_capacity(slots);
        entries.resize(slots, Entry::default());
        FragmentCache {
            entries,
            hasher: FixedState::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    fn key(pkt: &Packet<'_>, id: u32) -> FragKey {
        FragKey {
            src: pkt.src_ip,
            dst: pkt.dst_ip,
            id,
            vlans: (u32::from(pkt.vlan) << 16) | u32::from(pkt.inner_vlan),
            proto: pkt.proto,
        }
    }

    fn slot(&self, key: &FragKey) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.entries.len() - 1)
    }

    /// Remembers a first fragment's ports.
    pub fn remember(&mut self, pkt: &Packet<'_>, id: u32, now_us: u64) {
        let key = Self::key(pkt, id);
        let slot = self.slot(&key);
        self.entries[slot] = Entry {
            key,
            ports: (pkt.src_port, pkt.dst_port),
            seen_us: now_us,
            valid: true,
        };
    }

    /// The ports of a later fragment's datagram, if its first was seen.
    pub fn ports(&self, pkt: &Packet<'_>, id: u32, now_us: u64) -> Option<(u16, u16)> {
        let key = Self::key(pkt, id);
        let e = &self.entries[self.slot(&key)];
        (e.valid && e.key == key && now_us.saturating_sub(e.seen_us) <= MAX_AGE_US)
            .then_some(e.ports)
    }
}
