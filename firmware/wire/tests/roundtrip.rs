//! Any record survives encoding into a batch and decoding back; any bytes at
//! the decoder give records or an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pitap_wire::codec::{FLAG_CAPTURE_TIME, FLAG_CLOCK_SYNCED, FLAG_FINAL, MAX_DATAGRAM};
use pitap_wire::fields::{record_field, FieldValue, RECORD_FIELDS};
use pitap_wire::Text;
use pitap_wire::{
    BatchHeader, BatchReader, BatchWriter, ClockState, ConnState, EndReason, Endpoint, FlowRecord,
    History, SideCounters, TapPort, WireError,
};
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        addr(),
        any::<u16>(),
        any::<[u8; 6]>(),
        any::<(u64, u64, u8)>(),
        any::<(u64, u64)>(),
    )
        .prop_map(
            |(addr, port, mac, (packets, bytes, tcp_flags), (ip_bytes, payload_bytes))| Endpoint {
                addr,
                port,
                mac,
                counters: SideCounters {
                    packets,
                    bytes,
                    ip_bytes,
                    payload_bytes,
                    tcp_flags,
                },
            },
        )
}

prop_compose! {
    fn record()(
        start_ms in 0u64..(1u64 << 50),
        duration in 0u64..(1u64 << 40),
        proto in any::<u8>(),
        src in endpoint(),
        dst in endpoint(),
        vlans in (0u16..4096, 0u16..4096),
        state in 0usize..ConnState::ALL.len(),
        history in "[A-Za-z^]{0,16}",
        reason in 0usize..EndReason::ALL.len(),
        continuation in any::<bool>(),
        ingress in 0u8..3,
        icmp in proptest::option::of(any::<(u8, u8)>()),
        names in proptest::collection::vec("[ -~]{0,140}", 7),
        ring_drops in prop_oneof![Just(0u32), any::<u32>()],
        missed_bytes in prop_oneof![Just(0u32), any::<u32>()],
    ) -> FlowRecord {
        FlowRecord {
            start_ms,
            end_ms: start_ms + duration,
            proto,
            src,
            dst,
            vlan: vlans.0,
            inner_vlan: vlans.1,
            conn_state: ConnState::ALL[state],
            history: History::from_text(&history),
            end_reason: EndReason::ALL[reason],
            continuation,
            ingress: TapPort::from_u8(ingress).unwrap(),
            icmp,
            names: pitap_wire::Names {
                responder_name: Text::from_bytes(names[0].as_bytes()),
                client_hostname: Text::from_bytes(names[1].as_bytes()),
                sni: Text::from_bytes(names[2].as_bytes()),
                alpn: Text::from_bytes(names[3].as_bytes()),
                http_host: Text::from_bytes(names[4].as_bytes()),
                http_request: Text::from_bytes(names[5].as_bytes()),
                server_hostname: Text::from_bytes(names[6].as_bytes()),
            },
            clock: ClockState::Unsynced,
            ring_drops,
            missed_bytes,
        }
    }
}

/// Encodes records into as many batches as they need; the batch header
/// says where the times come from (`flags`).
fn encode(records: &[FlowRecord], tap: &str, flags: u8) -> Vec<Vec<u8>> {
    encode_as(records, tap, flags, pitap_wire::codec::VERSION)
}

/// As the tap sends them: version 2's records deflated where smaller (a
/// batch that deflated worse than its writer aimed gives its last records
/// back for the next one, as the uplink does).
fn encode_as(records: &[FlowRecord], tap: &str, flags: u8, version: u8) -> Vec<Vec<u8>> {
    encode_with(records, tap, flags, version, true)
}

/// As built, never deflated (to damage a record at a known place).
fn encode_raw(records: &[FlowRecord], tap: &str, flags: u8) -> Vec<Vec<u8>> {
    encode_with(records, tap, flags, pitap_wire::codec::VERSION, false)
}

fn encode_with(
    records: &[FlowRecord],
    tap: &str,
    flags: u8,
    version: u8,
    deflate: bool,
) -> Vec<Vec<u8>> {
    let mut writer = BatchWriter::with_version(version);
    writer.set_deflate(deflate);
    let batches = pitap_wire::codec::pack_all(&mut writer, records, 0, |seq, r| BatchHeader {
        tap_id: tap,
        boot_id: 7,
        seq,
        base_ms: r.start_ms,
        flags,
        dropped_batches: 0,
        low_seq: seq,
        attachments: &[],
    })
    .unwrap();
    for b in &batches {
        assert!(b.len() <= pitap_wire::codec::MAX_DATAGRAM);
    }
    batches
}

