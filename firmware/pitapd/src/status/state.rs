//! What the status is made of: the snapshot of the tap it is decided
//! from, the LED patterns, per-port rates. Below both [`super::logic`]
//! (which decides) and [`super::pages`] (which writes the text).

/// How an LED behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedPattern {
    Off,
    On,
    /// On half of each period.
    Blink {
        period_ms: u32,
    },
    /// Two short pulses every 1.2 s: the main loop is turning.
    Heartbeat,
}

impl LedPattern {
    /// Whether the LED is lit at time `t_ms`.
    pub fn lit(self, t_ms: u64) -> bool {
        match self {
            LedPattern::Off => false,
            LedPattern::On => true,
            LedPattern::Blink { period_ms } => {
                let p = u64::from(period_ms.max(2));
                t_ms % p < p / 2
            }
            LedPattern::Heartbeat => matches!(t_ms % 1200, 0..100 | 200..300),
        }
    }

    pub fn name(self) -> String {
        match self {
            LedPattern::Off => "off".into(),
            LedPattern::On => "on".into(),
            LedPattern::Blink { period_ms } => format!("blink{period_ms}"),
            LedPattern::Heartbeat => "heartbeat".into(),
        }
    }
}

/// The five LEDs, in pin map order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leds {
    pub power: LedPattern,
    pub link_a: LedPattern,
    pub link_b: LedPattern,
    pub uplink: LedPattern,
    pub alert: LedPattern,
}

impl Leds {
    pub const NAMES: [&'static str; 5] = ["power", "link_a", "link_b", "uplink", "alert"];

    pub fn patterns(&self) -> [LedPattern; 5] {
        [
            self.power,
            self.link_a,
            self.link_b,
            self.uplink,
            self.alert,
        ]
    }

    pub fn lit(&self, t_ms: u64) -> [bool; 5] {
        self.patterns().map(|p| p.lit(t_ms))
    }
}

/// One tap port as the status sees it: the counters the tap reports.
pub use pitap_wire::messages::PortHealth as PortSnapshot;

/// Everything the status needs, read off the tap at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub tap_id: String,
    pub version: String,
    pub board: String,
    pub uptime_s: u64,
    pub ports: Vec<PortSnapshot>,
    pub flows_active: u64,
    pub flows_capacity: u64,
    pub malformed: u64,
    pub evictions: u64,
    /// The uplink, if one is configured.
    pub uplink: Option<UplinkSnapshot>,
    /// The tap's clock.
    pub clock: pitap_wire::messages::ClockHealth,
    /// Where the tap can be reached or is known as (uplink address, MAC).
    pub address: String,
    pub mac: String,
    /// Top talkers: (address, bytes) in the last window, largest first.
    pub talkers: Vec<(String, u64)>,
    /// The configuration on the card has errors; a fallback runs.
    pub config_error: bool,
    /// The bypass board's state, if one is fitted.
    pub bypass: Option<super::bypass::State>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkSnapshot {
    /// Milliseconds since the collector last acknowledged; None if never.
    pub last_ack_ms_ago: Option<u64>,
    pub pending: u64,
    /// Cumulative: batches dropped because the buffer was full.
    pub dropped: u64,
    pub send_errors: u64,
}

/// Per-port rates since the previous snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PortRate {
    pub pps: u64,
    pub bits_per_s: u64,
}
