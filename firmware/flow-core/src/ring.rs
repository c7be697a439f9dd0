//! The retrospective packet ring, after the Time Machine (Kornexl et al.,
//! IMC 2005): of every connection the first `cutoff` payload bytes of each
//! direction, and every packet of flows flagged for it, in one arena of a
//! fixed size, oldest out first. A directory by flow key and checkpoints by
//! time find a flow's packets, or a window's, without a scan of the arena.
//!
//! The arena holds entries back to back, each a 32-byte header and the
//! frame, 8-byte aligned, never across the arena's end (the rest of the
//! arena is padded instead). Positions are logical (they only grow): an
//! entry at `p` is still there while `p >= tail`. Each entry names the
//! previous entry of its flow, so a flow's packets are a chain walked back
//! from the directory. Nothing is allocated after `new`.

use alloc::vec;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hash, Hasher};

use pitap_wire::TapPort;

use crate::key::FlowKey;
use crate::source::Frame;

/// Sizes of the ring; memory for all of it is taken at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes of the arena (0: no ring).
    pub bytes: usize,
    /// Payload bytes kept of each direction of a connection.
    pub cutoff: u32,
    /// Flows the directory remembers (ended ones too, until their entry is
    /// needed for another).
    pub flows: usize,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            bytes: 256 << 20,
            cutoff: 32 << 10,
            flows: 65_536,
        }
    }
}

/// What the ring did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub packets_kept: u64,
    pub bytes_kept: u64,
    /// Packets past their direction's cut-off (not kept).
    pub packets_cut: u64,
    pub bytes_cut: u64,
    /// Packets the ring overwrote to make room (oldest first).
    pub packets_overwritten: u64,
    pub bytes_overwritten: u64,
    /// Directory entries taken over for another flow.
    pub flows_forgotten: u64,
    pub flows_flagged: u64,
}

const HEADER: usize = 32;
const NONE: u64 = u64::MAX;
/// `orig_len` of the padding at the arena's end.
const PAD: u32 = u32::MAX;
/// Bytes of arena between two time checkpoints.
const MARK_EVERY: u64 = 64 << 10;
/// Directory slots looked at for one key.
const PROBE: usize = 8;

#[derive(Clone, Copy, Debug, Default)]
struct DirEntry {
    key: FlowKey,
    /// The flow's latest entry (NONE: none kept yet).
    last: u64,
    /// Payload bytes kept per direction (initiator first) since the
    /// connection started.
    kept: [u32; 2],
    flagged: bool,
    used: bool,
}

/// One kept packet, borrowed from the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept<'a> {
    pub pos: u64,
    pub ts_us: u64,
    pub orig_len: u32,
    pub port: TapPort,
    /// The frame's LINKTYPE_ value (1: Ethernet).
    pub linktype: u16,
    pub from_initiator: bool,
    pub data: &'a [u8],
}

/// Which flow a fetch asks for: its protocol and both ends (either order).
/// For protocols without ports (ICMP) the ports are not compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSelector {
    pub proto: u8,
    pub ends: [([u8; 16], u16); 2],
    pub is_v6: bool,
}

impl FlowSelector {
    fn canonical(&self) -> ([[u8; 16]; 2], [u16; 2]) {
        let [a, b] = self.ends;
        let (a, b) = if (a.0, a.1) <= (b.0, b.1) {
            (a, b)
        } else {
            (b, a)
        };
        ([a.0, b.0], [a.1, b.1])
    }

    fn matches(&self, k: &FlowKey) -> bool {
        let (addrs, ports) = self.canonical();
        k.proto == self.proto
            && k.is_v6 == self.is_v6
            && k.addrs == addrs
            && (!pitap_wire::has_ports(self.proto) || k.ports == ports)
    }
}