proptest! {
    #[test]
    fn records_round_trip(
        records in proptest::collection::vec(record(), 1..60),
        repeats in proptest::collection::vec(any::<(u8, u8, u16)>(), 60),
        tap in "[a-z0-9-]{1,32}",
        clock in 0usize..3,
        version in 1u8..3,
    ) {
        let (flags, clock) = [
            (0, ClockState::Unsynced),
            (FLAG_CLOCK_SYNCED, ClockState::Synced),
            (FLAG_CAPTURE_TIME, ClockState::Capture),
        ][clock];
        let mut records: Vec<FlowRecord> = records.into_iter().map(|r| FlowRecord { clock, ..r }).collect();
        // What a tap sees: ends, ports and histories that came before (the
        // tables' references), mixed with new ones.
        for i in 1..records.len() {
            let (what, from, pick) = repeats[i];
            let earlier = records[usize::from(pick) % i];
            let r = &mut records[i];
            if what & 1 != 0 { r.src.addr = earlier.dst.addr; }
            if what & 2 != 0 { r.dst.addr = earlier.dst.addr; }
            if what & 4 != 0 { r.src.mac = earlier.src.mac; }
            if what & 8 != 0 { r.dst.mac = earlier.src.mac; }
            if what & 16 != 0 { r.dst.port = earlier.dst.port; }
            if what & 32 != 0 { r.history = earlier.history; }
            if from & 1 != 0 { r.end_ms = earlier.end_ms; r.start_ms = r.start_ms.min(r.end_ms); }
        }
        let batches = encode_as(&records, &tap, flags, version);
        let mut decoded = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            prop_assert!(b.len() <= MAX_DATAGRAM);
            let reader = BatchReader::new(b).unwrap();
            prop_assert_eq!(reader.version(), version);
            prop_assert_eq!(reader.header.tap_id, tap.as_str());
            prop_assert_eq!(reader.header.seq, i as u64);
            for r in reader {
                decoded.push(r.unwrap());
            }
        }
        prop_assert_eq!(decoded, records);
    }

    /// What the field table reads from a record, its setters write back:
    /// a store that keeps the fields keeps the record (ports only where the
    /// protocol has them, as every format writes them).
    #[test]
    fn the_field_table_reads_and_writes_every_field(r in record(), clock in 0u8..3) {
        let mut r = FlowRecord { clock: ClockState::from_u8(clock).unwrap(), ..r };
        if !pitap_wire::has_ports(r.proto) {
            r.src.port = 0;
            r.dst.port = 0;
        }
        let mut back = FlowRecord::default();
        for f in RECORD_FIELDS {
            if let (Some(set), Some(v)) = (f.set, (f.get)(&r)) {
                prop_assert!(set(&mut back, v), "{} refused {:?}", f.name, v);
            }
        }
        prop_assert_eq!(back, r);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        if let Ok(reader) = BatchReader::new(&bytes) {
            for r in reader {
                let _ = r;
            }
        }
    }

    #[test]
    fn flipped_bits_are_rejected_or_decode(records in proptest::collection::vec(record(), 1..5), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut batch = encode(&records, "t", 0).remove(0);
        let i = at.index(batch.len());
        batch[i] ^= 1 << bit;
        if let Ok(reader) = BatchReader::new(&batch) {
            let _ = reader.count();
        }
    }
}

#[test]
fn field_names_are_unique_and_setters_refuse_what_is_not_theirs() {
    let mut seen = std::collections::BTreeSet::new();
    for f in RECORD_FIELDS {
        for name in std::iter::once(&f.name).chain(f.aliases) {
            assert!(seen.insert(*name), "{name} twice");
            assert_eq!(record_field(name).map(|g| g.name), Some(f.name));
        }
    }
    let mut r = FlowRecord::default();
    let set = |name: &str| record_field(name).and_then(|f| f.set).unwrap();
    assert!(!set("conn_state")(&mut r, FieldValue::Text("XYZ")));
    assert!(!set("src_port")(&mut r, FieldValue::Num(70_000)));
    assert!(!set("src_addr")(&mut r, FieldValue::Text("10.0.0.1")));
    assert!(set("src_port")(&mut r, FieldValue::Num(443)));
    assert_eq!(r.src.port, 443);
    assert!(record_field("bytes").unwrap().set.is_none());
}

