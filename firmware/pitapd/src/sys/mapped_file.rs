//! Read-only memory maps of capture files.

use std::fs::File;
use std::io;

/// A read-only memory map of a whole file.
pub struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    pub fn open(file: &File) -> io::Result<Self> {
        // SAFETY: the map is read-only and PiTap never writes the file. If
        // another process truncates it while we read, the kernel sends SIGBUS
        // (the documented hazard of file maps); we accept that for capture
        // files, which nobody edits in place, in exchange for reading them
        // without a copy per packet.
        let map = unsafe { memmap2::Mmap::map(file)? };
        // Readers go front to back: tell the kernel to read ahead.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(MappedFile { map })
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}
