//! The PiTap host tools: the collector for many taps and its helpers.
//!
//! - [`collector`]: datagrams in, records and acknowledgements out (no I/O).
//! - [`taps`]: per-tap state: boots, sequence numbers, health.
//! - [`collect`]: `pitap collect`, the socket loop.
//! - [`config`]: the collector.toml file.
//! - [`keygen`]: `pitap keygen`.
//! - [`image_write`]: `pitap image write`.

pub mod collect;
pub mod collector;
pub mod config;
pub mod image_write;
pub mod keygen;
pub mod taps;
