//! Packet sources of the firmware. The trait itself lives in the flow core
//! (`pitap_flow_core::PacketSource`) so that every source and every wrapper
//! speaks the same interface.

pub mod capture_file;
pub mod pcap_writer;
pub mod ring;

pub use capture_file::{CaptureBytes, CaptureError, CaptureReader};
