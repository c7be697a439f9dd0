//! When each recent datagram left, by its envelope counter: a reply names
//! the datagram it answers, and is taken once, for a datagram this boot
//! sent lately; a reply recorded and replayed later finds its datagram
//! answered already (or forgotten) and is refused.

use std::time::Instant;

/// Datagrams remembered (fixed memory: a counter's slot is `counter % SLOTS`).
const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Slot {
    counter: u64,
    at: Instant,
    answered: bool,
}

pub struct SentLog {
    slots: Vec<Slot>,
}

impl SentLog {
    pub fn new(now: Instant) -> Self {
        SentLog {
            slots: vec![
                Slot {
                    counter: u64::MAX,
                    at: now,
                    answered: true,
                };
                SLOTS
            ],
        }
    }

    pub fn sent(&mut self, counter: u64, at: Instant) {
        self.slots[(counter % SLOTS as u64) as usize] = Slot {
            counter,
            at,
            answered: false,
        };
    }

    /// When `counter` left, if it is remembered and not answered before;
    /// it counts as answered from now on.
    pub fn answer(&mut self, counter: u64) -> Option<Instant> {
        let slot = &mut self.slots[(counter % SLOTS as u64) as usize];
        if slot.counter != counter || slot.answered {
            return None;
        }
        slot.answered = true;
        Some(slot.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_datagram_is_answered_once() {
        let t = Instant::now();
        let mut log = SentLog::new(t);
        log.sent(5, t);
        assert_eq!(log.answer(5), Some(t));
        assert_eq!(log.answer(5), None, "a replayed reply");
        assert_eq!(log.answer(6), None, "never sent");
        assert_eq!(log.answer(u64::MAX), None);
        log.sent(7, t);
        log.sent(7 + SLOTS as u64, t);
        assert_eq!(log.answer(7), None, "forgotten: its slot was reused");
    }
}
