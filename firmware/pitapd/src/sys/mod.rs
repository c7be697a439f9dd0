//! The only unsafe code in pitapd: the kernel interfaces Rust's std does not
//! wrap. Each unsafe block says why it is sound; everything above this module
//! is safe Rust.
//!
//! - [`mapped_file`]: read-only maps of capture files.
//! - [`ring`]: AF_PACKET TPACKET_V3 receive rings, `poll`, ring statistics.
//! - [`ethtool`]: the `SIOCETHTOOL` ioctl (GRO off).
//! - [`netlink`]: rtnetlink requests (links, bridges, ports, up/down).
//! - [`watchdog`]: the hardware watchdog device.
//! - [`power`]: reboot (tryboot included) and remounting the boot partition.
// The one module of pitapd where unsafe code is allowed (the crate denies it).
#![allow(unsafe_code)]

pub mod ethtool;
pub mod mapped_file;
pub mod netlink;
pub mod power;
pub mod ring;
pub mod watchdog;

pub use mapped_file::MappedFile;
