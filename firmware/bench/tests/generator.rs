//! The benchmark capture generator: the same seed gives the same bytes,
//! and the mix is what BENCHMARKS.md says it is (read back through the
//! flow core, not through the generator's own bookkeeping).

use pitap_bench::gen::{generate, GenConfig};
use pitap_flow_core::decode::{decode, Decoded};
use pitap_flow_core::{EngineConfig, FlowEngine, Frame, LinkType};
use pitap_wire::{FlowRecord, TapPort};

fn digest(config: &GenConfig) -> (u64, u64) {
    // FNV-1a over every timestamp and byte.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut n = 0;
    generate(config, |ts, frame| {
        for b in ts.to_le_bytes().iter().chain(frame) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        n += 1;
    });
    (h, n)
}

#[test]
fn same_seed_same_bytes() {
    let config = GenConfig {
        packets: 30_000,
        concurrent: 2_000,
        ..GenConfig::default()
    };
    assert_eq!(digest(&config), digest(&config));
    let other = GenConfig { seed: 2, ..config };
    assert_ne!(digest(&config).0, digest(&other).0);
}

#[test]
fn the_mix_is_realistic() {
    let config = GenConfig {
        packets: 200_000,
        concurrent: 1_000,
        ..GenConfig::default()
    };
    let (mut v6, mut tagged, mut frames, mut min, mut max) = (0u64, 0u64, 0u64, usize::MAX, 0);
    let mut last_ts = 0;
    let mut engine = FlowEngine::new(EngineConfig::default());
    let mut records: Vec<FlowRecord> = Vec::new();
    generate(&config, |ts, data| {
        assert!(ts >= last_ts, "time runs forward");
        last_ts = ts;
        frames += 1;
        min = min.min(data.len());
        max = max.max(data.len());
        if let Decoded::Ip(p) = decode(LinkType::Ethernet, data, None) {
            v6 += u64::from(p.is_v6);
            tagged += u64::from(p.vlan != 0);
        } else {
            panic!("every generated frame is IP");
        }
        let frame = Frame {
            ts_us: ts,
            orig_len: data.len() as u32,
            data,
            link: LinkType::Ethernet,
            port: TapPort::A,
            vlan_tci: None,
        };
        engine.process(&frame, &mut records);
    });
    engine.flush(&mut records);
    assert_eq!(frames, 200_000);
    assert!(min >= 60 && max <= 1514, "frame sizes {min}..{max}");
    let share = |n: u64| n as f64 / frames as f64;
    assert!(
        (0.05..0.25).contains(&share(v6)),
        "IPv6 share {}",
        share(v6)
    );
    assert!(
        (0.15..0.35).contains(&share(tagged)),
        "VLAN share {}",
        share(tagged)
    );
    let count = |f: &dyn Fn(&FlowRecord) -> bool| records.iter().filter(|r| f(r)).count();
    let flows = records.len();
    assert!(flows > 10_000, "{flows} flows");
    let sf = count(&|r| r.conn_state.as_str() == "SF");
    let rej = count(&|r| r.conn_state.as_str() == "REJ");
    let dns = count(&|r| r.proto == 17 && r.dst.port == 53);
    let icmp = count(&|r| r.proto == 1 || r.proto == 58);
    let rst = count(&|r| r.conn_state.as_str() == "RSTO");
    for (name, n) in [
        ("SF", sf),
        ("REJ", rej),
        ("DNS", dns),
        ("ICMP", icmp),
        ("RSTO", rst),
    ] {
        assert!(n > flows / 100, "{name}: {n} of {flows}");
    }
}

#[test]
fn transfer_sizes_are_heavy_tailed() {
    // The data packets of TCP sessions: most are short, a few carry most.
    let mut rng = pitap_bench::gen::Rng::new(7);
    let mut sizes: Vec<u64> = (0..100_000).map(|_| rng.heavy(6, 50_000)).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let all: u64 = sizes.iter().sum();
    let top: u64 = sizes[..1000].iter().sum();
    let median = sizes[50_000];
    assert!(median <= 12, "median {median}");
    assert!(sizes[0] >= 10_000, "largest {}", sizes[0]);
    assert!(top as f64 / all as f64 > 0.3, "top 1% carry {top} of {all}");
}
