//! The Linux watchdog device (Documentation/watchdog/watchdog-api.rst): set
//! its timeout, feed it, disarm it on a clean exit with the magic 'V'.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// `WDIOC_SETTIMEOUT` = _IOWR('W', 6, int).
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xc004_5706;

pub struct WatchdogDevice {
    file: File,
}

impl WatchdogDevice {
    /// Opens the device (which arms it) and asks for `timeout_s`. A file
    /// that is not a watchdog (tests) takes the feeds without the ioctl.
    pub fn open(path: &Path, timeout_s: u32) -> io::Result<(WatchdogDevice, Option<io::Error>)> {
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        let mut timeout = timeout_s as libc::c_int;
        // (The request type differs between glibc and musl, hence `as _`.)
        // SAFETY: timeout is a valid int for the duration of the call; the
        // kernel reads it and writes back the timeout it set.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut timeout) };
        let note = (rc < 0).then(io::Error::last_os_error);
        Ok((WatchdogDevice { file }, note))
    }

    pub fn feed(&mut self) -> io::Result<()> {
        self.file.write_all(b"\0")
    }

    /// Disarms the watchdog (a clean stop is not a hang).
    pub fn disarm(&mut self) -> io::Result<()> {
        self.file.write_all(b"V")
    }
}
