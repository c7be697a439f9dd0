//! When the bypass board's relays may put the tap inline. Pure: health and
//! the time in, whether to energize out; [`super::bypass_drive`] turns that
//! into the edges the board's monostable needs.
//!
//! De-energized, the relays join port A's jack to port B's (hardware/
//! bypass/README.md): the cable works end to end without the Pi. The tap
//! goes inline only after it has been healthy (bridge whole, loop turning)
//! for `arm_ms` without a break, and drops back at the first unhealthy
//! look, on a stall of the loop and on stop. Each change of the relays
//! makes both ends renegotiate their link (about 2-3 s at gigabit), so a
//! tap that keeps failing waits longer before each new try instead of
//! flapping the cable.

/// Why the relays were released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The bridge is gone, lost a port, or a member is down.
    BridgeLost,
    /// The main loop did not look for longer than `STALL_MS`.
    LoopStalled,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::BridgeLost => "bridge lost",
            Fault::LoopStalled => "loop stalled",
        }
    }
}

/// Where the state machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Started, not healthy yet: released.
    Starting,
    /// Healthy since `since_ms`; inline once it has lasted the arm time.
    Arming { since_ms: u64 },
    /// Energized: the tap is in the cable.
    Inline { since_ms: u64 },
    /// Released at `at_ms` for `fault`; arms again once healthy.
    Released { at_ms: u64, fault: Fault },
    /// A clean stop: released for good.
    Stopped,
}

impl State {
    /// One word for logs, the status file and the display.
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Arming { .. } => "arming",
            State::Inline { .. } => "inline",
            State::Released { .. } => "released",
            State::Stopped => "stopped",
        }
    }

    pub fn energized(self) -> bool {
        matches!(self, State::Inline { .. })
    }
}

/// A look longer than this after the last one is a stalled loop (the driver
/// stops the edges by then too: `bypass_drive`).
pub const STALL_MS: u64 = 1000;
/// The longest wait before a new try after repeated faults.
const MAX_ARM_MS: u64 = 60_000;

#[derive(Clone, Debug)]
pub struct Bypass {
    state: State,
    arm_ms: u64,
    /// Faults in a row (an inline stretch of 10 arm times forgives them).
    faults: u32,
    last_look_ms: Option<u64>,
}

