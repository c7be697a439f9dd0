//! Capture files as a packet source: pcap (microsecond and nanosecond, either
//! byte order) and pcapng (sections of either byte order, per-interface link
//! types and timestamp resolutions).
//!
//! Written here rather than taken from a crate because the reader walks a
//! memory-mapped file and hands out frames that point into it, with no copy
//! and no allocation per packet, and because both formats are short
//! (pcap: RFC draft-ietf-opsawg-pcap, pcapng: draft-ietf-opsawg-pcapng).
//! Every length read from the file is checked before use: a damaged file
//! gives an error that says where, never a panic.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

use pitap_flow_core::{Frame, LinkType, PacketSource};
use pitap_wire::TapPort;

use crate::sys::MappedFile;

/// Frames larger than this are not Ethernet, whatever the file says.
const MAX_FRAME: u32 = 256 * 1024;
/// More interfaces than this in one pcapng section is a damaged file.
const MAX_INTERFACES: usize = 256;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_OPB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;

#[derive(Debug)]
pub enum CaptureError {
    Io(io::Error),
    /// The file starts with neither a pcap nor a pcapng magic number.
    NotACapture {
        first_bytes: [u8; 4],
    },
    /// A link type PiTap does not decode.
    UnsupportedLinkType {
        linktype: u32,
    },
    /// The file ends inside a header or a packet.
    Truncated {
        offset: usize,
        what: &'static str,
    },
    /// A length field no real capture has.
    AbsurdLength {
        offset: usize,
        what: &'static str,
        len: u64,
    },
    /// A pcapng packet names an interface that was never described.
    UnknownInterface {
        offset: usize,
        interface: u32,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "{e}"),
            CaptureError::NotACapture { first_bytes } => write!(
                f,
                "not a pcap or pcapng file (starts with {:02x} {:02x} {:02x} {:02x})",
                first_bytes[0], first_bytes[1], first_bytes[2], first_bytes[3]
            ),
            CaptureError::UnsupportedLinkType { linktype } => write!(
                f,
                "unsupported link type {linktype} ({}); PiTap reads Ethernet, Linux cooked \
                 (SLL, SLL2), raw IP and BSD loopback captures",
                linktype_name(*linktype)
            ),
            CaptureError::Truncated { offset, what } => {
                write!(f, "file truncated at byte {offset}, inside {what}")
            }
            CaptureError::AbsurdLength { offset, what, len } => {
                write!(f, "absurd {what} {len} at byte {offset}: damaged file")
            }
            CaptureError::UnknownInterface { offset, interface } => write!(
                f,
                "packet at byte {offset} names interface {interface}, which was never described"
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<io::Error> for CaptureError {
    fn from(e: io::Error) -> Self {
        CaptureError::Io(e)
    }
}

/// Names of common link types, for error messages.
fn linktype_name(linktype: u32) -> &'static str {
    match linktype {
        6 => "IEEE802_5 token ring",
        9 => "PPP",
        10 => "FDDI",
        50 => "PPP_HDLC",
        104 => "C_HDLC",
        105 => "IEEE802_11 (Wi-Fi)",
        119 => "PRISM_HEADER",
        127 => "IEEE802_11_RADIOTAP",
        147..=162 => "USER (private)",
        189 => "USB_LINUX",
        192 => "PPI",
        195 => "IEEE802_15_4",
        201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
        220 => "USB_LINUX_MMAPPED",
        249 => "USBPCAP",
        253 => "NETLINK",
        _ => "unknown",
    }
}

fn link_type(linktype: u32) -> Result<LinkType, CaptureError> {
    LinkType::from_linktype(linktype).ok_or(CaptureError::UnsupportedLinkType { linktype })
}

#[derive(Clone, Copy)]
struct Endian {
    big: bool,
}

/// `u16`, `u32`, `u64` at an offset, in the file's byte order.
macro_rules! read_in_order {
    ($($name:ident: $t:ty),+) => {
        $(
            fn $name(self, b: &[u8], at: usize) -> Option<$t> {
                let a = b.get(at..at + size_of::<$t>())?.try_into().ok()?;
                Some(if self.big {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                })
            }
        )+
    };
}

impl Endian {
    read_in_order!(u16: u16, u32: u32, u64: u64);
}

/// A pcapng interface: its link type and clock.
#[derive(Clone, Copy)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    /// Timestamp units per second (if_tsresol).
    units_per_sec: u64,
    /// Seconds to add to every timestamp (if_tsoffset).
    offset_s: i64,
}

