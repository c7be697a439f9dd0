//! AF_PACKET TPACKET_V3 receive rings (Documentation/networking/packet_mmap.rst).
//!
//! The socket, its binding, promiscuous mode and BPF filters come from the
//! `afpacket` crate; it only reads with `read()`, so the ring itself is here:
//! `PACKET_VERSION`, `PACKET_RX_RING`, the `mmap` of the blocks, and the block
//! hand-over protocol. The kernel fills a block, sets `TP_STATUS_USER` in its
//! header and moves on; we read it and write `TP_STATUS_KERNEL` back. That
//! status word is the only memory both sides touch at once, so it is accessed
//! atomically (acquire on read, release on hand-back); a block's contents are
//! lent out as a plain `&[u8]` only between the two.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use afpacket::sync::RawPacketStream;

/// Constants of linux/if_packet.h.
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// Offset of `hdr.bh1.block_status` in `struct tpacket_block_desc`.
const BLOCK_STATUS_OFFSET: usize = 8;

/// BPF programs (classic BPF, `struct sock_filter`): `ret #0` drops every
/// packet, `ret #0x40000` accepts every packet whole.
const BPF_RET_K: u16 = 0x06;
const DROP_ALL: [(u16, u8, u8, u32); 1] = [(BPF_RET_K, 0, 0, 0)];
const ACCEPT_ALL: [(u16, u8, u8, u32); 1] = [(BPF_RET_K, 0, 0, 0x0004_0000)];

/// `struct tpacket_req3`.
#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// Ring geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    /// Bytes per block; a multiple of the page size.
    pub block_size: u32,
    pub block_count: u32,
    /// A block is handed to us after this long even when not full (ms).
    pub block_timeout_ms: u32,
    /// Largest frame the ring takes whole (the kernel's frame slot size).
    pub frame_size: u32,
}

/// What the kernel counted since the previous call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Frames that reached the ring.
    pub received: u64,
    /// Frames the kernel dropped because the ring was full.
    pub dropped: u64,
    /// Times the ring was frozen because every block was in user hands.
    pub freezes: u64,
}

/// A receive ring bound to one interface.
pub struct PacketRing {
    // Field order matters for Drop: the map goes before the socket closes.
    map: NonNull<u8>,
    map_len: usize,
    geometry: RingGeometry,
    socket: RawPacketStream,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value is a valid T for the duration of the call and its size is
    // passed with it; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes a packet socket ignore the frames the host sends out of its
/// interface (it then sees only what the port receives).
pub fn ignore_outgoing(fd: RawFd) -> io::Result<()> {
    setsockopt(
        fd,
        libc::SOL_PACKET,
        PACKET_IGNORE_OUTGOING,
        &1 as &libc::c_int,
    )
}

/// `struct packet_mreq` from <linux/if_packet.h>, declared here because
/// the libc crate does not export it on every target we build for.
#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_UNICAST: libc::c_ushort = 3;

/// Adds `mac` to the interface's unicast address filter for as long as the
/// socket lives, so a NIC that filters in hardware (virtio, most USB
/// adapters) passes frames for the uplink stack's own MAC without the whole
/// port going promiscuous. The kernel drops the address when the socket closes.
pub fn add_unicast_address(fd: RawFd, ifname: &str, mac: [u8; 6]) -> io::Result<()> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut address = [0u8; 8];
    address[..6].copy_from_slice(&mac);
    let request = PacketMreq {
        mr_ifindex: index as libc::c_int,
        mr_type: PACKET_MR_UNICAST,
        mr_alen: 6,
        mr_address: address,
    };
    setsockopt(fd, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &request)
}

