//! pitapd, the PiTap firmware: packets from a source, through the flow
//! engine, to sinks (the uplink, a printer).

pub mod cli;
pub mod config;
pub mod forensics;
pub mod health;
pub mod links;
pub mod live;
pub mod offline;
pub mod ports;
pub mod sinks;
pub mod source;
pub mod stack;
pub mod status;
pub mod summary;
pub mod sys;
pub mod update;
pub mod uplink;
pub mod watchdog;
