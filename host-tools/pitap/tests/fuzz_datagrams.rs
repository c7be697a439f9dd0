//! Fuzzing the collector's datagram decoder: random bytes, and valid sealed
//! and plaintext datagrams mutated (bit flips, cuts, splices, length and
//! header fields changed), never panic, and what is accepted after mutation
//! can only come from a plaintext datagram (sealed ones must fail to open).
//!
//! CI runs a few thousand cases; for millions:
//! `PROPTEST_CASES=2000000 cargo test --release -p pitap --test fuzz_datagrams`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use pitap::collector::{Collector, Outcome};
use pitap_wire::envelope::{self, DatagramKind, Header, Key};
use pitap_wire::messages::{self, Health};
use pitap_wire::{BatchHeader, BatchWriter, FlowRecord};
use proptest::prelude::*;

/// 4096 cases unless PROPTEST_CASES says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096)
}

fn key() -> Key {
    Key::from_bytes([0x42; 32])
}

const SECRET: [u8; 32] = [0x31; 32];
const BOOT: [u8; 16] = [1; 16];

fn collector(allow_plaintext: bool) -> Collector {
    let mut keys = BTreeMap::new();
    keys.insert("fuzz".to_string(), key());
    Collector::new(keys, allow_plaintext, [9; 16], SECRET)
}

fn from() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000))
}

fn batch(records: u64, seq: u64) -> Vec<u8> {
    let mut w = BatchWriter::default();
    w.start(&BatchHeader {
        tap_id: "fuzz",
        seq,
        base_ms: 5_000,
        ..BatchHeader::default()
    })
    .unwrap();
    for i in 0..records {
        w.push(&FlowRecord {
            start_ms: 5_000 + i,
            end_ms: 6_000 + i,
            proto: 6,
            ..FlowRecord::default()
        })
        .unwrap();
    }
    w.as_bytes().to_vec()
}

fn datagram(sealed: bool, kind: DatagramKind, counter: u64, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        sealed,
        kind,
        tap_id: "fuzz",
        boot: BOOT,
        counter,
        // The challenge the collector gives this boot first.
        challenge: envelope::derive_challenge(&Key::from_bytes(SECRET), &BOOT, 0),
    };
    envelope::seal(&h, sealed.then(key).as_ref(), payload).unwrap()
}

/// A valid datagram of any kind, sealed or not.
fn valid() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (any::<bool>(), 0u8..4, 0u64..20, 0u64..1000).prop_map(|(sealed, kind, records, counter)| {
        let (kind, payload) = match kind {
            0 => (DatagramKind::Batch, batch(records, counter)),
            3 => (
                DatagramKind::Hello,
                messages::encode(&messages::Hello {
                    version: "0.1.0".into(),
                })
                .unwrap(),
            ),
            1 => (
                DatagramKind::Health,
                messages::encode(&Health {
                    uptime_s: records,
                    ..Health::default()
                })
                .unwrap(),
            ),
            _ => (DatagramKind::Reply, vec![0; records as usize]),
        };
        (sealed, datagram(sealed, kind, counter, &payload))
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
    ]
}

fn apply(d: &mut Vec<u8>, m: &Mutation) {
    if d.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let n = d.len();
            d[i % n] ^= 1 << b;
        }
        Mutation::Cut(i) => d.truncate(i % d.len()),
        Mutation::Set(i, v) => {
            let n = d.len();
            d[i % n] = *v;
        }
        Mutation::Insert(i, v) => {
            let at = i % d.len();
            d.splice(at..at, v.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1600), plaintext in any::<bool>()) {
        let mut c = collector(plaintext);
        let outcome = c.handle(&bytes, from(), SystemTime::now());
        prop_assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    }

    #[test]
    fn mutated_datagrams((sealed, original) in valid(), mutations in proptest::collection::vec(mutation(), 1..5)) {
        let mut c = collector(true);
        let mut d = original.clone();
        for m in &mutations {
            apply(&mut d, m);
        }
        let outcome = c.handle(&d, from(), SystemTime::now());
        // A mutation that turns the datagram into a plaintext one in the
        // name of another (valid, unkeyed) tap id makes a datagram this
        // collector takes from anyone: --insecure-plaintext is for tests.
        let other_plaintext_tap = pitap_wire::envelope::parse(&d)
            .is_ok_and(|(h, _)| !h.sealed && h.tap_id != "fuzz");
        if sealed && d != original && !other_plaintext_tap {
            // A sealed datagram changed anywhere must not be accepted...
            prop_assert!(matches!(outcome, Outcome::Rejected(_)), "accepted a mutated sealed datagram: {outcome:?}");
        }
        // Whatever is accepted names a tap by the rules for tap ids.
        if let Outcome::Hello { tap, .. } | Outcome::Batch { tap, .. } = &outcome {
            prop_assert!(pitap_wire::codec::check_tap_id(tap).is_ok(), "{tap:?}");
        }
        // ...and the collector goes on serving the genuine tap.
        let fresh = datagram(true, DatagramKind::Batch, 5000, &batch(3, 5000));
        let next = c.handle(&fresh, from(), SystemTime::now());
        let accepted = matches!(&next, Outcome::Batch { records, .. } if records.len() == 3);
        prop_assert!(accepted, "{next:?}");
    }
}
