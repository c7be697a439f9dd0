//! The card's `autoboot.txt` (Raspberry Pi bootloader, first FAT
//! partition) in its A/B form:
//!
//! ```text
//! [all]
//! tryboot_a_b=1
//! boot_partition=2
//! [tryboot]
//! boot_partition=3
//! ```
//!
//! A normal boot starts `[all]`'s partition; a reboot with the one-shot
//! tryboot flag (`reboot "0 tryboot"`) starts `[tryboot]`'s, and any
//! reboot after that the `[all]` one again, unless the trial committed by
//! swapping the two.

/// The two boot partitions (MBR numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoBoot {
    /// Booted normally.
    pub active: u8,
    /// Booted with the tryboot flag: where an update goes.
    pub trial: u8,
}

/// The bootloader reads at most this much of the file.
const MAX_LEN: usize = 512;

impl AutoBoot {
    pub fn parse(text: &str) -> Result<AutoBoot, String> {
        if text.len() > MAX_LEN {
            return Err(format!(
                "autoboot.txt: {} bytes, the bootloader reads {MAX_LEN}",
                text.len()
            ));
        }
        let mut section = "all".to_string();
        let (mut a_b, mut active, mut trial) = (false, None, None);
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "autoboot.txt line {}: {raw:?} is not key=value",
                    n + 1
                ));
            };
            let slot = match (section.as_str(), key.trim()) {
                ("all", "tryboot_a_b") => {
                    a_b = value.trim() == "1";
                    continue;
                }
                ("all", "boot_partition") => &mut active,
                ("tryboot", "boot_partition") => &mut trial,
                _ => continue,
            };
            let p: u8 = value
                .trim()
                .parse()
                .ok()
                .filter(|p| (1..=4).contains(p))
                .ok_or_else(|| format!("autoboot.txt line {}: boot_partition 1 to 4", n + 1))?;
            *slot = Some(p);
        }
        if !a_b {
            return Err("autoboot.txt: [all] tryboot_a_b=1 missing".into());
        }
        let active = active.ok_or("autoboot.txt: [all] boot_partition missing")?;
        let trial = trial.ok_or("autoboot.txt: [tryboot] boot_partition missing")?;
        if active == trial {
            return Err(format!(
                "autoboot.txt: both sections boot partition {active}"
            ));
        }
        Ok(AutoBoot { active, trial })
    }

    pub fn render(&self) -> String {
        format!(
            "[all]\ntryboot_a_b=1\nboot_partition={}\n[tryboot]\nboot_partition={}\n",
            self.active, self.trial
        )
    }

    /// After a trial that went well: the trial partition boots from now on,
    /// the old one takes the next update.
    pub fn committed(self) -> AutoBoot {
        AutoBoot {
            active: self.trial,
            trial: self.active,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n";

    #[test]
    fn the_a_b_form_parses_renders_and_swaps() {
        let a = AutoBoot::parse(SHIPPED).unwrap();
        assert_eq!(
            a,
            AutoBoot {
                active: 2,
                trial: 3
            }
        );
        assert_eq!(a.render(), SHIPPED);
        let b = a.committed();
        assert_eq!(
            b,
            AutoBoot {
                active: 3,
                trial: 2
            }
        );
        assert_eq!(AutoBoot::parse(&b.render()).unwrap(), b);
        assert_eq!(b.committed(), a);
        // Comments, blank lines, spaces and other keys are fine.
        let loose = "# PiTap\n\n[all]\n tryboot_a_b = 1\nboot_partition = 3\nfoo=bar\n[tryboot]\nboot_partition=2\n";
        assert_eq!(AutoBoot::parse(loose).unwrap(), b);
    }

    #[test]
    fn a_file_that_cannot_do_a_b_says_why() {
        for (text, why) in [
            (
                "[all]\nboot_partition=2\n[tryboot]\nboot_partition=3\n",
                "tryboot_a_b",
            ),
            (
                "[all]\ntryboot_a_b=1\n[tryboot]\nboot_partition=3\n",
                "[all] boot_partition",
            ),
            (
                "[all]\ntryboot_a_b=1\nboot_partition=2\n",
                "[tryboot] boot_partition",
            ),
            (
                "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n",
                "both",
            ),
            ("[all]\ntryboot_a_b=1\nboot_partition=9\n", "1 to 4"),
            ("[all]\ntryboot_a_b\n", "key=value"),
        ] {
            let e = AutoBoot::parse(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        assert!(AutoBoot::parse(&"#".repeat(600))
            .unwrap_err()
            .contains("512"));
    }
}
