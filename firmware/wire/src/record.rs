//! One flow record: the set of fields every part of PiTap agrees on.
//!
//! The flow core fills it, the uplink encodes it, the collector decodes it and
//! the line formats print it. "src" is always the initiator of the
//! conversation and "dst" the responder.

use core::net::{IpAddr, Ipv4Addr};

/// IANA protocol numbers the formats give names to.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// Counters for one side of a conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideCounters {
    pub packets: u64,
    /// Frame bytes as on the wire (the original length, not the captured one).
    pub bytes: u64,
    /// IP bytes (headers included; IPFIX's octetDeltaCount, Zeek's
    /// ip_bytes).
    pub ip_bytes: u64,
    /// Transport payload bytes by the headers (Zeek's orig_bytes and
    /// resp_bytes, counted per packet: a retransmission counts again).
    pub payload_bytes: u64,
    /// OR of all TCP flags this side sent (FIN=0x01 ... CWR=0x80).
    pub tcp_flags: u8,
}

/// One side of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: IpAddr,
    /// TCP/UDP/SCTP port; for ICMP the initiator carries the type and the
    /// responder the code, as Zeek does.
    pub port: u16,
    /// All zero when the link layer carries no MAC (raw IP captures).
    pub mac: [u8; 6],
    pub counters: SideCounters,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            mac: [0; 6],
            counters: SideCounters::default(),
        }
    }
}

crate::named_enum! {
    /// Zeek's `conn_state` values, with the meanings of Zeek's conn.log.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub enum ConnState {
        /// Connection attempt seen, no reply.
        S0 = 0 => "S0",
        /// Connection established, not terminated.
        S1 = 1 => "S1",
        /// Normal establishment and termination.
        SF = 2 => "SF",
        /// Connection attempt rejected.
        REJ = 3 => "REJ",
        /// Established, originator sent FIN, no reply from the responder.
        S2 = 4 => "S2",
        /// Established, responder sent FIN, no reply from the originator.
        S3 = 5 => "S3",
        /// Established, originator aborted with RST.
        RSTO = 6 => "RSTO",
        /// Responder sent a RST.
        RSTR = 7 => "RSTR",
        /// Originator sent SYN then RST, never a SYN-ACK.
        RSTOS0 = 8 => "RSTOS0",
        /// Responder sent SYN-ACK then RST, no SYN from the originator seen.
        RSTRH = 9 => "RSTRH",
        /// Originator sent SYN then FIN, no SYN-ACK.
        SH = 10 => "SH",
        /// Responder sent SYN-ACK then FIN, no SYN from the originator.
        SHR = 11 => "SHR",
        /// No SYN seen, midstream traffic; also every non-TCP flow.
        #[default]
        OTH = 12 => "OTH",
    }
}

crate::named_enum! {
    /// Why a record was emitted.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub enum EndReason {
        /// No packet for the idle timeout.
        #[default]
        Idle = 0 => "idle",
        /// The flow ran longer than the active timeout; it goes on in a
        /// continuation record.
        Active = 1 => "active",
        /// TCP closed by FIN from both sides.
        TcpClose = 2 => "tcp-close",
        /// TCP aborted by RST.
        TcpReset = 3 => "tcp-reset",
        /// The table was full and this was the least recently seen flow.
        Evicted = 4 => "evicted",
        /// The tap stopped (end of a capture file, shutdown).
        Shutdown = 5 => "shutdown",
    }
}

crate::named_enum! {
    /// The tap port on which the initiator's first packet entered.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub enum TapPort {
        /// Not known (a capture file without interface information).
        #[default]
        Unknown = 0 => "-",
        A = 1 => "A",
        B = 2 => "B",
    }
}

crate::named_enum! {
    /// Where a record's times come from.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub enum ClockState {
        /// The tap's own clock, never checked against the collector's: on a
        /// Pi without a real-time clock this can be 1970.
        #[default]
        Unsynced = 0 => "unsynced",
        /// The tap's clock as corrected by the collector's sealed time.
        Synced = 1 => "synced",
        /// The capture file's own timestamps (`pitapd --read`).
        Capture = 2 => "capture",
    }
}

/// Zeek-style connection history: one letter per event kind, upper case for
/// the initiator and lower case for the responder, in the order first seen.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    buf: [u8; History::CAPACITY],
    len: u8,
}

impl History {
    pub const CAPACITY: usize = 16;

    /// Appends one ASCII letter; past the capacity letters are dropped (the
    /// history is a summary, not a log).
    pub fn push(&mut self, letter: u8) {
        let len = usize::from(self.len);
        if len < Self::CAPACITY && letter.is_ascii_graphic() {
            self.buf[len] = letter;
            self.len += 1;
        }
    }

    /// Builds a history from text, keeping only the first CAPACITY printable
    /// ASCII characters.
    pub fn from_text(text: &str) -> Self {
        let mut h = History::default();
        for b in text.bytes() {
            h.push(b);
        }
        h
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever pushed, so this cannot fail.
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }

