//! Beacon scoring, after RITA (Active Countermeasures): a series of
//! connections from one source to one destination scores from 0 to 1 by how
//! regular its intervals are (Bowley skewness, the spread of the middle
//! 80 %, and the share within a timer's jitter of the median: RITA's
//! histogram, robust to the odd missed or extra call), how regular its
//! sizes are, and how fully it covers its span. Jitter of up to half the
//! sleep (Cobalt Strike's `jitter` 0-50 %) keeps every interval within half
//! to one and a half times the median, so such a beacon still scores high;
//! people and most machines connect in bursts and pauses, which skews and
//! spreads. Skewness of a few intervals is noise (nine intervals of a
//! jittered timer skew by ±0.9 as often as not), so it counts in full only
//! from [`SKEW_FULL_FROM`] intervals on.

/// What makes a series a beacon candidate, and the score that reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeaconRules {
    /// Connections needed.
    pub min_connections: usize,
    /// Median intervals considered, ms (1 s to 1 h by default).
    pub min_interval_ms: u64,
    pub max_interval_ms: u64,
    /// Score from which a series is reported.
    pub min_score: f64,
    /// (protocol, port) of services that run on a timer by design and are
    /// not reported: NTP polls.
    pub ignore: &'static [(u8, u16)],
}

impl Default for BeaconRules {
    fn default() -> Self {
        BeaconRules {
            min_connections: 10,
            min_interval_ms: 1_000,
            max_interval_ms: 3_600_000,
            min_score: 0.75,
            ignore: &[(17, 123)],
        }
    }
}

/// Intervals from which skewness counts in full.
pub const SKEW_FULL_FROM: usize = 60;
/// The band around the median interval a timer with up to 50 % jitter
/// keeps its intervals in (a little wider: the median of a few is rough).
const TIMER_BAND: (f64, f64) = (0.45, 1.6);

/// A series' score and its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub score: f64,
    pub connections: usize,
    pub interval_ms: f64,
    /// Median absolute deviation of the intervals / their median.
    pub jitter: f64,
    pub interval_skew: f64,
    /// Share of the intervals within [`TIMER_BAND`] of the median.
    pub regular: f64,
    pub size_median: f64,
    pub size_spread: f64,
    /// Connections seen / connections a timer of the median interval makes
    /// over the series' span.
    pub coverage: f64,
}