enum Format {
    Pcap {
        endian: Endian,
        nanos: bool,
        link: LinkType,
    },
    PcapNg {
        endian: Endian,
        interfaces: Vec<Interface>,
    },
}

/// Reads a capture file frame by frame.
pub struct CaptureReader<B: AsRef<[u8]>> {
    buf: B,
    pos: usize,
    format: Format,
}

/// A capture's bytes: a file mapped as it is, or read into memory (from
/// standard input, or a gzip file inflated).
pub enum CaptureBytes {
    Mapped(MappedFile),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for CaptureBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            CaptureBytes::Mapped(m) => m.as_ref(),
            CaptureBytes::Owned(v) => v,
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// All of a gzip stream (every member, as `gzip -c a b` makes), inflated.
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, CaptureError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| CaptureError::Io(io::Error::new(e.kind(), format!("gzip: {e}"))))?;
    Ok(out)
}

impl CaptureReader<CaptureBytes> {
    /// Opens a capture file (`-`: standard input); a gzip file is inflated
    /// into memory, a plain one mapped.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let bytes = if path.as_os_str() == "-" {
            use std::io::Read;
            let mut v = Vec::new();
            io::stdin().lock().read_to_end(&mut v)?;
            if v.starts_with(&GZIP_MAGIC) {
                v = gunzip(&v)?;
            }
            CaptureBytes::Owned(v)
        } else {
            let file = File::open(path)?;
            if file.metadata()?.len() == 0 {
                return Err(CaptureError::Truncated {
                    offset: 0,
                    what: "the file header (the file is empty)",
                });
            }
            let map = MappedFile::open(&file)?;
            if map.as_ref().starts_with(&GZIP_MAGIC) {
                CaptureBytes::Owned(gunzip(map.as_ref())?)
            } else {
                CaptureBytes::Mapped(map)
            }
        };
        if bytes.as_ref().is_empty() {
            return Err(CaptureError::Truncated {
                offset: 0,
                what: "the file header (the input is empty)",
            });
        }
        CaptureReader::new(bytes)
    }

    /// Lets go of the part of a mapped file already read (see
    /// [`MappedFile::release_before`]); call it every few megabytes.
    pub fn release_consumed(&mut self) {
        if let CaptureBytes::Mapped(m) = &self.buf {
            m.release_before(self.pos);
        }
    }
}

impl<B: AsRef<[u8]>> CaptureReader<B> {
    /// Reads the file header from `buf`.
    pub fn new(buf: B) -> Result<Self, CaptureError> {
        let bytes = buf.as_ref();
        let Some(first) = bytes.get(..4) else {
            return Err(CaptureError::Truncated {
                offset: bytes.len(),
                what: "the file header",
            });
        };
        let first_bytes = [first[0], first[1], first[2], first[3]];
        let le = u32::from_le_bytes(first_bytes);
        let be = u32::from_be_bytes(first_bytes);
        let (format, pos) =
            if [le, be].contains(&PCAP_MAGIC_US) || [le, be].contains(&PCAP_MAGIC_NS) {
                let endian = Endian {
                    big: be == PCAP_MAGIC_US || be == PCAP_MAGIC_NS,
                };
                let nanos = le == PCAP_MAGIC_NS || be == PCAP_MAGIC_NS;
                let network = endian.u32(bytes, 20).ok_or(CaptureError::Truncated {
                    offset: bytes.len(),
                    what: "the pcap file header",
                })?;
                // The upper bits may carry the FCS length; the type is below.
                let link = link_type(network & 0x0fff_ffff)?;
                (
                    Format::Pcap {
                        endian,
                        nanos,
                        link,
                    },
                    24,
                )
            } else if le == PCAPNG_SHB {
                (
                    Format::PcapNg {
                        endian: Endian { big: false },
                        interfaces: Vec::new(),
                    },
                    0,
                )
            } else {
                return Err(CaptureError::NotACapture { first_bytes });
            };
        Ok(CaptureReader { buf, pos, format })
    }

