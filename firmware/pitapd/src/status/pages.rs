//! The display's pages as text: six lines of at most 21 characters, what a
//! 128x64 SSD1306 shows in a 6x10 font.

use super::state::{LedPattern, Leds, PortRate, Snapshot};

pub const COLUMNS: usize = 21;
pub const ROWS: usize = 6;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Page {
    #[default]
    Overview,
    TopTalkers,
    Counters,
    Identity,
}

impl Page {
    /// The page a short press leads to (identity returns to the overview).
    pub fn next(self) -> Page {
        match self {
            Page::Overview => Page::TopTalkers,
            Page::TopTalkers => Page::Counters,
            Page::Counters | Page::Identity => Page::Overview,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::TopTalkers => "talkers",
            Page::Counters => "counters",
            Page::Identity => "identity",
        }
    }

    pub const ALL: [Page; 4] = [
        Page::Overview,
        Page::TopTalkers,
        Page::Counters,
        Page::Identity,
    ];
}

/// A page's text; the first line is its title bar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageLines {
    pub text: [String; ROWS],
}

/// 1234 -> "1.2k", 12_345_678 -> "12M": numbers that fit a column.
pub fn si(value: u64) -> String {
    match value {
        0..=999 => value.to_string(),
        1_000..=9_999 => format!("{:.1}k", value as f64 / 1e3),
        10_000..=999_999 => format!("{}k", value / 1_000),
        1_000_000..=9_999_999 => format!("{:.1}M", value as f64 / 1e6),
        10_000_000..=999_999_999 => format!("{}M", value / 1_000_000),
        _ => format!("{:.1}G", value as f64 / 1e9),
    }
}

fn clip(mut s: String) -> String {
    if s.chars().count() > COLUMNS {
        s = s.chars().take(COLUMNS).collect();
    }
    s
}

fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}")
    } else {
        format!("{h:02}:{m:02}:{:02}", secs % 60)
    }
}

/// A clock offset in a few characters: +12ms, -1.5s, +3h, +56y.
pub fn offset_text(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let a = ms.unsigned_abs();
    match a {
        0..=999 => format!("{sign}{a}ms"),
        1_000..=99_999 => format!("{sign}{:.1}s", a as f64 / 1e3),
        100_000..=86_399_999 => format!("{sign}{}m", a / 60_000),
        86_400_000..=31_535_999_999 => format!("{sign}{}d", a / 86_400_000),
        _ => format!("{sign}{}y", a / 31_536_000_000),
    }
}

/// The clock line: synchronised or not, and by how much it was corrected.
fn clock_line(c: &pitap_wire::messages::ClockHealth) -> String {
    if !c.synced {
        return "clock UNSYNCED".into();
    }
    // The display's font is ASCII: no "±".
    let within = offset_text(c.uncertainty_us.div_ceil(1000).max(1) as i64);
    format!(
        "clock ok {} +/-{}",
        offset_text(c.offset_ms),
        within.trim_start_matches('+')
    )
}

fn link_word(s: &Snapshot, i: usize, label: char) -> String {
    match s.ports.get(i) {
        None => format!("{label}:-"),
        Some(p) if !p.carrier => format!("{label}:down"),
        Some(p) => match p.speed_mbps {
            Some(m) if m >= 1000 => format!("{label}:{}G", m / 1000),
            Some(m) => format!("{label}:{m}M"),
            None => format!("{label}:up"),
        },
    }
}

/// The bypass board's state after the links: nothing without a board,
/// capitals when a fault released it.
fn bypass_word(state: Option<super::bypass::State>) -> &'static str {
    use super::bypass::State;
    match state {
        None => "",
        Some(State::Inline { .. }) => " inline",
        Some(State::Arming { .. }) => " arming",
        Some(State::Released { .. }) => " BYPASS",
        Some(State::Starting | State::Stopped) => " bypass",
    }
}

