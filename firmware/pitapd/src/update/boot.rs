//! Which boot partition this boot came from, and whether it is a trial
//! boot: the Raspberry Pi firmware says so in the device tree
//! (`/chosen/bootloader/partition` and `tryboot`, big-endian u32 cells);
//! a boot without that firmware (the emulator's boot harness) says it on
//! the kernel command line (`pitap.boot_partition=N pitap.tryboot=1`).

use std::path::Path;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// MBR partition number (0: not known).
    pub partition: u8,
    pub tryboot: bool,
}

/// A device-tree cell: 4 bytes, big-endian.
fn cell(path: &Path) -> Option<u32> {
    let bytes = std::fs::read(path).ok()?;
    let four: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(four))
}

impl BootInfo {
    /// From the firmware's device-tree node `bootloader` (a directory) and
    /// the kernel command line `cmdline` (a file); the device tree wins
    /// where both say something.
    pub fn read(bootloader: &Path, cmdline: &Path) -> BootInfo {
        let mut info = std::fs::read_to_string(cmdline)
            .map(|c| BootInfo::from_cmdline(&c))
            .unwrap_or_default();
        if let Some(p) = cell(&bootloader.join("partition")).filter(|p| (1..=4).contains(p)) {
            info.partition = p as u8;
        }
        if let Some(t) = cell(&bootloader.join("tryboot")) {
            info.tryboot = t != 0;
        }
        info
    }

    pub fn from_cmdline(cmdline: &str) -> BootInfo {
        let mut info = BootInfo::default();
        for word in cmdline.split_whitespace() {
            if let Some(p) = word.strip_prefix("pitap.boot_partition=") {
                info.partition = p.parse().ok().filter(|p| (1..=4).contains(p)).unwrap_or(0);
            } else if let Some(t) = word.strip_prefix("pitap.tryboot=") {
                info.tryboot = t == "1";
            }
        }
        info
    }
}

/// The partition pattern (`{n}` for the number) of the disk whose partition
/// is mounted at `mount_point`, by `mounts` (/proc/mounts): `/dev/vda1` on
/// /boot gives `/dev/vda{n}`, `/dev/mmcblk0p1` gives `/dev/mmcblk0p{n}`.
pub fn partitions_beside(mounts: &str, mount_point: &Path) -> Option<String> {
    let target = mount_point.to_str()?;
    let device = mounts.lines().rev().find_map(|l| {
        let mut f = l.split_whitespace();
        let (dev, at) = (f.next()?, f.next()?);
        (at == target).then_some(dev)
    })?;
    let base = device.trim_end_matches(|c: char| c.is_ascii_digit());
    (base.len() < device.len() && base.starts_with("/dev/")).then(|| format!("{base}{{n}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_tree_wins_over_the_command_line() {
        let dir = std::env::temp_dir().join(format!("pitap-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cmdline = dir.join("cmdline");
        std::fs::write(
            &cmdline,
            "console=ttyAMA0 pitap.boot_partition=2 pitap.tryboot=1\n",
        )
        .unwrap();
        assert_eq!(
            BootInfo::read(&dir.join("none"), &cmdline),
            BootInfo {
                partition: 2,
                tryboot: true
            }
        );
        std::fs::write(dir.join("partition"), 3u32.to_be_bytes()).unwrap();
        std::fs::write(dir.join("tryboot"), 0u32.to_be_bytes()).unwrap();
        assert_eq!(
            BootInfo::read(&dir, &cmdline),
            BootInfo {
                partition: 3,
                tryboot: false
            }
        );
        // Nonsense is not a partition.
        assert_eq!(
            BootInfo::from_cmdline("pitap.boot_partition=9").partition,
            0
        );
        assert_eq!(
            BootInfo::read(&dir.join("x"), &dir.join("y")),
            BootInfo::default()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
