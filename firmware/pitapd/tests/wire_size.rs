//! How many bytes a flow costs on the uplink, measured on the real captures
//! (the figure quoted in the README), and what the collector gets back.

mod common;

use common::*;
use pitap_flow_core::{EngineConfig, FlowEngine, PacketSource};
use pitap_wire::{BatchHeader, BatchReader, BatchWriter, FlowRecord, WireError};
use pitapd::source::CaptureReader;

fn records_of(path: &std::path::Path) -> Vec<FlowRecord> {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut engine = FlowEngine::new(EngineConfig::default());
    let mut out = Vec::new();
    while let Ok(Some(frame)) = reader.next_frame() {
        engine.process(&frame, &mut out);
    }
    engine.flush(&mut out);
    out
}

/// Packs records into datagrams as the uplink does; returns the datagrams.
fn batches(records: &[FlowRecord]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = BatchWriter::default();
    let mut seq = 0;
    for r in records {
        let header = |seq| BatchHeader {
            tap_id: "rack3-tap1",
            boot_id: 42,
            seq,
            base_ms: r.start_ms,
            flags: 0,
            dropped_batches: 0,
            low_seq: seq,
            attachments: &[],
        };
        if !w.is_started() {
            w.start(&header(seq)).unwrap();
        }
        if w.push(r) == Err(WireError::Full) {
            out.push(w.as_bytes().to_vec());
            seq += 1;
            w.start(&header(seq)).unwrap();
            w.push(r).unwrap();
        }
    }
    if w.is_started() {
        out.push(w.as_bytes().to_vec());
    }
    out
}

#[test]
fn bytes_per_flow_on_real_captures() {
    let mut all = Vec::new();
    for file in real_pcaps() {
        all.extend(records_of(&file));
    }
    let datagrams = batches(&all);
    let total: usize = datagrams.iter().map(Vec::len).sum();
    let decoded: Vec<FlowRecord> = datagrams
        .iter()
        .flat_map(|d| {
            BatchReader::new(d)
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(decoded, all, "the collector gets exactly what the tap sent");
    let per_flow = total as f64 / all.len() as f64;
    println!(
        "wire size: {} flows from {} real captures in {} datagrams, {} bytes: {:.1} bytes per flow (headers included)",
        all.len(),
        real_pcaps().len(),
        datagrams.len(),
        total,
        per_flow
    );
    // A NetFlow v5 record is 48 bytes, an IPFIX biflow with the same fields
    // well over 100; PiTap's, with MACs, both directions and state, is
    // meant to stay near the former.
    assert!(per_flow < 80.0, "{per_flow:.1} bytes per flow");
}