pub fn lines(page: Page, s: &Snapshot, rates: &[PortRate], leds: &Leds) -> PageLines {
    let rate = |i: usize| rates.get(i).copied().unwrap_or_default();
    let text: [String; ROWS] = match page {
        Page::Overview => {
            let fill = s
                .flows_active
                .saturating_mul(100)
                .checked_div(s.flows_capacity)
                .unwrap_or(0);
            let uplink = match (&s.uplink, leds.uplink) {
                (None, _) => "uplink: none".to_string(),
                (Some(_), LedPattern::On) => format!("uplink ok {}", s.address),
                (Some(u), LedPattern::Off) => format!("uplink never ({})", u.pending),
                (Some(u), _) => format!("uplink retry {}", u.pending),
            };
            [
                format!(
                    "{} {}{}",
                    link_word(s, 0, 'A'),
                    link_word(s, 1, 'B'),
                    bypass_word(s.bypass)
                ),
                format!(
                    "A>B {:>5} pps {:>5}",
                    si(rate(0).pps),
                    si(rate(0).bits_per_s)
                ),
                format!(
                    "B>A {:>5} pps {:>5}",
                    si(rate(1).pps),
                    si(rate(1).bits_per_s)
                ),
                format!("flows {} ({fill}%)", si(s.flows_active)),
                uplink,
                if s.config_error {
                    "CONFIG ERROR: see txt".to_string()
                } else {
                    let state = if leds.alert == LedPattern::Off {
                        "ok"
                    } else {
                        "ALERT"
                    };
                    format!("up {} {state}", uptime(s.uptime_s))
                },
            ]
        }
        Page::TopTalkers => {
            let mut t: Vec<String> = s
                .talkers
                .iter()
                .take(ROWS - 1)
                .map(|(addr, bytes)| format!("{:<15}{:>6}", clip(addr.clone()), si(*bytes)))
                .collect();
            t.insert(0, "TOP TALKERS (bytes)".into());
            t.resize(ROWS, String::new());
            [
                t[0].clone(),
                t[1].clone(),
                t[2].clone(),
                t[3].clone(),
                t[4].clone(),
                t[5].clone(),
            ]
        }
        Page::Counters => {
            let ring_drops: u64 = s.ports.iter().map(|p| p.ring_drops).sum();
            let frames: u64 = s.ports.iter().map(|p| p.frames).sum();
            let (pending, dropped, errors) = s
                .uplink
                .as_ref()
                .map_or((0, 0, 0), |u| (u.pending, u.dropped, u.send_errors));
            [
                "COUNTERS".into(),
                format!("frames {:>14}", frames),
                format!("ring drops {:>10}", ring_drops),
                format!("malformed {:>11}", s.malformed),
                format!("evicted {:>13}", s.evictions),
                format!(
                    "uplink q{} drop{} err{}",
                    si(pending),
                    si(dropped),
                    si(errors)
                ),
            ]
        }
        Page::Identity => [
            format!("PiTap {}", s.version),
            format!("id {}", s.tap_id),
            clock_line(&s.clock),
            format!(
                "ip {}",
                if s.address.is_empty() {
                    "-"
                } else {
                    &s.address
                }
            ),
            format!("mac {}", s.mac),
            s.board.trim_start_matches("Raspberry ").to_string(),
        ],
    };
    PageLines {
        text: text.map(clip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit() {
        assert_eq!(si(999), "999");
        assert_eq!(si(1234), "1.2k");
        assert_eq!(si(12_345), "12k");
        assert_eq!(si(1_488_000), "1.5M");
        assert_eq!(si(940_000_000), "940M");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 12 * 60), "3d 04:12");
    }

    #[test]
    fn offsets_fit() {
        assert_eq!(offset_text(12), "+12ms");
        assert_eq!(offset_text(-1_500), "-1.5s");
        assert_eq!(offset_text(7_200_000), "+120m");
        assert_eq!(offset_text(3 * 86_400_000), "+3d");
        // A Pi booted at 1970 and synchronised in December 2026.
        assert_eq!(offset_text(1_796_000_000_000), "+56y");
        let c = pitap_wire::messages::ClockHealth {
            synced: true,
            offset_ms: 1_796_000_000_000,
            uncertainty_us: 1_800,
            ..Default::default()
        };
        assert_eq!(clock_line(&c), "clock ok +56y +/-2ms");
        assert!(clock_line(&c).chars().count() <= COLUMNS);
        assert_eq!(clock_line(&Default::default()), "clock UNSYNCED");
    }

    #[test]
    fn every_line_fits_the_display() {
        let s = Snapshot {
            tap_id: "a-very-long-tap-identifier-32b".into(),
            address: "203.0.113.254/24".into(),
            mac: "02:50:54:41:50:01".into(),
            board: "Raspberry Pi 4 Model B Rev 1.5".into(),
            talkers: vec![("2001:db8:1234:5678::abcd".into(), u64::MAX)],
            flows_active: u64::MAX / 200,
            flows_capacity: u64::MAX / 100,
            ..Snapshot::default()
        };
        let leds = Leds {
            power: LedPattern::Heartbeat,
            link_a: LedPattern::Off,
            link_b: LedPattern::Off,
            uplink: LedPattern::Off,
            alert: LedPattern::Off,
        };
        for page in Page::ALL {
            for line in lines(page, &s, &[], &leds).text {
                assert!(line.chars().count() <= COLUMNS, "{page:?}: {line:?}");
            }
        }
    }
}
