//! `pitap.toml`: the tap's configuration, read once into typed values
//! (addresses, keys, durations, MACs, the ring's geometry, the engine's
//! settings, the pin map) that the rest of pitapd is handed. Every key is
//! documented in `pitap.example.toml`; an unknown key, a wrong type or a bad
//! value is an error that names the key. [`file`] is the file as written.

pub mod file;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pitap_flow_core::files::FileConfig;
use pitap_flow_core::ring::RingConfig;
use pitap_flow_core::EngineConfig;
use pitap_wire::envelope::Key;

pub use file::Mode;
use file::{ConfigFile, StackSection, UplinkSection};

use crate::stack::Addressing;
use crate::status::pinmap::PinMap;
use crate::status::Backend;
use crate::sys::ring::RingGeometry;
use crate::uplink::{ClockMode, Sealing, UplinkSettings};

/// The tap's ports and identity.
#[derive(Clone, Debug)]
pub struct Tap {
    pub id: String,
    pub mode: Mode,
    pub port_a: String,
    /// Port B: always there in inline mode, optional in span mode.
    pub port_b: Option<String>,
    pub bridge: String,
    pub link_propagation: bool,
    pub status_file: Option<PathBuf>,
}

impl Tap {
    /// The configured port names, A first.
    pub fn ports(&self) -> Vec<String> {
        let mut ports = vec![self.port_a.clone()];
        ports.extend(self.port_b.clone());
        ports
    }
}

/// The user-space uplink stack (smoltcp) on a raw interface.
#[derive(Clone, Debug)]
pub struct Stack {
    pub interface: String,
    pub mac: [u8; 6],
    pub addressing: Addressing,
}

/// The uplink to the collector.
#[derive(Clone, Debug)]
pub struct Uplink {
    /// Where the collector listens (none: nothing is sent).
    pub collector: Option<SocketAddr>,
    /// How datagrams are protected (none: no key given).
    pub sealing: Option<Sealing>,
    pub buffer_batches: usize,
    pub flush_interval: Duration,
    pub health_interval: Duration,
    /// The batch encoding (`pitap_wire::codec::VERSION` or `VERSION_1`).
    pub wire_version: u8,
    /// Version 2 batches deflated when smaller.
    pub deflate: bool,
    pub stack: Option<Stack>,
}

impl Default for Uplink {
    /// The file's defaults: no collector, no key.
    fn default() -> Self {
        let d = UplinkSection::default();
        Uplink {
            collector: None,
            sealing: None,
            buffer_batches: d.buffer_batches,
            flush_interval: Duration::from_millis(d.flush_interval_ms),
            health_interval: Duration::from_secs(d.health_interval_s),
            wire_version: d.wire_version,
            deflate: d.deflate,
            stack: None,
        }
    }
}

impl Uplink {
    /// The uplink's settings for tap `tap_id`, when there is a key (or
    /// consent to plaintext).
    pub fn settings(&self, tap_id: &str, clock: ClockMode) -> Option<UplinkSettings> {
        Some(UplinkSettings {
            tap_id: tap_id.to_string(),
            sealing: self.sealing.clone()?,
            buffer_batches: self.buffer_batches,
            flush_interval: self.flush_interval,
            clock,
            wire_version: self.wire_version,
            deflate: self.deflate,
        })
    }
}

/// LEDs and display.
#[derive(Clone, Debug)]
pub struct Status {
    pub backend: Backend,
    /// The pin map, read once; an unreadable one leaves the status dark
    /// with the `auto` backend and stops the tap with `hardware` (the error
    /// says so when the status opens, as before a file was named).
    pub pinmap: Result<PinMap, String>,
}

/// The hardware watchdog, when a device is named.
#[derive(Clone, Debug)]
pub struct Watchdog {
    pub device: PathBuf,
    pub timeout_s: u32,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub tap: Tap,
    pub ring: RingGeometry,
    /// The flow engine's settings (the hash seed is the caller's to set).
    pub engine: EngineConfig,
    pub uplink: Uplink,
    pub status: Status,
    pub watchdog: Option<Watchdog>,
    /// Signed A/B updates from the collector, with an `[update]` section.
    pub update: Option<crate::update::UpdateSettings>,
}

/// A configuration error: the key and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {why}"))
}

fn seconds(key: &str, value: f64) -> Result<u64, ConfigError> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok((value * 1e6) as u64)
    } else {
        Err(bad(
            key,
            format!("must be a positive number of seconds (got {value})"),
        ))
    }
}

