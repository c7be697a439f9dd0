//! What the tap learns about who is behind a flow, in fixed memory taken at
//! start-up (no allocation per packet, bounded whatever the traffic):
//!
//! - [`NameCache`]: address -> the name a client looked up (DNS answers),
//!   until the record's TTL runs out; 4-way set-associative, the entry
//!   closest to expiry makes room, so a flood of unique names only churns it.
//! - [`Leases`]: IPv4 address -> MAC and hostname (DHCP), the same way.
//! - [`AppSlab`]: per-flow TLS server name, ALPN and HTTP host/request from
//!   the client's first bytes, for a bounded number of flows; a ClientHello
//!   split over segments is joined in one of a few reassembly buffers.

use alloc::vec;
use alloc::vec::Vec;

use pitap_wire::Text;

use crate::apps::dns::Name;

const WAYS: usize = 4;

/// Entries in sets of `WAYS`, the set chosen by the address's hash: what the
/// name cache and the leases are both stored in.
struct Ways<T> {
    entries: Vec<T>,
    sets: usize,
}

impl<T: Clone + Default> Ways<T> {
    /// Room for `capacity` entries (rounded up to a power of two, at least
    /// `WAYS`).
    fn new(capacity: usize) -> Ways<T> {
        let sets = (capacity.max(WAYS) / WAYS).next_power_of_two();
        Ways {
            entries: vec![T::default(); sets * WAYS],
            sets,
        }
    }

    fn range(&self, addr: &[u8; 16]) -> core::ops::Range<usize> {
        let s = addr_hash(addr) & (self.sets - 1);
        s * WAYS..(s + 1) * WAYS
    }

    fn set(&self, addr: &[u8; 16]) -> &[T] {
        &self.entries[self.range(addr)]
    }

    fn set_mut(&mut self, addr: &[u8; 16]) -> &mut [T] {
        let range = self.range(addr);
        &mut self.entries[range]
    }
}

/// A short hash of an address: its two halves mixed by multiplication
/// (every record looks its addresses up, so this is on the hot path).
fn addr_hash(addr: &[u8; 16]) -> usize {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&addr[..8]);
    hi.copy_from_slice(&addr[8..]);
    let h = (u64::from_ne_bytes(lo) ^ u64::from_ne_bytes(hi).rotate_left(29))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h ^ (h >> 32)) as usize
}

/// The way of a set an entry goes to: the one that holds `key` already,
/// else an expired one, else the one closest to expiry (a flood of unique
/// keys only churns the set).
fn choose_way<T>(
    set: &[T],
    holds_key: impl Fn(&T) -> bool,
    expires_us: impl Fn(&T) -> u64,
    now_us: u64,
) -> usize {
    set.iter()
        .position(|e| holds_key(e) && expires_us(e) != 0)
        .or_else(|| set.iter().position(|e| expires_us(e) < now_us))
        .unwrap_or_else(|| {
            set.iter()
                .enumerate()
                .min_by_key(|(_, e)| expires_us(e))
                .map_or(0, |(i, _)| i)
        })
}

/// Names are kept as long as a record carries them (128 bytes), which
/// halves the cache's memory against whole DNS names.
#[derive(Clone, Copy, Default)]
struct NameEntry {
    addr: [u8; 16],
    expires_us: u64,
    name: Text<128>,
}

/// DNS-learned names of addresses.
pub struct NameCache {
    ways: Ways<NameEntry>,
    pub inserted: u64,
    pub replaced: u64,
}

impl NameCache {
    /// Room for `capacity` names (rounded up to a power of two, at least 4).
    pub fn new(capacity: usize) -> NameCache {
        NameCache {
            ways: Ways::new(capacity),
            inserted: 0,
            replaced: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.ways.entries.len()
    }

    /// Remembers that `addr` is `name` for `ttl_s` seconds from `now_us`
    /// (at least 60 s: clients keep using an address past short TTLs).
    pub fn insert(&mut self, addr: [u8; 16], name: &Name, ttl_s: u32, now_us: u64) {
        let expires_us = now_us.saturating_add(u64::from(ttl_s.max(60)) * 1_000_000);
        let set = self.ways.set_mut(&addr);
        let way = choose_way(set, |e| e.addr == addr, |e| e.expires_us, now_us);
        let replacing = set[way].expires_us >= now_us && set[way].addr != addr;
        set[way] = NameEntry {
            addr,
            expires_us,
            name: Text::from_bytes(name.as_bytes()),
        };
        self.inserted += 1;
        self.replaced += u64::from(replacing);
    }

    pub fn lookup(&self, addr: &[u8; 16], now_us: u64) -> Option<&Text<128>> {
        if self.inserted == 0 {
            return None; // no DNS seen yet: the common case on some links
        }
        self.ways
            .set(addr)
            .iter()
            .find(|e| e.addr == *addr && e.expires_us >= now_us && e.expires_us != 0)
            .map(|e| &e.name)
    }

    /// Live entries (tests, status).
    pub fn len(&self, now_us: u64) -> usize {
        self.ways
            .entries
            .iter()
            .filter(|e| e.expires_us >= now_us && e.expires_us != 0)
            .count()
    }

    pub fn is_empty(&self, now_us: u64) -> bool {
        self.len(now_us) == 0
    }
}

#[derive(Clone, Copy, Default)]
struct Lease {
    /// IPv4 in the first four bytes, as flow keys hold it.
    addr: [u8; 16],
    mac: [u8; 6],
    hostname: Text<64>,
    expires_us: u64,
}

/// DHCP leases (v4 and v6): who holds an address, and what it calls itself.
pub struct Leases {
    ways: Ways<Lease>,
    /// Updates so far (lookups skip the table while there were none).
    updates: u64,
}

/// Leases are kept this long after the last DHCP message about them.
const LEASE_KEEP_US: u64 = 24 * 3600 * 1_000_000;

impl Leases {
    pub fn new(capacity: usize) -> Leases {
        Leases {
            ways: Ways::new(capacity),
            updates: 0,
        }
    }

