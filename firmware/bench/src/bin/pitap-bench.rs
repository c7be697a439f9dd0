//! The benchmark runner (`scripts/bench.sh` runs it). See BENCHMARKS.md.
//!
//! pitap-bench [--capture FILE] [--packets N] [--runs N] [--no-peers] [--callgrind-packets N]
//!     [--collector PITAP] (adds pitapd --read with the sealed uplink to
//!     `PITAP collect` on loopback to the whole programs under callgrind)
//! pitap-bench --inner read|engine [--limit N] [--files STREAMS] [--hash-budget MIB/s]
//!     [--ring MIB] FILE
//!     (what callgrind measures; by default the engine follows 64 HTTP
//!     connections for files and keeps no packet ring)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pitap_bench::measure::{median_of, Run};
use pitap_flow_core::{EngineConfig, FlowEngine, PacketSource};
use pitap_wire::{FlowRecord, FlowSink};
use pitapd::source::CaptureReader;

/// Counts records without keeping them: the engine's cost, not the sink's.
#[derive(Default)]
struct CountingSink {
    records: u64,
    bytes: u64,
}

impl FlowSink for CountingSink {
    fn emit(&mut self, r: &FlowRecord) {
        self.records += 1;
        self.bytes = self.bytes.wrapping_add(r.total_bytes());
    }
}

/// Reads the capture (and runs the engine when `engine`) over at most
/// `limit` frames; returns (frames, records).
fn inner(path: &Path, engine: bool, limit: u64) -> Result<(u64, u64), String> {
    inner_with(path, engine, limit, EngineConfig::default())
}

