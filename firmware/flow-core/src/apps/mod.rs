//! Application-layer parsers for what a tap can learn about who is behind
//! a flow: DNS answers (names of addresses), DHCPv4 and DHCPv6 (device MAC,
//! address and hostname), the TLS ClientHello (server name, ALPN) and the HTTP
//! request line and Host header; [`learn`] puts what they read into the
//! engine's caches and a flow's record.
//!
//! Each parser reads a borrowed payload, allocates nothing, checks every
//! length against the data before using it, and answers malformed input
//! (compression loops, lengths past the end, absurd counts) with an
//! [`AppError`] to be counted, never a panic. Hand-written: the Rust DNS
//! and TLS crates build owned messages (allocation per packet) or parse
//! whole handshakes, and a tap needs four fields of each.

pub mod dhcp;
pub mod dhcp6;
pub mod dns;
pub mod http;
pub mod learn;
pub mod tls;

/// Why a payload was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppError {
    /// A length or count points past the end of the data.
    Truncated,
    /// A DNS name loops, is too long, or has a reserved label type.
    BadName,
    /// A count no real message has.
    AbsurdCount,
    /// Not the message the parser expected (a DNS query, a TLS record of
    /// another type, a BOOTP packet without the DHCP cookie).
    Unexpected,
}

impl AppError {
    pub fn as_str(self) -> &'static str {
        match self {
            AppError::Truncated => "truncated",
            AppError::BadName => "bad_name",
            AppError::AbsurdCount => "absurd_count",
            AppError::Unexpected => "unexpected",
        }
    }
}

/// A byte reader that never reads past the end.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn u8(&mut self) -> Result<u8, AppError> {
        let b = *self.data.get(self.pos).ok_or(AppError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, AppError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    pub fn u24(&mut self) -> Result<u32, AppError> {
        Ok(u32::from_be_bytes([0, self.u8()?, self.u8()?, self.u8()?]))
    }

    pub fn u32(&mut self) -> Result<u32, AppError> {
        Ok(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], AppError> {
        let end = self.pos.checked_add(n).ok_or(AppError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(AppError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), AppError> {
        self.bytes(n).map(|_| ())
    }

    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }
}
