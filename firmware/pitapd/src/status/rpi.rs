//! The real status hardware of a Pi: LEDs and the button on the GPIO
//! character device (`gpiocdev`: Debian's kernel has no /dev/gpiomem and
//! locks /dev/mem, where rppal's GPIO would need them), the SSD1306 on the
//! header I2C through rppal and the `ssd1306` driver, the board's name from
//! rppal.

use std::path::Path;

use gpiocdev::line::{Bias, Value};
use gpiocdev::Request;
use ssd1306::mode::BufferedGraphicsMode;
use ssd1306::prelude::*;
use ssd1306::{I2CDisplayInterface, Ssd1306};

use super::hw::StatusHardware;
use super::pages::{Page, PageLines};
use super::pinmap::{find_gpio_chip, find_header_i2c_bus, BusSetting, PinMap};
use super::render::draw;
use super::state::LedPattern;

type Display = Ssd1306<
    I2CInterface<rppal::i2c::I2c>,
    DisplaySize128x64,
    BufferedGraphicsMode<DisplaySize128x64>,
>;

pub struct PiHardware {
    leds: Request,
    led_lines: [u32; 5],
    button: Option<(Request, u32)>,
    display: Option<Display>,
    board: String,
    display_error: Option<String>,
}

fn open_display(map: &PinMap) -> Result<Display, String> {
    let bus = match map.display.i2c_bus {
        BusSetting::Number(n) => n,
        BusSetting::Name(_) => find_header_i2c_bus(Path::new("/sys"))
            .ok_or("no header I2C bus found in /sys (is the i2c overlay on?)")?,
    };
    let i2c = rppal::i2c::I2c::with_bus(bus).map_err(|e| format!("I2C bus {bus}: {e}"))?;
    let interface = I2CDisplayInterface::new_custom_address(i2c, map.display.address as u8);
    let mut display = Ssd1306::new(interface, DisplaySize128x64, DisplayRotation::Rotate0)
        .into_buffered_graphics_mode();
    display.init().map_err(|e| {
        format!(
            "SSD1306 at 0x{:02x} on bus {bus}: {e:?}",
            map.display.address
        )
    })?;
    Ok(display)
}

impl PiHardware {
    /// Opens what the pin map names. LEDs are required; a missing display
    /// or button is noted and the rest works.
    pub fn open(map: &PinMap) -> Result<PiHardware, String> {
        let chip = find_gpio_chip(&map.gpio.chip)?;
        let led_lines = map.leds.pins().map(|p| p.line);
        let mut builder = Request::builder();
        builder.on_chip(&chip).with_consumer("pitapd");
        for pin in map.leds.pins() {
            builder.with_line(pin.line).as_output(Value::Inactive);
            if pin.active_low {
                builder.as_active_low();
            }
        }
        let leds = builder
            .request()
            .map_err(|e| format!("LED lines on {}: {e}", chip.display()))?;
        let button = {
            let mut b = Request::builder();
            b.on_chip(&chip)
                .with_consumer("pitapd")
                .with_line(map.button.line)
                .as_input()
                .with_bias(if map.button.active_low {
                    Bias::PullUp
                } else {
                    Bias::PullDown
                });
            if map.button.active_low {
                b.as_active_low();
            }
            b.request().ok().map(|r| (r, map.button.line))
        };
        let (display, display_error) = match open_display(map) {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        let board = rppal::system::DeviceInfo::new()
            .map(|d| d.model().to_string())
            .unwrap_or_else(|_| "unknown board".into());
        Ok(PiHardware {
            leds,
            led_lines,
            button,
            display,
            board,
            display_error,
        })
    }

    pub fn board(&self) -> &str {
        &self.board
    }
}

impl StatusHardware for PiHardware {
    fn set_leds(&mut self, lit: [bool; 5], _: [LedPattern; 5]) {
        for (line, on) in self.led_lines.iter().zip(lit) {
            let _ = self
                .leds
                .set_value(*line, if on { Value::Active } else { Value::Inactive });
        }
    }

    fn show(&mut self, page: Page, lines: &PageLines) {
        if let Some(d) = &mut self.display {
            if draw(d, page, lines).is_ok() {
                let _ = d.flush();
            }
        }
    }

    fn button_held(&mut self) -> Option<bool> {
        let (req, line) = self.button.as_ref()?;
        req.value(*line).ok().map(|v| v == Value::Active)
    }

    fn describe(&self) -> String {
        let mut s = format!("status LEDs on GPIO, board {}", self.board);
        match &self.display_error {
            None if self.display.is_some() => s.push_str(", SSD1306 display"),
            Some(e) => s.push_str(&format!(", no display ({e})")),
            None => {}
        }
        if self.button.is_none() {
            s.push_str(", no button");
        }
        s
    }
}

/// The bypass board's trigger on its own line request, so that the edge
/// thread owns it (`bypass_drive`).
pub struct GpioBypassLine {
    req: Request,
    line: u32,
}

impl GpioBypassLine {
    pub fn open(map: &PinMap, line: u32) -> Result<GpioBypassLine, String> {
        let chip = find_gpio_chip(&map.gpio.chip)?;
        let req = Request::builder()
            .on_chip(&chip)
            .with_consumer("pitapd-bypass")
            .with_line(line)
            .as_output(Value::Inactive)
            .request()
            .map_err(|e| format!("bypass line {line} on {}: {e}", chip.display()))?;
        Ok(GpioBypassLine { req, line })
    }
}

impl super::bypass_drive::BypassLine for GpioBypassLine {
    fn set(&mut self, high: bool) {
        let _ = self.req.set_value(
            self.line,
            if high { Value::Active } else { Value::Inactive },
        );
    }

    fn describe(&self) -> String {
        format!("bypass board on GPIO {}", self.line)
    }
}