fn interface_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        return Err(bad(
            key,
            format!("{name:?} is not an interface name (1-15 characters, no '/' or spaces)"),
        ));
    }
    Ok(())
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(bad(
            key,
            format!("must be {} to {} (got {value})", range.start(), range.end()),
        ))
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses the file and turns it into typed values; serde's message
    /// names the key of a type error or an unknown key, ours the key of a
    /// bad value.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let tap = tap(&file)?;
        let ring = ring(&file)?;
        let engine = engine(&file)?;
        let uplink = uplink(&file.uplink)?;
        let status = status(&file)?;
        let watchdog = match &file.watchdog.device {
            Some(device) => Some(Watchdog {
                device: PathBuf::from(device),
                timeout_s: watchdog_timeout(file.watchdog.timeout_s)?,
            }),
            None => {
                watchdog_timeout(file.watchdog.timeout_s)?;
                None
            }
        };
        in_range(
            "uplink.flush_interval_ms",
            file.uplink.flush_interval_ms,
            10..=60_000,
        )?;
        let update = file.update.as_ref().map(update).transpose()?;
        if update.is_some() && uplink.collector.is_none() {
            return Err(bad(
                "update.key",
                "updates come from the collector: [uplink] collector is needed",
            ));
        }
        Ok(Config {
            tap,
            ring,
            engine,
            uplink,
            status,
            watchdog,
            update,
        })
    }
}

fn tap(file: &ConfigFile) -> Result<Tap, ConfigError> {
    let t = &file.tap;
    pitap_wire::codec::check_tap_id(&t.id).map_err(|e| bad("tap.id", e))?;
    interface_name("tap.port_a", &t.port_a)?;
    // A Pi's two ports by default: the onboard eth0 and a USB eth1.
    let port_b = match (&t.port_b, t.mode) {
        (None, Mode::Inline) => Some("eth1".to_string()),
        (b, _) => b.clone(),
    };
    match (&port_b, t.mode) {
        (Some(b), _) => {
            interface_name("tap.port_b", b)?;
            if *b == t.port_a {
                return Err(bad("tap.port_b", "must differ from tap.port_a"));
            }
        }
        (None, Mode::Inline) => return Err(bad("tap.port_b", "inline mode needs two ports")),
        (None, Mode::Span) => {}
    }
    if t.mode == Mode::Inline {
        interface_name("tap.bridge", &t.bridge)?;
    } else if t.link_propagation {
        return Err(bad(
            "tap.link_propagation",
            "only means something in inline mode",
        ));
    }
    Ok(Tap {
        id: t.id.clone(),
        mode: t.mode,
        port_a: t.port_a.clone(),
        port_b,
        bridge: t.bridge.clone(),
        link_propagation: t.link_propagation,
        status_file: t.status_file.as_ref().map(PathBuf::from),
    })
}

fn ring(file: &ConfigFile) -> Result<RingGeometry, ConfigError> {
    let c = &file.capture;
    if c.block_size < 4096 || !c.block_size.is_multiple_of(4096) || c.block_size > 1 << 28 {
        return Err(bad(
            "capture.block_size",
            format!(
                "must be a multiple of 4096 up to 256 MiB (got {})",
                c.block_size
            ),
        ));
    }
    in_range("capture.block_count", c.block_count, 1..=4096)?;
    if u64::from(c.block_size) * u64::from(c.block_count) > 1 << 30 {
        return Err(bad(
            "capture.block_count",
            "block_size * block_count exceeds 1 GiB per port",
        ));
    }
    in_range("capture.block_timeout_ms", c.block_timeout_ms, 1..=10_000)?;
    if c.frame_size < 128 || !c.frame_size.is_multiple_of(16) || c.frame_size > c.block_size {
        return Err(bad(
            "capture.frame_size",
            format!(
                "must be a multiple of 16 from 128 to block_size (got {})",
                c.frame_size
            ),
        ));
    }
    Ok(RingGeometry {
        block_size: c.block_size,
        block_count: c.block_count,
        block_timeout_ms: c.block_timeout_ms,
        frame_size: c.frame_size,
    })
}

/// The ring's memory when the configuration names none: 256 MiB (a Pi 4
/// has 2 to 8 GiB), or an eighth of the machine's memory on a smaller one
/// (a Pi Zero 2 W has 512 MiB).
fn default_ring_mib() -> u64 {
    let total_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024);
    total_mib.map_or(256, |t| (t / 8).min(256))
}

