//! How fast the uplink sends: a probe timeout from measured round trips
//! (RFC 6298's smoothed RTT and variance of whole round trips, the
//! collector's grouping included: QUIC's PTO, RFC 9002), and a
//! window of batches in flight that grows while acknowledgements come and
//! shrinks on loss, never past what the collector says it can take and
//! never below a floor: on a hostile path loss is often not congestion, and
//! a tap's uplink must keep going through it. Every transmission has its own envelope counter and the collector
//! echoes the one it answers, so a round trip is never mistaken for
//! another's (Karn's problem does not arise).

use std::time::Duration;

/// Before the first sample (RFC 6298 says 1 s).
const FIRST_RTO: Duration = Duration::from_secs(1);
/// A probe that fires early costs two datagrams, not the window: the
/// floor can be low.
const MIN_RTO: Duration = Duration::from_millis(50);
/// Backed-off timeouts stop here: a collector that comes back is probed
/// again within this long.
const MAX_RTO: Duration = Duration::from_millis(pitap_wire::messages::MAX_PROBE_MS);

#[derive(Clone, Copy, Debug, Default)]
pub struct Rtt {
    srtt_us: Option<u64>,
    rttvar_us: u64,
    /// Doublings since the last sample.
    backoff: u32,
}

impl Rtt {
    /// `rtt`: from a datagram to the reply that names it.
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_micros().min(u128::from(u32::MAX)) as u64;
        match self.srtt_us {
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2;
            }
            Some(s) => {
                self.rttvar_us = (3 * self.rttvar_us + s.abs_diff(r)) / 4;
                self.srtt_us = Some((7 * s + r) / 8);
            }
        }
        self.backoff = 0;
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us.map(Duration::from_micros)
    }

    /// The retransmission timeout now.
    pub fn rto(&self) -> Duration {
        let base = match self.srtt_us {
            None => FIRST_RTO,
            Some(s) => Duration::from_micros(s + (4 * self.rttvar_us).max(10_000)).max(MIN_RTO),
        };
        base.saturating_mul(1 << self.backoff.min(8)).min(MAX_RTO)
    }

    /// A timeout fired: wait twice as long next time.
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// How long a batch may wait for its acknowledgement behind a later one
    /// before it counts as lost (reordering on the path).
    pub fn reorder_window(&self) -> Duration {
        self.srtt_us
            .map_or(Duration::from_millis(20), |s| Duration::from_micros(s / 4))
            .clamp(Duration::from_millis(1), Duration::from_millis(100))
    }
}

/// Batches in flight at once.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    cwnd: u32,
    /// Acknowledged batches counted towards the next step of congestion
    /// avoidance.
    acc: u32,
    ssthresh: u32,
    /// What the collector said it can take.
    rwnd: u32,
    /// (cwnd, ssthresh) before the last timeout, to restore if it proves
    /// spurious.
    before_timeout: Option<(u32, u32)>,
}

const FIRST_CWND: u32 = 32;
/// The window never goes below this (about 43 KB in flight, nothing on any
/// real link); under random loss a TCP-like window would halve to a couple
/// of batches a round trip and the tap's buffer would fill.
const MIN_CWND: u32 = 32;
/// On loss the window keeps this much (in tenths; CUBIC's and QUIC's 0.7).
const LOSS_KEEP_TENTHS: u32 = 7;
const MAX_CWND: u32 = 1 << 16;
/// In congestion avoidance the window grows by one per this many batches
/// acknowledged: 1/8 per round trip. TCP's one segment per round trip is
/// far too slow when a round trip includes the collector's grouping delay
/// (hundreds of ms); loss still halves it.
const AVOIDANCE_STEP: u32 = 8;

impl Default for Window {
    fn default() -> Self {
        Window {
            cwnd: FIRST_CWND,
            acc: 0,
            ssthresh: MAX_CWND,
            rwnd: FIRST_CWND,
            before_timeout: None,
        }
    }
}

