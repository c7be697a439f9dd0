//! PiTap's wire format, shared by the tap firmware and the host collector.
//!
//! - [`record`]: the flow record, one set of fields for every part of PiTap;
//!   [`named_enum!`] defines its enums written by name.
//! - [`fields`]: the record's fields by name, the one list every view reads.
//! - [`file`]: the record of an object that crossed a flow (HTTP bodies).
//! - [`codec`]: batches of records in one datagram (serde + postcard), file
//!   records attached to their header.
//! - [`format`] (with `std`): the flow line and JSON line formats.
//! - [`envelope`] (with `std`): sealing (XChaCha20-Poly1305) of every datagram.
//! - [`messages`] (with `std`): acknowledgements and health reports.
//! - [`replay_window`]: the replay window over message counters.
//! - [`update`] (with `std`): signed update manifests (Ed25519 over the
//!   image's SHA-256) and the check of an image as it arrives.
//! - [`FlowSink`]: where records go, whatever the place.
#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "std"), no_std)]

mod attach;
pub mod codec;
pub mod community_id;
mod compact;
pub mod deflate;
#[cfg(feature = "std")]
mod digits;
#[cfg(feature = "std")]
pub mod ecs;
#[cfg(feature = "std")]
pub mod envelope;
pub mod fields;
pub mod file;
#[cfg(feature = "std")]
pub mod format;
#[cfg(feature = "std")]
pub mod messages;
mod names;
#[cfg(feature = "std")]
pub mod pcapng;
pub mod record;
pub mod replay_window;
#[cfg(test)]
mod test_rng;
#[cfg(feature = "std")]
pub mod update;
#[cfg(feature = "std")]
pub mod zeek;

pub use attach::Files;
pub use codec::{BatchHeader, BatchReader, BatchWriter, WireError};
pub use file::{file_flags, FileDirection, FileHashes, FileRecord};
pub use record::{
    has_ports, proto, proto_name, Action, ClockState, ConnState, EndReason, Endpoint, FlowRecord,
    History, Names, SideCounters, TapPort, Text,
};

/// Where flow records go: a printer, the uplink, a test's list.
///
/// `emit` cannot fail by design: the flow engine calls it from its hot path
/// and has nothing better to do with an error than its sink has. A sink that
/// can fail keeps the failure and lets its owner ask for it.
pub trait FlowSink {
    fn emit(&mut self, record: &FlowRecord);

    /// An object that crossed a flow; sinks that keep only flows ignore it.
    fn file(&mut self, _file: &FileRecord) {}
}

impl<S: FlowSink + ?Sized> FlowSink for &mut S {
    fn emit(&mut self, record: &FlowRecord) {
        (**self).emit(record)
    }

    fn file(&mut self, file: &FileRecord) {
        (**self).file(file)
    }
}

#[cfg(feature = "std")]
impl FlowSink for Vec<FlowRecord> {
    fn emit(&mut self, record: &FlowRecord) {
        self.push(*record);
    }
}
