//! Feeding the hardware watchdog only while the tap is healthy: the bridge
//! exists with both ports in it (inline mode) and the main loop turns. A
//! tap that hangs or loses its bridge stops feeding, and the board resets
//! itself (bcm2835_wdt, at most 15 s), then boots into its configuration
//! again, or the known-good fallback.

use std::time::{Duration, Instant};

use crate::config::{Config, Mode};
use crate::sys::netlink::Rtnl;
use crate::sys::watchdog::WatchdogDevice;

/// Feeds happen this often at most.
const FEED_EVERY: Duration = Duration::from_secs(1);

pub struct Watchdog {
    device: WatchdogDevice,
    rtnl: Rtnl,
    bridge: Option<(String, Vec<String>)>,
    last_feed: Option<Instant>,
    pub feeds: u64,
    pub healthy: bool,
}

impl Watchdog {
    /// None when the configuration has no watchdog or the device is absent
    /// (said once).
    pub fn open(config: &Config) -> Option<Watchdog> {
        let w = config.watchdog.as_ref()?;
        let path = w.device.display();
        let (device, note) = match WatchdogDevice::open(&w.device, w.timeout_s) {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("pitapd: no watchdog ({path}: {e}); running without");
                return None;
            }
        };
        if let Some(e) = note {
            eprintln!("pitapd: watchdog {path}: timeout not set ({e}); feeding it anyway");
        }
        let rtnl = Rtnl::open().ok()?;
        let bridge = (config.tap.mode == Mode::Inline)
            .then(|| (config.tap.bridge.clone(), config.tap.ports()));
        eprintln!("pitapd: feeding the watchdog {path} while healthy");
        Some(Watchdog {
            device,
            rtnl,
            bridge,
            last_feed: None,
            feeds: 0,
            healthy: true,
        })
    }

    /// Whether the bridge is there with every port in it.
    fn bridge_ok(&mut self) -> bool {
        let Some((bridge, ports)) = &self.bridge else {
            return true;
        };
        let Ok(Some(br)) = self.rtnl.link(bridge) else {
            return false;
        };
        ports
            .iter()
            .all(|p| matches!(self.rtnl.link(p), Ok(Some(l)) if l.master == Some(br.index)))
    }

    /// Called from the main loop: feeds when due and healthy.
    pub fn tick(&mut self) {
        if self.last_feed.is_some_and(|t| t.elapsed() < FEED_EVERY) {
            return;
        }
        let healthy = self.bridge_ok();
        if healthy != self.healthy {
            eprintln!(
                "pitapd: {}",
                if healthy {
                    "bridge healthy again: feeding the watchdog"
                } else {
                    "bridge missing or incomplete: no longer feeding the watchdog"
                }
            );
            self.healthy = healthy;
        }
        if healthy && self.device.feed().is_ok() {
            self.feeds += 1;
        }
        self.last_feed = Some(Instant::now());
    }

    pub fn disarm(&mut self) {
        let _ = self.device.disarm();
    }
}
