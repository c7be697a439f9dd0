//! What the LEDs and the display show, decided from the tap's counters.
//! Pure: a snapshot and the time in, a view out; the hardware only draws it.
//! The data it decides from and about is in [`super::state`].

use super::pages::{Page, PageLines};
use super::state::{LedPattern, Leds, PortRate, Snapshot, UplinkSnapshot};

/// An uplink acknowledged within this long is "reached".
const UPLINK_FRESH_MS: u64 = 5_000;
/// A problem keeps the alert LED lit this long after it was last seen.
const ALERT_HOLD_MS: u64 = 10_000;
/// Table fill at which the alert LED warns.
const TABLE_FULL_PERCENT: u64 = 90;

/// The blink period for a packet rate: faster with more traffic, on a
/// log scale so that both a trickle and a flood are visible.
pub fn traffic_blink(pps: u64) -> LedPattern {
    let period_ms = match pps {
        0 => return LedPattern::On,
        1..=9 => 1000,
        10..=99 => 500,
        100..=999 => 250,
        1000..=9999 => 125,
        _ => 60,
    };
    LedPattern::Blink { period_ms }
}

/// The status model: keeps the previous snapshot to turn counters into
/// rates and to remember when a problem was last seen.
#[derive(Default)]
pub struct StatusModel {
    previous: Option<(u64, Snapshot)>,
    rates: Vec<PortRate>,
    last_loss_ms: Option<u64>,
    last_warning_ms: Option<u64>,
    page: Page,
}

/// What to show.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub leds: Leds,
    pub page: Page,
    pub lines: PageLines,
}

impl StatusModel {
    pub fn page(&self) -> Page {
        self.page
    }

    pub fn set_page(&mut self, page: Page) {
        self.page = page;
    }

