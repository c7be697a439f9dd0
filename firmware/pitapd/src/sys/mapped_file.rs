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

impl MappedFile {
    /// Drops the pages before `offset` from this process's memory (they stay
    /// in the page cache): a reader going front to back then holds a few
    /// megabytes of the file resident, not the whole file, so the RSS of
    /// `pitapd --read` is its own memory.
    pub fn release_before(&self, offset: usize) {
        let page = 4096;
        let end = (offset.min(self.map.len()) / page) * page;
        if end == 0 {
            return;
        }
        // SAFETY: MADV_DONTNEED on a read-only private file map only drops
        // page table entries: a later access faults the page in again from
        // the file, so frames still borrowed from this range stay valid.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, end)
        };
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}