fn inner_with(
    path: &Path,
    engine: bool,
    limit: u64,
    config: EngineConfig,
) -> Result<(u64, u64), String> {
    let mut reader = CaptureReader::open(path).map_err(|e| e.to_string())?;
    let mut flow_engine = FlowEngine::new(config);
    let mut sink = CountingSink::default();
    let mut frames = 0u64;
    let mut checksum = 0u64;
    while frames < limit {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                if engine {
                    flow_engine.process(&frame, &mut sink);
                } else {
                    checksum = checksum.wrapping_add(u64::from(frame.orig_len) ^ frame.ts_us);
                }
                frames += 1;
            }
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if engine {
        flow_engine.flush(&mut sink);
    }
    std::hint::black_box(checksum);
    Ok((frames, sink.records))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    let value = |name: &str| flag(name).and_then(|i| args.get(i + 1)).cloned();
    if let Some(mode) = value("--inner") {
        let limit = value("--limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        let file = PathBuf::from(args.last().cloned().unwrap_or_default());
        let mut config = EngineConfig::default();
        if let Some(n) = value("--files").and_then(|v| v.parse().ok()) {
            config.files.streams = n;
        }
        if let Some(mib) = value("--hash-budget").and_then(|v| v.parse::<u64>().ok()) {
            config.files.hash_bytes_per_s = mib << 20;
        }
        if let Some(mib) = value("--ring").and_then(|v| v.parse::<usize>().ok()) {
            config.ring.bytes = mib << 20;
        }
        match inner_with(&file, mode == "engine", limit, config) {
            Ok((frames, records)) => println!("{frames} frames, {records} records"),
            Err(e) => {
                eprintln!("pitap-bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Err(e) = bench(&args) {
        eprintln!("pitap-bench: {e}");
        std::process::exit(1);
    }
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Instructions callgrind counts for `pitapd --read FILE` sending sealed
/// batches to `pitap collect` on loopback (the collector runs outside
/// callgrind, with a key `pitap keygen` made).
fn sealed_uplink_instructions(
    collector: &Path,
    pitapd: &Path,
    file: &str,
    extra: &[&str],
) -> Result<u64, String> {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("pitap-bench-uplink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let status = Command::new(collector)
        .args(["keygen", "--tap-id", "bench", "--out-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", collector.display()))?;
    if !status.success() {
        return Err("pitap keygen failed".into());
    }
    let snippet = std::fs::read_to_string(dir.join("bench.collector.toml"))
        .map_err(|e| format!("bench.collector.toml: {e}"))?;
    let key = snippet
        .split('"')
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("no key in bench.collector.toml")?
        .to_string();
    let mut child = Command::new(collector)
        .args([
            "collect",
            "--listen",
            "127.0.0.1:0",
            "--idle-exit",
            "120",
            "--config",
        ])
        .arg(dir.join("bench.collector.toml"))
        .arg("--store")
        .arg(dir.join("flows.db"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", collector.display()))?;
    let mut stderr = BufReader::new(child.stderr.take().ok_or("collector stderr")?);
    let mut first = String::new();
    let _ = stderr.read_line(&mut first);
    // Drained so that the collector never blocks on a full pipe.
    let drain = std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let result = match first.trim().strip_prefix("pitap: collecting on ") {
        None => Err(format!("collector: {first}")),
        Some(addr) => Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(pitapd)
            .args([
                "--read", file, "--uplink", addr, "--tap-id", "bench", "--key", &key,
            ])
            .args(["--ack-timeout", "60", "--quiet"])
            .args(extra)
            .output()
            .map_err(|e| format!("valgrind: {e}"))
            .and_then(|out| {
                let text = String::from_utf8_lossy(&out.stderr);
                if !out.status.success() {
                    return Err(format!("pitapd --uplink: {text}"));
                }
                text.lines()
                    .find_map(|l| l.split("Collected :").nth(1))
                    .and_then(|n| n.trim().parse().ok())
                    .ok_or_else(|| format!("no callgrind total in: {text}"))
            }),
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = drain.join();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A program to run: its label, how to make the command, a note.
type External = (String, Box<dyn Fn() -> Command>, String);

struct Row {
    name: String,
    packets: u64,
    run: Run,
    note: String,
}

fn bench(args: &[String]) -> Result<(), String> {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let packets: u64 = value("--packets")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let runs: usize = value("--runs").and_then(|v| v.parse().ok()).unwrap_or(3);
    let callgrind_packets: u64 = value("--callgrind-packets")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let peers = !args.iter().any(|a| a == "--no-peers");
    let capture = value("--capture")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("target/bench/bench-{packets}.pcap")));
    if !capture.exists() {
        eprintln!(
            "generating {} ({packets} packets, seed 1)",
            capture.display()
        );
        if let Some(dir) = capture.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let status = Command::new(bin_dir().join("pitap-gencap"))
            .arg(&capture)
            .args(["--packets", &packets.to_string()])
            .status()
            .map_err(|e| format!("pitap-gencap: {e}"))?;
        if !status.success() {
            return Err("pitap-gencap failed".into());
        }
    }
    let size = std::fs::metadata(&capture)
        .map_err(|e| e.to_string())?
        .len();
    // Into the page cache first, by a child: every reader below starts from
    // memory, and no child inherits a large RSS from this process (a
    // forked child's peak RSS starts at its parent's).
    pitap_bench::measure::run_once(Command::new("cat").arg(&capture))?;
    let mut rows = Vec::new();
    let pitapd = bin_dir().join("pitapd");
    let file = capture
        .to_str()
        .ok_or("capture path is not UTF-8")?
        .to_string();
    let mut external: Vec<External> = Vec::new();
    {
        let (p, f) = (pitapd.clone(), file.clone());
        external.push((
            "pitapd --read --print (65,536 flows)".into(),
            Box::new(move || {
                let mut c = Command::new(&p);
                c.args(["--read", &f, "--print", "--quiet"]);
                c
            }),
            "flow lines to /dev/null".into(),
        ));
    }
    if peers {
        let tmp = std::env::temp_dir().join(format!("pitap-bench-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        let f = file.clone();
        if have("tcpdump") {
            let f = f.clone();
            external.push((
                "tcpdump -r -w /dev/null (libpcap reading alone)".into(),
                Box::new(move || {
                    let mut c = Command::new("tcpdump");
                    c.args(["-r", &f, "-w", "/dev/null"]);
                    c
                }),
                "no flows".into(),
            ));
        }
        if have("softflowd") {
            for (label, extra) in [
                ("softflowd -r (default 8,192 flows)", vec![]),
                ("softflowd -r -m 65536", vec!["-m", "65536"]),
            ] {
                let f = f.clone();
                let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
                external.push((
                    label.into(),
                    Box::new(move || {
                        let mut c = Command::new("softflowd");
                        c.args(["-r", &f, "-c", "none", "-d", "-n", "127.0.0.1:9"])
                            .args(&extra);
                        c
                    }),
                    "NetFlow to a closed port".into(),
                ));
            }
        }
        if have("argus") {
            let (f, out) = (f.clone(), tmp.join("argus.out"));
            external.push((
                "argus -r".into(),
                Box::new(move || {
                    let _ = std::fs::remove_file(&out);
                    let mut c = Command::new("argus");
                    c.args(["-r", &f, "-w"]).arg(&out);
                    c
                }),
                "records to a file".into(),
            ));
        }
        if have("nfpcapd") {
            let (f, dir) = (f.clone(), tmp.join("nfpcapd"));
            external.push((
                "nfpcapd -r".into(),
                Box::new(move || {
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::create_dir_all(&dir);
                    let mut c = Command::new("nfpcapd");
                    c.args(["-r", &f, "-w"]).arg(&dir);
                    c
                }),
                "nfcapd files".into(),
            ));
        }
    }
    for (name, make, note) in &external {
        eprintln!("running {name} ({runs} runs after a warm-up)");
        match median_of(runs, make) {
            Ok(run) => rows.push(Row {
                name: name.clone(),
                packets: 0, // known once the capture is read below
                run,
                note: note.clone(),
            }),
            Err(e) => eprintln!("  skipped: {e}"),
        }
    }
    // In process, after the children: the capture reader alone, then
    // reader + decode + flow update.
    let (frames, _) = inner(&capture, false, u64::MAX)?;
    let (_, flows) = inner(&capture, true, u64::MAX)?;
    eprintln!(
        "capture {}: {frames} packets, {:.2} GB, {flows} flow records",
        capture.display(),
        size as f64 / 1e9
    );
    let mut inproc_rows = Vec::new();
    for (name, engine) in [
        ("PiTap reader alone (mmap, in process)", false),
        (
            "PiTap flow core (reader + decode + flow update, in process)",
            true,
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            inner(&capture, engine, u64::MAX)?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        inproc_rows.push(Row {
            name: name.into(),
            packets: frames,
            run: Run {
                seconds: times[times.len() / 2],
                max_rss_kib: 0,
            },
            note: String::new(),
        });
    }
    for r in &mut rows {
        r.packets = frames;
    }
    inproc_rows.append(&mut rows);
    let rows = inproc_rows;
    // Instructions per packet: callgrind counts are deterministic.
    let mut ipp = None;
    if have("valgrind") {
        let count = |mode: &str| -> Result<u64, String> {
            let out = Command::new("valgrind")
                .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .arg(std::env::current_exe().map_err(|e| e.to_string())?)
                .args([
                    "--inner",
                    mode,
                    "--limit",
                    &callgrind_packets.to_string(),
                    &file,
                ])
                .output()
                .map_err(|e| format!("valgrind: {e}"))?;
            let text = String::from_utf8_lossy(&out.stderr);
            text.lines()
                .find_map(|l| l.split("Collected :").nth(1))
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| format!("no callgrind total in: {text}"))
        };
        eprintln!("callgrind over {callgrind_packets} packets");
        let read = count("read")?;
        let engine = count("engine")?;
        let n = callgrind_packets.min(frames) as f64;
        ipp = Some((
            read as f64 / n,
            engine as f64 / n,
            (engine.saturating_sub(read)) as f64 / n,
        ));
    }
    // Whole programs under callgrind, on a capture of `callgrind_packets`
    // packets from the same generator: instructions per packet, exact.
    let mut whole = Vec::new();
    let mut uplink_cost = None;
    if have("valgrind") {
        let small = PathBuf::from(format!("target/bench/bench-{callgrind_packets}.pcap"));
        if !small.exists() {
            let status = Command::new(bin_dir().join("pitap-gencap"))
                .arg(&small)
                .args(["--packets", &callgrind_packets.to_string()])
                .status()
                .map_err(|e| format!("pitap-gencap: {e}"))?;
            if !status.success() {
                return Err("pitap-gencap failed".into());
            }
        }
        let f = small.to_str().ok_or("path")?.to_string();
        let nf_dir = std::env::temp_dir().join(format!("pitap-bench-nf-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&nf_dir);
        let nf = nf_dir.to_str().ok_or("path")?.to_string();
        let programs: Vec<(&str, Vec<String>)> = vec![
            (
                "pitapd --read --print",
                vec![
                    pitapd.to_str().ok_or("path")?.into(),
                    "--read".into(),
                    f.clone(),
                    "--print".into(),
                    "--quiet".into(),
                ],
            ),
            (
                "softflowd -r",
                vec![
                    "softflowd".into(),
                    "-r".into(),
                    f.clone(),
                    "-c".into(),
                    "none".into(),
                    "-d".into(),
                    "-n".into(),
                    "127.0.0.1:9".into(),
                ],
            ),
            (
                "nfpcapd -r",
                vec!["nfpcapd".into(), "-r".into(), f.clone(), "-w".into(), nf],
            ),
            (
                "argus -r",
                vec![
                    "argus".into(),
                    "-r".into(),
                    f.clone(),
                    "-w".into(),
                    "/dev/null".into(),
                ],
            ),
            (
                "tcpdump -r -w /dev/null",
                vec![
                    "tcpdump".into(),
                    "-r".into(),
                    f.clone(),
                    "-w".into(),
                    "/dev/null".into(),
                ],
            ),
        ];
        for (name, argv) in programs {
            if !have(&argv[0]) && !argv[0].contains('/') {
                continue;
            }
            let out = Command::new("valgrind")
                .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .args(&argv)
                .stdout(std::process::Stdio::null())
                .output()
                .map_err(|e| format!("valgrind: {e}"))?;
            let text = String::from_utf8_lossy(&out.stderr);
            if let Some(n) = text
                .lines()
                .find_map(|l| l.split("Collected :").nth(1))
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                whole.push((name.to_string(), n as f64 / callgrind_packets as f64));
            }
        }
        if let Some(collector) = value("--collector") {
            // The flow core alone on the same packets, in process: what the
            // uplink adds is the difference.
            let out = Command::new("valgrind")
                .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .arg(std::env::current_exe().map_err(|e| e.to_string())?)
                .args(["--inner", "engine", &f])
                .output()
                .map_err(|e| format!("valgrind: {e}"))?;
            let text = String::from_utf8_lossy(&out.stderr);
            let core: u64 = text
                .lines()
                .find_map(|l| l.split("Collected :").nth(1))
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| format!("no callgrind total in: {text}"))?;
            let (_, records) = inner(&small, true, u64::MAX)?;
            let mut sealed = Vec::new();
            for (name, extra) in [
                ("pitapd --read --uplink (sealed, deflated)", &[][..]),
                (
                    "pitapd --read --uplink (sealed, --no-deflate)",
                    &["--no-deflate"][..],
                ),
            ] {
                let n = sealed_uplink_instructions(Path::new(&collector), &pitapd, &f, extra)?;
                whole.push((
                    format!("{name}, to pitap collect on loopback"),
                    n as f64 / callgrind_packets as f64,
                ));
                sealed.push(n);
            }
            if let [deflated, plain] = sealed[..] {
                let per_flow = |n: u64| n as f64 / records.max(1) as f64;
                uplink_cost = Some((
                    per_flow(plain.saturating_sub(core)),
                    per_flow(deflated.saturating_sub(plain)),
                    records,
                ));
            }
        }
    }
    // The table.
    let ours = rows
        .iter()
        .find(|r| r.name.starts_with("pitapd"))
        .map(|r| r.packets as f64 / r.run.seconds);
    println!("| program | packets/s | pitapd --read is | peak RSS | note |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for r in &rows {
        let pps = r.packets as f64 / r.run.seconds;
        let ratio = ours.map(|o| format!("{:.2}×", o / pps)).unwrap_or_default();
        let rss = if r.run.max_rss_kib > 0 {
            format!("{:.1} MiB", r.run.max_rss_kib as f64 / 1024.0)
        } else {
            "—".into()
        };
        println!(
            "| {} | {:.2} M | {ratio} | {rss} | {} |",
            r.name,
            pps / 1e6,
            r.note
        );
    }
    println!();
    println!("Capture: {} packets, {:.2} GB, {flows} flows (PiTap's count), generated by `pitap-gencap --packets {packets}` (seed 1). Median of {runs} runs after a warm-up, file in the page cache.", frames, size as f64 / 1e9);
    if let Some((read, engine, core)) = ipp {
        println!();
        println!("Instructions per packet (callgrind, first {callgrind_packets} packets of the capture, in process, including start-up and the final flush): reader alone {read:.0}, reader + decode + flow update {engine:.0}, so decode + flow update {core:.0}.");
    }
    if !whole.is_empty() {
        let ours = whole
            .iter()
            .find(|w| w.0.starts_with("pitapd"))
            .map(|w| w.1);
        println!();
        println!("Whole programs under callgrind ({callgrind_packets} generated packets, start to exit):");
        println!();
        println!("| program | instructions/packet | ÷ pitapd's |");
        println!("| --- | ---: | ---: |");
        for (name, ipp) in &whole {
            let ratio = ours.map(|o| format!("{:.2}×", ipp / o)).unwrap_or_default();
            println!("| {name} | {ipp:.0} | {ratio} |");
        }
    }
    if let Some((tables, deflate, records)) = uplink_cost {
        println!();
        println!("What the sealed uplink adds to the flow core on the tap, per flow ({records} records of the {callgrind_packets} packets; callgrind, whole process against `pitap-bench --inner engine` on the same file): {tables:.0} instructions for version 2's tables, the batches, sealing and sending, and deflating them {deflate:.0} more.");
    }
    Ok(())
}
