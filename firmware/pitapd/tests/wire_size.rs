//! How many bytes a flow costs on the uplink, measured on the real captures
//! (the figure quoted in the README), and what the collector gets back.

mod common;

use common::*;
use pitap_wire::{BatchHeader, BatchReader, BatchWriter, FlowRecord};

fn records_of(path: &std::path::Path) -> Vec<FlowRecord> {
    pitapd::offline::records_of(path).unwrap()
}

/// Packs records into datagrams as the uplink does; returns the datagrams.
fn batches(records: &[FlowRecord], version: u8, deflate: bool) -> Vec<Vec<u8>> {
    let mut w = BatchWriter::with_version(version);
    w.set_deflate(deflate);
    pitap_wire::codec::pack_all(&mut w, records, 0, |seq, r| BatchHeader {
        tap_id: "rack3-tap1",
        boot_id: 42,
        seq,
        base_ms: r.start_ms,
        flags: 0,
        dropped_batches: 0,
        low_seq: seq,
        attachments: &[],
    })
    .unwrap()
}

#[test]
fn bytes_per_flow_on_real_captures() {
    let mut all = Vec::new();
    for file in real_pcaps() {
        all.extend(records_of(&file));
    }
    let mut per_flow = Vec::new();
    for (version, deflate) in [
        (pitap_wire::codec::VERSION_1, false),
        (pitap_wire::codec::VERSION, false),
        (pitap_wire::codec::VERSION, true),
    ] {
        let datagrams = batches(&all, version, deflate);
        assert!(datagrams
            .iter()
            .all(|d| d.len() <= pitap_wire::codec::MAX_DATAGRAM));
        let total: usize = datagrams.iter().map(Vec::len).sum();
        let decoded: Vec<FlowRecord> = datagrams
            .iter()
            .flat_map(|d| {
                let reader = BatchReader::new(d).unwrap();
                assert_eq!(reader.version(), version);
                reader.map(Result::unwrap).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(decoded, all, "the collector gets exactly what the tap sent");
        let bytes = total as f64 / all.len() as f64;
        println!(
            "wire size, version {version}{}: {} flows from {} real captures in {} datagrams, {} bytes: {:.1} bytes per flow (headers included, without the envelope)",
            if deflate { ", deflated" } else { "" },
            all.len(),
            real_pcaps().len(),
            datagrams.len(),
            total,
            bytes
        );
        per_flow.push(bytes);
    }
    // Version 2's tables and deltas must pay (at least a fifth less), and
    // deflating them again.
    assert!(
        per_flow[1] < per_flow[0] * 0.8,
        "version 2 {:.1} bytes per flow, version 1 {:.1}",
        per_flow[1],
        per_flow[0]
    );
    assert!(per_flow[2] < per_flow[1] * 0.9, "deflated {per_flow:?}");
    // A NetFlow v5 record is 48 bytes (no MACs, no responder counters, no
    // TCP state, no names); an IPFIX biflow with these fields over 100.
    assert!(per_flow[2] < 40.0, "{:.1} bytes per flow", per_flow[2]);
}
