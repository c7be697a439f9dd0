//! The beacon corpus as traffic: written as a capture, replayed through
//! `pitapd --read` sealed to `pitap collect`, and `pitap report --only
//! beacons` over the store it made. Each reported row is matched to the
//! series it came from by its addresses; asserts ≥ 95 % of the beacons
//! found and ≤ 1 false beacon per 10,000 noise series, and prints the
//! detection table, the figures and the time each stage took.
//!
//! CI runs it at a reduced size; `scripts/bench.sh` at the full one
//! (PITAP_BEACON_REPEATS, PITAP_BEACON_NOISE).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use common::*;
use pitap_bench::beacon_capture::{endpoints, write};
use pitap_bench::beacons::{corpus, Kind, JITTERS, SLEEPS_MS};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The series a reported source came from (sources are numbered).
fn series_of(src: &str) -> Option<usize> {
    let a: Ipv4Addr = src.parse().ok()?;
    (u32::from(a) as usize).checked_sub(0x0a00_0001)
}

#[test]
fn the_corpus_through_pitapd_and_the_collector() {
    let repeats = env_or("PITAP_BEACON_REPEATS", 1);
    let noise_pairs = env_or("PITAP_BEACON_NOISE", 10_000);
    let dir = temp_dir("beacon-capture");
    let series = corpus(7, repeats, noise_pairs);
    let capture = dir.join("corpus.pcap");
    let t = Instant::now();
    let written = write(&capture, &series).unwrap();
    let write_s = t.elapsed().as_secs_f64();

    let (config, keys) = keygen(&dir, &["corpus"]);
    // Lines to a file: nobody reads the collector's stdout before it ends.
    let lines = dir.join("lines.txt");
    let (collector, addr) = start_collector(
        &config,
        &[
            "--until-final",
            "--idle-exit",
            "60",
            "--output",
            lines.to_str().unwrap(),
        ],
    );
    let t = Instant::now();
    replay_to(&capture, &addr, "corpus", &keys[0]);
    let (_, stderr) = finish(collector);
    let replay_s = t.elapsed().as_secs_f64();
    assert!(stderr.contains("0 lost (tap gave up)"), "{stderr}");
    let store = store_in(&dir);

    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["report", "--store", store.to_str().unwrap(), "--since", "0"])
        .args(["--only", "beacons", "--json", "--limit", "1000000"])
        .output()
        .unwrap();
    let report_s = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // One analysis: one object (an array of them for several).
    let section = report.as_array().and_then(|a| a.first()).unwrap_or(&report);
    assert_eq!(section["analysis"], "beacons");
    let rows = section["rows"].as_array().cloned().unwrap_or_default();

    // Every row names a series by its source and destination.
    let mut hit = vec![false; series.len()];
    let mut unmatched = Vec::new();
    for row in &rows {
        let src = row["src_addr"].as_str().unwrap_or_default();
        let dst = row["dst_addr"].as_str().unwrap_or_default();
        match series_of(src).filter(|&i| i < series.len()) {
            Some(i) if dst.parse::<IpAddr>().ok() == Some(IpAddr::V4(endpoints(i).1)) => {
                assert!(!hit[i], "one row per series: {row}");
                hit[i] = true;
            }
            _ => unmatched.push(row.clone()),
        }
    }
    assert!(unmatched.is_empty(), "rows of no series: {unmatched:?}");

    // The same series scored straight from the corpus: what the capture,
    // the tap and the store changed.
    let rules = pitap::beacon::BeaconRules::default();
    let direct: Vec<bool> = series
        .iter()
        .map(|s| {
            let calls: Vec<&(u64, u64, bool)> = s.connections.iter().filter(|c| !c.2).collect();
            let mut starts: Vec<u64> = calls.iter().map(|c| c.0).collect();
            let sizes: Vec<u64> = calls.iter().map(|c| c.1).collect();
            !rules.ignores(s.proto, s.dst_port)
                && pitap::beacon::score(&mut starts, &sizes, &rules)
                    .is_some_and(|sc| sc.score >= rules.min_score)
        })
        .collect();
    for (i, s) in series.iter().enumerate() {
        if direct[i] != hit[i] {
            let row = rows
                .iter()
                .find(|r| series_of(r["src_addr"].as_str().unwrap_or_default()) == Some(i));
            eprintln!(
                "series {i} ({}, {} connections): scored from the corpus {}, through the tap {}: {row:?}",
                s.kind.name(),
                s.connections.len(),
                direct[i],
                hit[i]
            );
        }
    }
    let mut table = vec![vec![(0u32, 0u32); JITTERS.len()]; SLEEPS_MS.len()];
    let (mut found, mut beacons, mut noise, mut false_beacons) = (0u32, 0u32, 0u32, 0u32);
    let mut false_by_kind: std::collections::BTreeMap<&str, u32> = Default::default();
    for (s, &h) in series.iter().zip(&hit) {
        match s.kind {
            Kind::Beacon {
                sleep_ms, jitter, ..
            } => {
                let i = SLEEPS_MS.iter().position(|&x| x == sleep_ms).unwrap();
                let j = JITTERS.iter().position(|&x| x == jitter).unwrap();
                table[i][j].1 += 1;
                table[i][j].0 += u32::from(h);
                beacons += 1;
                found += u32::from(h);
            }
            k => {
                noise += 1;
                if h {
                    false_beacons += 1;
                    *false_by_kind.entry(k.name()).or_default() += 1;
                }
            }
        }
    }
    let mut md = String::from("| sleep |");
    for j in JITTERS {
        md += &format!(" jitter {:.0} % |", j * 100.0);
    }
    md += "\n| ---: |";
    md += &" ---: |".repeat(JITTERS.len());
    for (i, row) in table.iter().enumerate() {
        md += &format!("\n| {} s |", SLEEPS_MS[i] / 1000);
        for (h, n) in row {
            md += &format!(" {:.1} % |", f64::from(*h) * 100.0 / f64::from(*n));
        }
    }
    let flows = stored_count(&store);
    eprintln!("{md}\n");
    eprintln!(
        "capture: {} series, {} connections, {} packets ({:.1} MB on disk) written in {write_s:.1} s\n\
         pitapd --read -> pitap collect: {flows} flows stored in {replay_s:.1} s ({:.0} packets/s, {:.0} flows/s)\n\
         pitap report --only beacons: {report_s:.2} s\n\
         beacons found: {found} of {beacons} ({:.2} %); false beacons: {false_beacons} in {noise} noise series ({:.2} per 10,000) {false_by_kind:?}",
        series.len(),
        written.connections,
        written.packets,
        std::fs::metadata(&capture).map_or(0, |m| m.len()) as f64 / 1e6,
        written.packets as f64 / replay_s,
        flows as f64 / replay_s,
        f64::from(found) * 100.0 / f64::from(beacons),
        f64::from(false_beacons) * 10_000.0 / f64::from(noise),
    );
    assert!(
        f64::from(found) >= 0.95 * f64::from(beacons),
        "{found} of {beacons}"
    );
    assert!(
        f64::from(false_beacons) * 10_000.0 <= f64::from(noise),
        "{false_beacons} in {noise}"
    );
    // Every call reached the store: a flow per connection at least (long
    // ones in parts).
    assert!(
        flows >= written.connections,
        "{flows} < {}",
        written.connections
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn stored_count(store: &std::path::Path) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args(["query", "--store", store.to_str().unwrap(), "--since", "0"])
        .arg("--count")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a count: {out:?}"))
}
