//! The store's compiled queries against the row evaluator: for random
//! flows (hostile names, IPv4, IPv6 and v4-mapped addresses, ports of
//! protocols with and without them, counters up to u64::MAX) stored in
//! random commits, random named networks, random time windows and random
//! queries in the query language, the store's scan returns exactly the
//! flows `Expr::matches` picks, in start order, and its counts, `--top`
//! and `--sum --by` equal the ones computed flow by flow.

use std::collections::HashMap;
use std::net::IpAddr;

use pitap::fields::{single_field, Field, FieldType, FieldValue, Owned};
use pitap::flow::StoredFlow;
use pitap::networks::Networks;
use pitap::progress::Progress;
use pitap::query::{self, Expr};
use pitap::store::engine::{Aggregate, Scope};
use pitap::store::Store;
use pitap_wire::{ConnState, EndReason, FlowRecord, History, TapPort, Text};
use proptest::prelude::*;

const ADDRS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.1.2.3",
    "172.30.0.86",
    "192.0.2.7",
    "8.8.8.8",
    "2001:db8::1",
    "fd00::5",
    "::ffff:10.0.0.2",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.0.0.0/31",
    "10.1.0.0/16",
    "172.30.0.86/32",
    "0.0.0.0/0",
    "2001:db8::/32",
    "fd00::/8",
    "::/0",
];
const NAMES: &[&str] = &[
    "",
    "example.com",
    "c2.example.net",
    "<script>alert(1)</script>",
    "a\"b",
    "' OR 1=1 --",
    "EXAMPLE.COM",
    "-",
];
const PORTS: &[u16] = &[0, 22, 53, 80, 443, 1023, 1024, 8080, 65535];
const PROTOS: &[u8] = &[1, 6, 17, 58, 132, 250];
const COUNTS: &[u64] = &[0, 1, 7, 1000, 1_000_000, u64::MAX / 2, u64::MAX];

fn pick<T: Copy + std::fmt::Debug + 'static>(pool: &'static [T]) -> impl Strategy<Value = T> {
    (0..pool.len()).prop_map(move |i| pool[i])
}

fn addr() -> impl Strategy<Value = IpAddr> {
    pick(ADDRS).prop_map(|a| a.parse().unwrap())
}

prop_compose! {
    fn record()(
        start in 0u64..50,
        dur in 0u64..5,
        proto in pick(PROTOS),
        (sa, da) in (addr(), addr()),
        (sp, dp) in (pick(PORTS), pick(PORTS)),
        (sm, dm) in (0u8..4, 0u8..4),
        counts in proptest::collection::vec(pick(COUNTS), 4),
        flags in (any::<u8>(), any::<u8>()),
        state in 0..ConnState::ALL.len(),
        history in "[ShADadFfRr]{0,6}",
        reason in 0..EndReason::ALL.len(),
        continuation in any::<bool>(),
        ingress in 0u8..3,
        vlan in prop_oneof![Just(0u16), Just(10), Just(4095)],
        icmp in proptest::option::of((0u8..3, 0u8..2)),
        names in proptest::collection::vec(pick(NAMES), 6),
        ring_drops in prop_oneof![Just(0u32), Just(3)],
    ) -> FlowRecord {
        let mut r = FlowRecord {
            start_ms: 1_000 + start * 100,
            end_ms: 1_000 + start * 100 + dur,
            proto,
            vlan,
            conn_state: ConnState::ALL[state],
            history: History::from_text(&history),
            end_reason: EndReason::ALL[reason],
            continuation,
            ingress: TapPort::from_u8(ingress).unwrap(),
            icmp,
            ring_drops,
            ..FlowRecord::default()
        };
        r.src.addr = sa;
        r.dst.addr = da;
        if pitap_wire::has_ports(proto) {
            r.src.port = sp;
            r.dst.port = dp;
        }
        r.src.mac = [2, 0, 0, 0, 0, sm];
        r.dst.mac = [0x3c, 0x22, 0, 0, 0, dm];
        r.src.counters.packets = counts[0];
        r.src.counters.bytes = counts[1];
        r.dst.counters.packets = counts[2];
        r.dst.counters.bytes = counts[3];
        r.src.counters.tcp_flags = flags.0;
        r.dst.counters.tcp_flags = flags.1;
        let t = |s: &str| s.as_bytes().to_vec();
        r.names.responder_name = Text::from_bytes(&t(names[0]));
        r.names.client_hostname = Text::from_bytes(&t(names[1]));
        r.names.sni = Text::from_bytes(&t(names[2]));
        r.names.alpn = Text::from_bytes(&t(names[3]));
        r.names.http_host = Text::from_bytes(&t(names[4]));
        r.names.http_request = Text::from_bytes(&t(names[5]));
        r
    }
}

