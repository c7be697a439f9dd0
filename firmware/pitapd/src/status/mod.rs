//! Status at a glance: LEDs, the OLED display and its button.
//!
//! - [`state`]: the snapshot of the tap, LED patterns, rates: the data.
//! - [`logic`]: what to show when (pure, unit-tested).
//! - [`pages`]: the display pages as text; [`render`]: drawn with
//!   embedded-graphics on any 128x64 target.
//! - [`button`]: debouncing, short and long presses.
//! - [`bypass`]: when the bypass board may put the tap inline (pure);
//!   [`bypass_drive`]: the edges that hold its relays.
//! - [`hw`]: the hardware trait; [`rpi`] the Pi's GPIO and I2C, [`sim`] the
//!   simulator (PNG frames, LED log).
//! - [`pinmap`]: `hardware/pinmap.toml`; [`talkers`]: top talkers.

pub mod button;
pub mod bypass;
pub mod bypass_drive;
pub mod hw;
pub mod logic;
pub mod pages;
pub mod pinmap;
pub mod render;
pub mod rpi;
pub mod sim;
pub mod state;
pub mod talkers;

use std::time::Instant;

use button::{Button, Press};
use hw::{NoHardware, StatusHardware};
use logic::StatusModel;
use pages::Page;
use state::Snapshot;

/// How often the display is redrawn when nothing else changes.
const DISPLAY_REFRESH_MS: u64 = 1000;
/// Rates on the display are measured over this window.
const RATE_WINDOW_MS: u64 = 1000;

/// Which status hardware to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The Pi's GPIO and OLED if they can be opened, else nothing.
    Auto,
    Hardware,
    Simulator(std::path::PathBuf),
    None,
}

/// Opens the backend with the pin map the configuration read; `Auto` falls
/// back to nothing (a missing board, an unreadable map) and says so once.
pub fn open(
    backend: &Backend,
    pinmap: &Result<pinmap::PinMap, String>,
) -> Result<Box<dyn StatusHardware>, String> {
    match backend {
        Backend::None => Ok(Box::new(NoHardware)),
        Backend::Simulator(dir) => sim::Simulator::open(dir.clone())
            .map(|s| Box::new(s) as Box<dyn StatusHardware>)
            .map_err(|e| format!("status.simulator_dir {}: {e}", dir.display())),
        Backend::Hardware | Backend::Auto => {
            let opened = pinmap
                .as_ref()
                .map_err(Clone::clone)
                .and_then(rpi::PiHardware::open);
            match (opened, backend) {
                (Ok(hw), _) => Ok(Box::new(hw)),
                (Err(e), Backend::Hardware) => Err(format!("status hardware: {e}")),
                (Err(e), _) => {
                    eprintln!("pitapd: no status hardware ({e}); LEDs and display stay dark");
                    Ok(Box::new(NoHardware))
                }
            }
        }
    }
}

/// The bypass board's trigger line (`section` is the pin map's
/// `[bypass]`) on the backend: the Pi's GPIO, or `bypass-drive.json` in the
/// simulator's directory; None for the backend without hardware.
pub fn open_bypass(
    backend: &Backend,
    map: &pinmap::PinMap,
    section: &pinmap::BypassSection,
) -> Option<Result<Box<dyn bypass_drive::BypassLine>, String>> {
    match backend {
        Backend::None => None,
        Backend::Simulator(dir) => Some(Ok(Box::new(sim::SimBypassLine::new(dir.clone())))),
        Backend::Hardware | Backend::Auto => Some(
            rpi::GpioBypassLine::open(map, section.line)
                .map(|l| Box::new(l) as Box<dyn bypass_drive::BypassLine>),
        ),
    }
}

/// Drives the hardware from snapshots of the tap.
pub struct StatusPanel {
    hw: Box<dyn StatusHardware>,
    model: StatusModel,
    button: Button,
    start: Instant,
    last_draw: Option<(u64, Page)>,
    /// What the LEDs show now, for the health report.
    leds: Option<state::Leds>,
}

impl StatusPanel {
    pub fn new(hw: Box<dyn StatusHardware>, debounce_ms: u64, long_press_ms: u64) -> Self {
        StatusPanel {
            hw,
            model: StatusModel::default(),
            button: Button::new(debounce_ms, long_press_ms),
            start: Instant::now(),
            last_draw: None,
            leds: None,
        }
    }

    /// The LEDs' patterns as last set: (name, pattern), in pin map order.
    pub fn leds(&self) -> Vec<(String, String)> {
        self.leds.map_or_else(Vec::new, |leds| {
            state::Leds::NAMES
                .iter()
                .zip(leds.patterns())
                .map(|(name, p)| (name.to_string(), p.name()))
                .collect()
        })
    }