fn engine(file: &ConfigFile) -> Result<EngineConfig, ConfigError> {
    let f = &file.flows;
    let x = &file.forensics;
    Ok(EngineConfig {
        capacity: in_range("flows.capacity", f.capacity, 1..=16_777_216)?,
        idle_timeout_us: seconds("flows.idle_timeout_s", f.idle_timeout_s)?,
        active_timeout_us: seconds("flows.active_timeout_s", f.active_timeout_s)?,
        tcp_linger_us: seconds("flows.tcp_linger_s", f.tcp_linger_s)?,
        files: FileConfig {
            streams: in_range("forensics.file_streams", x.file_streams, 0..=4096)?,
            max_object_bytes: in_range("forensics.max_file_mib", x.max_file_mib, 1..=1 << 20)?
                << 20,
            hash_bytes_per_s: in_range("forensics.hash_mib_per_s", x.hash_mib_per_s, 0..=1 << 20)?
                << 20,
            ..FileConfig::default()
        },
        ring: RingConfig {
            bytes: (in_range(
                "forensics.ring_mib",
                x.ring_mib.unwrap_or_else(default_ring_mib),
                0..=65_536,
            )? << 20) as usize,
            cutoff: (in_range("forensics.cutoff_kib", x.cutoff_kib, 1..=4 << 20)? << 10) as u32,
            flows: in_range("forensics.ring_flows", x.ring_flows, 64..=16_777_216)?,
        },
        ..EngineConfig::default()
    })
}

fn uplink(u: &UplinkSection) -> Result<Uplink, ConfigError> {
    let collector = match &u.collector {
        Some(addr) => Some(
            addr.parse::<SocketAddr>()
                .map_err(|_| bad("uplink.collector", format!("{addr:?} is not ADDRESS:PORT")))?,
        ),
        None => None,
    };
    let sealing = match (&u.key, u.insecure_plaintext) {
        (Some(_), true) => {
            return Err(bad(
                "uplink.insecure_plaintext",
                "cannot be combined with uplink.key",
            ))
        }
        (Some(k), false) => Some(Sealing::Key(
            Key::from_hex(k).map_err(|e| bad("uplink.key", e))?,
        )),
        (None, true) => Some(Sealing::Plaintext),
        (None, false) if collector.is_some() => {
            return Err(bad(
                "uplink.key",
                "a collector needs a key (pitap keygen makes one); plaintext only with uplink.insecure_plaintext = true",
            ))
        }
        (None, false) => None,
    };
    in_range("uplink.buffer_batches", u.buffer_batches, 1..=1_000_000)?;
    in_range("uplink.health_interval_s", u.health_interval_s, 1..=3600)?;
    in_range(
        "uplink.wire_version",
        u.wire_version,
        pitap_wire::codec::VERSION_1..=pitap_wire::codec::VERSION,
    )?;
    let stack = match &u.stack {
        Some(s) => Some(stack(s, collector)?),
        None => None,
    };
    Ok(Uplink {
        collector,
        sealing,
        buffer_batches: u.buffer_batches,
        flush_interval: Duration::from_millis(u.flush_interval_ms),
        health_interval: Duration::from_secs(u.health_interval_s),
        wire_version: u.wire_version,
        deflate: u.deflate,
        stack,
    })
}

fn stack(s: &StackSection, collector: Option<SocketAddr>) -> Result<Stack, ConfigError> {
    interface_name("uplink.stack.interface", &s.interface)?;
    let mac = parse_mac(&s.mac).ok_or_else(|| {
        bad(
            "uplink.stack.mac",
            format!("{:?} is not a MAC like 02:00:00:00:00:01", s.mac),
        )
    })?;
    if mac[0] & 1 == 1 {
        return Err(bad("uplink.stack.mac", "must be a unicast MAC"));
    }
    let addressing = if s.address == "dhcp" {
        Addressing::Dhcp
    } else {
        let (address, prefix) = parse_cidr(&s.address).ok_or_else(|| {
            bad(
                "uplink.stack.address",
                format!("{:?} is neither \"dhcp\" nor ADDRESS/PREFIX", s.address),
            )
        })?;
        let gateway = match &s.gateway {
            Some(gw) => Some(gw.parse::<Ipv4Addr>().map_err(|_| {
                bad(
                    "uplink.stack.gateway",
                    format!("{gw:?} is not an IPv4 address"),
                )
            })?),
            None => None,
        };
        Addressing::Static {
            address,
            prefix,
            gateway,
        }
    };
    if let (Addressing::Dhcp, Some(gw)) = (addressing, &s.gateway) {
        gw.parse::<Ipv4Addr>().map_err(|_| {
            bad(
                "uplink.stack.gateway",
                format!("{gw:?} is not an IPv4 address"),
            )
        })?;
    }
    if collector.is_some_and(|c| !c.is_ipv4()) {
        return Err(bad(
            "uplink.collector",
            "the uplink stack speaks IPv4: give ADDRESS:PORT with an IPv4 address",
        ));
    }
    Ok(Stack {
        interface: s.interface.clone(),
        mac,
        addressing,
    })
}