/// A window bound: anywhere, or exactly at a flow's start.
fn bound() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..7000, (0u64..50).prop_map(|k| 1_000 + k * 100)]
}

fn networks() -> impl Strategy<Value = Networks> {
    proptest::collection::btree_map(
        prop_oneof![Just("internal"), Just("databases"), Just("dmz")],
        proptest::collection::vec(pick(CIDRS).prop_map(str::to_string), 1..3),
        0..3,
    )
    .prop_map(|m| {
        let table = m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Networks::from_config(&table).unwrap()
    })
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A value for a field of this type, as a query writes it.
fn value(ty: FieldType, name: &'static str) -> BoxedStrategy<String> {
    match (ty, name) {
        (_, "proto") => pick(&["tcp", "UDP", "6", "17", "250", "icmp", "sctp"][..])
            .prop_map(str::to_string)
            .boxed(),
        (FieldType::Num, _) => prop_oneof![
            pick(COUNTS).prop_map(|n| n.to_string()),
            pick(PORTS).prop_map(|n| n.to_string()),
            (0u64..3000).prop_map(|n| n.to_string()),
            (0u64..2000, 0u64..2000).prop_map(|(a, b)| format!("[{a} TO {b}]")),
            (0u64..2000).prop_map(|a| format!("{{{a} TO *]")),
            (0u64..1100).prop_map(|a| format!(">={a}")),
            (1u64..1100).prop_map(|a| format!("<{a}")),
            Just("*".to_string()),
        ]
        .boxed(),
        (FieldType::Bool, _) => pick(&["true", "false"][..])
            .prop_map(str::to_string)
            .boxed(),
        (FieldType::Addr, _) => prop_oneof![
            pick(ADDRS).prop_map(quoted),
            pick(CIDRS).prop_map(str::to_string),
            Just("10.0.*".to_string()),
            Just("*".to_string()),
        ]
        .boxed(),
        (FieldType::Text, _) => prop_oneof![
            pick(&NAMES[1..]).prop_map(quoted),
            pick(
                &[
                    "SF",
                    "s0",
                    "REJ",
                    "idle",
                    "tcp-close",
                    "A",
                    "synced",
                    "unsynced"
                ][..]
            )
            .prop_map(str::to_string),
            pick(
                &[
                    "*example*",
                    "c?.*",
                    "3c:22:*",
                    "02:00:00:00:00:0?",
                    "*",
                    "sha*",
                    "databases",
                    "internal",
                    "t1"
                ][..]
            )
            .prop_map(str::to_string),
        ]
        .boxed(),
    }
}

fn term() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = Field::names().collect();
    (0..names.len(), any::<bool>()).prop_flat_map(move |(i, exists)| {
        let name = names[i];
        let f = Field::parse(name).unwrap();
        if exists {
            Just(format!("_exists_:{name}")).boxed()
        } else {
            value(f.field_type(), name)
                .prop_map(move |v| format!("{name}:{v}"))
                .boxed()
        }
    })
}

