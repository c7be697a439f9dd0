//! The tap's clock: the kernel's clock plus a correction learned from the
//! collector. A Pi has no real-time clock and the tap no kernel address, so
//! nothing else ever sets the time; the collector's sealed replies carry its
//! clock.
//!
//! A reply names the tap's datagram it answers, so the tap knows when that
//! datagram left (t1, its own monotonic clock), when the reply came (t4),
//! how long the collector held it (sealed in the reply) and the
//! collector's clock when it answered (t3). Causality bounds the
//! collector's clock at t4 to `[t3, t3 + (t4 - t1) - held]`: no one on the
//! path can make that interval miss the truth, only make it wider by
//! delaying datagrams. So the correction moves only when it falls outside
//! such an interval, and a first sync needs an interval narrow enough for
//! the promise made about it.

/// A first sync needs an interval at most this wide (µs): the time is then
/// off by at most 2 s.
pub const MAX_FIRST_WIDTH_US: i64 = 4_000_000;
/// How fast a kernel clock can drift from the collector's, in parts per
/// million: a crystal's tolerance (a Pi's is ±50 ppm) with room to spare.
const DRIFT_PPM: u64 = 100;

/// What a sample did to the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The first good sample: the clock is synchronised from now on.
    First,
    /// The correction already lay inside the interval.
    Kept,
    /// The correction lay outside the interval but the two agree within
    /// what the correction was known to: moved into where both hold (a
    /// first sample taken under load was wide; this one is narrower).
    Refined,
    /// The interval lies outside everything the correction allowed (the
    /// kernel clock was set, or drifted past its bound): moved to the
    /// interval's middle.
    Stepped,
    /// Too wide to sync with; nothing changed.
    TooUncertain,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapClock {
    synced: bool,
    /// Added to the kernel's clock, µs.
    correction_us: i64,
    /// How far the corrected time can be off at most, µs, as of
    /// `bound_at_us` (kernel time): the tightest sample since the last step.
    uncertainty_us: u64,
    bound_at_us: u64,
    steps: u64,
}

impl TapClock {
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn correction_us(&self) -> i64 {
        self.correction_us
    }

    /// The correction in whole milliseconds, as applied to record times.
    pub fn correction_ms(&self) -> i64 {
        self.correction_us.div_euclid(1000)
    }

    /// How far the corrected time can be off at most now, µs: the tightest
    /// bound a sample gave, grown by what the clocks can drift since.
    pub fn uncertainty_us(&self) -> u64 {
        self.uncertainty_us
    }

