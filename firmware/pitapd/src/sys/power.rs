//! Rebooting (with the Raspberry Pi firmware's one-shot tryboot flag) and
//! remounting the boot partition read-write around a write to it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What the Pi's firmware driver takes as the reboot command for a trial
/// boot of autoboot.txt's `[tryboot]` partition (`reboot "0 tryboot"`).
pub const TRYBOOT: &str = "0 tryboot";

/// Writes every dirty buffer out, then restarts the machine; with
/// `command`, through `LINUX_REBOOT_CMD_RESTART2` carrying it. Returns only
/// on failure. In a PID namespace other than the first, the kernel ends
/// that namespace instead (its init dies of SIGHUP): a test's tap.
pub fn restart(command: Option<&str>) -> io::Error {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let rc = match command {
        Some(cmd) => {
            let Ok(arg) = CString::new(cmd) else {
                return io::Error::new(io::ErrorKind::InvalidInput, "NUL in reboot command");
            };
            // SAFETY: the magic numbers are the kernel's; arg is a valid
            // NUL-terminated string that lives across the call, which the
            // kernel copies (at most 256 bytes) before it acts.
            unsafe {
                libc::syscall(
                    libc::SYS_reboot,
                    libc::LINUX_REBOOT_MAGIC1,
                    libc::LINUX_REBOOT_MAGIC2,
                    libc::LINUX_REBOOT_CMD_RESTART2,
                    arg.as_ptr(),
                )
            }
        }
        // SAFETY: reboot(2) with a plain restart takes no pointers.
        None => libc::c_long::from(unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_RESTART) }),
    };
    if rc < 0 {
        io::Error::last_os_error()
    } else {
        io::Error::other("reboot returned")
    }
}

/// Remounts the filesystem mounted at `target` read-write or read-only.
pub fn remount(target: &Path, writable: bool) -> io::Result<()> {
    let path = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount point"))?;
    let mut flags = libc::MS_REMOUNT;
    if !writable {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: path is a valid NUL-terminated string for the call; a remount
    // takes no source, type or data (null pointers are what the kernel
    // expects then).
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
