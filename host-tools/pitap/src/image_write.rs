//! `pitap image write`: puts a PiTap image on an SD card (or into a file)
//! and bakes the tap's identity into `pitap.toml` on its FAT partition: tap
//! id, collector address and key, plus any extra settings. The FAT is
//! written with mtools at the partition's offset, so a file target needs no
//! root and nothing is mounted.
//!
//! Everything is checked before a byte is written: the image (an MBR whose
//! first partition is a FAT boot sector), the tap id, key, collector and the
//! extra settings (TOML); a block device is written only when the user
//! confirms it (typing its name, or `--yes`) and none of its partitions is
//! mounted. pitap.toml, which holds the key, is staged in a directory only
//! the user can enter, as a 0600 file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Options {
    pub image: PathBuf,
    pub target: PathBuf,
    pub tap_id: String,
    pub collector: Option<String>,
    pub key: Option<String>,
    pub extra: Option<PathBuf>,
    /// Write a block device without asking.
    pub yes: bool,
}

/// Byte offset of the first partition, from the MBR.
pub fn first_partition_offset(disk: &mut impl Read) -> Result<u64, String> {
    let mut mbr = [0u8; 512];
    disk.read_exact(&mut mbr)
        .map_err(|e| format!("reading the MBR: {e}"))?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err("no MBR partition table (not a PiTap image)".into());
    }
    let entry = &mbr[446..462];
    if entry[4] == 0 {
        return Err("the first partition is empty".into());
    }
    let lba = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
    Ok(u64::from(lba) * 512)
}

/// The pitap.toml written on the card.
pub fn pitap_toml(o: &Options) -> Result<String, String> {
    pitap_wire::codec::check_tap_id(&o.tap_id).map_err(|e| format!("--tap-id: {e}"))?;
    let mut t = format!(
        "# Written by pitap image write. Every key: pitap.example.toml.\n[tap]\nid = \"{}\"\nmode = \"inline\"\nport_a = \"eth0\"\nport_b = \"eth1\"\n\n[watchdog]\ndevice = \"/dev/watchdog\"\n",
        o.tap_id
    );
    match (&o.collector, &o.key) {
        (Some(c), Some(k)) => {
            pitap_wire::envelope::Key::from_hex(k).map_err(|e| format!("--key: {e}"))?;
            c.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("--collector: {c:?} is not ADDRESS:PORT"))?;
            t += &format!("\n[uplink]\ncollector = \"{c}\"\nkey = \"{k}\"\n");
        }
        (None, None) => {}
        _ => return Err("--collector and --key go together (pitap keygen makes a key)".into()),
    }
    if let Some(extra) = &o.extra {
        let text =
            std::fs::read_to_string(extra).map_err(|e| format!("{}: {e}", extra.display()))?;
        toml::from_str::<toml::Table>(&text)
            .map_err(|e| format!("--extra {}: not TOML: {e}", extra.display()))?;
        t += "\n";
        t += &text;
    }
    Ok(t)
}

fn copy_image(image: &Path, target: &Path) -> Result<(), String> {
    let mut src = std::fs::File::open(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!is_block_device(target))
        .open(target)
        .map_err(|e| format!("{}: {e}", target.display()))?;
    // A bar on a terminal (indicatif draws nothing when stderr is not one).
    let len = src.metadata().map(|m| m.len()).ok();
    let bar = indicatif::ProgressBar::with_draw_target(
        len,
        indicatif::ProgressDrawTarget::stderr_with_hz(5),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "writing [{bar:30}] {bytes} of {total_bytes}, {bytes_per_sec}, {eta} left",
    ) {
        bar.set_style(style.progress_chars("#>."));
    }
    std::io::copy(&mut bar.wrap_read(&mut src), &mut dst)
        .map_err(|e| format!("writing {}: {e}", target.display()))?;
    bar.finish_and_clear();
    dst.sync_all()
        .map_err(|e| format!("{}: {e}", target.display()))
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Checks that `image` is a PiTap image: an MBR whose first partition
/// starts with a FAT boot sector inside the file. Returns the partition's
/// offset.
pub fn check_image(image: &Path) -> Result<u64, String> {
    let name = image.display();
    let mut f = std::fs::File::open(image).map_err(|e| format!("--image {name}: {e}"))?;
    let offset = first_partition_offset(&mut f).map_err(|e| format!("--image {name}: {e}"))?;
    let mut boot = [0u8; 512];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut boot))
        .map_err(|_| {
            format!("--image {name}: the first partition lies past the end of the file")
        })?;
    let fat = boot[510..512] == [0x55, 0xaa]
        && (boot[54..59] == *b"FAT16" || boot[54..59] == *b"FAT12" || boot[82..87] == *b"FAT32");
    if !fat {
        return Err(format!(
            "--image {name}: the first partition is not FAT (not a PiTap image)"
        ));
    }
    Ok(offset)
}

/// A directory only this user can enter, removed when dropped: where the
/// key-bearing pitap.toml waits for mcopy.
pub struct Staging {
    pub dir: PathBuf,
}

