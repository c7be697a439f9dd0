//! `pitap image write`: puts a PiTap image on an SD card (or into a file)
//! and bakes the tap's identity into `pitap.toml` on its FAT partition: tap
//! id, collector address and key, plus any extra settings. The FAT is
//! written with mtools at the partition's offset, so a file target needs no
//! root and nothing is mounted.

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
    if o.tap_id.is_empty() || o.tap_id.len() > 32 || o.tap_id.contains('"') {
        return Err("--tap-id: 1 to 32 bytes, no quotes".into());
    }
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
    std::io::copy(&mut src, &mut dst).map_err(|e| format!("writing {}: {e}", target.display()))?;
    dst.sync_all()
        .map_err(|e| format!("{}: {e}", target.display()))
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

pub fn run(o: &Options) -> Result<(), String> {
    let toml = pitap_toml(o)?;
    copy_image(&o.image, &o.target)?;
    let mut disk =
        std::fs::File::open(&o.target).map_err(|e| format!("{}: {e}", o.target.display()))?;
    disk.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let offset = first_partition_offset(&mut disk)?;
    let tmp = std::env::temp_dir().join(format!("pitap-toml-{}", std::process::id()));
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(toml.as_bytes()))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let status = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{offset}", o.target.display()))
        .arg(&tmp)
        .arg("::pitap.toml")
        .status();
    let _ = std::fs::remove_file(&tmp);
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
        };
        let t = pitap_toml(&o).unwrap();
        assert!(t.contains("id = \"rack3\"") && t.contains("collector = \"192.0.2.10:4739\""));
        let bad = Options {
            key: Some("xyz".into()),
            ..o
        };
        assert!(pitap_toml(&bad).unwrap_err().starts_with("--key"));
    }
}
