//! Beacon detection measured on the bench crate's corpus: beacons on a grid
//! of sleep × jitter (0-50 %, Cobalt Strike's and symmetric) × count ×
//! size variation, among noise series of people and machines. Prints the
//! table of detection by sleep and jitter (the README's) and asserts the
//! rates: at least 95 % of the beacons, at most 1 false beacon per 10,000
//! noise series.

use pitap::beacon::{score, BeaconRules};
use pitap_bench::beacons::{corpus, Kind, JITTERS, SLEEPS_MS};

fn detected(s: &pitap_bench::beacons::Series, rules: &BeaconRules) -> bool {
    if rules.ignores(s.proto, s.dst_port) {
        return false;
    }
    // As the report: continuation parts are not new connections.
    let calls: Vec<&(u64, u64, bool)> = s.connections.iter().filter(|c| !c.2).collect();
    let mut starts: Vec<u64> = calls.iter().map(|c| c.0).collect();
    let sizes: Vec<u64> = calls.iter().map(|c| c.1).collect();
    score(&mut starts, &sizes, rules).is_some_and(|sc| sc.score >= rules.min_score)
}

#[test]
fn beacons_are_found_and_noise_is_not() {
    let rules = BeaconRules::default();
    let series = corpus(1, 4, 40_000);
    let mut table = vec![vec![(0u32, 0u32); JITTERS.len()]; SLEEPS_MS.len()];
    let (mut found, mut beacons) = (0u32, 0u32);
    let mut false_by_kind: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
    for s in &series {
        let hit = detected(s, &rules);
        match s.kind {
            Kind::Beacon {
                sleep_ms, jitter, ..
            } => {
                let i = SLEEPS_MS.iter().position(|&x| x == sleep_ms).unwrap();
                let j = JITTERS.iter().position(|&x| x == jitter).unwrap();
                table[i][j].1 += 1;
                table[i][j].0 += u32::from(hit);
                beacons += 1;
                found += u32::from(hit);
            }
            k => {
                let e = false_by_kind.entry(k.name()).or_default();
                e.1 += 1;
                e.0 += u32::from(hit);
            }
        }
    }
    let noise: u32 = false_by_kind.values().map(|v| v.1).sum();
    let false_beacons: u32 = false_by_kind.values().map(|v| v.0).sum();
    let mut md = String::from("| sleep | ");
    md += &JITTERS
        .iter()
        .map(|j| format!("jitter {:.0} %", j * 100.0))
        .collect::<Vec<_>>()
        .join(" | ");
    md += " |\n| ---: |";
    md += &" ---: |".repeat(JITTERS.len());
    md += "\n";
    for (i, row) in table.iter().enumerate() {
        md += &format!("| {} s |", SLEEPS_MS[i] / 1000);
        for (hit, n) in row {
            md += &format!(" {:.1} % |", f64::from(*hit) * 100.0 / f64::from(*n));
        }
        md += "\n";
    }
    eprintln!("{md}");
    eprintln!(
        "beacons found: {found} of {beacons} ({:.2} %); false beacons: {false_beacons} in {noise} noise series ({:.2} per 10,000): {false_by_kind:?}",
        f64::from(found) * 100.0 / f64::from(beacons),
        f64::from(false_beacons) * 10_000.0 / f64::from(noise)
    );
    assert!(
        f64::from(found) >= 0.95 * f64::from(beacons),
        "{found} of {beacons}"
    );
    assert!(
        f64::from(false_beacons) * 10_000.0 <= f64::from(noise),
        "{false_beacons} in {noise}"
    );
}