fn query() -> impl Strategy<Value = String> {
    term().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            inner.prop_map(|a| format!("NOT {a}")),
        ]
    })
}

fn group_fields() -> impl Strategy<Value = Field> {
    let names: Vec<&'static str> = Field::names().filter(|n| single_field(n).is_ok()).collect();
    (0..names.len()).prop_map(move |i| single_field(names[i]).unwrap())
}

fn sum_fields() -> impl Strategy<Value = Field> {
    // Stored numbers: what --sum takes (an AS number from GeoIP is a
    // name, not an amount).
    let names: Vec<&'static str> = Field::names()
        .filter(|n| {
            single_field(n).is_ok_and(|f| {
                f.field_type() == FieldType::Num
                    && matches!(f.source(), pitap::fields::Source::Column(_))
            })
        })
        .collect();
    (0..names.len()).prop_map(move |i| single_field(names[i]).unwrap())
}

fn groups_by_rows(
    flows: &[&StoredFlow],
    by: Field,
    sum: Option<Field>,
) -> HashMap<Option<Owned>, u64> {
    let mut g: HashMap<Option<Owned>, u64> = HashMap::new();
    for f in flows {
        let w = match sum {
            Some(s) => match s.value(f) {
                Some(FieldValue::Num(n)) => n,
                _ => 0,
            },
            None => 1,
        };
        let e = g.entry(by.value(f).map(Owned::of)).or_insert(0);
        *e = e.saturating_add(w);
    }
    g
}

