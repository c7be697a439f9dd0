//! `pitap.toml` as written: serde's view of the file, strings and numbers
//! with their defaults. An unknown key or a wrong type is serde's error and
//! names the key; [`super::Config::parse`] turns this into typed values
//! once, naming the key of any bad value.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The two ports are bridged; the tap sits in the cable.
    Inline,
    /// The ports only receive mirrored traffic (a switch's SPAN port).
    Span,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::Span => "span",
        }
    }
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

/// The packet ring and the files that crossed (the "forensics").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForensicsSection {
    /// Memory of the packet ring, MiB (0: no ring; unset: 256, or an
    /// eighth of the machine's memory when that is less).
    #[serde(default)]
    pub ring_mib: Option<u64>,
    /// Payload bytes kept of each direction of a connection, KiB.
    #[serde(default = "default_cutoff_kib")]
    pub cutoff_kib: u64,
    /// Flows the ring's directory finds packets of.
    #[serde(default = "default_ring_flows")]
    pub ring_flows: usize,
    /// HTTP connections whose bodies are followed and hashed at once (0: none).
    #[serde(default = "default_file_streams")]
    pub file_streams: usize,
    /// Largest object hashed, MiB.
    #[serde(default = "default_max_file_mib")]
    pub max_file_mib: u64,
    /// Bytes hashed per second at most, MiB (0: no limit).
    #[serde(default = "default_hash_mib_per_s")]
    pub hash_mib_per_s: u64,
}

fn default_cutoff_kib() -> u64 {
    32
}
fn default_ring_flows() -> usize {
    65_536
}
fn default_file_streams() -> usize {
    64
}
fn default_max_file_mib() -> u64 {
    64
}
fn default_hash_mib_per_s() -> u64 {
    4
}

impl Default for ForensicsSection {
    fn default() -> Self {
        ForensicsSection {
            ring_mib: None,
            cutoff_kib: default_cutoff_kib(),
            ring_flows: default_ring_flows(),
            file_streams: default_file_streams(),
            max_file_mib: default_max_file_mib(),
            hash_mib_per_s: default_hash_mib_per_s(),
        }
    }
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
    /// The batch encoding: 2 (records against their batch's tables), or 1
    /// for collectors older than version 2, which refuse 2.
    #[serde(default = "default_wire_version")]
    pub wire_version: u8,
    /// Version 2 batches deflated when smaller (a third fewer bytes for
    /// about a microsecond of CPU a flow on this VM).
    #[serde(default = "default_deflate")]
    pub deflate: bool,
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

fn default_deflate() -> bool {
    true
}
fn default_wire_version() -> u8 {
    pitap_wire::codec::VERSION
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
pub struct UpdateSection {
    pub key: String,
    #[serde(default = "default_autoboot")]
    pub autoboot: String,
    #[serde(default = "default_remount")]
    pub remount: String,
    #[serde(default = "default_partitions")]
    pub partitions: String,
    #[serde(default = "default_trial_s")]
    pub trial_s: u32,
    #[serde(default = "default_bootloader")]
    pub bootloader: String,
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
}

fn default_autoboot() -> String {
    "/boot/autoboot.txt".into()
}
fn default_remount() -> String {
    "/boot".into()
}
fn default_partitions() -> String {
    crate::update::updater::AUTO.into()
}
fn default_trial_s() -> u32 {
    120
}
fn default_bootloader() -> String {
    "/proc/device-tree/chosen/bootloader".into()
}
fn default_cmdline() -> String {
    "/proc/cmdline".into()
}

/// `pitap.toml` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub tap: TapSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub flows: FlowsSection,
    #[serde(default)]
    pub forensics: ForensicsSection,
    #[serde(default)]
    pub uplink: UplinkSection,
    #[serde(default)]
    pub status: StatusSection,
    #[serde(default)]
    pub watchdog: WatchdogSection,
    #[serde(default)]
    pub update: Option<UpdateSection>,
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
    pitap_flow_core::EngineConfig::default().capacity
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
            wire_version: default_wire_version(),
            deflate: default_deflate(),
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
