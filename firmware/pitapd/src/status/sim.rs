//! The simulator: the display as PNG frames, the LEDs as a JSON-lines log,
//! the button as a file, all in one directory. The whole status logic runs
//! on any Linux box this way.
//!
//! - `leds.jsonl`: one line per change, `{"t_ms", "lit": {...}, "patterns": {...}}`
//! - `display.png`: the current page (4x scale); `frame-NNNNN.png`: every
//!   new frame (the first thousand); `page.json`: the current page as text.
//! - `button`: write `down` to hold the button, anything else to release.
//! - `bypass-drive.json`: the bypass board's trigger line, rewritten at each
//!   rising edge (the board's monostable triggers on those):
//!   `{"rises", "unix_ms"}`, the wall-clock time of the last one, so that a
//!   test can tell the board's hold ran out after pitapd died: the relays
//!   are energized while `unix_ms` is within the hold.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::hw::StatusHardware;
use super::pages::{Page, PageLines};
use super::render::{draw, Framebuffer};
use super::state::{LedPattern, Leds};

const MAX_FRAME_FILES: u64 = 1000;
const PNG_SCALE: u32 = 4;

pub struct Simulator {
    dir: PathBuf,
    leds_log: BufWriter<File>,
    last_lit: Option<[bool; 5]>,
    last_frame: Option<Framebuffer>,
    frames: u64,
    start: Instant,
}

impl Simulator {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let leds_log = BufWriter::new(File::create(dir.join("leds.jsonl"))?);
        Ok(Simulator {
            dir,
            leds_log,
            last_lit: None,
            last_frame: None,
            frames: 0,
            start: Instant::now(),
        })
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, self.dir.join(name))
    }
}

impl StatusHardware for Simulator {
    fn set_leds(&mut self, lit: [bool; 5], patterns: [LedPattern; 5]) {
        if self.last_lit == Some(lit) {
            return;
        }
        self.last_lit = Some(lit);
        let mut lit_map = serde_json::Map::new();
        let mut pattern_map = serde_json::Map::new();
        for (i, name) in Leds::NAMES.iter().enumerate() {
            lit_map.insert(name.to_string(), json!(lit[i]));
            pattern_map.insert(name.to_string(), json!(patterns[i].name()));
        }
        let line = json!({
            "t_ms": self.start.elapsed().as_millis() as u64,
            "lit": lit_map,
            "patterns": pattern_map,
        });
        // A simulator that cannot write its log is no reason to stop tapping.
        let _ = writeln!(self.leds_log, "{line}").and_then(|()| self.leds_log.flush());
    }

    fn show(&mut self, page: Page, lines: &PageLines) {
        let mut frame = Framebuffer::default();
        let Ok(()) = draw(&mut frame, page, lines);
        if self.last_frame.as_ref() == Some(&frame) {
            return;
        }
        if let Ok(png) = frame.to_png(PNG_SCALE) {
            let _ = self.write_atomic("display.png", &png);
            if self.frames < MAX_FRAME_FILES {
                let _ =
                    std::fs::write(self.dir.join(format!("frame-{:05}.png", self.frames)), &png);
            }
        }
        let page_json = json!({ "page": page.name(), "lines": lines.text });
        let _ = self.write_atomic("page.json", page_json.to_string().as_bytes());
        self.frames += 1;
        self.last_frame = Some(frame);
    }

    fn button_held(&mut self) -> Option<bool> {
        let state = std::fs::read_to_string(self.dir.join("button")).unwrap_or_default();
        Some(state.trim() == "down")
    }

    fn describe(&self) -> String {
        format!("status simulator in {}", self.dir.display())
    }
}

/// The bypass board's trigger line as a file.
pub struct SimBypassLine {
    path: PathBuf,
    rises: u64,
}

impl SimBypassLine {
    pub fn new(dir: PathBuf) -> SimBypassLine {
        let _ = std::fs::create_dir_all(&dir);
        SimBypassLine {
            path: dir.join("bypass-drive.json"),
            rises: 0,
        }
    }
}

impl super::bypass_drive::BypassLine for SimBypassLine {
    fn set(&mut self, high: bool) {
        if !high {
            return;
        }
        self.rises += 1;
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let text = json!({ "rises": self.rises, "unix_ms": unix_ms }).to_string();
        let tmp = self.path.with_extension("tmp");
        // Like the LED log: a simulator that cannot write is no reason to stop.
        let _ = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
    }

    fn describe(&self) -> String {
        format!("bypass simulator {}", self.path.display())
    }
}
