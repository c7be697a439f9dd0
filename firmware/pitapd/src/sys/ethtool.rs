//! The `SIOCETHTOOL` ioctl, for the one offload PiTap must switch off: GRO
//! merges received frames into large ones before capture sees them, which
//! distorts packet counts.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ETHTOOL_GGRO` / `ETHTOOL_SGRO` from linux/ethtool.h.
const ETHTOOL_GGRO: u32 = 0x0000_002b;
const ETHTOOL_SGRO: u32 = 0x0000_002c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of the union.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ifreq_name(ifname: &str) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    let mut name = [0u8; libc::IFNAMSIZ];
    name[..bytes.len()].copy_from_slice(bytes);
    Ok(name)
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() has no memory arguments; a non-negative result is a
    // new descriptor that nothing else owns.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let sock = control_socket()?;
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfreqData {
        name: ifreq_name(ifname)?,
        data: (&mut value as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    // (The request type differs between glibc and musl, hence `as _`.)
    // SAFETY: req is a valid ifreq whose data pointer points at `value`,
    // which outlives the call; the kernel reads and writes only those.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

/// Switches generic receive offload on or off.
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    ethtool_value(ifname, ETHTOOL_SGRO, u32::from(on)).map(|_| ())
}

/// Whether generic receive offload is on.
pub fn gro(ifname: &str) -> io::Result<bool> {
    ethtool_value(ifname, ETHTOOL_GGRO, 0).map(|v| v != 0)
}
