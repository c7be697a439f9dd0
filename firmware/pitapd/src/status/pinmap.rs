//! The machine-readable pin map (`hardware/pinmap.toml`), and finding the
//! header's I2C bus and GPIO chip through sysfs and the GPIO character
//! device, since their numbers are not fixed on mainline kernels.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The pin map shipped with the firmware.
pub const DEFAULT: &str = include_str!("../../../../hardware/pinmap.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub line: u32,
    #[serde(default)]
    pub active_low: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioSection {
    pub chip: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedsSection {
    pub power: Pin,
    pub link_a: Pin,
    pub link_b: Pin,
    pub uplink: Pin,
    pub alert: Pin,
}

impl LedsSection {
    /// In `Leds::NAMES` order.
    pub fn pins(&self) -> [&Pin; 5] {
        [
            &self.power,
            &self.link_a,
            &self.link_b,
            &self.uplink,
            &self.alert,
        ]
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonSection {
    pub line: u32,
    #[serde(default)]
    pub active_low: bool,
    pub debounce_ms: u64,
    pub long_press_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum BusSetting {
    Number(u8),
    Name(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplaySection {
    pub i2c_bus: BusSetting,
    pub address: u16,
}

/// The bypass board (hardware/bypass/): the GPIO to its monostable's
/// trigger, how long the board holds the relays after an edge, and how
/// long the tap must be healthy before it goes inline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BypassSection {
    pub line: u32,
    pub hold_ms: u64,
    pub arm_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinMap {
    pub gpio: GpioSection,
    pub leds: LedsSection,
    pub button: ButtonSection,
    pub display: DisplaySection,
    /// Only with a bypass board.
    #[serde(default)]
    pub bypass: Option<BypassSection>,
}

impl PinMap {
    pub fn parse(text: &str) -> Result<PinMap, String> {
        let map: PinMap = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut lines: Vec<u32> = map.leds.pins().iter().map(|p| p.line).collect();
        lines.push(map.button.line);
        if let Some(b) = &map.bypass {
            lines.push(b.line);
            // The edges come every fifth of the hold: under 50 ms they
            // would cost the loop, over 2 s a hung tap cuts the cable long.
            if !(50..=2000).contains(&b.hold_ms) {
                return Err(format!(
                    "bypass.hold_ms: the board's hold time, 50 to 2000 ms, not {}",
                    b.hold_ms
                ));
            }
        }
        for (i, l) in lines.iter().enumerate() {
            if lines[..i].contains(l) {
                return Err(format!("line {l} is used twice in leds/button/bypass"));
            }
        }
        if let BusSetting::Name(n) = &map.display.i2c_bus {
            if n != "auto" {
                return Err(format!(
                    "display.i2c_bus: \"auto\" or a bus number, not {n:?}"
                ));
            }
        }
        if !(0x03..=0x77).contains(&map.display.address) {
            return Err("display.address: a 7-bit I2C address (0x3C or 0x3D)".into());
        }
        Ok(map)
    }

    pub fn load(path: Option<&Path>) -> Result<PinMap, String> {
        match path {
            None => PinMap::parse(DEFAULT),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                PinMap::parse(&text).map_err(|e| format!("{}: {e}", p.display()))
            }
        }
    }
}

/// Device tree nodes of the I2C controller on header pins 3 and 5: BCM283x
/// i2c1 (Pi 1-4, Zero 2 W, CM4) and RP1 i2c1 (Pi 5).
const HEADER_I2C_NODES: [&str; 2] = ["i2c@7e804000", "i2c@74000"];

/// The bus number of the header I2C, found through `sys_root`
/// (`/sys` on a device): the adapter whose device tree node is one of the
/// header controllers.
pub fn find_header_i2c_bus(sys_root: &Path) -> Option<u8> {
    let dir = sys_root.join("bus/i2c/devices");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(n) = name.strip_prefix("i2c-").and_then(|n| n.parse::<u8>().ok()) else {
            continue;
        };
        let Ok(node) = std::fs::read_link(entry.path().join("of_node")) else {
            continue;
        };
        let node = node.to_string_lossy();
        if HEADER_I2C_NODES.iter().any(|h| node.ends_with(h)) {
            found.push(n);
        }
    }
    found.into_iter().min()
}

/// The GPIO chip carrying the header pins.
pub fn find_gpio_chip(setting: &str) -> Result<PathBuf, String> {
    if setting != "auto" {
        return Ok(PathBuf::from(setting));
    }
    let chips = gpiocdev::chip::chips().map_err(|e| format!("no GPIO chips: {e}"))?;
    for path in &chips {
        if let Ok(info) = gpiocdev::Chip::from_path(path).and_then(|c| c.info()) {
            if info.label.starts_with("pinctrl-") {
                return Ok(path.clone());
            }
        }
    }
    Err(format!(
        "no GPIO chip labelled pinctrl-* among {} chips",
        chips.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_map_parses() {
        let map = PinMap::parse(DEFAULT).unwrap();
        assert_eq!(map.leds.power.line, 17);
        assert!(map.button.active_low);
        assert_eq!(map.display.address, 0x3c);
    }

    #[test]
    fn bad_maps_say_why() {
        let dup = DEFAULT.replace("line = 27", "line = 17");
        assert!(PinMap::parse(&dup)
            .unwrap_err()
            .contains("line 17 is used twice"));
        assert!(PinMap::parse(DEFAULT).unwrap().bypass.is_none());
        let board = format!("{DEFAULT}\n[bypass]\nline = 6\nhold_ms = 250\narm_ms = 3000\n");
        assert_eq!(PinMap::parse(&board).unwrap().bypass.unwrap().line, 6);
        let clash = board.replace("line = 6", "line = 25");
        assert!(PinMap::parse(&clash)
            .unwrap_err()
            .contains("line 25 is used twice"));
        let slow = board.replace("hold_ms = 250", "hold_ms = 9000");
        assert!(PinMap::parse(&slow)
            .unwrap_err()
            .starts_with("bypass.hold_ms"));
        let bus = DEFAULT.replace("i2c_bus = \"auto\"", "i2c_bus = \"left\"");
        assert!(PinMap::parse(&bus)
            .unwrap_err()
            .starts_with("display.i2c_bus"));
    }

    #[test]
    fn header_i2c_found_through_sysfs() {
        let root = std::env::temp_dir().join(format!("pitap-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let devices = root.join("bus/i2c/devices");
        for (bus, node) in [
            (0, "/sys/firmware/devicetree/base/soc/i2c@7e205000"),
            (20, "/sys/firmware/devicetree/base/soc/i2c@7e804000"),
            (21, "/sys/firmware/devicetree/base/soc/hdmi@7ef00000/i2c"),
        ] {
            let d = devices.join(format!("i2c-{bus}"));
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(node, d.join("of_node")).unwrap();
        }
        assert_eq!(find_header_i2c_bus(&root), Some(20));
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(find_header_i2c_bus(&root), None);
    }
}