    /// Feeds a snapshot taken at `now_ms`; rates are measured over at least
    /// `min_window_ms` so that a fast LED tick does not make them jumpy.
    pub fn update(&mut self, now_ms: u64, snap: &Snapshot, min_window_ms: u64) -> View {
        if let Some((then, prev)) = self.previous.take() {
            let dt = now_ms.saturating_sub(then);
            if dt >= min_window_ms || self.rates.len() != snap.ports.len() {
                self.rates = snap
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let old = prev.ports.get(i).cloned().unwrap_or_default();
                        let per_s =
                            |delta: u64| delta.saturating_mul(1000).checked_div(dt).unwrap_or(0);
                        PortRate {
                            pps: per_s(p.frames.saturating_sub(old.frames)),
                            bits_per_s: per_s(p.bytes.saturating_sub(old.bytes).saturating_mul(8)),
                        }
                    })
                    .collect();
                self.note_problems(now_ms, &prev, snap);
                self.previous = Some((now_ms, snap.clone()));
            } else {
                self.previous = Some((then, prev));
            }
        } else {
            self.rates = vec![PortRate::default(); snap.ports.len()];
            self.previous = Some((now_ms, snap.clone()));
        }
        let leds = self.leds(now_ms, snap);
        View {
            leds,
            page: self.page,
            lines: super::pages::lines(self.page, snap, &self.rates, &leds),
        }
    }

    fn note_problems(&mut self, now_ms: u64, prev: &Snapshot, snap: &Snapshot) {
        let ring_drops = |s: &Snapshot| s.ports.iter().map(|p| p.ring_drops).sum::<u64>();
        let uplink = |s: &Snapshot, f: fn(&UplinkSnapshot) -> u64| s.uplink.as_ref().map_or(0, f);
        // Data lost: frames the kernel dropped, batches the buffer dropped.
        if ring_drops(snap) > ring_drops(prev)
            || uplink(snap, |u| u.dropped) > uplink(prev, |u| u.dropped)
        {
            self.last_loss_ms = Some(now_ms);
        }
        // Degraded: the table is nearly full or evicting, sends fail.
        let full = snap.flows_capacity > 0
            && snap.flows_active.saturating_mul(100)
                >= snap.flows_capacity.saturating_mul(TABLE_FULL_PERCENT);
        if full
            || snap.evictions > prev.evictions
            || uplink(snap, |u| u.send_errors) > uplink(prev, |u| u.send_errors)
        {
            self.last_warning_ms = Some(now_ms);
        }
    }

    fn leds(&self, now_ms: u64, snap: &Snapshot) -> Leds {
        let link = |i: usize| match snap.ports.get(i) {
            Some(p) if p.carrier => traffic_blink(self.rates.get(i).map_or(0, |r| r.pps)),
            _ => LedPattern::Off,
        };
        let recent = |t: Option<u64>| t.is_some_and(|t| now_ms.saturating_sub(t) < ALERT_HOLD_MS);
        Leds {
            power: LedPattern::Heartbeat,
            link_a: link(0),
            link_b: link(1),
            uplink: match &snap.uplink {
                None => LedPattern::Off,
                Some(u) => match u.last_ack_ms_ago {
                    None => LedPattern::Off,
                    Some(age) if age < UPLINK_FRESH_MS && u.pending < 8 => LedPattern::On,
                    Some(_) => LedPattern::Blink { period_ms: 500 },
                },
            },
            alert: if recent(self.last_loss_ms) {
                LedPattern::Blink { period_ms: 250 }
            } else if recent(self.last_warning_ms)
                || snap.config_error
                || matches!(snap.bypass, Some(super::bypass::State::Released { .. }))
            {
                LedPattern::On
            } else {
                LedPattern::Off
            },
        }
    }

    /// Per-port rates of the last window.
    pub fn rates(&self) -> &[PortRate] {
        &self.rates
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::PortSnapshot;
    use super::*;

    fn port(name: &str, carrier: bool, frames: u64) -> PortSnapshot {
        PortSnapshot {
            name: name.into(),
            carrier,
            speed_mbps: carrier.then_some(1000),
            frames,
            bytes: frames * 500,
            ..PortSnapshot::default()
        }
    }

    fn snap(a: PortSnapshot, b: PortSnapshot, uplink: Option<UplinkSnapshot>) -> Snapshot {
        Snapshot {
            tap_id: "lab".into(),
            version: "0.1.0".into(),
            ports: vec![a, b],
            flows_capacity: 1000,
            uplink,
            ..Snapshot::default()
        }
    }

    fn acked(age: u64) -> Option<UplinkSnapshot> {
        Some(UplinkSnapshot {
            last_ack_ms_ago: Some(age),
            ..UplinkSnapshot::default()
        })
    }

    #[test]
    fn no_link() {
        let mut m = StatusModel::default();
        let v = m.update(
            0,
            &snap(port("eth0", false, 0), port("eth1", false, 0), None),
            1000,
        );
        assert_eq!(v.leds.power, LedPattern::Heartbeat);
        assert_eq!(
            (v.leds.link_a, v.leds.link_b),
            (LedPattern::Off, LedPattern::Off)
        );
        assert_eq!(v.leds.uplink, LedPattern::Off);
        assert_eq!(v.leds.alert, LedPattern::Off);
        assert!(v.lines.text[0].contains("A:down"), "{:?}", v.lines);
        assert!(v.lines.text[0].contains("B:down"), "{:?}", v.lines);
    }

    #[test]
    fn link_without_and_with_traffic() {
        let mut m = StatusModel::default();
        m.update(
            0,
            &snap(port("eth0", true, 100), port("eth1", true, 50), acked(100)),
            1000,
        );
        // One second later: 2000 frames/s entered on A, none on B.
        let v = m.update(
            1000,
            &snap(port("eth0", true, 2100), port("eth1", true, 50), acked(100)),
            1000,
        );
        assert_eq!(v.leds.link_a, LedPattern::Blink { period_ms: 125 });
        assert_eq!(v.leds.link_b, LedPattern::On, "carrier, no traffic: steady");
        assert_eq!(v.leds.uplink, LedPattern::On);
        assert!(v.lines.text[1].contains("2.0k pps"), "{:?}", v.lines);
        assert!(v.lines.text[1].contains("8.0M"), "{:?}", v.lines);
        // The blink grows with the rate.
        assert!(matches!(
            traffic_blink(5),
            LedPattern::Blink { period_ms: 1000 }
        ));
        assert!(matches!(
            traffic_blink(200_000),
            LedPattern::Blink { period_ms: 60 }
        ));
    }

    #[test]
    fn collector_unreachable() {
        let mut m = StatusModel::default();
        let never = Some(UplinkSnapshot {
            last_ack_ms_ago: None,
            pending: 40,
            ..UplinkSnapshot::default()
        });
        let v = m.update(
            0,
            &snap(port("a", true, 0), port("b", true, 0), never),
            1000,
        );
        assert_eq!(v.leds.uplink, LedPattern::Off, "never reached");
        let stale = Some(UplinkSnapshot {
            last_ack_ms_ago: Some(30_000),
            pending: 40,
            ..UplinkSnapshot::default()
        });
        let v = m.update(
            1000,
            &snap(port("a", true, 0), port("b", true, 0), stale),
            1000,
        );
        assert_eq!(
            v.leds.uplink,
            LedPattern::Blink { period_ms: 500 },
            "retrying"
        );
        assert!(v.lines.text[4].contains("retry"), "{:?}", v.lines);
    }

    #[test]
    fn drops_light_the_alert_for_a_while() {
        let mut m = StatusModel::default();
        let mut s = snap(port("a", true, 0), port("b", true, 0), acked(0));
        m.update(0, &s, 1000);
        s.ports[0].ring_drops = 5;
        let v = m.update(1000, &s, 1000);
        assert_eq!(v.leds.alert, LedPattern::Blink { period_ms: 250 });
        let v = m.update(9000, &s, 1000);
        assert_eq!(v.leds.alert, LedPattern::Blink { period_ms: 250 }, "held");
        let v = m.update(12_000, &s, 1000);
        assert_eq!(v.leds.alert, LedPattern::Off, "cleared after the hold");
        // A configuration that did not load warns until fixed.
        let mut bad_config = s.clone();
        bad_config.config_error = true;
        let v = m.update(12_500, &bad_config, 1000);
        assert_eq!(v.leds.alert, LedPattern::On);
        assert!(v.lines.text[5].contains("CONFIG ERROR"), "{:?}", v.lines);
        // A nearly full table warns with a steady light.
        s.flows_active = 950;
        let v = m.update(13_000, &s, 1000);
        assert_eq!(v.leds.alert, LedPattern::On);
    }

    #[test]
    fn a_released_bypass_lights_the_alert_and_the_overview_says_so() {
        use super::super::bypass::{Fault, State};
        let mut m = StatusModel::default();
        let mut s = snap(port("a", true, 0), port("b", true, 0), acked(0));
        let v = m.update(0, &s, 1000);
        assert_eq!(v.lines.text[0], "A:1G B:1G", "no board, no word");
        for (state, word, alert) in [
            (State::Starting, "A:1G B:1G bypass", LedPattern::Off),
            (
                State::Arming { since_ms: 0 },
                "A:1G B:1G arming",
                LedPattern::Off,
            ),
            (
                State::Inline { since_ms: 0 },
                "A:1G B:1G inline",
                LedPattern::Off,
            ),
            (
                State::Released {
                    at_ms: 0,
                    fault: Fault::BridgeLost,
                },
                "A:1G B:1G BYPASS",
                LedPattern::On,
            ),
            (State::Stopped, "A:1G B:1G bypass", LedPattern::Off),
        ] {
            s.bypass = Some(state);
            let v = m.update(0, &s, 1000);
            assert_eq!(v.lines.text[0], word);
            assert_eq!(v.leds.alert, alert, "{state:?}");
        }
        // The longest first row still fits the display's 21 columns.
        s.ports[0].carrier = false;
        s.ports[1].carrier = false;
        let v = m.update(0, &s, 1000);
        assert!(
            v.lines.text[0].len() <= super::super::pages::COLUMNS,
            "{:?}",
            v.lines.text[0]
        );
    }

    #[test]
    fn patterns_over_time() {
        let blink = LedPattern::Blink { period_ms: 500 };
        assert!(blink.lit(0) && blink.lit(249) && !blink.lit(250) && blink.lit(500));
        let hb = LedPattern::Heartbeat;
        let lit: Vec<bool> = (0..12).map(|i| hb.lit(i * 100)).collect();
        assert_eq!(lit.iter().filter(|l| **l).count(), 2);
        assert!(!LedPattern::Off.lit(0) && LedPattern::On.lit(12345));
    }
}