    /// The letters as bytes, without `as_str`'s UTF-8 check (encoders).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Debug for History {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A flow summary.
/// Short text of at most `N` bytes (`N` < 256), inline: records stay
/// `Copy` and nothing is allocated. Bytes outside printable ASCII are
/// stored as `?`, so the text is always valid UTF-8 and safe to print.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> Text<N> {
    pub const CAPACITY: usize = N;

    /// The first `N` bytes of `bytes` (longer text is cut).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut t = Text::default();
        let n = bytes.len().min(N).min(255);
        for (dst, &b) in t.buf.iter_mut().zip(&bytes[..n]) {
            *dst = if (0x20..0x7f).contains(&b) { b } else { b'?' };
        }
        t.len = n as u8;
        t
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII is stored.
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }

    /// The text as bytes, without `as_str`'s UTF-8 check (encoders).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Who and what is behind a flow, as the tap learned it from DNS, DHCP,
/// the TLS ClientHello and the first HTTP request. Every field is optional
/// (empty) and travels as a tagged wire extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Names {
    /// The name the client looked up that resolved to the responder's
    /// address (the first name of a CNAME chain).
    pub responder_name: Text<128>,
    /// The initiator's hostname from its DHCP lease (by address, or by MAC
    /// for a DHCP client's own exchange).
    pub client_hostname: Text<64>,
    /// The responder's hostname from its DHCP lease (by address).
    pub server_hostname: Text<64>,
    /// TLS server name indication of the ClientHello.
    pub sni: Text<128>,
    /// TLS ALPN protocols offered, comma-separated.
    pub alpn: Text<32>,
    /// HTTP Host header of the first request.
    pub http_host: Text<128>,
    /// HTTP request line of the first request: method and target.
    pub http_request: Text<128>,
}

impl Names {
    pub fn is_empty(&self) -> bool {
        *self == Names::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowRecord {
    /// Time of the first packet of this part, ms since the Unix epoch.
    pub start_ms: u64,
    /// Time of the last packet of this part, ms since the Unix epoch.
    pub end_ms: u64,
    /// IP protocol number.
    pub proto: u8,
    /// The initiator ("src").
    pub src: Endpoint,
    /// The responder ("dst").
    pub dst: Endpoint,
    /// Outer 802.1Q VLAN id, 0 when untagged (or priority-tagged).
    pub vlan: u16,
    /// Inner VLAN id of a QinQ frame, 0 when there is none.
    pub inner_vlan: u16,
    pub conn_state: ConnState,
    pub history: History,
    pub end_reason: EndReason,
    /// This record continues a flow that an active timeout split before.
    pub continuation: bool,
    /// Tap port on which the initiator's traffic entered.
    pub ingress: TapPort,
    /// ICMP/ICMPv6 type and code of the first packet, for ICMP flows.
    pub icmp: Option<(u8, u8)>,
    /// What DNS, DHCP, TLS and HTTP said about the flow's ends.
    pub names: Names,
    /// Where `start_ms` and `end_ms` come from.
    pub clock: ClockState,
    /// Frames the tap's capture rings dropped while this flow was open: its
    /// counters may miss up to that many (0: nothing was lost).
    pub ring_drops: u32,
    /// TCP payload bytes in sequence gaps the tap never saw (Zeek's
    /// `missed_bytes`): loss before the tap, or in its rings.
    pub missed_bytes: u32,
}

/// What the analyst reads first: did the conversation happen?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Handshake completed, or a non-TCP flow was answered.
    Accept,
    /// The responder refused (TCP REJ).
    Reject,
    /// Nobody answered (S0 and friends, one-way UDP/ICMP).
    NoReply,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Reject => "REJECT",
            Action::NoReply => "NOREPLY",
        }
    }
}

impl FlowRecord {
    pub fn action(&self) -> Action {
        if self.proto == proto::TCP {
            match self.conn_state {
                ConnState::REJ => Action::Reject,
                ConnState::S0 | ConnState::SH | ConnState::RSTOS0 => Action::NoReply,
                ConnState::OTH if self.dst.counters.packets == 0 => Action::NoReply,
                _ => Action::Accept,
            }
        } else if self.dst.counters.packets > 0 {
            Action::Accept
        } else {
            Action::NoReply
        }
    }

    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// Both sides' bytes; saturates (counters come from the wire, and a
    /// forged record must not overflow the collector).
    pub fn total_bytes(&self) -> u64 {
        self.src
            .counters
            .bytes
            .saturating_add(self.dst.counters.bytes)
    }

    pub fn total_packets(&self) -> u64 {
        self.src
            .counters
            .packets
            .saturating_add(self.dst.counters.packets)
    }
}

/// Protocols whose records carry real port numbers (TCP, UDP, SCTP, DCCP,
/// UDP-Lite); for the rest the port fields mean nothing.
pub fn has_ports(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP | proto::SCTP | 33 | 136)
}

/// Name of an IP protocol as flow lines print it.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        proto::ICMP => "ICMP",
        proto::TCP => "TCP",
        proto::UDP => "UDP",
        proto::ICMPV6 => "ICMPv6",
        proto::SCTP => "SCTP",
        2 => "IGMP",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        89 => "OSPF",
        103 => "PIM",
        112 => "VRRP",
        _ => return None,
    })
}