impl Bypass {
    pub fn new(arm_ms: u64) -> Bypass {
        Bypass {
            state: State::Starting,
            arm_ms,
            faults: 0,
            last_look_ms: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// How long health must last before the next try: the arm time,
    /// doubled for each fault in a row, at most a minute.
    pub fn arm_wait_ms(&self) -> u64 {
        self.arm_ms
            .saturating_mul(1 << self.faults.min(16))
            .min(MAX_ARM_MS.max(self.arm_ms))
    }

    /// One look at the tap at `now_ms`; returns the state after it (and
    /// whether it changed, for the log).
    pub fn update(&mut self, now_ms: u64, healthy: bool) -> (State, bool) {
        let before = self.state;
        let stalled = self
            .last_look_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > STALL_MS);
        self.last_look_ms = Some(now_ms);
        self.state = match self.state {
            State::Stopped => State::Stopped,
            State::Inline { .. } if stalled => self.fault(now_ms, Fault::LoopStalled),
            State::Inline { .. } if !healthy => self.fault(now_ms, Fault::BridgeLost),
            State::Inline { since_ms } => {
                if now_ms.saturating_sub(since_ms) >= self.arm_ms.saturating_mul(10) {
                    self.faults = 0;
                }
                State::Inline { since_ms }
            }
            _ if !healthy => match self.state {
                State::Arming { .. } | State::Starting => State::Starting,
                released => released,
            },
            State::Arming { since_ms } if now_ms.saturating_sub(since_ms) >= self.arm_wait_ms() => {
                State::Inline { since_ms: now_ms }
            }
            State::Arming { since_ms } => State::Arming { since_ms },
            State::Starting | State::Released { .. } => State::Arming { since_ms: now_ms },
        };
        (self.state, self.state != before)
    }

    fn fault(&mut self, now_ms: u64, fault: Fault) -> State {
        self.faults = self.faults.saturating_add(1);
        State::Released {
            at_ms: now_ms,
            fault,
        }
    }

    /// A clean stop: released, and stays so.
    pub fn stop(&mut self) -> State {
        self.state = State::Stopped;
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks every 250 ms (the loop's tick) from `from` for `ms`.
    fn run(b: &mut Bypass, from: u64, ms: u64, healthy: bool) -> u64 {
        let mut t = from;
        while t < from + ms {
            b.update(t, healthy);
            t += 250;
        }
        t
    }

    #[test]
    fn start_up_stays_released_until_healthy_for_the_arm_time() {
        let mut b = Bypass::new(3000);
        let t = run(&mut b, 0, 5000, false);
        assert_eq!(b.state(), State::Starting);
        let t2 = run(&mut b, t, 2900, true);
        assert!(matches!(b.state(), State::Arming { .. }), "{:?}", b.state());
        assert!(!b.state().energized());
        // A blip of unhealth while arming starts the wait over.
        b.update(t2, false);
        assert_eq!(b.state(), State::Starting);
        let t3 = run(&mut b, t2 + 250, 2900, true);
        assert!(!b.state().energized());
        run(&mut b, t3, 500, true);
        assert!(b.state().energized(), "{:?}", b.state());
    }

    #[test]
    fn the_first_unhealthy_look_releases_and_each_fault_waits_longer() {
        let mut b = Bypass::new(1000);
        let mut t = run(&mut b, 0, 1500, true);
        assert!(b.state().energized());
        let (s, changed) = b.update(t, false);
        assert!(changed);
        assert_eq!(
            s,
            State::Released {
                at_ms: t,
                fault: Fault::BridgeLost
            }
        );
        assert_eq!(b.arm_wait_ms(), 2000);
        t = run(&mut b, t + 250, 1900, true);
        assert!(!b.state().energized(), "the second try waits 2 s");
        t = run(&mut b, t, 500, true);
        assert!(b.state().energized());
        b.update(t, false);
        assert_eq!(b.arm_wait_ms(), 4000);
        // Never more than a minute between tries.
        for _ in 0..20 {
            let wait = b.arm_wait_ms();
            t = run(&mut b, t + 250, wait + 500, true);
            assert!(b.state().energized());
            b.update(t, false);
        }
        assert_eq!(b.arm_wait_ms(), 60_000);
        // A long healthy stretch forgives the faults.
        t = run(&mut b, t + 250, 60_500, true);
        assert!(b.state().energized());
        run(&mut b, t, 10_500, true);
        assert_eq!(b.arm_wait_ms(), 1000);
    }

    #[test]
    fn a_stalled_loop_releases() {
        let mut b = Bypass::new(1000);
        let t = run(&mut b, 0, 1500, true);
        assert!(b.state().energized());
        let (s, _) = b.update(t + STALL_MS + 1, true);
        assert!(matches!(
            s,
            State::Released {
                fault: Fault::LoopStalled,
                ..
            }
        ));
    }

    #[test]
    fn a_stop_releases_for_good() {
        let mut b = Bypass::new(1000);
        let t = run(&mut b, 0, 1500, true);
        assert!(b.state().energized());
        assert_eq!(b.stop(), State::Stopped);
        run(&mut b, t, 5000, true);
        assert_eq!(b.state(), State::Stopped);
        assert!(!b.state().energized());
    }

    #[test]
    fn released_stays_released_while_unhealthy() {
        let mut b = Bypass::new(1000);
        let t = run(&mut b, 0, 1500, true);
        let t = run(&mut b, t, 5000, false);
        assert!(matches!(b.state(), State::Released { .. }));
        run(&mut b, t, 250, true);
        assert!(matches!(b.state(), State::Arming { .. }));
    }
}
