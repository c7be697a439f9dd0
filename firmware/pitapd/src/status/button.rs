//! The push button: debounced, a short press and a long press told apart.

/// What a press meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Press {
    /// Released before the long-press time: next page.
    Short,
    /// Held for the long-press time: identity page (reported once, while
    /// still held, so the user sees it react).
    Long,
}

/// Debounces raw samples: a level counts once it has been stable for
/// `debounce_ms`.
pub struct Button {
    debounce_ms: u64,
    long_ms: u64,
    raw: bool,
    raw_since: u64,
    stable: bool,
    pressed_at: Option<u64>,
    long_sent: bool,
}

impl Button {
    pub fn new(debounce_ms: u64, long_ms: u64) -> Self {
        Button {
            debounce_ms,
            long_ms,
            raw: false,
            raw_since: 0,
            stable: false,
            pressed_at: None,
            long_sent: false,
        }
    }

    /// Feeds one sample (`pressed` already corrected for active-low wiring).
    pub fn sample(&mut self, now_ms: u64, pressed: bool) -> Option<Press> {
        if pressed != self.raw {
            self.raw = pressed;
            self.raw_since = now_ms;
        }
        if self.raw != self.stable && now_ms.saturating_sub(self.raw_since) >= self.debounce_ms {
            self.stable = self.raw;
            if self.stable {
                self.pressed_at = Some(now_ms);
                self.long_sent = false;
            } else if let Some(_at) = self.pressed_at.take() {
                if !self.long_sent {
                    return Some(Press::Short);
                }
            }
        }
        if let Some(at) = self.pressed_at {
            if !self.long_sent && now_ms.saturating_sub(at) >= self.long_ms {
                self.long_sent = true;
                return Some(Press::Long);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 10 ms from (time, level) steps; the presses seen.
    fn run(steps: &[(u64, bool)], until: u64) -> Vec<(u64, Press)> {
        let mut b = Button::new(30, 1500);
        let mut out = Vec::new();
        let mut level = false;
        for t in (0..=until).step_by(10) {
            if let Some(&(_, l)) = steps.iter().rev().find(|(at, _)| *at <= t) {
                level = l;
            }
            if let Some(p) = b.sample(t, level) {
                out.push((t, p));
            }
        }
        out
    }

    #[test]
    fn a_short_press_once_despite_bounces() {
        let bouncy = [
            (100, true),
            (110, false),
            (120, true),
            (130, false),
            (140, true),
            (400, false),
            (410, true),
            (420, false),
        ];
        let presses = run(&bouncy, 1000);
        assert_eq!(presses.len(), 1, "{presses:?}");
        assert_eq!(presses[0].1, Press::Short);
    }

    #[test]
    fn a_long_press_while_held_and_no_short_after() {
        let presses = run(&[(100, true), (2500, false)], 3000);
        // Stable at 130 (pressed at 100 + 30 ms debounce), long 1500 ms later.
        assert_eq!(presses, vec![(1630, Press::Long)]);
    }

    #[test]
    fn glitches_shorter_than_the_debounce_are_ignored() {
        assert!(run(&[(100, true), (120, false)], 500).is_empty());
    }
}
