//! What the packet ring and the file hashing cost the tap, by callgrind
//! (exact instruction counts) and wall time:
//!
//! - instructions per packet of the flow core (reader + decode + flow
//!   update) on the generated benchmark mix, with files and ring off, each
//!   on, both on;
//! - on HTTP downloads (the bodies the tracker hashes), instructions and
//!   cycles per byte hashed (SHA-256 + SHA-1 + MD5, reassembly included),
//!   files on minus files off.
//!
//! pitap-forensics-bench [--packets N] [--downloads N] [--soft-bench PATH]
//!
//! `--soft-bench`: a `pitap-bench` built with `--features soft-hash` (the
//! digests' portable code, which a Pi 4's Cortex-A72 runs: it has no SHA
//! instructions); its instructions per byte give the A72 estimate.
//! Prints a Markdown section; `PITAP_BENCH_WRITE=1` puts it in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pitap_bench::gen::{write_pcap, GenConfig};
use pitap_bench::http;

const BODY: usize = 512 << 10;

fn bench_bin() -> PathBuf {
    std::env::current_exe()
        .map(|p| p.with_file_name("pitap-bench"))
        .unwrap_or_else(|_| PathBuf::from("pitap-bench"))
}

/// Instructions callgrind counts for `pitap-bench --inner engine ARGS FILE`.
fn callgrind(file: &Path, args: &[&str]) -> Result<u64, String> {
    callgrind_of(&bench_bin(), file, args)
}

fn callgrind_of(bin: &Path, file: &Path, args: &[&str]) -> Result<u64, String> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(bin)
        .args(["--inner", "engine"])
        .args(args)
        .arg(file)
        .output()
        .map_err(|e| format!("valgrind: {e} (scripts/bench.sh installs it)"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.split("Collected : ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no callgrind total in: {text}"))
}

/// Seconds of a run of `pitap-bench --inner engine ARGS FILE` (best of 3).
fn seconds(file: &Path, args: &[&str]) -> Result<f64, String> {
    seconds_of(&bench_bin(), file, args)
}