impl Staging {
    pub fn new() -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // create() fails if the name exists: nobody can plant it before us.
        for attempt in 0..16u32 {
            let dir = base.join(format!(
                "pitap-image-{}-{:08x}",
                std::process::id(),
                nanos.wrapping_add(attempt.wrapping_mul(0x9e37_79b9))
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Staging { dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            }
        }
        Err(format!("no private directory in {}", base.display()))
    }

    /// Writes `name` in the directory, 0600, new.
    pub fn file(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// For a block device: none of it mounted, and the user's yes.
fn confirm_device(target: &Path, yes: bool) -> Result<(), String> {
    let name = target.display().to_string();
    let real = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let real = real.display().to_string();
    if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
        if let Some(m) = mounts.lines().find(|l| {
            l.split(' ')
                .next()
                .is_some_and(|dev| dev == real || dev.starts_with(&real))
        }) {
            return Err(format!(
                "{name} is mounted ({}): unmount it first",
                m.split(' ').take(2).collect::<Vec<_>>().join(" on ")
            ));
        }
    }
    if yes {
        return Ok(());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{name} is a block device: everything on it is lost; confirm with --yes"
        ));
    }
    eprint!("pitap: everything on {name} is lost. Type its name to go on: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if line.trim() == name || line.trim() == real {
        Ok(())
    } else {
        Err(format!("{name} not written"))
    }
}

pub fn run(o: &Options) -> Result<(), String> {
    let toml = pitap_toml(o)?;
    let offset = check_image(&o.image)?;
    if std::fs::canonicalize(&o.image).ok() == std::fs::canonicalize(&o.target).ok() {
        return Err("--target is the image itself".into());
    }
    if is_block_device(&o.target) {
        confirm_device(&o.target, o.yes)?;
    }
    let staging = Staging::new()?;
    let tmp = staging.file("pitap.toml", &toml)?;
    copy_image(&o.image, &o.target)?;
    let status = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{offset}", o.target.display()))
        .arg(&tmp)
        .arg("::pitap.toml")
        .status();
    drop(staging);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("mcopy failed ({s})")),
        Err(e) => return Err(format!("mcopy (from mtools) is needed: {e}")),
    }
    println!(
        "wrote {} to {} with pitap.toml for tap {:?}",
        o.image.display(),
        o.target.display(),
        o.tap_id
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mbr_gives_the_partition_offset() {
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        mbr[446 + 4] = 0x0c;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        assert_eq!(first_partition_offset(&mut mbr.as_slice()), Ok(1 << 20));
        mbr[511] = 0;
        assert!(first_partition_offset(&mut mbr.as_slice()).is_err());
    }

    #[test]
    fn the_toml_has_identity_and_checks_its_inputs() {
        let o = Options {
            image: "x".into(),
            target: "y".into(),
            tap_id: "rack3".into(),
            collector: Some("192.0.2.10:4739".into()),
            key: Some("ab".repeat(32)),
            extra: None,
            yes: false,
        };
        let t = pitap_toml(&o).unwrap();
        assert!(t.contains("id = \"rack3\"") && t.contains("collector = \"192.0.2.10:4739\""));
        let bad = Options {
            key: Some("xyz".into()),
            ..o
        };
        assert!(pitap_toml(&bad).unwrap_err().starts_with("--key"));
        for id in ["../evil", ".hidden", "a\"b", ""] {
            let bad = Options {
                tap_id: id.into(),
                key: None,
                collector: None,
                image: "x".into(),
                target: "y".into(),
                extra: None,
                yes: false,
            };
            assert!(
                pitap_toml(&bad).unwrap_err().starts_with("--tap-id"),
                "{id}"
            );
        }
    }

    #[test]
    fn the_key_is_staged_privately() {
        use std::os::unix::fs::PermissionsExt;
        let a = Staging::new().unwrap();
        let b = Staging::new().unwrap();
        assert_ne!(a.dir, b.dir);
        let file = a.file("pitap.toml", "key = 1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a.dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        // A file planted under the name is not written through.
        assert!(a.file("pitap.toml", "again").is_err());
        let dir = a.dir.clone();
        drop(a);
        assert!(!dir.exists());
    }

    #[test]
    fn an_image_is_checked_before_anything_is_written() {
        let dir = Staging::new().unwrap();
        let not_image = dir.file("x.img", &"x".repeat(4096)).unwrap();
        assert!(check_image(&not_image).unwrap_err().contains("no MBR"));
        // An MBR whose partition is not FAT.
        let mut disk = vec![0u8; 4096];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        disk[446 + 4] = 0x0c;
        disk[446 + 8] = 2;
        let path = dir.dir.join("mbr.img");
        std::fs::write(&path, &disk).unwrap();
        assert!(check_image(&path).unwrap_err().contains("not FAT"));
        disk[1024 + 510] = 0x55;
        disk[1024 + 511] = 0xaa;
        disk[1024 + 82..1024 + 87].copy_from_slice(b"FAT32");
        std::fs::write(&path, &disk).unwrap();
        assert_eq!(check_image(&path), Ok(1024));
        let o = Options {
            image: not_image,
            target: dir.dir.join("card.img"),
            tap_id: "lab".into(),
            collector: None,
            key: None,
            extra: None,
            yes: false,
        };
        assert!(run(&o).is_err());
        assert!(!o.target.exists(), "nothing written for a bad image");
    }
}
