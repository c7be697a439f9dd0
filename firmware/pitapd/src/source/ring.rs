//! A tap port as a packet source: frames from its TPACKET_V3 ring.
//!
//! The ring hands over whole blocks; this walks the frames of the current
//! block (each `struct tpacket3_hdr` read with bounds checks, never trusted
//! blindly) and returns the block to the kernel once it is done.

use std::io;

use pitap_flow_core::{Frame, LinkType, PacketSource};
use pitap_wire::TapPort;

use crate::sys::ring::{PacketRing, RingCounters, RingGeometry};

/// `TP_STATUS_VLAN_VALID`: `tp_vlan_tci` holds the tag the kernel stripped.
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

/// Counters of one port, accumulated (the kernel's reset on every read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames taken from the ring.
    pub frames: u64,
    /// Their wire bytes.
    pub bytes: u64,
    /// Frames the kernel dropped because the ring was full.
    pub ring_drops: u64,
    pub ring_freezes: u64,
    /// Ring entries whose header did not fit their block (never seen; counted
    /// rather than trusted).
    pub bad_entries: u64,
}

#[derive(Clone, Copy)]
struct Cursor {
    offset: usize,
    remaining: u32,
}

pub struct RingSource {
    ring: PacketRing,
    port: TapPort,
    block: usize,
    cursor: Option<Cursor>,
    counters: PortCounters,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One `struct tpacket3_hdr` and the frame it describes.
struct Entry<'a> {
    next_offset: u32,
    ts_us: u64,
    wire_len: u32,
    vlan_tci: Option<u16>,
    data: &'a [u8],
}

fn read_entry(block: &[u8], at: usize) -> Option<Entry<'_>> {
    let next_offset = u32_at(block, at)?;
    let sec = u32_at(block, at + 4)?;
    let nsec = u32_at(block, at + 8)?;
    let snaplen = u32_at(block, at + 12)? as usize;
    let wire_len = u32_at(block, at + 16)?;
    let status = u32_at(block, at + 20)?;
    let mac = usize::from(u16_at(block, at + 24)?);
    let tci = u32_at(block, at + 32)?;
    let start = at.checked_add(mac)?;
    let data = block.get(start..start.checked_add(snaplen)?)?;
    let tagged = status & TP_STATUS_VLAN_VALID != 0;
    Some(Entry {
        next_offset,
        ts_us: u64::from(sec) * 1_000_000 + u64::from(nsec) / 1000,
        // A tag the kernel stripped was on the wire all the same (libpcap
        // puts it back too): count its 4 bytes.
        wire_len: wire_len + if tagged { 4 } else { 0 },
        vlan_tci: tagged.then_some(tci as u16),
        data,
    })
}

impl RingSource {
    pub fn open(ifname: &str, geometry: RingGeometry, port: TapPort) -> io::Result<Self> {
        Ok(RingSource {
            ring: PacketRing::open(ifname, geometry)?,
            port,
            block: 0,
            cursor: None,
            counters: PortCounters::default(),
        })
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.ring.fd()
    }

    pub fn port(&self) -> TapPort {
        self.port
    }

    /// Adds the kernel's counters since the last call to ours.
    pub fn update_counters(&mut self) -> io::Result<PortCounters> {
        let RingCounters {
            dropped, freezes, ..
        } = self.ring.take_counters()?;
        self.counters.ring_drops += dropped;
        self.counters.ring_freezes += freezes;
        Ok(self.counters)
    }

    pub fn counters(&self) -> PortCounters {
        self.counters
    }
}

impl RingSource {
    /// Moves to the next valid entry, handing finished blocks back to the
    /// kernel; returns its offset in the current block without consuming it.
    fn position(&mut self) -> Option<usize> {
        let blocks = self.ring.geometry().block_count as usize;
        loop {
            match self.cursor {
                Some(c) if c.remaining > 0 => {
                    let valid = self
                        .ring
                        .user_block(self.block)
                        .and_then(|b| read_entry(b, c.offset))
                        .is_some();
                    if valid {
                        return Some(c.offset);
                    }
                    self.counters.bad_entries += 1;
                    self.cursor = Some(Cursor {
                        offset: 0,
                        remaining: 0,
                    });
                }
                Some(_) => {
                    self.ring.release(self.block);
                    self.block = (self.block + 1) % blocks;
                    self.cursor = None;
                }
                None => {
                    // struct tpacket_hdr_v1: num_pkts at 12, first packet at 16.
                    let (remaining, offset) = self
                        .ring
                        .user_block(self.block)
                        .map(|b| (u32_at(b, 12).unwrap_or(0), u32_at(b, 16).unwrap_or(0)))?;
                    self.cursor = Some(Cursor {
                        offset: offset as usize,
                        remaining,
                    });
                }
            }
        }
    }

    /// Whether at least half of the ring waits for us: time to stop
    /// waiting for anything and catch up.
    pub fn under_pressure(&self) -> bool {
        let blocks = self.ring.geometry().block_count as usize;
        self.ring.blocks_in_user_hands() * 2 >= blocks.max(2)
    }

    /// Capture time of the next frame, if one is ready; the frame stays.
    pub fn peek_ts_us(&mut self) -> Option<u64> {
        let offset = self.position()?;
        self.ring
            .user_block(self.block)
            .and_then(|b| read_entry(b, offset))
            .map(|e| e.ts_us)
    }
}

impl PacketSource for RingSource {
    type Error = io::Error;

    /// The next frame of the ring; `Ok(None)` when the kernel has nothing
    /// ready (poll the descriptor, then ask again).
    fn next_frame(&mut self) -> io::Result<Option<Frame<'_>>> {
        let Some(offset) = self.position() else {
            return Ok(None);
        };
        // Step past the entry first, then lend it out: the block stays ours
        // until a later call releases it.
        let next = self
            .ring
            .user_block(self.block)
            .and_then(|b| read_entry(b, offset))
            .map_or(0, |e| e.next_offset as usize);
        if let Some(c) = &mut self.cursor {
            c.offset = offset + next;
            // The last entry of a block has no successor.
            c.remaining = if next == 0 { 0 } else { c.remaining - 1 };
        }
        let Some(entry) = self
            .ring
            .user_block(self.block)
            .and_then(|b| read_entry(b, offset))
        else {
            return Ok(None);
        };
        self.counters.frames += 1;
        self.counters.bytes += u64::from(entry.wire_len);
        Ok(Some(Frame {
            ts_us: entry.ts_us,
            orig_len: entry.wire_len.max(entry.data.len() as u32),
            data: entry.data,
            link: LinkType::Ethernet,
            port: self.port,
            vlan_tci: entry.vlan_tci,
        }))
    }
}