    fn drifted(&self, kernel_us: u64) -> u64 {
        self.uncertainty_us
            .saturating_add(kernel_us.saturating_sub(self.bound_at_us) * DRIFT_PPM / 1_000_000)
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// A kernel time in ms on the corrected clock.
    pub fn correct_ms(&self, kernel_ms: u64) -> u64 {
        (kernel_ms as i64)
            .saturating_add(self.correction_ms())
            .max(0) as u64
    }

    /// The collector's clock was between `earliest_us` and `latest_us` when
    /// the kernel's read `kernel_us`.
    pub fn sample(&mut self, kernel_us: u64, earliest_us: u64, latest_us: u64) -> Sample {
        let lo = earliest_us as i64 - kernel_us as i64;
        let hi = (latest_us.max(earliest_us)) as i64 - kernel_us as i64;
        let middle = lo + (hi - lo) / 2;
        let result = if !self.synced {
            if hi - lo > MAX_FIRST_WIDTH_US {
                return Sample::TooUncertain;
            }
            // A kernel clock that is already right within the measurement
            // stays as it is (loopback, a Pi whose clock was set).
            self.correction_us = if (lo..=hi).contains(&0) { 0 } else { middle };
            self.synced = true;
            Sample::First
        } else if (lo..=hi).contains(&self.correction_us) {
            Sample::Kept
        } else {
            let known = self.drifted(kernel_us) as i64;
            let (from, to) = (
                lo.max(self.correction_us - known),
                hi.min(self.correction_us + known),
            );
            if from <= to {
                self.correction_us = from + (to - from) / 2;
                Sample::Refined
            } else {
                self.correction_us = middle;
                self.steps += 1;
                Sample::Stepped
            }
        };
        // The truth lies in every sample's interval, and so does the
        // correction: its error is at most its distance to the interval's
        // far end. A kept correction keeps the tighter of the two bounds.
        let bound = (self.correction_us - lo).max(hi - self.correction_us) as u64;
        self.uncertainty_us = match result {
            Sample::Kept => bound.min(self.drifted(kernel_us)),
            _ => bound,
        };
        self.bound_at_us = kernel_us;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR_US: u64 = 365 * 86_400 * 1_000_000;
    const NOW_US: u64 = 1_796_000_000_000_000; // 2026-12

    #[test]
    fn a_clock_at_1970_syncs_to_the_collector() {
        let mut c = TapClock::default();
        assert!(!c.is_synced());
        // Booted 10 s ago at 1970; the reply's interval is 3 ms wide.
        let kernel = 10_000_000;
        assert_eq!(c.sample(kernel, NOW_US, NOW_US + 3_000), Sample::First);
        assert!(c.is_synced());
        let corrected = c.correct_ms(kernel / 1000) * 1000;
        assert!(corrected.abs_diff(NOW_US) <= 2_000, "{corrected}");
        assert!(c.uncertainty_us() <= 1_500);
    }

    #[test]
    fn a_right_clock_stays_as_it_is() {
        let mut c = TapClock::default();
        assert_eq!(c.sample(NOW_US + 100, NOW_US, NOW_US + 400), Sample::First);
        assert_eq!(c.correction_us(), 0);
    }

    #[test]
    fn delayed_replies_widen_the_interval_but_move_nothing() {
        let mut c = TapClock::default();
        let kernel = NOW_US - 10 * YEAR_US;
        c.sample(kernel, NOW_US, NOW_US + 2_000);
        let before = c.correction_us();
        // A reply held 3 s on the path: its interval is 3 s wide but still
        // contains the truth (60.000 s to 60.002 s on), and the correction.
        let later = kernel + 60_000_000;
        assert_eq!(
            c.sample(later, NOW_US + 57_000_000, NOW_US + 60_003_000),
            Sample::Kept
        );
        assert_eq!(c.correction_us(), before);
        assert_eq!(c.steps(), 0);
        // The bound stays the first sample's (1 ms), grown by 60 s of drift.
        assert!(
            c.uncertainty_us() <= 1_000 + 6_000,
            "{}",
            c.uncertainty_us()
        );
    }

    #[test]
    fn a_drifting_clock_is_followed_and_a_set_one_stepped() {
        let mut c = TapClock::default();
        c.sample(NOW_US, NOW_US, NOW_US + 1_000);
        // An hour later the kernel clock runs 80 ms fast: within 100 ppm
        // of drift (360 ms), so the correction follows without a step.
        let kernel = NOW_US + 3_600_000_000 + 80_000;
        let truth = NOW_US + 3_600_000_000;
        assert_eq!(c.sample(kernel, truth, truth + 2_000), Sample::Refined);
        assert_eq!(c.steps(), 0);
        assert!(c.correct_ms(kernel / 1000).abs_diff(truth / 1000) <= 2);
        // A second later it is 5 s fast (someone set it): a step.
        let kernel = kernel + 1_000_000 + 5_000_000;
        let truth = truth + 1_000_000;
        assert_eq!(c.sample(kernel, truth, truth + 2_000), Sample::Stepped);
        assert_eq!(c.steps(), 1);
        assert!(c.correct_ms(kernel / 1000).abs_diff(truth / 1000) <= 2);
    }

    #[test]
    fn a_wide_first_sample_is_refined_not_stepped() {
        let mut c = TapClock::default();
        let kernel = NOW_US - 10 * YEAR_US;
        // Under load the first reply took 300 ms: the truth (the collector
        // read its clock 20 ms in) is far from the interval's middle.
        assert_eq!(
            c.sample(kernel, NOW_US - 20_000, NOW_US + 280_000),
            Sample::First
        );
        assert!(c.correct_ms(kernel / 1000).abs_diff(NOW_US / 1000) > 100);
        // A quick reply a second later agrees with it: refined, no step.
        let later = kernel + 1_000_000;
        let truth = NOW_US + 1_000_000;
        assert_eq!(c.sample(later, truth, truth + 1_000), Sample::Refined);
        assert_eq!(c.steps(), 0);
        assert!(c.correct_ms(later / 1000).abs_diff(truth / 1000) <= 1);
        assert!(c.uncertainty_us() <= 1_000);
    }

    #[test]
    fn a_first_sample_too_wide_is_not_taken() {
        let mut c = TapClock::default();
        assert_eq!(
            c.sample(0, NOW_US, NOW_US + 5_000_000),
            Sample::TooUncertain
        );
        assert!(!c.is_synced());
    }
}
