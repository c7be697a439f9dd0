//! `pitap.toml`: the tap's configuration. Every key is documented in
//! `pitap.example.toml`; an unknown key, a wrong type or a bad value is an
//! error that names the key.

use std::net::SocketAddr;
use std::path::Path;

use pitap_flow_core::EngineConfig;
use serde::Deserialize;

use crate::status::Backend;
use crate::sys::ring::RingGeometry;
use crate::uplink::{ClockMode, Sealing, UplinkSettings};
use pitap_wire::envelope::Key;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The two ports are bridged; the tap sits in the cable.
    Inline,
    /// The ports only receive mirrored traffic (a switch's SPAN port).
    Span,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapSection {
    #[serde(default = "default_tap_id")]
    pub id: String,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_port_a")]
    pub port_a: String,
    /// Defaults to "eth1" in inline mode, none in span mode.
    #[serde(default)]
    pub port_b: Option<String>,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub link_propagation: bool,
    #[serde(default)]
    pub status_file: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    #[serde(default = "default_block_count")]
    pub block_count: u32,
    #[serde(default = "default_block_timeout_ms")]
    pub block_timeout_ms: u32,
    #[serde(default = "default_frame_size")]
    pub frame_size: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsSection {
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    #[serde(default = "default_idle")]
    pub idle_timeout_s: f64,
    #[serde(default = "default_active")]
    pub active_timeout_s: f64,
    #[serde(default = "default_linger")]
    pub tcp_linger_s: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSection {
    #[serde(default)]
    pub collector: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub insecure_plaintext: bool,
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_buffer_batches")]
    pub buffer_batches: usize,
    #[serde(default = "default_health_s")]
    pub health_interval_s: u64,
    #[serde(default)]
    pub stack: Option<StackSection>,
}

/// The user-space uplink stack (smoltcp) on a raw interface.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackSection {
    pub interface: String,
    #[serde(default = "default_stack_mac")]
    pub mac: String,
    #[serde(default = "default_stack_address")]
    pub address: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

fn default_buffer_batches() -> usize {
    4096
}
fn default_health_s() -> u64 {
    10
}
fn default_stack_mac() -> String {
    "02:50:54:41:50:01".into()
}
fn default_stack_address() -> String {
    "dhcp".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSection {
    #[serde(default = "default_status_backend")]
    pub backend: String,
    #[serde(default)]
    pub simulator_dir: Option<String>,
    #[serde(default)]
    pub pinmap: Option<String>,
}

fn default_status_backend() -> String {
    "auto".into()
}

impl Default for StatusSection {
    fn default() -> Self {
        StatusSection {
            backend: default_status_backend(),
            simulator_dir: None,
            pinmap: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSection {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default = "default_watchdog_timeout")]
    pub timeout_s: u32,
}

fn default_watchdog_timeout() -> u32 {
    15
}

impl Default for WatchdogSection {
    fn default() -> Self {
        WatchdogSection {
            device: None,
            timeout_s: default_watchdog_timeout(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub tap: TapSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub flows: FlowsSection,
    #[serde(default)]
    pub uplink: UplinkSection,
    #[serde(default)]
    pub status: StatusSection,
    #[serde(default)]
    pub watchdog: WatchdogSection,
}

fn default_tap_id() -> String {
    "pitap".into()
}
fn default_mode() -> Mode {
    Mode::Inline
}
fn default_port_a() -> String {
    "eth0".into()
}
fn default_bridge() -> String {
    "pitap0".into()
}
fn default_block_size() -> u32 {
    1 << 20
}
fn default_block_count() -> u32 {
    8
}
fn default_block_timeout_ms() -> u32 {
    100
}
fn default_frame_size() -> u32 {
    2048
}
fn default_capacity() -> usize {
    EngineConfig::default().capacity
}
fn default_idle() -> f64 {
    60.0
}
fn default_active() -> f64 {
    300.0
}
fn default_linger() -> f64 {
    5.0
}
fn default_flush_ms() -> u64 {
    1000
}

impl Default for CaptureSection {
    fn default() -> Self {
        CaptureSection {
            block_size: default_block_size(),
            block_count: default_block_count(),
            block_timeout_ms: default_block_timeout_ms(),
            frame_size: default_frame_size(),
        }
    }
}

impl Default for UplinkSection {
    fn default() -> Self {
        UplinkSection {
            collector: None,
            key: None,
            insecure_plaintext: false,
            flush_interval_ms: default_flush_ms(),
            buffer_batches: default_buffer_batches(),
            health_interval_s: default_health_s(),
            stack: None,
        }
    }
}

impl Default for FlowsSection {
    fn default() -> Self {
        FlowsSection {
            capacity: default_capacity(),
            idle_timeout_s: default_idle(),
            active_timeout_s: default_active(),
            tcp_linger_s: default_linger(),
        }
    }
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

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses and validates; serde's message names the key of a type error
    /// or an unknown key, ours the key of a bad value.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        if config.tap.mode == Mode::Inline && config.tap.port_b.is_none() {
            config.tap.port_b = Some("eth1".into());
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let id = &self.tap.id;
        if id.is_empty() || id.len() > pitap_wire::codec::MAX_TAP_ID {
            return Err(bad(
                "tap.id",
                format!("must be 1 to {} bytes", pitap_wire::codec::MAX_TAP_ID),
            ));
        }
        interface_name("tap.port_a", &self.tap.port_a)?;
        match (&self.tap.port_b, self.tap.mode) {
            (Some(b), _) => {
                interface_name("tap.port_b", b)?;
                if *b == self.tap.port_a {
                    return Err(bad("tap.port_b", "must differ from tap.port_a"));
                }
            }
            (None, Mode::Inline) => return Err(bad("tap.port_b", "inline mode needs two ports")),
            (None, Mode::Span) => {}
        }
        if self.tap.mode == Mode::Inline {
            interface_name("tap.bridge", &self.tap.bridge)?;
        } else if self.tap.link_propagation {
            return Err(bad(
                "tap.link_propagation",
                "only means something in inline mode",
            ));
        }
        let c = &self.capture;
        if c.block_size < 4096 || !c.block_size.is_multiple_of(4096) || c.block_size > 1 << 28 {
            return Err(bad(
                "capture.block_size",
                format!(
                    "must be a multiple of 4096 up to 256 MiB (got {})",
                    c.block_size
                ),
            ));
        }
        if c.block_count == 0 || c.block_count > 4096 {
            return Err(bad(
                "capture.block_count",
                format!("must be 1 to 4096 (got {})", c.block_count),
            ));
        }
        if u64::from(c.block_size) * u64::from(c.block_count) > 1 << 30 {
            return Err(bad(
                "capture.block_count",
                "block_size * block_count exceeds 1 GiB per port",
            ));
        }
        if c.block_timeout_ms == 0 || c.block_timeout_ms > 10_000 {
            return Err(bad(
                "capture.block_timeout_ms",
                format!("must be 1 to 10000 (got {})", c.block_timeout_ms),
            ));
        }
        if c.frame_size < 128 || !c.frame_size.is_multiple_of(16) || c.frame_size > c.block_size {
            return Err(bad(
                "capture.frame_size",
                format!(
                    "must be a multiple of 16 from 128 to block_size (got {})",
                    c.frame_size
                ),
            ));
        }
        if !(1..=16_777_216).contains(&self.flows.capacity) {
            return Err(bad(
                "flows.capacity",
                format!("must be 1 to 16777216 (got {})", self.flows.capacity),
            ));
        }
        self.engine(0)?;
        if let Some(addr) = &self.uplink.collector {
            addr.parse::<SocketAddr>()
                .map_err(|_| bad("uplink.collector", format!("{addr:?} is not ADDRESS:PORT")))?;
        }
        let u = &self.uplink;
        match (&u.key, u.insecure_plaintext) {
            (Some(_), true) => {
                return Err(bad("uplink.insecure_plaintext", "cannot be combined with uplink.key"))
            }
            (Some(k), false) => {
                Key::from_hex(k).map_err(|e| bad("uplink.key", e))?;
            }
            (None, false) if u.collector.is_some() => {
                return Err(bad(
                    "uplink.key",
                    "a collector needs a key (pitap keygen makes one); plaintext only with uplink.insecure_plaintext = true",
                ))
            }
            _ => {}
        }
        if !(1..=1_000_000).contains(&u.buffer_batches) {
            return Err(bad(
                "uplink.buffer_batches",
                format!("must be 1 to 1000000 (got {})", u.buffer_batches),
            ));
        }
        if !(1..=3600).contains(&u.health_interval_s) {
            return Err(bad(
                "uplink.health_interval_s",
                format!("must be 1 to 3600 (got {})", u.health_interval_s),
            ));
        }
        if let Some(stack) = &u.stack {
            interface_name("uplink.stack.interface", &stack.interface)?;
            parse_mac(&stack.mac).ok_or_else(|| {
                bad(
                    "uplink.stack.mac",
                    format!("{:?} is not a MAC like 02:00:00:00:00:01", stack.mac),
                )
            })?;
            if parse_mac(&stack.mac).is_some_and(|m| m[0] & 1 == 1) {
                return Err(bad("uplink.stack.mac", "must be a unicast MAC"));
            }
            if stack.address != "dhcp" {
                parse_cidr(&stack.address).ok_or_else(|| {
                    bad(
                        "uplink.stack.address",
                        format!("{:?} is neither \"dhcp\" nor ADDRESS/PREFIX", stack.address),
                    )
                })?;
            }
            if let Some(gw) = &stack.gateway {
                gw.parse::<std::net::Ipv4Addr>().map_err(|_| {
                    bad(
                        "uplink.stack.gateway",
                        format!("{gw:?} is not an IPv4 address"),
                    )
                })?;
            }
            if u.collector
                .as_ref()
                .is_some_and(|c| c.parse::<std::net::SocketAddrV4>().is_err())
            {
                return Err(bad(
                    "uplink.collector",
                    "the uplink stack speaks IPv4: give ADDRESS:PORT with an IPv4 address",
                ));
            }
        }
        self.status_backend()?;
        if !(1..=15).contains(&self.watchdog.timeout_s) {
            return Err(bad(
                "watchdog.timeout_s",
                format!(
                    "must be 1 to 15 (the bcm2835 limit; got {})",
                    self.watchdog.timeout_s
                ),
            ));
        }
        if !(10..=60_000).contains(&self.uplink.flush_interval_ms) {
            return Err(bad(
                "uplink.flush_interval_ms",
                format!(
                    "must be 10 to 60000 (got {})",
                    self.uplink.flush_interval_ms
                ),
            ));
        }
        Ok(())
    }

    pub fn engine(&self, hash_seed: u64) -> Result<EngineConfig, ConfigError> {
        Ok(EngineConfig {
            capacity: self.flows.capacity,
            idle_timeout_us: seconds("flows.idle_timeout_s", self.flows.idle_timeout_s)?,
            active_timeout_us: seconds("flows.active_timeout_s", self.flows.active_timeout_s)?,
            tcp_linger_us: seconds("flows.tcp_linger_s", self.flows.tcp_linger_s)?,
            hash_seed,
            ..EngineConfig::default()
        })
    }

    pub fn ring(&self) -> RingGeometry {
        RingGeometry {
            block_size: self.capture.block_size,
            block_count: self.capture.block_count,
            block_timeout_ms: self.capture.block_timeout_ms,
            frame_size: self.capture.frame_size,
        }
    }

    pub fn collector(&self) -> Option<SocketAddr> {
        self.uplink.collector.as_ref().and_then(|a| a.parse().ok())
    }

    /// How the uplink seals its datagrams (validated in `parse`).
    pub fn sealing(&self) -> Option<Sealing> {
        match (&self.uplink.key, self.uplink.insecure_plaintext) {
            (Some(k), _) => Key::from_hex(k).ok().map(Sealing::Key),
            (None, true) => Some(Sealing::Plaintext),
            (None, false) => None,
        }
    }

    pub fn status_backend(&self) -> Result<Backend, ConfigError> {
        Ok(
            match (self.status.backend.as_str(), &self.status.simulator_dir) {
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
            },
        )
    }

    pub fn uplink_settings(&self) -> Option<UplinkSettings> {
        Some(UplinkSettings {
            tap_id: self.tap.id.clone(),
            sealing: self.sealing()?,
            buffer_batches: self.uplink.buffer_batches,
            flush_interval: std::time::Duration::from_millis(self.uplink.flush_interval_ms),
            clock: ClockMode::Sync,
        })
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
pub fn parse_cidr(text: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some((addr.parse().ok()?, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../pitap.example.toml");

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
        assert_eq!(
            span.uplink.flush_interval_ms,
            example.uplink.flush_interval_ms
        );
        assert_eq!(span.capture.block_size, example.capture.block_size);
        assert_eq!(span.flows.capacity, example.flows.capacity);
    }
}