/// A call-back that rotates addresses behind one DNS name is one beacon,
/// named by the name, in the report over a real store.
#[test]
fn a_beacon_behind_rotating_addresses_is_one_beacon() {
    use pitap::flow::StoredFlow;
    use pitap::networks::Networks;
    use pitap_wire::{Endpoint, FlowRecord, Text};
    let dir = std::env::temp_dir().join(format!("pitap-beacon-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.db");
    let networks = Networks::default();
    let t0 = 1_700_000_000_000u64;
    let flows: Vec<StoredFlow> = (0..15u64)
        .map(|k| {
            let mut r = FlowRecord {
                start_ms: t0 + k * 60_000 + (k * 7_919 % 3_000),
                proto: 6,
                src: Endpoint {
                    addr: "10.0.0.5".parse().unwrap(),
                    port: 40_000 + k as u16,
                    ..Endpoint::default()
                },
                dst: Endpoint {
                    // A new address every few calls.
                    addr: format!("203.0.113.{}", 10 + k / 4).parse().unwrap(),
                    port: 443,
                    ..Endpoint::default()
                },
                ..FlowRecord::default()
            };
            r.end_ms = r.start_ms + 200;
            r.src.counters.bytes = 420;
            r.names.responder_name = Text::from_bytes(b"updates.c2.example");
            StoredFlow::new("lab".into(), r, &networks)
        })
        .collect();
    pitap::store::Store::open(&path)
        .unwrap()
        .commit(&flows, &[], None)
        .unwrap();
    let sections = pitap::report::run(
        &pitap::report::Options {
            store: path.clone(),
            since_ms: 0,
            until_ms: u64::MAX,
            sensitive: Vec::new(),
            only: Some("beacons".into()),
            limit: 10,
            thresholds: pitap::report::Thresholds::default(),
            json: true,
            networks: None,
        },
        &mut std::io::sink(),
    )
    .unwrap();
    let rows = &sections[0].rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["dst_name"], "updates.c2.example");
    assert_eq!(rows[0]["connections"], 15);
    assert!(rows[0]["score"].as_f64().unwrap() >= 0.75, "{rows:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `aggregate = "beacon"`: a live collector's alert fires once when a
/// beacon of 20 calls or more reaches the threshold, and never on the
/// corpus' noise.
#[test]
fn a_beacon_alert_fires_on_beacons_not_on_noise() {
    use pitap::alerts::{AlertRule, Alerts};
    use pitap::flow::StoredFlow;
    use pitap::networks::Networks;
    use pitap_wire::{Endpoint, FlowRecord};
    let rule: AlertRule = toml::from_str(
        "name = \"beacon\"\naggregate = \"beacon\"\nwindow_s = 86400\nthreshold = 0.75\nactions = []\n",
    )
    .unwrap();
    let networks = Networks::default();
    let as_flows = |s: &pitap_bench::beacons::Series, n: u8| -> Vec<StoredFlow> {
        s.connections
            .iter()
            .map(|&(start, bytes, continuation)| {
                let mut r = FlowRecord {
                    start_ms: start,
                    end_ms: start + 100,
                    proto: s.proto,
                    continuation,
                    src: Endpoint {
                        addr: std::net::IpAddr::from([10, 0, 0, n]),
                        ..Endpoint::default()
                    },
                    dst: Endpoint {
                        addr: std::net::IpAddr::from([198, 51, 100, n]),
                        port: s.dst_port,
                        ..Endpoint::default()
                    },
                    ..FlowRecord::default()
                };
                r.src.counters.bytes = bytes;
                StoredFlow::new("lab".into(), r, &networks)
            })
            .collect()
    };
    let series = corpus(3, 1, 2_000);
    let mut fired_beacons = 0;
    let mut beacons = 0;
    let mut fired_noise = 0;
    for (i, s) in series.iter().enumerate() {
        let mut alerts = Alerts::new(std::slice::from_ref(&rule), None).unwrap();
        let fired: usize = as_flows(s, (i % 250) as u8)
            .iter()
            .map(|f| alerts.observe(f).len())
            .sum();
        assert!(fired <= 1, "fires once, not at every call: {fired}");
        if s.kind.is_beacon() {
            // Alerts score a series from its 20th call.
            if s.connections.len() >= pitap::alerts::ALERT_BEACON_CALLS {
                beacons += 1;
                fired_beacons += fired;
            }
        } else {
            fired_noise += fired;
        }
    }
    assert!(
        fired_beacons * 100 >= beacons * 95,
        "{fired_beacons} of {beacons}"
    );
    assert_eq!(fired_noise, 0);
}