fn seconds_of(bin: &Path, file: &Path, args: &[&str]) -> Result<f64, String> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let st = Command::new(bin)
            .args(["--inner", "engine"])
            .args(args)
            .arg(file)
            .output()
            .map_err(|e| e.to_string())?;
        if !st.status.success() {
            return Err(String::from_utf8_lossy(&st.stderr).into());
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn cpu_mhz() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
}

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let soft = args
        .iter()
        .position(|a| a == "--soft-bench")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let packets = value("--packets").unwrap_or(200_000);
    let downloads = value("--downloads").unwrap_or(200) as u32;
    std::fs::create_dir_all("target/bench").map_err(|e| e.to_string())?;
    let mix = PathBuf::from(format!("target/bench/bench-{packets}.pcap"));
    if !mix.exists() {
        write_pcap(
            &mix,
            &GenConfig {
                packets,
                ..GenConfig::default()
            },
        )
        .map_err(|e| e.to_string())?;
    }
    let web = PathBuf::from(format!("target/bench/downloads-{downloads}.pcap"));
    let body = http::body(BODY);
    let web_packets = http::write_pcap(&web, |emit| http::downloads(downloads, 50, &body, emit))
        .map_err(|e| e.to_string())?;
    let hashed = u64::from(downloads) * BODY as u64;

    let modes: [(&str, &[&str]); 4] = [
        ("files and ring off", &["--files", "0"]),
        ("files on (64 connections)", &[]),
        (
            "ring on (256 MiB, 32 KiB cut-off)",
            &["--files", "0", "--ring", "256"],
        ),
        ("files and ring on", &["--ring", "256"]),
    ];
    let mut out = String::new();
    out += "## The packet ring and file hashing\n\n";
    out += "Produced by `cargo run --release -p pitap-bench --bin pitap-forensics-bench` \
            (scripts/bench.sh runs it). Instructions from callgrind over the whole run of \
            `pitap-bench --inner engine` (capture reader, decode, flow update, start-up and \
            final flush).\n\n";
    out += &format!(
        "| flow core on {packets} packets of the benchmark mix | instructions/packet | added |\n| --- | ---: | ---: |\n"
    );
    let mut base = 0.0;
    for (i, (name, a)) in modes.iter().enumerate() {
        let n = callgrind(&mix, a)? as f64 / packets as f64;
        if i == 0 {
            base = n;
        }
        out += &format!("| {name} | {n:.0} | {:+.0} |\n", n - base);
    }
    // No budget: every byte is hashed (the budget's 8 MiB/s of packet time
    // would skip most of a capture this dense).
    let all: &[&str] = &["--hash-budget", "0"];
    let off = callgrind(&web, &["--files", "0"])?;
    let on = callgrind(&web, all)?;
    let per_byte = (on.saturating_sub(off)) as f64 / hashed as f64;
    let (t_off, t_on) = (seconds(&web, &["--files", "0"])?, seconds(&web, all)?);
    let ns_per_byte = (t_on - t_off).max(0.0) * 1e9 / hashed as f64;
    let mhz = cpu_mhz().unwrap_or(0.0);
    out += &format!(
        "\nHTTP downloads ({downloads} × {} KiB, {web_packets} packets, 50 at once): following and \
         hashing them (SHA-256, SHA-1 and MD5 of every body, reassembly included) costs \
         **{per_byte:.1} instructions per byte** (callgrind: {on} with files on, {off} off, over \
         {hashed} body bytes), and {ns_per_byte:.2} ns per byte of wall time here, about \
         **{:.1} cycles per byte** at this CPU's {mhz:.0} MHz (best of 3 runs each way).\n",
        BODY >> 10,
        ns_per_byte * mhz / 1000.0,
    );
    out += &format!(
        "\nThe digest crates (RustCrypto sha2, sha1, md-5) use the CPU's SHA instructions \
         where it has them, as this x86 one does: that is the wall time above. Callgrind's \
         virtual CPU offers none, so its count is of their portable code, the code a Pi 4 runs: \
         its Cortex-A72 (BCM2711) has no ARMv8 crypto extensions. At about 1.5 instructions a \
         cycle (the A72 is 3-wide; the hash rounds are chains of dependent operations), \
         {per_byte:.1} instructions per byte is an estimated **{:.0} cycles per byte on the \
         A72**: one 1.5 GHz core hashes about {:.0} MB/s with all three digests, and the default \
         budget of 4 MiB/s takes about {:.0} % of a core.",
        per_byte / 1.5,
        1500.0 / (per_byte / 1.5),
        4.0 * 1.048_576 / (1500.0 / (per_byte / 1.5)) * 100.0,
    );
    if let Some(bin) = soft {
        let on = callgrind_of(&bin, &web, all)?;
        let off = callgrind_of(&bin, &web, &["--files", "0"])?;
        let t_soft = seconds_of(&bin, &web, all)?;
        let soft_ns = (t_soft - t_off).max(0.0) * 1e9 / hashed as f64;
        out += &format!(
            " Built with `--features soft-hash` (the portable code on this CPU too): \
             {:.1} instructions per byte under callgrind (the same), {soft_ns:.2} ns per byte \
             of wall time, {:.1} cycles per byte here.",
            on.saturating_sub(off) as f64 / hashed as f64,
            soft_ns * mhz / 1000.0,
        );
    }
    out += "\n";
    Ok(out)
}

fn main() {
    match run() {
        Ok(text) => {
            print!("{text}");
            if std::env::var_os("PITAP_BENCH_WRITE").is_some() {
                let path = "BENCHMARKS.md";
                let old = std::fs::read_to_string(path).unwrap_or_default();
                let start = old.find("## The packet ring and file hashing");
                let kept = match start {
                    Some(s) => {
                        let rest = &old[s + 1..];
                        let end = rest.find("\n## ").map(|e| s + 1 + e + 1);
                        format!("{}{}", &old[..s], end.map_or("", |e| &old[e..]))
                    }
                    None => old,
                };
                let text = format!("{}\n\n{text}", kept.trim_end());
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!("pitap-forensics-bench: {path}: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("pitap-forensics-bench: {e}");
            std::process::exit(1);
        }
    }
}