struct Temp(std::path::PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn compiled_queries_return_what_the_row_evaluator_picks(
        records in proptest::collection::vec(record(), 0..120),
        cuts in proptest::collection::vec(0usize..120, 0..4),
        nets in networks(),
        q in query(),
        window in (bound(), bound()),
        by in group_fields(),
        sum in sum_fields(),
        case in any::<u64>(),
    ) {
        let expr: Expr = query::parse(&q).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let dir = std::env::temp_dir().join(format!("pitap-prop-{}-{case}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _clean = Temp(dir.clone());
        let mut store = Store::open(&dir.join("s.db")).unwrap();
        let flows: Vec<StoredFlow> = records
            .iter()
            .enumerate()
            .map(|(i, r)| StoredFlow::new(format!("t{}", i % 3), *r, &nets))
            .collect();
        // Random commits: several level-0 segments that overlap in time.
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(flows.len())).collect();
        cuts.sort_unstable();
        let mut from = 0;
        for c in cuts.into_iter().chain([flows.len()]) {
            store.commit(&flows[from..c.max(from)], &[], None).unwrap();
            from = c.max(from);
        }
        let (since_ms, until_ms) = (window.0.min(window.1), window.0.max(window.1));
        let scope = Scope { since_ms, until_ms, networks: &nets };
        let mut want: Vec<&StoredFlow> = flows
            .iter()
            .filter(|f| f.record.start_ms >= since_ms && f.record.start_ms < until_ms)
            .filter(|f| expr.matches(f))
            .collect();
        want.sort_by_key(|f| f.record.start_ms);

        let mut got = Vec::new();
        store.scan(&expr, &scope, &mut Progress::silent(), |f| got.push(f.clone())).unwrap();
        prop_assert!(got.windows(2).all(|w| w[0].record.start_ms <= w[1].record.start_ms));
        let key = |f: &StoredFlow| format!("{:?}", f);
        let mut a: Vec<String> = got.iter().map(key).collect();
        let mut b: Vec<String> = want.iter().map(|f| key(f)).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b, "query {}", q);

        let count = store.aggregate(&expr, &scope, Aggregate::Count, &mut Progress::silent()).unwrap();
        prop_assert_eq!(count.matched, want.len() as u64);
        let top = store.aggregate(&expr, &scope, Aggregate::Top(by), &mut Progress::silent()).unwrap();
        prop_assert_eq!(top.groups, groups_by_rows(&want, by, None), "--top {} for {}", by.name(), q);
        let sums = store
            .aggregate(&expr, &scope, Aggregate::Sum { field: sum, by }, &mut Progress::silent())
            .unwrap();
        prop_assert_eq!(
            sums.groups,
            groups_by_rows(&want, by, Some(sum)),
            "--sum {} --by {} for {}", sum.name(), by.name(), q
        );

        // Time series: flows and bytes per bucket of start time.
        let (origin, width) = (since_ms.min(5_000), 1 + case % 5_000);
        let series = store
            .aggregate(
                &expr,
                &scope,
                Aggregate::Series { weight: Some(sum), origin_ms: origin, width_ms: width },
                &mut Progress::silent(),
            )
            .unwrap();
        let mut want_series: HashMap<Option<Owned>, u64> = HashMap::new();
        for f in &want {
            let bucket = f.record.start_ms.saturating_sub(origin) / width;
            let w = match sum.value(f) {
                Some(pitap::fields::FieldValue::Num(n)) => n,
                _ => 0,
            };
            let e = want_series.entry(Some(Owned::Num(bucket))).or_insert(0);
            *e = e.saturating_add(w);
        }
        prop_assert_eq!(series.groups, want_series, "series of {} for {}", sum.name(), q);

        // Some fields of every match, on every core.
        // dst_port and sni are missing in some rows: what a row lacks must
        // not come from the row before.
        let fields = ["start_ms", "src_bytes", "dst_addr", "dst_port", "sni"].map(|n| single_field(n).unwrap());
        let (n, parts) = store
            .visit_parallel(
                &expr,
                &scope,
                &fields,
                &mut Progress::silent(),
                Vec::new,
                |v: &mut Vec<(u64, u64, IpAddr, bool, u16, String)>, f| {
                    v.push((
                        f.record.start_ms,
                        f.record.src.counters.bytes,
                        f.record.dst.addr,
                        f.enrichment.to_internal,
                        f.record.dst.port,
                        f.record.names.sni.as_str().to_string(),
                    ))
                },
            )
            .unwrap();
        prop_assert_eq!(n, want.len() as u64);
        let mut got: Vec<_> = parts.into_iter().flatten().collect();
        let mut expect: Vec<_> = want
            .iter()
            .map(|f| {
                (
                    f.record.start_ms,
                    f.record.src.counters.bytes,
                    f.record.dst.addr,
                    f.enrichment.to_internal,
                    // A port the field table leaves out (no ports) reads 0.
                    match single_field("dst_port").unwrap().value(f) {
                        Some(FieldValue::Num(p)) => p as u16,
                        _ => 0,
                    },
                    f.record.names.sni.as_str().to_string(),
                )
            })
            .collect();
        got.sort();
        expect.sort();
        prop_assert_eq!(got, expect, "visit of {}", q);

        // A page by start time, newest first, and by bytes, smallest first.
        let (offset, limit) = ((case % 7) as usize, 1 + (case % 11) as usize);
        for (sort, desc) in [("start_ms", true), ("bytes", false)] {
            let field = pitap::fields::single_field(sort).unwrap();
            let (n, page) = store.page(&expr, &scope, field, desc, offset, limit).unwrap();
            prop_assert_eq!(n, want.len() as u64);
            let value = |f: &StoredFlow| match field.value(f) {
                Some(pitap::fields::FieldValue::Num(n)) => n,
                _ => 0,
            };
            let mut keys: Vec<u64> = want.iter().map(|f| value(f)).collect();
            keys.sort_unstable();
            if desc {
                keys.reverse();
            }
            let want_keys: Vec<u64> = keys.into_iter().skip(offset).take(limit).collect();
            let got_keys: Vec<u64> = page.iter().map(value).collect();
            prop_assert_eq!(got_keys, want_keys, "page by {} of {}", sort, q);
            prop_assert!(page.iter().all(|f| expr.matches(f)));
        }
    }
}
