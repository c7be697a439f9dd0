//! One object that crossed a flow (an HTTP message body): its hashes, size,
//! type and where it came from. It names its flow by the flow's start and
//! ends, as Zeek's files.log names conn.log's connection.

use core::net::{IpAddr, Ipv4Addr};

use crate::Text;

crate::named_enum! {
    /// Which way an object went.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub enum FileDirection {
        /// A response body: responder to initiator.
        #[default]
        Download = 0 => "download",
        /// A request body: initiator to responder.
        Upload = 1 => "upload",
    }
}

/// Why an object's record lacks something. Bits of `FileRecord::flags`.
pub mod file_flags {
    /// Larger than the tap's maximum object size: not hashed past it.
    pub const TOO_LARGE: u8 = 0x01;
    /// The tap's hashing budget per second ran out: not hashed.
    pub const OVER_BUDGET: u8 = 0x02;
    /// Bytes are missing (a gap in the stream, the flow ended or was
    /// evicted mid-body): the hashes are not the object's.
    pub const INCOMPLETE: u8 = 0x04;
    /// A content coding the tap could not undo (unknown, or no inflater
    /// free): hashed as it travelled.
    pub const ENCODED: u8 = 0x08;
    /// Every flag a decoder accepts.
    pub const ALL: u8 = TOO_LARGE | OVER_BUDGET | INCOMPLETE | ENCODED;
    /// Each flag with the name lines print it as.
    pub const NAMES: [(u8, &str); 4] = [
        (TOO_LARGE, "too_large"),
        (OVER_BUDGET, "over_budget"),
        (INCOMPLETE, "incomplete"),
        (ENCODED, "encoded"),
    ];
}

/// The three digests threat feeds use, of the object's bytes as the
/// application saw them (transfer and content codings undone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileHashes {
    pub sha256: [u8; 32],
    pub sha1: [u8; 20],
    pub md5: [u8; 16],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// When the object's last byte was seen, ms since the Unix epoch.
    pub ts_ms: u64,
    /// The start of the flow (part) that carried it, as its flow record has it.
    pub flow_start_ms: u64,
    /// The flow's initiator and responder (TCP).
    pub src_addr: IpAddr,
    pub src_port: u16,
    pub dst_addr: IpAddr,
    pub dst_port: u16,
    pub direction: FileDirection,
    /// The request's method ("GET").
    pub method: Text<16>,
    /// The request's URL, `http://` and the Host header before an
    /// origin-form target; cut at 255 bytes.
    pub url: Text<255>,
    /// The response's status code (0 for a request body, or a response
    /// without a status line: HTTP/0.9).
    pub status: u16,
    /// Bytes of the object seen (after transfer and content decoding).
    pub size: u64,
    /// Bytes of it known to be missing.
    pub missing: u64,
    /// `None` when the object was not hashed whole (see `flags`).
    pub hashes: Option<FileHashes>,
    /// Media type from the object's first bytes ("image/png").
    pub mime: Text<48>,
    /// `file_flags` bits.
    pub flags: u8,
}

impl Default for FileRecord {
    fn default() -> Self {
        FileRecord {
            ts_ms: 0,
            flow_start_ms: 0,
            src_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst_port: 0,
            direction: FileDirection::Download,
            method: Text::default(),
            url: Text::default(),
            status: 0,
            size: 0,
            missing: 0,
            hashes: None,
            mime: Text::default(),
            flags: 0,
        }
    }
}

impl FileRecord {
    /// The names of the flags set, in `file_flags::NAMES` order.
    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        file_flags::NAMES
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, name)| *name)
    }
}

/// Lower-case hex of a digest.
#[cfg(feature = "std")]
pub fn hex(bytes: &[u8]) -> std::string::String {
    use core::fmt::Write;
    let mut s = std::string::String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
