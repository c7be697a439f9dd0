//! Feeding the hardware watchdog only while the tap is healthy: the bridge
//! exists with both ports in it (inline mode) and the main loop turns. A
//! tap that hangs or loses its bridge stops feeding, and the board resets
//! itself (bcm2835_wdt, at most 15 s), then boots into its configuration
//! again, or the known-good fallback.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::sys::watchdog::WatchdogDevice;

/// Feeds happen this often at most.
const FEED_EVERY: Duration = Duration::from_secs(1);

pub struct Watchdog {
    device: WatchdogDevice,
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
        eprintln!("pitapd: feeding the watchdog {path} while healthy");
        Some(Watchdog {
            device,
            last_feed: None,
            feeds: 0,
            healthy: true,
        })
    }

    /// Whether a feed is due (the bridge need be looked at only then).
    pub fn due(&self) -> bool {
        self.last_feed.is_none_or(|t| t.elapsed() >= FEED_EVERY)
    }

    /// Called from the main loop with the bridge's health
    /// (`health::BridgeCheck`): feeds when due and healthy.
    pub fn tick(&mut self, healthy: bool) {
        if !self.due() {
            return;
        }
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
