//! PiTap's wire format, shared by the tap firmware and the host collector.
//!
//! - [`record`]: the flow record, one set of fields for every part of PiTap;
//!   [`named_enum!`] defines its enums written by name.
//! - [`fields`]: the record's fields by name, the one list every view reads.
//! - [`codec`]: batches of records in one datagram (serde + postcard).
//! - [`format`] (with `std`): the flow line and JSON line formats.
//! - [`envelope`] (with `std`): sealing (XChaCha20-Poly1305) of every datagram.
//! - [`messages`] (with `std`): acknowledgements and health reports.
//! - [`replay_window`]: the replay window over message counters.
//! - [`FlowSink`]: where records go, whatever the place.
#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "std"), no_std)]

pub mod codec;
#[cfg(feature = "std")]
pub mod envelope;
pub mod fields;
#[cfg(feature = "std")]
pub mod format;
#[cfg(feature = "std")]
pub mod messages;
mod names;
pub mod record;
pub mod replay_window;

pub use codec::{BatchHeader, BatchReader, BatchWriter, WireError};
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
}

impl<S: FlowSink + ?Sized> FlowSink for &mut S {
    fn emit(&mut self, record: &FlowRecord) {
        (**self).emit(record)
    }
}

#[cfg(feature = "std")]
impl FlowSink for Vec<FlowRecord> {
    fn emit(&mut self, record: &FlowRecord) {
        self.push(*record);
    }
}