impl Score {
    /// Why it scores as it does, for the report.
    pub fn reasons(&self) -> String {
        format!(
            "intervals {:.0}% apart from the median (skew {:+.2}), {:.0}% within the timer's jitter, sizes {:.0}% apart, {:.0}% of the timer's calls seen",
            self.jitter * 100.0,
            self.interval_skew,
            self.regular * 100.0,
            self.size_spread * 100.0,
            self.coverage * 100.0
        )
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Median and median absolute deviation of `v` (sorted in place).
fn median_mad(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let m = quantile(v, 0.5);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    dev.sort_by(f64::total_cmp);
    (m, quantile(&dev, 0.5))
}

/// Bowley's skewness of sorted values: (Q3 + Q1 - 2 Q2) / (Q3 - Q1).
fn bowley(sorted: &[f64]) -> f64 {
    let (q1, q2, q3) = (
        quantile(sorted, 0.25),
        quantile(sorted, 0.5),
        quantile(sorted, 0.75),
    );
    if q3 - q1 <= f64::EPSILON {
        0.0
    } else {
        (q3 + q1 - 2.0 * q2) / (q3 - q1)
    }
}

impl BeaconRules {
    /// Whether series to this service are left out.
    pub fn ignores(&self, proto: u8, port: u16) -> bool {
        self.ignore.contains(&(proto, port))
    }
}

/// The score of a series: connection `starts` (ms) and the bytes each
/// sent. `None` when it is no candidate (too few, intervals out of range).
pub fn score(starts: &mut [u64], sizes: &[u64], rules: &BeaconRules) -> Option<Score> {
    if starts.len() < rules.min_connections {
        return None;
    }
    starts.sort_unstable();
    let mut intervals: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let (interval, mad) = median_mad(&mut intervals);
    if interval < rules.min_interval_ms as f64 || interval > rules.max_interval_ms as f64 {
        return None;
    }
    let jitter = mad / interval;
    // Skew says little of intervals that hardly differ (a clock's ticks,
    // a few milliseconds apart): it counts as much as the quartiles are
    // apart, fully from a tenth of the median on.
    let iqr = quantile(&intervals, 0.75) - quantile(&intervals, 0.25);
    let confidence = (intervals.len() as f64 / SKEW_FULL_FROM as f64).min(1.0);
    let skew = bowley(&intervals) * (iqr / (0.1 * interval)).min(1.0) * confidence;
    // The middle 80 % of the intervals, against the median: a timer's
    // jitter keeps them within the sleep; arrivals at random spread them
    // over orders of magnitude.
    let spread = (quantile(&intervals, 0.9) - quantile(&intervals, 0.1)) / (2.0 * interval);
    let (lo, hi) = (TIMER_BAND.0 * interval, TIMER_BAND.1 * interval);
    let regular =
        intervals.iter().filter(|&&x| x >= lo && x <= hi).count() as f64 / intervals.len() as f64;
    let mut sz: Vec<f64> = sizes.iter().map(|&s| s as f64).collect();
    let (size_median, size_mad) = median_mad(&mut sz);
    // Small sizes vary by a few bytes in headers: a floor of 64 bytes.
    let size_spread = size_mad / size_median.max(64.0);
    let span = (starts[starts.len() - 1] - starts[0]) as f64;
    let expected = span / interval + 1.0;
    let coverage = (starts.len() as f64 / expected).min(1.0);
    let clamp = |x: f64| x.clamp(0.0, 1.0);
    // Intervals weigh most: a beacon is a timer first. The share within
    // the band scales the rest: arrivals at random that happen to look
    // balanced still fall outside it a third of the time or more.
    let interval_score = (clamp(1.0 - skew.abs()) + clamp(1.0 - spread)) / 2.0 * regular;
    let size_score = clamp(1.0 - size_spread);
    let score = 0.6 * interval_score + 0.2 * size_score + 0.2 * coverage;
    Some(Score {
        score,
        connections: starts.len(),
        interval_ms: interval,
        jitter,
        interval_skew: skew,
        regular,
        size_median,
        size_spread,
        coverage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of numbers in [0, 1).
    fn uniform(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn jitter_up_to_half_the_sleep_still_scores_high() {
        let rules = BeaconRules::default();
        let mut seed = 7;
        for jitter in [0.0, 0.1, 0.25, 0.5] {
            let mut t = 0u64;
            let mut starts = vec![];
            for _ in 0..20 {
                starts.push(t);
                // Cobalt Strike: the sleep less up to `jitter` of it.
                t += (60_000.0 * (1.0 - jitter * uniform(&mut seed))) as u64;
            }
            let s = score(&mut starts, &[420; 20], &rules).unwrap();
            assert!(s.score >= rules.min_score, "jitter {jitter}: {s:?}");
        }
    }

    #[test]
    fn people_and_poisson_arrivals_score_low() {
        let rules = BeaconRules::default();
        let mut seed = 11;
        let mut t = 0u64;
        let mut starts = vec![];
        let mut sizes = vec![];
        for _ in 0..40 {
            starts.push(t);
            sizes.push(200 + (uniform(&mut seed) * 5_000.0) as u64);
            // Exponential gaps, mean 60 s.
            t += (-60_000.0 * (1.0 - uniform(&mut seed)).ln()) as u64 + 1;
        }
        let s = score(&mut starts, &sizes, &rules).unwrap();
        assert!(s.score < rules.min_score, "{s:?}");
        let mut few = vec![0, 60_000, 120_000];
        assert_eq!(score(&mut few, &[1; 3], &rules), None);
    }
}
