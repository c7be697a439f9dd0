//! The messages besides flow batches, postcard-encoded inside envelopes: a
//! tap's hello and health reports, the collector's replies.

use serde::{Deserialize, Serialize};

use crate::envelope::Challenge;
use crate::WireError;

/// A tap asking for its challenge and the time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The tap's firmware version.
    pub version: String,
}

/// The collector's answer to a tap's datagram: the challenge the tap's
/// datagrams must carry, the collector's time, and which batches are
/// stored. Every field is about one boot of the tap, and the reply names
/// the datagram it answers, so a tap takes each reply once and a reply
/// recorded and replayed later is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The boot of the tap this reply is for.
    pub tap_boot: [u8; 16],
    /// The envelope counter of the tap's datagram this answers.
    pub echo: u64,
    /// How long the collector held that datagram before answering, µs: the
    /// tap takes it off the round trip when it reads the time.
    pub held_us: u64,
    /// The collector's clock when it sent this, µs since the Unix epoch.
    pub time_us: u64,
    /// The challenge this boot's datagrams carry from now on.
    pub challenge: Challenge,
    /// Every batch below this seq is stored (or was given up by the tap).
    pub acked_below: u64,
    /// Ranges `[start, end)` of seqs above `acked_below` that are stored.
    pub acked: Vec<(u64, u64)>,
    /// Batches the collector can take in flight from this tap.
    pub window: u32,
    /// Packets the collector asks for, repeated in every reply until the
    /// answer is whole (taps from before them ignore the field).
    pub requests: Vec<PacketRequest>,
}

/// One flow a packet request names: protocol and both ends, either order
/// (ports are not compared for protocols without them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEnds {
    pub proto: u8,
    pub a: (std::net::IpAddr, u16),
    pub b: (std::net::IpAddr, u16),
}

/// The collector asking a tap for packets from its ring: of some flows
/// (none: every packet) in a time window on the collector's clock. The
/// answer is a run of pcapng blocks (one interface block per tap port and
/// link type, then a packet block per packet), sent in `Packets` chunks; the
/// request says how much of it the collector has stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketRequest {
    /// The collector's id of the request (random).
    pub id: u64,
    pub flows: Vec<FlowEnds>,
    pub since_ms: u64,
    pub until_ms: u64,
    /// Keep every packet of these flows from now on, past the cut-off.
    pub flag: bool,
    /// Bytes of the answer the collector has stored, from its start.
    pub have: u64,
}

/// A piece of a tap's answer to a packet request (tap to collector).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketChunk {
    pub id: u64,
    /// Where the piece goes in the answer.
    pub offset: u64,
    /// The answer's whole length.
    pub total: u64,
    /// Packets the answer holds, and matching packets left out (the answer
    /// is at most `MAX_ANSWER` bytes).
    pub packets: u64,
    pub left_out: u64,
    pub data: Vec<u8>,
}

/// The most bytes of one answer: a flow or two with their cut-off, or a
/// flagged flow's first megabytes.
pub const MAX_ANSWER: usize = 32 << 20;
/// Bytes of answer per chunk datagram.
pub const CHUNK_BYTES: usize = 1200;
/// A tap probes an unacknowledged batch again at least this often (its
/// backed-off timeout stops here). The collector's `--until-final` waits
/// several of these for a finished tap that never said goodbye.
pub const MAX_PROBE_MS: u64 = 4000;

/// Where a tap stands with updates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateState {
    /// Nothing offered.
    #[default]
    Idle,
    /// The offered image is the one running (its partition holds it).
    Current,
    /// Receiving the offered image into the inactive partition.
    Receiving,
    /// The offer or its image was refused (`UpdateStatus::detail` says why);
    /// the partitions are as they were.
    Refused,
    /// Written and checked; rebooting into it for a trial.
    Written,
    /// Running a trial boot of it, waiting to be healthy and acknowledged.
    Trial,
    /// The trial went well: it boots from now on.
    Committed,
    /// The trial did not go well in time: rebooting into the old one.
    RollingBack,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Idle => "idle",
            UpdateState::Current => "current",
            UpdateState::Receiving => "receiving",
            UpdateState::Refused => "refused",
            UpdateState::Written => "written",
            UpdateState::Trial => "trial",
            UpdateState::Committed => "committed",
            UpdateState::RollingBack => "rolling back",
        }
    }
}

