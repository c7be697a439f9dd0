//! Bytes per flow on the uplink beside the collector's IPFIX export of the
//! same flows, in one run: `pitapd --read CAPTURE` sends its records sealed
//! to `pitap collect` on loopback (enrichment on, as a tap runs), the
//! collector exports them over IPFIX to a socket this bench holds, and the
//! bench sets the tap's sealed batch bytes (first transmissions, from its
//! summary line) beside the IPFIX bytes received (templates included).
//! Captures: the benchmark capture (`pitap-gencap`'s, seeded; the first
//! `PITAP_SIZE_PACKETS` packets, 300,000 by default) and every real capture.
//!
//!     cargo bench -p pitap --bench uplink_size
//!
//! Needs the workspace's pitapd beside pitap (`cargo build -p pitapd` for
//! the same profile); run by `scripts/bench.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// What one capture cost on each path.
struct Sizes {
    flows: u64,
    uplink_bytes: u64,
    ipfix_bytes: u64,
}

/// The number before `word` in `line`.
fn number_before(line: &str, word: &str) -> Option<u64> {
    let at = line.find(word)?;
    line[..at]
        .split_whitespace()
        .last()?
        .trim_start_matches('(')
        .parse()
        .ok()
}

/// One collector for all of `captures` (IPFIX templates go out once, as
/// they do for a tap that runs on), one pitapd replay each.
fn measure(
    captures: &[PathBuf],
    dir: &Path,
    n: usize,
    version: u8,
    extra: &[&str],
) -> Result<Sizes, String> {
    let sink = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let sink_addr = sink.local_addr().map_err(|e| e.to_string())?;
    let (received, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let counter = {
        let (received, done) = (received.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                match sink.recv(&mut buf) {
                    Ok(len) => {
                        received.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    Err(_) if done.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        })
    };
    let tap = format!("size{n}");
    let sub = dir.join(&tap);
    std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
    let (config, keys) = keygen(&sub, &[&tap]);
    let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    // At the export's default pace, which loses nothing on loopback.
    std::fs::write(
        &config,
        format!("{text}\n[export]\nipfix = [\"{sink_addr}\"]\n"),
    )
    .map_err(|e| e.to_string())?;
    // Its flow lines go nowhere: only the export is measured.
    let mut collector = Command::new(env!("CARGO_BIN_EXE_pitap"))
        .args([
            "collect",
            "--listen",
            "127.0.0.1:0",
            "--idle-exit",
            "60",
            "--config",
        ])
        .arg(&config)
        .arg("--store")
        .arg(sub.join("flows.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stderr = BufReader::new(collector.stderr.take().ok_or("stderr")?);
    let mut first = String::new();
    stderr.read_line(&mut first).map_err(|e| e.to_string())?;
    let addr = first
        .trim()
        .strip_prefix("pitap: collecting on ")
        .ok_or_else(|| format!("collector: {first}"))?
        .to_string();
    // Drained so that it never blocks on a full pipe.
    let drain = std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let (mut flows, mut uplink_bytes) = (0, 0);
    for capture in captures {
        let out = Command::new(pitapd_bin())
            .arg("--read")
            .arg(capture)
            .args([
                "--uplink",
                &addr,
                "--tap-id",
                &tap,
                "--key",
                &keys[0].to_hex(),
            ])
            .args([
                "--wire-version",
                &version.to_string(),
                "--ack-timeout",
                "20",
            ])
            .args(extra)
            .output()
            .map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            return Err(format!("pitapd {}: {stderr}", capture.display()));
        }
        let line = stderr
            .lines()
            .find(|l| l.starts_with("pitapd: uplink (") && l.contains(" batches ("))
            .ok_or_else(|| format!("{}: no uplink summary: {stderr}", capture.display()))?;
        flows += number_before(line, " records").ok_or("records")?;
        uplink_bytes += number_before(line, " bytes)").ok_or("bytes")?;
    }
    // Every batch was acknowledged, so stored; the export is done when
    // nothing has come for a second.
    let mut last = u64::MAX;
    while received.load(Ordering::Relaxed) != last {
        last = received.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = collector.kill();
    let _ = collector.wait();
    let _ = drain.join();
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    let _ = counter.join();
    Ok(Sizes {
        flows,
        uplink_bytes,
        ipfix_bytes: received.load(Ordering::Relaxed),
    })
}

/// Nanoseconds per record the tap spends packing `records` into batches of
/// `version` and making each full batch its datagram (version 2 deflates
/// it), best of 5 passes.
fn encode_ns(records: &[pitap_wire::FlowRecord], version: u8, deflate: bool) -> f64 {
    use pitap_wire::{BatchHeader, BatchWriter};
    let mut best = f64::MAX;
    let mut w = BatchWriter::with_version(version);
    w.set_deflate(deflate);
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let datagrams = pitap_wire::codec::pack_all(&mut w, records, 0, |seq, r| BatchHeader {
            tap_id: "size",
            seq,
            base_ms: r.start_ms,
            ..BatchHeader::default()
        });
        std::hint::black_box(datagrams.map(|d| d.len()).unwrap_or(0));
        best = best.min(start.elapsed().as_nanos() as f64 / records.len().max(1) as f64);
    }
    best
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it once too.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = temp_dir("uplink-size");
    let packets: u64 = std::env::var("PITAP_SIZE_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let bench_capture = dir.join("bench.pcap");
    let config = pitap_bench::gen::GenConfig {
        packets,
        ..Default::default()
    };
    pitap_bench::gen::write_pcap(&bench_capture, &config).expect("write the benchmark capture");
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps/real");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&real)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    names.sort();
    println!("| capture | flows | uplink v1 bytes/flow | v2, tables only | v2 deflated | IPFIX bytes/flow | v2 deflated / IPFIX |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // The real captures one after the other in one file, replayed once:
    // a tap that runs on, not 40 that start and stop.
    let merged = dir.join("real.pcapng");
    let status = Command::new("mergecap")
        .args(["-a", "-w"])
        .arg(&merged)
        .args(&names)
        .status()
        .expect("mergecap (wireshark-common)");
    assert!(status.success(), "mergecap");
    // Without the file records of HTTP bodies (IPFIX has nothing like them).
    let no_files = dir.join("no-files.toml");
    std::fs::write(
        &no_files,
        "[tap]\nid = \"size\"\n[forensics]\nfile_streams = 0\n",
    )
    .expect("write config");
    let no_files = no_files.to_str().expect("path").to_string();
    let real = format!("the {} real captures, one after the other", names.len());
    for (i, (name, paths, extra)) in [
        (
            format!("benchmark capture ({packets} packets)"),
            vec![bench_capture],
            vec![],
        ),
        (
            format!("{real}, file records included"),
            vec![merged.clone()],
            vec![],
        ),
        (
            format!("{real}, flows only"),
            vec![merged],
            vec!["--config", no_files.as_str()],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let v1 = measure(&paths, &dir, 3 * i, pitap_wire::codec::VERSION_1, &extra);
        let mut plain = extra.clone();
        plain.push("--no-deflate");
        let tables = measure(&paths, &dir, 3 * i + 1, pitap_wire::codec::VERSION, &plain);
        let v2 = measure(&paths, &dir, 3 * i + 2, pitap_wire::codec::VERSION, &extra);
        match (v1, tables, v2) {
            (Ok(v1), Ok(tables), Ok(v2)) => {
                let per = |s: &Sizes| s.uplink_bytes as f64 / s.flows.max(1) as f64;
                println!(
                    "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                    v2.flows,
                    per(&v1),
                    per(&tables),
                    per(&v2),
                    v2.ipfix_bytes as f64 / v2.flows.max(1) as f64,
                    v2.uplink_bytes as f64 / v2.ipfix_bytes.max(1) as f64
                );
                if v1.flows != v2.flows {
                    eprintln!(
                        "{name}: {} flows with version 1, {} with 2",
                        v1.flows, v2.flows
                    );
                }
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => eprintln!("{name}: {e}"),
        }
    }
    let records = pitapd::offline::records_of(&dir.join("bench.pcap")).expect("records");
    println!();
    println!(
        "Packing the benchmark capture's {} records into datagrams on the tap (best of 5): version 1 {:.0} ns a record, version 2 with tables only {:.0} ns, deflated {:.0} ns.",
        records.len(),
        encode_ns(&records, pitap_wire::codec::VERSION_1, false),
        encode_ns(&records, pitap_wire::codec::VERSION, false),
        encode_ns(&records, pitap_wire::codec::VERSION, true)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