#[test]
fn damaged_batches_give_named_errors() {
    let rec = FlowRecord {
        start_ms: 1_000,
        end_ms: 2_000,
        proto: 6,
        ..FlowRecord::default()
    };
    let good = encode_raw(&[rec], "tap", 0).remove(0);
    assert_eq!(
        BatchReader::new(b"GET / HTTP/1.1").err(),
        Some(WireError::BadMagic)
    );
    assert_eq!(BatchReader::new(b"PT").err(), Some(WireError::Truncated));
    let mut v3 = good.clone();
    v3[4] = 3;
    assert_eq!(
        BatchReader::new(&v3).err(),
        Some(WireError::UnsupportedVersion(3))
    );
    // Cut inside the record: the header decodes, the record does not.
    let cut = &good[..good.len() - 3];
    let results: Vec<_> = BatchReader::new(cut).unwrap().collect();
    assert_eq!(results, vec![Err(WireError::Truncated)]);
    // Deflated records cut short, or inflating past a datagram: refused
    // whole.
    let many: Vec<FlowRecord> = (0..40)
        .map(|i| FlowRecord {
            start_ms: 1_000 + i,
            ..rec
        })
        .collect();
    let deflated = encode(&many, "tap", 0).remove(0);
    assert!(
        BatchReader::new(&deflated).unwrap().header.flags & pitap_wire::codec::FLAG_DEFLATED != 0
    );
    assert_eq!(
        BatchReader::new(&deflated[..deflated.len() - 4]).err(),
        Some(WireError::Malformed("deflated records"))
    );
    // A conn_state no encoder writes.
    let mut bad_state = FlowRecord {
        conn_state: ConnState::OTH,
        ..rec
    };
    bad_state.history = History::from_text("");
    let mut bytes = encode_raw(&[bad_state], "tap", 0).remove(0);
    // Version 2: the record's third byte is the state, conn_state in its
    // low nibble (15 is none).
    assert!(ConnState::ALL.len() < 16);
    let header_len = usize::from(bytes[5]);
    let body = 5 + 1 + header_len + 1;
    assert_eq!(bytes[body + 2] & 0x0f, ConnState::OTH as u8);
    bytes[body + 2] |= 0x0f;
    let results: Vec<_> = BatchReader::new(&bytes).unwrap().collect();
    assert_eq!(results, vec![Err(WireError::Malformed("conn_state"))]);
    // Version 1: conn_state is followed by the empty history (length 0)
    // and end_reason: the OTH value (12) right before the empty history.
    let mut writer = BatchWriter::with_version(pitap_wire::codec::VERSION_1);
    writer
        .start(&BatchHeader {
            tap_id: "tap",
            ..BatchHeader::default()
        })
        .unwrap();
    writer.push(&bad_state).unwrap();
    let mut bytes = writer.as_bytes().to_vec();
    let pos = bytes.windows(2).rposition(|w| w == [12, 0]).unwrap();
    bytes[pos] = 99;
    let results: Vec<_> = BatchReader::new(&bytes).unwrap().collect();
    assert_eq!(results, vec![Err(WireError::Malformed("conn_state"))]);
}

#[test]
fn final_flag_and_empty_batch() {
    let mut writer = BatchWriter::default();
    writer
        .start(&BatchHeader {
            tap_id: "t",
            boot_id: 1,
            seq: 9,
            base_ms: 0,
            flags: FLAG_FINAL,
            dropped_batches: 0,
            low_seq: 0,
            attachments: &[],
        })
        .unwrap();
    let reader = BatchReader::new(writer.as_bytes()).unwrap();
    assert_eq!(reader.header.flags & FLAG_FINAL, FLAG_FINAL);
    assert_eq!(reader.count(), 0);
    let long = "x".repeat(33);
    let header = BatchHeader {
        tap_id: &long,
        boot_id: 1,
        seq: 0,
        base_ms: 0,
        flags: 0,
        dropped_batches: 0,
        low_seq: 0,
        attachments: &[],
    };
    assert_eq!(writer.start(&header), Err(WireError::TapIdTooLong));
}
