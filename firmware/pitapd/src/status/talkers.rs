//! Top talkers for the display: bytes per address from the flow records,
//! in a fixed table (space-saving: a newcomer takes the smallest slot), so
//! memory stays bounded however many hosts there are. Fed per record, not
//! per packet, so it costs nothing on the hot path.

use std::net::IpAddr;

use pitap_wire::FlowRecord;

const SLOTS: usize = 64;

#[derive(Default)]
pub struct TopTalkers {
    entries: Vec<(IpAddr, u64)>,
}

impl TopTalkers {
    fn add(&mut self, addr: IpAddr, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if let Some(e) = self.entries.iter_mut().find(|(a, _)| *a == addr) {
            e.1 += bytes;
        } else if self.entries.len() < SLOTS {
            self.entries.push((addr, bytes));
        } else if let Some(min) = self.entries.iter_mut().min_by_key(|(_, b)| *b) {
            // Space-saving: the newcomer inherits the smallest count, an
            // upper bound of what it may have sent before.
            *min = (addr, min.1 + bytes);
        }
    }

    /// Counts what each side of a flow sent.
    pub fn record(&mut self, r: &FlowRecord) {
        self.add(r.src.addr, r.src.counters.bytes);
        self.add(r.dst.addr, r.dst.counters.bytes);
    }

    /// Halves every count: older traffic fades.
    pub fn decay(&mut self) {
        for e in &mut self.entries {
            e.1 /= 2;
        }
        self.entries.retain(|(_, b)| *b > 0);
    }

    /// The largest first.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v = self.entries.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
            .take(n)
            .map(|(a, b)| (a.to_string(), b))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_hitters_survive_many_small_ones() {
        let mut t = TopTalkers::default();
        let big: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..10_000u32 {
            t.add(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), 100);
            if i % 100 == 0 {
                t.add(big, 50_000);
            }
        }
        assert_eq!(t.entries.len(), SLOTS);
        assert_eq!(t.top(1)[0].0, "192.0.2.7");
        t.decay();
        assert!(t.top(1)[0].1 >= 2_500_000);
    }
}
