//! An update image written to the inactive boot partition as it arrives,
//! checked against its signed manifest while it is written and read back
//! from the partition at the end: only an image that is whole on the card
//! is one to reboot into. A power cut in the middle leaves a partition
//! nobody boots (the active one and autoboot.txt are untouched).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use pitap_wire::update::{ImageCheck, Manifest, UpdateError};
use sha2::{Digest, Sha256};

pub struct PartitionWriter {
    file: File,
    check: ImageCheck,
}

#[derive(Debug)]
pub enum WriteError {
    Update(UpdateError),
    Io(String),
    /// What the partition holds after writing is not what was sent.
    ReadBack,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Update(e) => write!(f, "{e}"),
            WriteError::Io(e) => write!(f, "{e}"),
            WriteError::ReadBack => {
                write!(f, "the partition reads back other bytes than were written")
            }
        }
    }
}

impl From<UpdateError> for WriteError {
    fn from(e: UpdateError) -> Self {
        WriteError::Update(e)
    }
}

impl PartitionWriter {
    /// Opens the partition (a block device, or a file in tests) for an
    /// image of `manifest`, whose signature was checked: refused if the
    /// image does not fit.
    pub fn open(partition: &Path, manifest: Manifest) -> Result<PartitionWriter, WriteError> {
        let io = |e: std::io::Error| WriteError::Io(format!("{}: {e}", partition.display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(partition)
            .map_err(io)?;
        // A block device's length is where its end is.
        let room = file.seek(SeekFrom::End(0)).map_err(io)?;
        let check = ImageCheck::new(manifest, room)?;
        Ok(PartitionWriter { file, check })
    }

    /// The next offset wanted.
    pub fn received(&self) -> u64 {
        self.check.received()
    }

    pub fn is_complete(&self) -> bool {
        self.check.is_complete()
    }

    /// Writes the bytes at `offset` (the next ones).
    pub fn take(&mut self, offset: u64, bytes: &[u8]) -> Result<(), WriteError> {
        self.check.take(offset, bytes)?;
        let io = |e: std::io::Error| WriteError::Io(format!("writing at {offset}: {e}"));
        self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        self.file.write_all(bytes).map_err(io)
    }

    /// Everything arrived, its digest is the manifest's, it is on the card
    /// (synced) and reads back the same.
    pub fn finish(mut self) -> Result<Manifest, WriteError> {
        let manifest = self.check.finish()?;
        let io = |e: std::io::Error| WriteError::Io(format!("read-back: {e}"));
        self.file.sync_all().map_err(io)?;
        if digest_of(&mut self.file, manifest.size).map_err(io)? != manifest.sha256 {
            return Err(WriteError::ReadBack);
        }
        Ok(manifest)
    }
}

/// SHA-256 of the first `size` bytes of a partition: whether it holds an
/// image already (the one running, or one written before).
pub fn partition_digest(partition: &Path, size: u64) -> std::io::Result<[u8; 32]> {
    digest_of(&mut File::open(partition)?, size)
}

fn digest_of(file: &mut File, size: u64) -> std::io::Result<[u8; 32]> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut left = size;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = buf.len().min(left as usize);
        file.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(tag: &str, len: u64) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("pitap-part-{tag}-{}", std::process::id()));
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }

    #[test]
    fn an_image_is_written_checked_and_read_back() {
        let img: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let m = Manifest::of("0.2.0", &img).unwrap();
        let p = partition("ok", 1 << 20);
        let mut w = PartitionWriter::open(&p, m).unwrap();
        for (i, c) in img.chunks(1200).enumerate() {
            assert_eq!(w.received(), i as u64 * 1200);
            w.take(i as u64 * 1200, c).unwrap();
        }
        assert!(w.is_complete());
        assert_eq!(w.finish().unwrap().size, img.len() as u64);
        assert_eq!(std::fs::read(&p).unwrap()[..img.len()], img[..]);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn too_large_short_or_damaged_is_refused() {
        let img: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
        let m = Manifest::of("0.2.0", &img).unwrap();
        let small = partition("small", 10_000);
        assert!(matches!(
            PartitionWriter::open(&small, m.clone()),
            Err(WriteError::Update(UpdateError::TooLarge { .. }))
        ));
        let p = partition("short", 1 << 20);
        let mut w = PartitionWriter::open(&p, m.clone()).unwrap();
        w.take(0, &img[..40_000]).unwrap();
        assert!(matches!(
            w.finish(),
            Err(WriteError::Update(UpdateError::Short { .. }))
        ));
        let mut bad = img.clone();
        bad[123] ^= 1;
        let mut w = PartitionWriter::open(&p, m).unwrap();
        w.take(0, &bad).unwrap();
        assert!(matches!(
            w.finish(),
            Err(WriteError::Update(UpdateError::Digest))
        ));
        // Written right, but the card returns other bytes (a failing card).
        let mut w = PartitionWriter::open(&p, Manifest::of("0.2.0", &img).unwrap()).unwrap();
        w.take(0, &img).unwrap();
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(&[0xff], 49_999).unwrap();
        }
        assert!(matches!(w.finish(), Err(WriteError::ReadBack)));
        for f in [small, p] {
            let _ = std::fs::remove_file(f);
        }
    }
}
