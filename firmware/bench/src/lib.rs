//! PiTap's benchmark kit: [`gen`] makes a deterministic capture with a
//! realistic mix; the `pitap-gencap` binary writes it as pcap and
//! `pitap-bench` runs the flow core, `pitapd --read` and the peers on it;
//! [`http`] makes HTTP downloads for `pitap-forensics-bench` (the packet
//! ring and file hashing); [`beacons`] is the beacon corpus and
//! [`beacon_capture`] writes it as a capture.

pub mod alloc_count;
pub mod beacon_capture;
pub mod beacons;
pub mod gen;
pub mod http;
pub mod measure;
