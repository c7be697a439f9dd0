//! Where frames come from: one small trait for every packet source (an
//! AF_PACKET ring on a tap port, a capture file, frames built by a test), so
//! wrappers compose around any of them the way smoltcp's `phy::Device` lets
//! a tracer or fault injector wrap any device.

use pitap_wire::TapPort;

/// How a frame's bytes begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II (LINKTYPE_ETHERNET, 1).
    Ethernet,
    /// Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113).
    LinuxSll,
    /// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276).
    LinuxSll2,
    /// Raw IP, version from the first nibble (LINKTYPE_RAW, 101; DLT 12/14).
    RawIp,
    /// Raw IPv4 (LINKTYPE_IPV4, 228).
    Ipv4,
    /// Raw IPv6 (LINKTYPE_IPV6, 229).
    Ipv6,
    /// BSD loopback: a 4-byte address family (LINKTYPE_NULL, 0).
    Null,
}

impl LinkType {
    /// The pcap LINKTYPE_ value of a link type (the inverse of
    /// `from_linktype` for the types PiTap writes).
    pub fn linktype(self) -> u16 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::RawIp => 101,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
        }
    }

    /// Maps a pcap/pcapng LINKTYPE_ value; `None` for types PiTap does not
    /// decode.
    pub fn from_linktype(value: u32) -> Option<Self> {
        Some(match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

/// One captured frame, borrowed from its source.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Length on the wire; `data` may be shorter (snap length).
    pub orig_len: u32,
    pub data: &'a [u8],
    pub link: LinkType,
    /// Tap port the frame entered on.
    pub port: TapPort,
    /// A VLAN tag the capture layer stripped from `data`, if any.
    pub vlan_tci: Option<u16>,
}

/// A source of frames. `next_frame` lends a frame until the next call, so
/// zero-copy sources (mmap'd files, kernel rings) hand out their own memory.
pub trait PacketSource {
    type Error;

    /// The next frame, `Ok(None)` at the end of the source.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Self::Error>;
}