pub struct PacketRing {
    config: RingConfig,
    arena: Vec<u8>,
    head: u64,
    tail: u64,
    dir: Vec<DirEntry>,
    hasher: foldhash::fast::FixedState,
    /// (position, time) of the first entry written in each MARK_EVERY block,
    /// by block number modulo their count.
    marks: Vec<(u64, u64)>,
    /// The block of the newest mark.
    marked_block: u64,
    stats: RingStats,
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl PacketRing {
    pub fn new(config: RingConfig) -> PacketRing {
        // Room for at least a few full frames; whole 8-byte steps.
        let bytes = align8(config.bytes.max(16 << 10));
        let flows = config.flows.max(PROBE);
        PacketRing {
            config,
            arena: vec![0; bytes],
            head: 0,
            tail: 0,
            dir: vec![DirEntry::default(); flows],
            hasher: foldhash::fast::FixedState::with_seed(0x7269_6e67),
            marks: vec![(NONE, 0); bytes / MARK_EVERY as usize + 2],
            marked_block: NONE,
            stats: RingStats::default(),
        }
    }

    pub fn stats(&self) -> &RingStats {
        &self.stats
    }

    pub fn capacity(&self) -> usize {
        self.arena.len()
    }

    /// Bytes of the arena in use now.
    pub fn used(&self) -> u64 {
        self.head - self.tail
    }

    /// The directory bucket of a flow: by protocol, addresses and (where
    /// the protocol has them) ports, so a selector finds it.
    fn bucket(&self, proto: u8, addrs: &[[u8; 16]; 2], ports: [u16; 2]) -> usize {
        let mut h = self.hasher.build_hasher();
        proto.hash(&mut h);
        addrs.hash(&mut h);
        if pitap_wire::has_ports(proto) {
            ports.hash(&mut h);
        }
        (h.finish() % self.dir.len() as u64) as usize
    }

    fn slots(&self, start: usize) -> impl Iterator<Item = usize> {
        let n = self.dir.len();
        (0..PROBE).map(move |i| (start + i) % n)
    }

    /// The directory entry of `key`, taken (over the entry whose packets are
    /// oldest) when the flow has none.
    fn entry(&mut self, key: &FlowKey) -> usize {
        let start = self.bucket(key.proto, &key.addrs, key.ports);
        let mut victim = start;
        for i in self.slots(start) {
            let e = &self.dir[i];
            if e.used && e.key == *key {
                return i;
            }
            if !e.used {
                victim = i;
                break;
            }
            if self.dir[victim].used && e.last < self.dir[victim].last {
                victim = i;
            }
        }
        if self.dir[victim].used {
            self.stats.flows_forgotten += 1;
        }
        self.dir[victim] = DirEntry {
            key: *key,
            last: NONE,
            ..DirEntry::default()
        };
        self.dir[victim].used = true;
        victim
    }

    /// Offers one packet of a flow. `new_connection`: the engine just
    /// started this flow (its cut-off counts start again).
    pub fn offer(
        &mut self,
        key: &FlowKey,
        new_connection: bool,
        from_initiator: bool,
        payload_len: u32,
        frame: &Frame<'_>,
    ) {
        let i = self.entry(key);
        let side = usize::from(!from_initiator);
        let e = &mut self.dir[i];
        if new_connection {
            e.kept = [0; 2];
        }
        if !e.flagged && e.kept[side] >= self.config.cutoff {
            self.stats.packets_cut += 1;
            self.stats.bytes_cut += u64::from(frame.orig_len);
            return;
        }
        e.kept[side] = e.kept[side].saturating_add(payload_len);
        let prev = e.last;
        if let Some(pos) = self.write(frame, from_initiator, prev) {
            self.dir[i].last = pos;
        }
    }

    /// Keeps every packet of the flows `sel` matches from now on (and the
    /// ones still kept), past the cut-off: an alert wants them.
    pub fn flag(&mut self, sel: &FlowSelector) -> usize {
        let (addrs, ports) = sel.canonical();
        let start = self.bucket(sel.proto, &addrs, ports);
        let mut n = 0;
        for i in self.slots(start) {
            let e = &mut self.dir[i];
            if e.used && sel.matches(&e.key) && !e.flagged {
                e.flagged = true;
                n += 1;
            }
        }
        self.stats.flows_flagged += n as u64;
        n
    }

    /// Drops entries from the tail until `need` more bytes fit.
    fn make_room(&mut self, need: u64) {
        let cap = self.arena.len() as u64;
        while self.head + need - self.tail > cap {
            let at = (self.tail % cap) as usize;
            let (len, orig) = (self.u32_at(at), self.u32_at(at + 4));
            if orig != PAD {
                self.stats.packets_overwritten += 1;
                self.stats.bytes_overwritten += u64::from(orig);
            }
            self.tail += u64::from(len.max(8));
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = &self.arena[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.arena[at..at + 8]);
        u64::from_le_bytes(b)
    }

    fn write(&mut self, frame: &Frame<'_>, from_initiator: bool, prev: u64) -> Option<u64> {
        let (ts_us, orig_len, data) = (frame.ts_us, frame.orig_len, frame.data);
        let cap = self.arena.len() as u64;
        let need = align8(HEADER + data.len()) as u64;
        if need > cap / 4 {
            return None;
        }
        let phys = self.head % cap;
        if phys + need > cap {
            // Pad to the end; the entry starts at the arena's beginning.
            let pad = cap - phys;
            self.make_room(pad);
            let at = phys as usize;
            self.arena[at..at + 4].copy_from_slice(&(pad as u32).to_le_bytes());
            self.arena[at + 4..at + 8].copy_from_slice(&PAD.to_le_bytes());
            self.head += pad;
        }
        self.make_room(need);
        let pos = self.head;
        let at = (pos % cap) as usize;
        let h = &mut self.arena[at..at + HEADER];
        h[0..4].copy_from_slice(&(need as u32).to_le_bytes());
        h[4..8].copy_from_slice(&orig_len.to_le_bytes());
        h[8..16].copy_from_slice(&ts_us.to_le_bytes());
        h[16..24].copy_from_slice(&prev.to_le_bytes());
        h[24..28].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[28] = frame.port as u8;
        h[29] = u8::from(from_initiator);
        h[30..32].copy_from_slice(&frame.link.linktype().to_le_bytes());
        self.arena[at + HEADER..at + HEADER + data.len()].copy_from_slice(data);
        // The first entry of a block marks the block's time.
        let block = pos / MARK_EVERY;
        if self.marked_block != block {
            let n = self.marks.len() as u64;
            self.marks[(block % n) as usize] = (pos, ts_us);
            self.marked_block = block;
        }
        self.head += need;
        self.stats.packets_kept += 1;
        self.stats.bytes_kept += u64::from(orig_len);
        Some(pos)
    }

    fn mark(&self, block: u64) -> (u64, u64) {
        self.marks[(block % self.marks.len() as u64) as usize]
    }

    /// The kept packet at `pos`, while it is still there.
    pub fn get(&self, pos: u64) -> Option<Kept<'_>> {
        if pos < self.tail || pos >= self.head {
            return None;
        }
        let at = (pos % self.arena.len() as u64) as usize;
        let orig_len = self.u32_at(at + 4);
        if orig_len == PAD {
            return None;
        }
        let cap_len = self.u32_at(at + 24) as usize;
        Some(Kept {
            pos,
            ts_us: self.u64_at(at + 8),
            orig_len,
            port: TapPort::from_u8(self.arena[at + 28]).unwrap_or_default(),
            linktype: u16::from_le_bytes([self.arena[at + 30], self.arena[at + 31]]),
            from_initiator: self.arena[at + 29] != 0,
            data: self.arena.get(at + HEADER..at + HEADER + cap_len)?,
        })
    }

    /// The positions of the kept packets of the flows `sel` matches with a
    /// time in `[since_us, until_us]`, oldest first, at most `limit`.
    pub fn flow_packets(
        &self,
        sel: &FlowSelector,
        since_us: u64,
        until_us: u64,
        limit: usize,
        out: &mut Vec<u64>,
    ) {
        let (addrs, ports) = sel.canonical();
        let start = self.bucket(sel.proto, &addrs, ports);
        let from = out.len();
        for i in self.slots(start) {
            let e = &self.dir[i];
            if !(e.used && sel.matches(&e.key)) {
                continue;
            }
            let mut pos = e.last;
            while let Some(k) = (pos != NONE).then(|| self.get(pos)).flatten() {
                if (since_us..=until_us).contains(&k.ts_us) {
                    out.push(pos);
                }
                let at = (pos % self.arena.len() as u64) as usize;
                pos = self.u64_at(at + 16);
            }
        }
        out[from..].sort_unstable();
        out.truncate(from + limit.min(out.len() - from));
    }

    /// The positions of every kept packet with a time in `[since_us,
    /// until_us]`, oldest first, at most `limit`: from the checkpoint
    /// before `since_us`, not from the tail.
    pub fn window_packets(&self, since_us: u64, until_us: u64, limit: usize, out: &mut Vec<u64>) {
        if self.head == self.tail {
            return;
        }
        // Blocks whose mark is still in the arena, oldest to newest.
        let (first, last) = (self.tail.div_ceil(MARK_EVERY), (self.head - 1) / MARK_EVERY);
        let valid = |b: u64| {
            let (pos, _) = self.mark(b);
            pos != NONE && pos >= self.tail && pos / MARK_EVERY == b
        };
        let (mut lo, mut hi) = (first, last + 1);
        // The first block whose mark is at or after `since_us`; the scan
        // starts a block before it (times across ports are not sorted).
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if valid(mid) && self.mark(mid).1 < since_us {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut pos = if lo > first && valid(lo - 1) {
            self.mark(lo - 1).0
        } else {
            self.tail
        };
        let cap = self.arena.len() as u64;
        let mut n = 0;
        while pos < self.head && n < limit {
            let at = (pos % cap) as usize;
            let len = u64::from(self.u32_at(at).max(8));
            if let Some(k) = self.get(pos) {
                if k.ts_us > until_us.saturating_add(1_000_000) {
                    break;
                }
                if (since_us..=until_us).contains(&k.ts_us) {
                    out.push(pos);
                    n += 1;
                }
            }
            pos += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::LinkType;

    fn key(port: u16) -> FlowKey {
        let mut k = FlowKey {
            proto: 6,
            ..FlowKey::default()
        };
        k.addrs[0][..4].copy_from_slice(&[10, 0, 0, 1]);
        k.addrs[1][..4].copy_from_slice(&[10, 0, 0, 2]);
        k.ports = [port, 80];
        k
    }

    fn sel(port: u16) -> FlowSelector {
        let k = key(port);
        FlowSelector {
            proto: 6,
            ends: [(k.addrs[1], 80), (k.addrs[0], port)],
            is_v6: false,
        }
    }

    fn frame(ts_us: u64, port: TapPort, data: &[u8]) -> Frame<'_> {
        Frame {
            ts_us,
            orig_len: data.len() as u32,
            data,
            link: LinkType::Ethernet,
            port,
            vlan_tci: None,
        }
    }

    fn small(bytes: usize, cutoff: u32) -> PacketRing {
        PacketRing::new(RingConfig {
            bytes,
            cutoff,
            flows: 64,
        })
    }

    #[test]
    fn a_flows_packets_come_back_in_order_until_the_cutoff() {
        let mut r = small(1 << 20, 250);
        for i in 0..10u8 {
            let data = [i; 100];
            // Both directions take turns; each direction's fourth packet is
            // past 250 payload bytes.
            let t = u64::from(i);
            r.offer(
                &key(1000),
                i == 0,
                i % 2 == 0,
                100,
                &frame(t, TapPort::A, &data),
            );
            r.offer(
                &key(2000),
                i == 0,
                true,
                100,
                &frame(t, TapPort::B, &[9; 60]),
            );
        }
        let mut out = Vec::new();
        r.flow_packets(&sel(1000), 0, u64::MAX, 100, &mut out);
        let got: Vec<u8> = out.iter().map(|&p| r.get(p).unwrap().data[0]).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        assert!(r
            .get(out[1])
            .is_some_and(|k| !k.from_initiator && k.port == TapPort::A));
        assert_eq!(r.stats().packets_cut, 4 + 7);
        // A time window of one flow.
        out.clear();
        r.flow_packets(&sel(1000), 2, 3, 100, &mut out);
        assert_eq!(out.len(), 2);
        // Flagged: every packet from then on.
        assert_eq!(r.flag(&sel(1000)), 1);
        r.offer(
            &key(1000),
            false,
            true,
            100,
            &frame(20, TapPort::A, &[42; 100]),
        );
        out.clear();
        r.flow_packets(&sel(1000), 0, u64::MAX, 100, &mut out);
        assert_eq!(r.get(*out.last().unwrap()).unwrap().data[0], 42);
        // A new connection on the same ports starts its cut-off again.
        r.offer(
            &key(2000),
            true,
            true,
            100,
            &frame(30, TapPort::B, &[7; 60]),
        );
        out.clear();
        r.flow_packets(&sel(2000), 30, 30, 100, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_oldest_go_first_and_the_budget_holds() {
        let mut r = small(64 << 10, u32::MAX);
        for i in 0..10_000u64 {
            let port = 1000 + (i % 300) as u16;
            r.offer(
                &key(port),
                false,
                true,
                100,
                &frame(i, TapPort::A, &[i as u8; 200]),
            );
            assert!(r.used() <= r.capacity() as u64);
        }
        let s = r.stats().clone();
        assert_eq!(s.packets_kept, 10_000);
        assert!(s.packets_overwritten > 9_000, "{s:?}");
        // What is left is the newest, each flow's chain ending at the tail.
        let mut out = Vec::new();
        r.window_packets(0, u64::MAX, usize::MAX, &mut out);
        let first = r.get(out[0]).unwrap().ts_us;
        assert_eq!(out.len() as u64, 10_000 - first);
        assert_eq!(r.get(*out.last().unwrap()).unwrap().ts_us, 9_999);
        let mut one = Vec::new();
        r.flow_packets(
            &sel(1000 + (9_999 % 300) as u16),
            0,
            u64::MAX,
            100,
            &mut one,
        );
        assert!(!one.is_empty() && one.iter().all(|&p| p >= out[0]));
        // A window in the middle, found from the checkpoints.
        let mut mid = Vec::new();
        r.window_packets(9_900, 9_949, usize::MAX, &mut mid);
        let ts: Vec<u64> = mid.iter().map(|&p| r.get(p).unwrap().ts_us).collect();
        assert_eq!(ts, (9_900..9_950).collect::<Vec<_>>());
    }

    #[test]
    fn frames_of_every_size_wrap_the_arena() {
        let mut r = small(16 << 10, u32::MAX);
        for i in 0..2_000usize {
            let len = (i * 37) % 1_600;
            let data = vec![1; len];
            r.offer(&key(1), false, true, 0, &frame(i as u64, TapPort::A, &data));
        }
        let mut out = Vec::new();
        r.window_packets(0, u64::MAX, usize::MAX, &mut out);
        for (a, b) in out.iter().zip(out.iter().skip(1)) {
            assert!(r.get(*a).unwrap().ts_us < r.get(*b).unwrap().ts_us);
        }
        assert_eq!(r.get(*out.last().unwrap()).unwrap().ts_us, 1_999);
    }
}
