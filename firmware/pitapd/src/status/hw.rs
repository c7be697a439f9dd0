//! The status hardware behind one trait: the Pi's GPIO and OLED, the
//! simulator, or nothing.

use super::pages::{Page, PageLines};
use super::state::LedPattern;

pub trait StatusHardware {
    /// Lights the LEDs (`Leds::NAMES` order); the patterns are for logs.
    fn set_leds(&mut self, lit: [bool; 5], patterns: [LedPattern; 5]);
    /// Shows a page on the display.
    fn show(&mut self, page: Page, lines: &PageLines);
    /// Whether the button is held now (None: there is no button).
    fn button_held(&mut self) -> Option<bool>;
    fn describe(&self) -> String;
    /// Whether there are LEDs to light (the health report says what they
    /// show only then).
    fn has_leds(&self) -> bool {
        true
    }
}

/// No status hardware: everything is a no-op.
pub struct NoHardware;

impl StatusHardware for NoHardware {
    fn set_leds(&mut self, _: [bool; 5], _: [LedPattern; 5]) {}
    fn show(&mut self, _: Page, _: &PageLines) {}
    fn button_held(&mut self) -> Option<bool> {
        None
    }
    fn describe(&self) -> String {
        "no status hardware".into()
    }
    fn has_leds(&self) -> bool {
        false
    }
}