fn status(file: &ConfigFile) -> Result<Status, ConfigError> {
    let s = &file.status;
    let backend = match (s.backend.as_str(), &s.simulator_dir) {
        ("auto", _) => Backend::Auto,
        ("hardware", _) => Backend::Hardware,
        ("none", _) => Backend::None,
        ("simulator", Some(dir)) => Backend::Simulator(dir.into()),
        ("simulator", None) => {
            return Err(bad(
                "status.simulator_dir",
                "the simulator needs a directory",
            ))
        }
        (other, _) => {
            return Err(bad(
                "status.backend",
                format!("{other:?}: expected auto, hardware, simulator or none"),
            ))
        }
    };
    Ok(Status {
        backend,
        pinmap: PinMap::load(s.pinmap.as_deref().map(Path::new)),
    })
}

fn update(u: &file::UpdateSection) -> Result<crate::update::UpdateSettings, ConfigError> {
    let key = pitap_wire::update::verifying_key_from_hex(u.key.trim())
        .map_err(|e| bad("update.key", e))?;
    if u.partitions != crate::update::updater::AUTO && !u.partitions.contains("{n}") {
        return Err(bad(
            "update.partitions",
            "must say where the partition number goes ({n}), or be \"auto\"",
        ));
    }
    for (name, value) in [
        ("update.autoboot", &u.autoboot),
        ("update.bootloader", &u.bootloader),
        ("update.cmdline", &u.cmdline),
    ] {
        if !value.starts_with('/') {
            return Err(bad(name, "must be an absolute path"));
        }
    }
    let trial_s = in_range("update.trial_s", u.trial_s, 10..=3600)?;
    Ok(crate::update::UpdateSettings {
        key,
        autoboot: PathBuf::from(&u.autoboot),
        remount: (!u.remount.is_empty()).then(|| PathBuf::from(&u.remount)),
        partitions: u.partitions.clone(),
        trial: std::time::Duration::from_secs(u64::from(trial_s)),
        bootloader: PathBuf::from(&u.bootloader),
        cmdline: PathBuf::from(&u.cmdline),
    })
}

fn watchdog_timeout(t: u32) -> Result<u32, ConfigError> {
    if !(1..=15).contains(&t) {
        return Err(bad(
            "watchdog.timeout_s",
            format!("must be 1 to 15 (the bcm2835 limit; got {t})"),
        ));
    }
    Ok(t)
}

/// The collector for the user-space stack (which speaks IPv4 only).
pub fn stack_collector(collector: SocketAddr) -> Result<SocketAddrV4, String> {
    match collector {
        SocketAddr::V4(c) => Ok(c),
        SocketAddr::V6(_) => Err("uplink.collector: the uplink stack speaks IPv4".into()),
    }
}

