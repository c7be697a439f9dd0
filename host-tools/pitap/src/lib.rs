//! The PiTap host tools: the collector for many taps and its helpers.
//!
//! - [`collector`]: datagrams in, records and acknowledgements out (no I/O).
//! - [`taps`]: per-tap state: boots, sequence numbers, health.
//! - [`collect`]: `pitap collect`, the socket loop.
//! - [`config`]: the collector.toml file.
//! - [`keygen`]: `pitap keygen`.

pub mod collect;
pub mod collector;
pub mod config;
pub mod keygen;
pub mod taps;
