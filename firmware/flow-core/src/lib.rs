//! PiTap's flow engine, free of I/O so it can be tested and benchmarked on
//! its own (the way smoltcp separates `phy`, `wire`, `iface` and `socket`):
//!
//! - [`source`]: the frame type and the one trait every packet source implements.
//! - [`apps`]: DNS, DHCP, TLS ClientHello and HTTP request parsers; [`apps::learn`]
//!   puts what they read into the caches and a flow's record.
//! - [`decode`]: link layer, VLAN/QinQ, MPLS, IPv4/IPv6, TCP/UDP/ICMP fields.
//! - [`key`], [`flow`], [`tcp`]: bidirectional flows, Zeek-style TCP state and history.
//! - [`table`]: the fixed-size flow table with its recency lists; [`index`]: its hash index.
//! - [`enrich`]: bounded caches of DNS names, DHCP leases and per-flow TLS/HTTP info.
//! - [`engine`]: frames in, [`pitap_wire::FlowRecord`]s out, with timeouts and eviction.
#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod apps;
pub mod decode;
pub mod engine;
pub mod enrich;
pub mod files;
pub mod flow;
pub mod fragments;
pub mod index;
pub mod key;
pub mod ring;
pub mod seq;
pub mod source;
pub mod stats;
pub mod table;
pub mod tcp;

pub use engine::{EngineConfig, Eviction, FlowEngine};
pub use source::{Frame, LinkType, PacketSource};
pub use stats::{Anomaly, AppStats, EngineStats};