/// A tap's update status (tap to collector): sent every few seconds by a
/// tap that takes updates, and with each request for image bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The version running.
    pub running: String,
    /// The boot partition it runs from (0: not known).
    pub partition: u8,
    pub state: UpdateState,
    /// The offer this is about: the SHA-256 of its signed manifest as the
    /// collector sent it (zero: none), and the version it names (empty
    /// when the manifest was refused unread).
    pub offer: [u8; 32],
    pub version: String,
    /// Bytes of it written, and its size.
    pub have: u64,
    pub total: u64,
    /// Offsets of the image chunks wanted now (`UPDATE_CHUNK` bytes each).
    pub want: Vec<u64>,
    /// Why it was refused or rolled back.
    pub detail: String,
}

/// The collector's answer to an `UpdateStatus`: one per wanted chunk (or
/// one without data when none is wanted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateData {
    /// The boot of the tap this is for.
    pub tap_boot: [u8; 16],
    /// The update offered to this tap: a signed manifest (empty: none).
    pub manifest: Vec<u8>,
    /// The version and state the collector has stored for this tap from
    /// its last status: a trial boot commits only once the collector has
    /// seen it run.
    pub seen_running: String,
    pub seen_state: UpdateState,
    /// How the image travels, and the length of what travels: offsets and
    /// chunks are of that stream.
    pub encoding: ImageEncoding,
    pub stream_len: u64,
    /// A piece of the image the manifest names.
    pub offset: u64,
    pub data: Vec<u8>,
}

/// How an update image travels (the manifest signs the image itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageEncoding {
    /// As it is.
    #[default]
    Raw,
    /// One raw DEFLATE stream (RFC 1951) of it: a kernel image is about a
    /// third of its size so, and an update a third of the time on a thin
    /// link.
    Deflate,
}

/// Image bytes per `UpdateData` datagram.
pub const UPDATE_CHUNK: usize = 1024;
/// Chunks one `UpdateStatus` may ask for.
pub const MAX_WANT: usize = 32;

impl Reply {
    /// Whether batch `seq` is stored.
    pub fn acks(&self, seq: u64) -> bool {
        seq < self.acked_below || self.acked.iter().any(|&(a, b)| (a..b).contains(&seq))
    }
}

/// One tap port in a health report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortHealth {
    pub port: String,
    pub name: String,
    pub carrier: bool,
    pub admin_up: bool,
    pub speed_mbps: Option<u32>,
    pub frames: u64,
    pub bytes: u64,
    /// Frames the kernel dropped because the capture ring was full.
    pub ring_drops: u64,
    pub ring_freezes: u64,
    /// Ring entries whose header did not fit their block (never seen;
    /// counted rather than trusted).
    pub bad_ring_entries: u64,
}

/// A tap's counters, sent every few seconds so the collector knows it lives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub version: String,
    pub uptime_s: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Frames dropped as malformed, by reason.
    pub anomalies: Vec<(String, u64)>,
    pub flows_active: u64,
    pub flows_capacity: u64,
    pub evictions: u64,
    pub own_traffic_frames: u64,
    pub ports: Vec<PortHealth>,
    /// Batches waiting for an acknowledgement, and the room for them.
    pub buffer_batches: u64,
    pub buffer_capacity: u64,
    /// Batches dropped unacknowledged because the buffer was full.
    pub dropped_batches: u64,
    pub link_propagation_events: u64,
    pub clock: ClockHealth,
    pub uplink: UplinkHealth,
    /// The status LEDs as the tap shows them, in pin map order: (name,
    /// pattern: `off`, `on`, `blinkN` for a period of N ms, `heartbeat`).
    /// Empty on a tap without a status panel.
    pub leds: Vec<(String, String)>,
}

/// The tap's clock as it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockHealth {
    pub synced: bool,
    /// Where the time comes from ("collector"), empty while unsynced.
    pub source: String,
    /// What the tap adds to its own clock, ms.
    pub offset_ms: i64,
    /// How far off the time can be at most, by the best recent round trip, µs.
    pub uncertainty_us: u64,
    /// Times the correction had to move after the first sync.
    pub steps: u64,
}

/// The uplink's own counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkHealth {
    pub batches: u64,
    pub retransmits: u64,
    /// Smoothed round trip to the collector, µs (0 before the first).
    pub srtt_us: u64,
    pub rto_ms: u64,
    /// Batches allowed in flight now.
    pub window: u64,
    /// Datagrams from the collector's address refused, by reason.
    pub refused: Vec<(String, u64)>,
}

pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(message).map_err(|_| WireError::Malformed("message"))
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    // Fields a newer sender appends are ignored.
    postcard::take_from_bytes(bytes)
        .map(|(m, _)| m)
        .map_err(|_| WireError::Malformed("message"))
}
