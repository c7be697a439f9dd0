//! The PiTap host tools: the collector for many taps and its helpers.
//!
//! - [`collector`]: datagrams in, records and acknowledgements out (no I/O).
//! - [`taps`]: per-tap state: boots, sequence numbers, health.
//! - [`collect`]: `pitap collect`, the socket loop.
//! - [`config`]: the collector.toml file.
//! - [`keygen`]: `pitap keygen`.
//! - [`image_write`]: `pitap image write`.
//! - [`store`]: the SQLite flow store; [`networks`]: named networks and
//!   the fields they give a flow; [`fields`]: flow fields by name.
//! - [`query`]: the query language; [`search`]: `pitap query`.
//! - [`report`]: `pitap report`; [`alerts`] (+ [`webhook`]): alert rules.
//! - [`export`]: IPFIX, NetFlow v9, GELF, syslog.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod collect;
pub mod collector;
pub mod config;
pub mod devices;
pub mod export;
pub mod fields;
pub mod image_write;
pub mod keygen;
pub mod networks;
pub mod query;
pub mod report;
pub mod search;
pub mod store;
pub mod taps;
pub mod webhook;