impl PacketRing {
    /// Opens a promiscuous TPACKET_V3 ring on `ifname` that sees only frames
    /// the interface receives (not those the host sends out of it).
    pub fn open(ifname: &str, geometry: RingGeometry) -> io::Result<Self> {
        let page = 4096;
        if geometry.block_size == 0
            || !geometry.block_size.is_multiple_of(page)
            || geometry.block_count == 0
            || geometry.frame_size < 128
            || geometry.frame_size > geometry.block_size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad ring geometry {geometry:?}"),
            ));
        }
        let mut socket = RawPacketStream::new()?;
        // Until the socket is bound to its port it would see every
        // interface's frames: drop them all until then.
        socket.set_bpf_filter(DROP_ALL.to_vec())?;
        let fd = socket.as_raw_fd();
        setsockopt(fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3)?;
        // A frame crossing the bridge is received on one port and sent on the
        // other: count it once, where it entered.
        setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &1 as &libc::c_int,
        )?;
        let req = TpacketReq3 {
            block_size: geometry.block_size,
            block_nr: geometry.block_count,
            frame_size: geometry.frame_size,
            frame_nr: geometry.block_size / geometry.frame_size * geometry.block_count,
            retire_blk_tov: geometry.block_timeout_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &req)?;
        let map_len = geometry.block_size as usize * geometry.block_count as usize;
        // SAFETY: a fresh shared mapping of the ring the kernel just
        // allocated for this socket, of exactly its size; nothing else maps it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        // From here `ring` owns the map and unmaps it if binding fails.
        let mut ring = PacketRing {
            map,
            map_len,
            geometry,
            socket,
        };
        ring.socket.bind(ifname)?;
        ring.socket.set_promisc(ifname, true)?;
        ring.socket.set_bpf_filter(ACCEPT_ALL.to_vec())?;
        Ok(ring)
    }

    pub fn geometry(&self) -> RingGeometry {
        self.geometry
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn status_word(&self, block: usize) -> &AtomicU32 {
        let offset = block * self.geometry.block_size as usize + BLOCK_STATUS_OFFSET;
        // SAFETY: block < block_count (callers check), so the word lies
        // inside the mapping; it is 4-byte aligned (blocks are page aligned,
        // the offset is 8); the kernel writes it concurrently, which is what
        // the atomic type is for.
        unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The bytes of block `block` if the kernel has handed it to us; they
    /// stay ours until `release`, which needs `&mut self`, so no slice can
    /// outlive the hand-back.
    pub fn user_block(&self, block: usize) -> Option<&[u8]> {
        if block >= self.geometry.block_count as usize {
            return None;
        }
        if self.status_word(block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        let size = self.geometry.block_size as usize;
        // SAFETY: the block lies inside the mapping; the acquire load above
        // saw TP_STATUS_USER, after which the kernel does not write the block
        // until we store TP_STATUS_KERNEL in `release`.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(block * size), size) })
    }

    /// How many blocks the kernel has handed over and we have not yet
    /// returned: the ring's fill, from the consumer's side.
    pub fn blocks_in_user_hands(&self) -> usize {
        (0..self.geometry.block_count as usize)
            .filter(|&b| self.status_word(b).load(Ordering::Relaxed) & TP_STATUS_USER != 0)
            .count()
    }

    /// Hands block `block` back to the kernel.
    pub fn release(&mut self, block: usize) {
        if block < self.geometry.block_count as usize {
            self.status_word(block)
                .store(TP_STATUS_KERNEL, Ordering::Release);
        }
    }

    /// The kernel's counters since the last call (reading resets them).
    pub fn take_counters(&self) -> io::Result<RingCounters> {
        let mut stats = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: stats is a valid, writable tpacket_stats_v3 and len holds
        // its size; the kernel writes at most len bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut stats as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // For TPACKET_V3 the kernel's packet count includes the drops.
        Ok(RingCounters {
            received: u64::from(stats.packets.saturating_sub(stats.drops)),
            dropped: u64::from(stats.drops),
            freezes: u64::from(stats.freeze_q_cnt),
        })
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: map/map_len are the mapping made in `open`; no block slice
        // can be alive because they borrow `self`.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes; returns which
/// are readable. An interrupted wait (a signal) returns none.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        })
        .collect();
    // SAFETY: polls is a valid array of polls.len() pollfd structs.
    let rc = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(polls.iter().map(|p| p.revents != 0).collect())
}
