//! The PiTap host tools: the collector for many taps and its helpers.
//!
//! - [`collector`]: datagrams in, records and acknowledgements out (no I/O).
//! - [`taps`]: per-tap state: boots, sequence numbers, health.
//! - [`collect`]: `pitap collect`, the socket loop.
//! - [`config`]: the collector.toml file.
//! - [`keygen`]: `pitap keygen`.
//! - [`image_write`]: `pitap image write`.
//! - [`flow`]: a flow as the host tools pass it; [`fields`]: its fields
//!   by name; [`networks`]: named networks and the fields they give a flow.
//! - [`store`]: the flow store (SQLite, flows in columns) and its query
//!   engine; [`progress`]: the progress line of long queries.
//! - [`query`]: the query language; [`search`]: `pitap query`; [`files`]:
//!   `pitap files`.
//! - [`report`]: `pitap report`; [`alerts`] (+ [`webhook`]): alert rules.
//! - [`export`]: IPFIX, NetFlow v9, GELF, syslog.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod beacon;
pub mod collect;
pub mod collector;
pub mod config;
pub mod devices;
pub mod export;
pub mod fetching;
pub mod fields;
pub mod files;
pub mod flow;
pub mod geoip;
pub mod image_write;
pub mod keygen;
pub mod networks;
pub mod oui;
pub mod pcap_fetch;
pub mod progress;
pub mod query;
pub mod report;
pub mod search;
pub mod store;
pub mod taps;
pub mod update_cmd;
pub mod updating;
pub mod web;
pub mod webhook;