impl Window {
    /// Batches that may be in flight now.
    pub fn allowed(&self) -> usize {
        self.cwnd.min(self.rwnd).max(1) as usize
    }

    pub fn set_receive_window(&mut self, batches: u32) {
        self.rwnd = batches.max(1);
    }

    /// `n` batches newly acknowledged.
    pub fn on_acked(&mut self, n: u32) {
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(n);
        } else {
            self.acc = self.acc.saturating_add(n);
            self.cwnd = self.cwnd.saturating_add(self.acc / AVOIDANCE_STEP);
            self.acc %= AVOIDANCE_STEP;
        }
        self.cwnd = self.cwnd.min(MAX_CWND);
    }

    /// A batch was lost while later ones arrived: shrink (once a round
    /// trip; the caller sees to that).
    pub fn on_loss(&mut self, in_flight: usize) {
        let base = self.cwnd.min(in_flight.max(1) as u32);
        self.ssthresh = (base * LOSS_KEEP_TENTHS / 10).max(MIN_CWND);
        self.cwnd = self.ssthresh;
        self.acc = 0;
    }

    /// Nothing came back through several probe timeouts: start again from
    /// the floor.
    pub fn on_persistent_timeout(&mut self, in_flight: usize) {
        self.before_timeout = Some((self.cwnd, self.ssthresh));
        self.ssthresh = (in_flight as u32 / 2).max(MIN_CWND);
        self.cwnd = MIN_CWND;
        self.acc = 0;
    }

    /// A reply answered a transmission from before the last persistent
    /// timeout: the path was only slow, nothing was lost (Eifel, RFC 3522):
    /// the window is put back.
    pub fn undo_timeout(&mut self) {
        if let Some((cwnd, ssthresh)) = self.before_timeout.take() {
            self.cwnd = self.cwnd.max(cwnd);
            self.ssthresh = ssthresh;
        }
    }

    /// A loss was real: the last timeout stays.
    pub fn keep_timeout(&mut self) {
        self.before_timeout = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_follows_the_round_trips() {
        let mut r = Rtt::default();
        assert_eq!(r.rto(), FIRST_RTO);
        for _ in 0..20 {
            r.sample(Duration::from_millis(300));
        }
        // A steady 300 ms: the timeout sits a little above it.
        let rto = r.rto();
        assert!(
            rto >= Duration::from_millis(300) && rto < Duration::from_millis(400),
            "{rto:?}"
        );
        // A jittery path gets more room.
        for i in 0..20 {
            r.sample(Duration::from_millis(if i % 2 == 0 { 100 } else { 500 }));
        }
        assert!(r.rto() > Duration::from_millis(700), "{:?}", r.rto());
        r.back_off();
        r.back_off();
        r.back_off();
        assert_eq!(r.rto(), MAX_RTO);
        r.sample(Duration::from_millis(1));
        assert!(r.rto() < MAX_RTO, "a sample ends the backoff");
        assert!(r.rto() >= MIN_RTO);
    }

    #[test]
    fn the_window_grows_with_acks_and_shrinks_on_loss() {
        let mut w = Window::default();
        w.set_receive_window(10_000);
        assert_eq!(w.allowed(), 32);
        w.on_acked(32);
        w.on_acked(64);
        assert_eq!(w.allowed(), 128, "slow start doubles per round trip");
        w.on_loss(128);
        assert_eq!(w.allowed(), 89, "a loss keeps 0.7");
        w.on_acked(89);
        assert_eq!(w.allowed(), 100, "then an eighth more per round trip");
        for _ in 0..10 {
            w.on_loss(100);
        }
        assert_eq!(w.allowed(), MIN_CWND as usize, "never below the floor");
        w.on_acked(400);
        let before = w.allowed();
        w.on_persistent_timeout(before);
        assert_eq!(w.allowed(), MIN_CWND as usize);
        w.undo_timeout();
        assert_eq!(w.allowed(), before, "a spurious timeout is undone");
        w.set_receive_window(1);
        assert_eq!(w.allowed(), 1, "never past the collector's window");
    }
}