    /// Records that `mac` holds `addr`; a hostname, when given, replaces
    /// the one known (a later message without one keeps it).
    pub fn update(&mut self, addr: [u8; 16], mac: [u8; 6], hostname: Option<&[u8]>, now_us: u64) {
        if addr == [0; 16] {
            return;
        }
        self.updates += 1;
        // A hostname the same device sent for another address carries over.
        let known = hostname.map(Text::from_bytes).or_else(|| {
            self.ways
                .entries
                .iter()
                .find(|l| l.mac == mac && !l.hostname.is_empty() && l.expires_us >= now_us)
                .map(|l| l.hostname)
        });
        let set = self.ways.set_mut(&addr);
        let way = choose_way(set, |l| l.addr == addr, |l| l.expires_us, now_us);
        let keep = if set[way].addr == addr && set[way].mac == mac {
            set[way].hostname
        } else {
            Text::default()
        };
        set[way] = Lease {
            addr,
            mac,
            hostname: known.unwrap_or(keep),
            expires_us: now_us.saturating_add(LEASE_KEEP_US),
        };
    }

    /// Remembers a hostname a client announced (DHCP REQUEST/DISCOVER)
    /// before its address is acknowledged.
    pub fn announce(&mut self, mac: [u8; 6], hostname: &[u8], now_us: u64) {
        for l in self
            .ways
            .entries
            .iter_mut()
            .filter(|l| l.mac == mac && l.expires_us >= now_us)
        {
            l.hostname = Text::from_bytes(hostname);
        }
    }

    /// The hostname `mac` gave for any address it holds: for a client's
    /// own DHCP exchange, sent before it had an address.
    pub fn hostname_of(&self, mac: &[u8; 6], now_us: u64) -> Option<&Text<64>> {
        if self.updates == 0 {
            return None;
        }
        self.ways
            .entries
            .iter()
            .find(|l| l.mac == *mac && !l.hostname.is_empty() && l.expires_us >= now_us)
            .map(|l| &l.hostname)
    }

    /// (MAC, hostname) of the device holding `addr`.
    pub fn lookup(&self, addr: &[u8; 16], now_us: u64) -> Option<([u8; 6], &Text<64>)> {
        if self.updates == 0 {
            return None;
        }
        self.ways
            .set(addr)
            .iter()
            .find(|l| l.addr == *addr && l.expires_us >= now_us && l.expires_us != 0)
            .map(|l| (l.mac, &l.hostname))
    }
}

/// What a flow's first client bytes said.
#[derive(Clone, Copy, Default)]
pub struct AppInfo {
    pub sni: Text<128>,
    pub alpn: Text<32>,
    pub http_host: Text<128>,
    pub http_request: Text<128>,
}

/// Per-flow application info for at most `capacity` flows at once, and a
/// few buffers to join ClientHellos that span segments.
pub struct AppSlab {
    infos: Vec<AppInfo>,
    free: Vec<u32>,
    buffers: Vec<heapless::Vec<u8, REASSEMBLY>>,
    free_buffers: Vec<u16>,
    /// Flows that had something to keep but found the slab full.
    pub full: u64,
}

/// A ClientHello longer than this is not joined (real ones are < 4 KB).
pub const REASSEMBLY: usize = 4096;

impl AppSlab {
    pub fn new(capacity: usize, buffers: usize) -> AppSlab {
        AppSlab {
            infos: vec![AppInfo::default(); capacity],
            free: (0..capacity as u32).rev().collect(),
            buffers: vec![heapless::Vec::new(); buffers],
            free_buffers: (0..buffers as u16).rev().collect(),
            full: 0,
        }
    }

    /// A fresh entry; `None` when all are taken.
    pub fn take(&mut self) -> Option<u32> {
        let i = self.free.pop();
        match i {
            Some(i) => self.infos[i as usize] = AppInfo::default(),
            None => self.full += 1,
        }
        i
    }

    pub fn release(&mut self, i: u32) {
        if (i as usize) < self.infos.len() {
            self.free.push(i);
        }
    }

    pub fn get(&self, i: u32) -> Option<&AppInfo> {
        self.infos.get(i as usize)
    }

    pub fn get_mut(&mut self, i: u32) -> Option<&mut AppInfo> {
        self.infos.get_mut(i as usize)
    }

    /// Starts joining: copies `data` into a free buffer.
    pub fn start_join(&mut self, data: &[u8]) -> Option<u16> {
        if data.len() > REASSEMBLY {
            return None;
        }
        let b = self.free_buffers.pop()?;
        let buffer = &mut self.buffers[usize::from(b)];
        buffer.clear();
        // Fits: checked above.
        let _ = buffer.extend_from_slice(data);
        Some(b)
    }

    /// Appends `data`; returns the joined bytes, or `None` (buffer freed)
    /// when they no longer fit.
    pub fn join(&mut self, b: u16, data: &[u8]) -> Option<&[u8]> {
        let buffer = self.buffers.get_mut(usize::from(b))?;
        if buffer.extend_from_slice(data).is_err() {
            self.end_join(b);
            return None;
        }
        Some(&self.buffers[usize::from(b)])
    }

    pub fn end_join(&mut self, b: u16) {
        if usize::from(b) < self.buffers.len() && !self.free_buffers.contains(&b) {
            self.free_buffers.push(b);
        }
    }
}
