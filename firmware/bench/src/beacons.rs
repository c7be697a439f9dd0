//! A corpus for beacon detection: call-backs on a timer, varied by interval,
//! jitter (Cobalt Strike's, the sleep less up to a share of it; and a
//! symmetric one), count and size, hidden among noise that looks like people
//! and machines: browsing bursts, random arrivals, DNS lookups, NTP polls,
//! software update checks, chat keep-alives, nightly backups. Each series is
//! the connections of one source to one destination: (start ms, bytes sent,
//! destination port, continuation part). Seeded, so every run is the same.

use crate::gen::Rng;

/// One series of connections with what it is.
#[derive(Clone, Debug)]
pub struct Series {
    pub kind: Kind,
    pub dst_port: u16,
    pub proto: u8,
    /// (start ms, bytes the source sent, whether a continuation part).
    pub connections: Vec<(u64, u64, bool)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Beacon {
        sleep_ms: u64,
        /// Share of the sleep the jitter takes off (or adds and takes, when
        /// `symmetric`).
        jitter: f64,
        symmetric: bool,
        size_variation: f64,
    },
    Browsing,
    Random,
    Dns,
    Ntp,
    Updates,
    ChatKeepAlive,
    Backup,
}

impl Kind {
    pub fn is_beacon(&self) -> bool {
        matches!(self, Kind::Beacon { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Beacon { .. } => "beacon",
            Kind::Browsing => "browsing",
            Kind::Random => "random arrivals",
            Kind::Dns => "dns",
            Kind::Ntp => "ntp",
            Kind::Updates => "updates",
            Kind::ChatKeepAlive => "chat keep-alive",
            Kind::Backup => "backup",
        }
    }
}

const DAY_MS: u64 = 86_400_000;

fn exp(rng: &mut Rng, mean_ms: f64) -> u64 {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-mean_ms * (1.0 - u).ln()) as u64 + 1
}

fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A beacon of `count` calls.
pub fn beacon(
    rng: &mut Rng,
    sleep_ms: u64,
    jitter: f64,
    symmetric: bool,
    count: usize,
    size_variation: f64,
) -> Series {
    let mut t = rng.below(DAY_MS / 4);
    let base = 200 + rng.below(2_000);
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let size = (base as f64 * (1.0 + size_variation * (2.0 * unit(rng) - 1.0))) as u64;
        connections.push((t, size.max(1), false));
        let f = if symmetric {
            1.0 + jitter * (2.0 * unit(rng) - 1.0)
        } else {
            1.0 - jitter * unit(rng)
        };
        t += ((sleep_ms as f64) * f).max(1.0) as u64;
    }
    Series {
        kind: Kind::Beacon {
            sleep_ms,
            jitter,
            symmetric,
            size_variation,
        },
        dst_port: 443,
        proto: 6,
        connections,
    }
}

/// One noise series of `kind` over a day.
pub fn noise(rng: &mut Rng, kind: Kind) -> Series {
    let mut c = Vec::new();
    let (port, proto) = match kind {
        Kind::Browsing => {
            // Visits: a burst of page loads, then a pause.
            let mut t = rng.below(DAY_MS / 8);
            for _ in 0..(2 + rng.below(20)) {
                for _ in 0..(1 + rng.below(12)) {
                    c.push((t, 300 + rng.below(3_000), false));
                    t += 50 + rng.below(3_000);
                }
                t += exp(rng, 1_200_000.0);
            }
            (443, 6)
        }
        Kind::Random => {
            let mean = 30_000.0 + unit(rng) * 1_800_000.0;
            let mut t = rng.below(DAY_MS / 8);
            for _ in 0..(8 + rng.below(80)) {
                c.push((t, 100 + rng.below(20_000), false));
                t += exp(rng, mean);
            }
            (443, 6)
        }
        Kind::Dns => {
            // Lookups as a browser makes them: bursts on demand.
            let mut t = rng.below(DAY_MS / 8);
            for _ in 0..(10 + rng.below(60)) {
                for _ in 0..(1 + rng.below(6)) {
                    c.push((t, 60 + rng.below(40), false));
                    t += 1 + rng.below(200);
                }
                t += exp(rng, 300_000.0);
            }
            (53, 17)
        }
        Kind::Ntp => {
            // Polls every 64 s, doubling to 1,024 s.
            let mut t = rng.below(DAY_MS / 8);
            let mut poll = 64_000;
            for i in 0..90 {
                c.push((t, 90, false));
                t += poll + rng.below(1_000);
                if i % 8 == 7 && poll < 1_024_000 {
                    poll *= 2;
                }
            }
            (123, 17)
        }
        Kind::Updates => {
            // Every 4 h, give or take half an hour.
            let mut t = rng.below(4 * 3_600_000);
            for _ in 0..12 {
                c.push((t, 500 + rng.below(500), false));
                t += 4 * 3_600_000 - 1_800_000 + rng.below(3_600_000);
            }
            (443, 6)
        }
        Kind::ChatKeepAlive => {
            // One connection for hours, reported in parts by the active
            // timeout (continuations are not new calls).
            let t = rng.below(DAY_MS / 8);
            for i in 0..(12 + rng.below(48)) {
                c.push((t + i * 300_000, 50 * 10, i > 0));
            }
            (5222, 6)
        }
        Kind::Backup => {
            // Nightly, at about 02:00 for a few weeks.
            for d in 0..(10 + rng.below(20)) {
                c.push((d * DAY_MS + 7_200_000 + rng.below(600_000), 1 << 30, false));
            }
            (22, 6)
        }
        Kind::Beacon { .. } => (443, 6),
    };
    Series {
        kind,
        dst_port: port,
        proto,
        connections: c,
    }
}

/// The noise kinds in the shares a network of people and machines has.
pub const NOISE: [(Kind, u32); 7] = [
    (Kind::Browsing, 40),
    (Kind::Random, 20),
    (Kind::Dns, 15),
    (Kind::Ntp, 5),
    (Kind::Updates, 10),
    (Kind::ChatKeepAlive, 5),
    (Kind::Backup, 5),
];

/// The beacon grid: sleep × jitter × symmetry × count × size variation.
pub const SLEEPS_MS: [u64; 5] = [2_000, 10_000, 60_000, 300_000, 1_200_000];
pub const JITTERS: [f64; 5] = [0.0, 0.1, 0.25, 0.4, 0.5];
pub const COUNTS: [usize; 3] = [10, 30, 100];

/// `repeats` of every beacon of the grid and `noise_pairs` noise series.
pub fn corpus(seed: u64, repeats: usize, noise_pairs: usize) -> Vec<Series> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..repeats {
        for sleep in SLEEPS_MS {
            for jitter in JITTERS {
                for symmetric in [false, true] {
                    for count in COUNTS {
                        for size_variation in [0.0, 0.2] {
                            out.push(beacon(
                                &mut rng,
                                sleep,
                                jitter,
                                symmetric,
                                count,
                                size_variation,
                            ));
                        }
                    }
                }
            }
        }
    }
    let total: u32 = NOISE.iter().map(|(_, w)| w).sum();
    for i in 0..noise_pairs {
        let mut pick = (i as u32 * 7919) % total;
        let kind = NOISE
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or(Kind::Random, |(k, _)| *k);
        out.push(noise(&mut rng, kind));
    }
    out
}
