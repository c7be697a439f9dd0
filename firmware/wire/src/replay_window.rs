//! A sliding replay window over message counters (as in IPsec and
//! WireGuard): each counter is accepted once; counters that fall more than
//! the window behind the highest seen are refused. Datagrams may arrive out
//! of order inside the window.

const WORDS: usize = 32;
/// Counters remembered behind the highest one.
pub const WINDOW: u64 = (WORDS * 64) as u64;

#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; WORDS],
    started: bool,
}

impl ReplayWindow {
    fn bit(counter: u64) -> (usize, u64) {
        let i = counter % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `counter` would be accepted, without recording it.
    pub fn is_fresh(&self, counter: u64) -> bool {
        if !self.started || counter > self.top {
            return true;
        }
        if self.top - counter >= WINDOW {
            return false;
        }
        let (w, b) = Self::bit(counter);
        self.bits[w] & b == 0
    }

    /// Records `counter`; false if it was seen before or is too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.is_fresh(counter) {
            return false;
        }
        if !self.started {
            self.started = true;
            self.top = counter;
        } else if counter > self.top {
            if counter - self.top >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in self.top + 1..counter {
                    let (w, b) = Self::bit(c);
                    self.bits[w] &= !b;
                }
                let (w, b) = Self::bit(counter);
                self.bits[w] &= !b;
            }
            self.top = counter;
        }
        let (w, b) = Self::bit(counter);
        self.bits[w] |= b;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_once_in_any_order() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(10));
        assert!(!w.accept(10));
        assert!(w.accept(12));
        assert!(w.accept(11));
        assert!(!w.accept(11));
        assert!(w.accept(10 + WINDOW));
        // 10 is now out of the window; 11 and 12 were cleared with it.
        assert!(!w.accept(10));
        assert!(w.accept(11 + WINDOW));
        assert!(!w.accept(11 + WINDOW));
        assert!(w.accept(5 * WINDOW));
        assert!(!w.accept(4 * WINDOW));
        assert!(w.accept(5 * WINDOW - 1));
    }

    #[test]
    fn matches_a_set_over_random_orders() {
        // A simple model: a counter is fresh iff unseen and within the window.
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let c = 5000 + (crate::test_rng::xorshift(&mut x) % 6000);
            let expected = !seen.contains(&c) && (seen.is_empty() || c > top || top - c < WINDOW);
            assert_eq!(w.accept(c), expected, "counter {c}");
            if expected {
                seen.insert(c);
                top = top.max(c);
            }
        }
    }
}