    /// Bytes read so far and the file's size, for a progress display.
    pub fn progress(&self) -> (usize, usize) {
        (self.pos, self.buf.as_ref().len())
    }

    fn next_pcap(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let Format::Pcap {
            endian,
            nanos,
            link,
        } = self.format
        else {
            return Ok(None);
        };
        let bytes = self.buf.as_ref();
        let at = self.pos;
        if at >= bytes.len() {
            return Ok(None);
        }
        let truncated = |what| CaptureError::Truncated {
            offset: bytes.len(),
            what,
        };
        let header = bytes.get(at..at + 16).ok_or(truncated("a packet header"))?;
        let field = |i| endian.u32(header, i).unwrap_or(0);
        let (secs, frac, incl, orig) = (field(0), field(4), field(8), field(12));
        if incl > MAX_FRAME {
            return Err(CaptureError::AbsurdLength {
                offset: at,
                what: "captured length",
                len: u64::from(incl),
            });
        }
        let data_start = at + 16;
        let data = bytes
            .get(data_start..data_start + incl as usize)
            .ok_or(truncated("packet data"))?;
        self.pos = data_start + incl as usize;
        let frac_us = if nanos { frac / 1000 } else { frac };
        Ok(Some(Frame {
            ts_us: u64::from(secs) * 1_000_000 + u64::from(frac_us),
            // Some writers leave orig_len 0 or below incl_len.
            orig_len: orig.max(incl),
            data,
            link,
            port: TapPort::Unknown,
            vlan_tci: None,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        loop {
            let bytes = self.buf.as_ref();
            let at = self.pos;
            if at >= bytes.len() {
                return Ok(None);
            }
            let Format::PcapNg { endian, interfaces } = &mut self.format else {
                return Ok(None);
            };
            let truncated = |what| CaptureError::Truncated {
                offset: bytes.len(),
                what,
            };
            let block_type = Endian { big: false }
                .u32(bytes, at)
                .ok_or(truncated("a block header"))?;
            if block_type == PCAPNG_SHB {
                // A section header may switch the byte order.
                let magic = bytes
                    .get(at + 8..at + 12)
                    .ok_or(truncated("a section header"))?;
                *endian = match [magic[0], magic[1], magic[2], magic[3]] {
                    m if u32::from_le_bytes(m) == PCAPNG_BYTE_ORDER => Endian { big: false },
                    m if u32::from_be_bytes(m) == PCAPNG_BYTE_ORDER => Endian { big: true },
                    _ => {
                        return Err(CaptureError::AbsurdLength {
                            offset: at + 8,
                            what: "byte-order magic",
                            len: u64::from(u32::from_le_bytes([
                                magic[0], magic[1], magic[2], magic[3],
                            ])),
                        })
                    }
                };
                interfaces.clear();
            }
            let e = *endian;
            let block_len = e.u32(bytes, at + 4).ok_or(truncated("a block header"))? as usize;
            if block_len < 12
                || !block_len.is_multiple_of(4)
                || block_len > MAX_FRAME as usize + 1024
            {
                return Err(CaptureError::AbsurdLength {
                    offset: at + 4,
                    what: "block length",
                    len: block_len as u64,
                });
            }
            let block = bytes.get(at..at + block_len).ok_or(truncated("a block"))?;
            self.pos = at + block_len;
            let body = &block[8..block_len - 4];
            match block_type {
                PCAPNG_IDB => {
                    if interfaces.len() >= MAX_INTERFACES {
                        return Err(CaptureError::AbsurdLength {
                            offset: at,
                            what: "interface count",
                            len: interfaces.len() as u64 + 1,
                        });
                    }
                    interfaces.push(parse_idb(e, body, at)?);
                }
                PCAPNG_EPB | PCAPNG_OPB => {
                    let short = || truncated("a packet block");
                    let (iface_id, ts_hi, ts_lo, cap, orig) = if block_type == PCAPNG_EPB {
                        (
                            e.u32(body, 0).ok_or_else(short)?,
                            e.u32(body, 4).ok_or_else(short)?,
                            e.u32(body, 8).ok_or_else(short)?,
                            e.u32(body, 12).ok_or_else(short)?,
                            e.u32(body, 16).ok_or_else(short)?,
                        )
                    } else {
                        (
                            u32::from(e.u16(body, 0).ok_or_else(short)?),
                            e.u32(body, 4).ok_or_else(short)?,
                            e.u32(body, 8).ok_or_else(short)?,
                            e.u32(body, 12).ok_or_else(short)?,
                            e.u32(body, 16).ok_or_else(short)?,
                        )
                    };
                    let iface = *interfaces.get(iface_id as usize).ok_or(
                        CaptureError::UnknownInterface {
                            offset: at,
                            interface: iface_id,
                        },
                    )?;
                    let data =
                        body.get(20..20 + cap as usize)
                            .ok_or(CaptureError::AbsurdLength {
                                offset: at + 20,
                                what: "captured length",
                                len: u64::from(cap),
                            })?;
                    let ts = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
                    return Ok(Some(Frame {
                        ts_us: to_micros(ts, iface),
                        orig_len: orig.max(cap),
                        data,
                        link: iface.link,
                        port: TapPort::Unknown,
                        vlan_tci: None,
                    }));
                }
                PCAPNG_SPB => {
                    let iface = *interfaces.first().ok_or(CaptureError::UnknownInterface {
                        offset: at,
                        interface: 0,
                    })?;
                    let orig = e.u32(body, 0).ok_or(truncated("a simple packet block"))?;
                    let mut cap = (orig as usize).min(body.len() - 4);
                    if iface.snaplen > 0 {
                        cap = cap.min(iface.snaplen as usize);
                    }
                    return Ok(Some(Frame {
                        // Simple packet blocks carry no time.
                        ts_us: 0,
                        orig_len: orig,
                        data: &body[4..4 + cap],
                        link: iface.link,
                        port: TapPort::Unknown,
                        vlan_tci: None,
                    }));
                }
                // Section headers were handled above; name resolution,
                // statistics, custom and unknown blocks carry no packets.
                _ => {}
            }
        }
    }
}

/// Parses an interface description block body.
fn parse_idb(e: Endian, body: &[u8], at: usize) -> Result<Interface, CaptureError> {
    let short = CaptureError::Truncated {
        offset: at,
        what: "an interface description block",
    };
    let linktype = e.u16(body, 0).ok_or(short)?;
    let snaplen = e.u32(body, 4).unwrap_or(0);
    let mut iface = Interface {
        link: link_type(u32::from(linktype))?,
        snaplen,
        units_per_sec: 1_000_000,
        offset_s: 0,
    };
    // Options: code u16, length u16, value padded to 4 bytes.
    let mut opt = 8;
    while let (Some(code), Some(len)) = (e.u16(body, opt), e.u16(body, opt + 2)) {
        let len = usize::from(len);
        let value = body.get(opt + 4..opt + 4 + len).unwrap_or(&[]);
        match (code, value) {
            (0, _) => break,
            (9, [resol]) => {
                let exp = u32::from(resol & 0x7f);
                iface.units_per_sec = if resol & 0x80 == 0 {
                    10u64.checked_pow(exp)
                } else {
                    2u64.checked_pow(exp)
                }
                .filter(|u| *u > 0)
                .ok_or(CaptureError::AbsurdLength {
                    offset: at + opt,
                    what: "timestamp resolution exponent",
                    len: u64::from(exp),
                })?;
            }
            (14, v) if v.len() == 8 => {
                iface.offset_s = e.u64(v, 0).unwrap_or(0) as i64;
            }
            _ => {}
        }
        opt += 4 + len.div_ceil(4) * 4;
    }
    Ok(iface)
}

/// Converts an interface's timestamp to microseconds since the epoch.
fn to_micros(ts: u64, iface: Interface) -> u64 {
    let us = u128::from(ts) * 1_000_000 / u128::from(iface.units_per_sec);
    let offset_us = i128::from(iface.offset_s) * 1_000_000;
    (us as i128 + offset_us).clamp(0, i128::from(u64::MAX)) as u64
}

impl<B: AsRef<[u8]>> PacketSource for CaptureReader<B> {
    type Error = CaptureError;

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }
}
