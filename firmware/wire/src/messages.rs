//! The messages besides flow batches: acknowledgements (collector to tap)
//! and health reports (tap to collector), postcard-encoded inside envelopes.

use serde::{Deserialize, Serialize};

use crate::WireError;

/// "These batches of yours arrived": the tap may forget them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The tap boot the sequence numbers belong to.
    pub tap_boot: [u8; 16],
    pub seqs: Vec<u64>,
}

/// One tap port in a health report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortHealth {
    pub port: String,
    pub name: String,
    pub carrier: bool,
    pub speed_mbps: Option<u32>,
    pub frames: u64,
    pub bytes: u64,
    pub ring_drops: u64,
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