/// "02:00:00:00:00:01".
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// "192.0.2.50/24".
pub fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some((addr.parse().ok()?, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../pitap.example.toml");

    #[test]
    fn the_example_file_is_valid_and_documents_every_key() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(config.tap.mode, Mode::Inline);
        for key in [
            "id",
            "mode",
            "port_a",
            "port_b",
            "bridge",
            "link_propagation",
            "status_file",
            "block_size",
            "block_count",
            "block_timeout_ms",
            "frame_size",
            "capacity",
            "idle_timeout_s",
            "active_timeout_s",
            "tcp_linger_s",
            "collector",
            "flush_interval_ms",
            "wire_version",
            "deflate",
            "autoboot",
            "remount",
            "partitions",
            "trial_s",
            "bootloader",
            "cmdline",
        ] {
            assert!(
                EXAMPLE.lines().any(|l| l
                    .trim_start()
                    .trim_start_matches("# ")
                    .starts_with(&format!("{key} ="))),
                "{key} is not documented in pitap.example.toml"
            );
        }
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().0
    }

    #[test]
    fn update_errors_name_the_key() {
        let base = "[tap]\nid = \"t\"\n[uplink]\ncollector = \"192.0.2.1:4739\"\ninsecure_plaintext = true\n";
        let key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let ok = Config::parse(&format!("{base}[update]\nkey = \"{key}\"\n")).unwrap();
        let u = ok.update.unwrap();
        assert_eq!(u.partitions, "auto");
        assert_eq!(u.trial, Duration::from_secs(120));
        assert!(error_of(&format!("{base}[update]\nkey = \"12\"\n")).starts_with("update.key:"));
        assert!(error_of(&format!(
            "{base}[update]\nkey = \"{key}\"\npartitions = \"/dev/sda\"\n"
        ))
        .starts_with("update.partitions:"));
        assert!(
            error_of(&format!("{base}[update]\nkey = \"{key}\"\ntrial_s = 5\n"))
                .starts_with("update.trial_s:")
        );
        assert!(error_of(&format!(
            "{base}[update]\nkey = \"{key}\"\ncmdline = \"proc\"\n"
        ))
        .starts_with("update.cmdline:"));
        assert!(
            error_of(&format!("{base}[update]\nkey = \"{key}\"\nbogus = 1\n")).contains("bogus")
        );
        let alone = format!("[tap]\nid = \"t\"\n[update]\nkey = \"{key}\"\n");
        assert!(error_of(&alone).starts_with("update.key: updates come from the collector"));
    }

    #[test]
    fn errors_name_the_key() {
        let base = "[tap]\nport_a = \"eth0\"\nport_b = \"eth1\"\n";
        // A Pi's two ports by default: the onboard eth0 and a USB eth1.
        let defaults = Config::parse("[tap]\nid = \"x\"\n").unwrap();
        assert_eq!(
            (defaults.tap.port_a.as_str(), defaults.tap.port_b.as_deref()),
            ("eth0", Some("eth1"))
        );
        assert!(error_of(&format!("{base}colour = \"red\"\n")).contains("unknown field `colour`"));
        assert!(error_of(&format!("{base}mode = \"mirror\"\n")).contains("mirror"));
        assert!(
            error_of(&format!("{base}[capture]\nblock_size = \"big\"\n")).contains("block_size")
        );
        assert_eq!(
            error_of(&format!("{base}[capture]\nblock_size = 1000\n")),
            "capture.block_size: must be a multiple of 4096 up to 256 MiB (got 1000)"
        );
        assert!(error_of(&format!("{base}[flows]\nidle_timeout_s = -1\n"))
            .starts_with("flows.idle_timeout_s:"));
        assert!(
            error_of(&format!("{base}[uplink]\ncollector = \"nowhere\"\n"))
                .starts_with("uplink.collector:")
        );
        assert!(error_of(&format!("{base}[uplink]\nwire_version = 3\n"))
            .starts_with("uplink.wire_version:"));
        let old = Config::parse(&format!("{base}[uplink]\nwire_version = 1\n")).unwrap();
        assert_eq!(old.uplink.wire_version, pitap_wire::codec::VERSION_1);
        assert!(error_of("[tap]\nport_a = \"eth1\"\n").starts_with("tap.port_b: must differ"));
        assert!(
            error_of("[tap]\nport_a = \"eth0\"\nport_b = \"eth0\"\n").starts_with("tap.port_b:")
        );
        assert!(
            error_of("[tap]\nport_a = \"../etc\"\nport_b = \"eth1\"\n").starts_with("tap.port_a:")
        );
        assert!(error_of(&format!("{base}[status]\nbackend = \"lcd\"\n"))
            .starts_with("status.backend:"));
        assert!(
            error_of(&format!("{base}[status]\nbackend = \"simulator\"\n"))
                .starts_with("status.simulator_dir:")
        );
        let span = Config::parse("[tap]\nmode = \"span\"\nport_a = \"eth0\"\n").unwrap();
        // Every section may be left out; its defaults are the example's.
        let example = Config::parse(EXAMPLE).unwrap();
        assert_eq!(span.uplink.flush_interval, example.uplink.flush_interval);
        assert_eq!(span.ring.block_size, example.ring.block_size);
        assert_eq!(span.engine.capacity, example.engine.capacity);
    }
}