    pub fn describe(&self) -> String {
        self.hw.describe()
    }

    /// Samples the button, updates the LEDs, redraws the display when its
    /// page changed or once a second. Call every few tens of ms.
    pub fn tick(&mut self, snapshot: &Snapshot) {
        self.tick_at(self.start.elapsed().as_millis() as u64, snapshot);
    }

    pub fn tick_at(&mut self, now_ms: u64, snapshot: &Snapshot) {
        if let Some(held) = self.hw.button_held() {
            match self.button.sample(now_ms, held) {
                Some(Press::Short) => self.model.set_page(self.model.page().next()),
                Some(Press::Long) => self.model.set_page(Page::Identity),
                None => {}
            }
        }
        let view = self.model.update(now_ms, snapshot, RATE_WINDOW_MS);
        self.hw
            .set_leds(view.leds.lit(now_ms), view.leds.patterns());
        self.leds = self.hw.has_leds().then_some(view.leds);
        let due = match self.last_draw {
            None => true,
            Some((at, page)) => {
                page != view.page || now_ms.saturating_sub(at) >= DISPLAY_REFRESH_MS
            }
        };
        if due {
            self.hw.show(view.page, &view.lines);
            self.last_draw = Some((now_ms, view.page));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::hw::StatusHardware;
    use super::pages::{Page, PageLines};
    use super::state::{LedPattern, Snapshot};
    use super::StatusPanel;

    /// Hardware whose button the test holds and whose display it reads.
    #[derive(Default)]
    struct Probe {
        held: Rc<RefCell<bool>>,
        shown: Rc<RefCell<Vec<Page>>>,
    }

    impl StatusHardware for Probe {
        fn set_leds(&mut self, _: [bool; 5], _: [LedPattern; 5]) {}
        fn show(&mut self, page: Page, _: &PageLines) {
            self.shown.borrow_mut().push(page);
        }
        fn button_held(&mut self) -> Option<bool> {
            Some(*self.held.borrow())
        }
        fn describe(&self) -> String {
            "probe".into()
        }
    }

    /// Hardware that keeps the patterns it was given.
    struct Leds(Rc<RefCell<Vec<LedPattern>>>);

    impl StatusHardware for Leds {
        fn set_leds(&mut self, _: [bool; 5], patterns: [LedPattern; 5]) {
            *self.0.borrow_mut() = patterns.to_vec();
        }
        fn show(&mut self, _: Page, _: &PageLines) {}
        fn button_held(&mut self) -> Option<bool> {
            None
        }
        fn describe(&self) -> String {
            "leds".into()
        }
    }

    #[test]
    fn the_health_report_says_what_the_leds_show() {
        let set = Rc::new(RefCell::new(Vec::new()));
        let mut panel = StatusPanel::new(Box::new(Leds(set.clone())), 30, 1500);
        assert!(panel.leds().is_empty(), "nothing shown yet");
        let snap = Snapshot::default();
        panel.tick_at(0, &snap);
        let reported = panel.leds();
        let shown: Vec<String> = set.borrow().iter().map(|p| p.name()).collect();
        assert_eq!(
            reported.iter().map(|l| l.1.clone()).collect::<Vec<_>>(),
            shown
        );
        assert_eq!(
            reported.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
            super::state::Leds::NAMES
        );
        // Without LEDs the report has none.
        let mut dark = StatusPanel::new(Box::new(super::hw::NoHardware), 30, 1500);
        dark.tick_at(0, &snap);
        assert!(dark.leds().is_empty());
    }

    #[test]
    fn presses_walk_the_pages() {
        let probe = Probe::default();
        let (held, shown) = (probe.held.clone(), probe.shown.clone());
        let mut panel = StatusPanel::new(Box::new(probe), 30, 1500);
        let snap = Snapshot::default();
        let mut t = 0;
        let mut run = |panel: &mut StatusPanel, ms: u64, down: bool| {
            *held.borrow_mut() = down;
            for _ in 0..ms / 10 {
                panel.tick_at(t, &snap);
                t += 10;
            }
        };
        run(&mut panel, 100, false);
        for _ in 0..3 {
            run(&mut panel, 200, true);
            run(&mut panel, 200, false);
        }
        run(&mut panel, 2000, true);
        run(&mut panel, 200, false);
        let mut pages = shown.borrow().clone();
        pages.dedup();
        assert_eq!(
            pages,
            [
                Page::Overview,
                Page::TopTalkers,
                Page::Counters,
                Page::Overview,
                Page::Identity
            ]
        );
    }
}
