//! Writes the benchmark capture: `pitap-gencap OUT.pcap [--packets N] [--seed S]`.

use std::io::{BufWriter, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut config = pitap_bench::gen::GenConfig::default();
    let mut out = None;
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match args[i].as_str() {
            "--packets" => config.packets = value().unwrap_or_else(|| usage()),
            "--seed" => config.seed = value().unwrap_or_else(|| usage()),
            "--concurrent" => config.concurrent = value().unwrap_or_else(|| usage()) as usize,
            path if out.is_none() && !path.starts_with('-') => {
                out = Some(path.to_string());
                i += 1;
                continue;
            }
            _ => usage(),
        }
        i += 2;
    }
    let Some(out) = out else { usage() };
    match write(&out, &config) {
        Ok(s) => eprintln!(
            "{out}: {} packets, {} bytes, {} conversations",
            s.packets, s.bytes, s.sessions
        ),
        Err(e) => {
            eprintln!("pitap-gencap: {out}: {e}");
            std::process::exit(1);
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: pitap-gencap OUT.pcap [--packets N] [--seed S] [--concurrent N]");
    std::process::exit(2)
}

fn write(
    path: &str,
    config: &pitap_bench::gen::GenConfig,
) -> std::io::Result<pitap_bench::gen::GenSummary> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    // pcap, microseconds, Ethernet, snap length 65535.
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65_535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut error = None;
    let summary = pitap_bench::gen::generate(config, |ts_us, frame| {
        if error.is_some() {
            return;
        }
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        if let Err(e) = w.write_all(&header).and_then(|()| w.write_all(frame)) {
            error = Some(e);
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    w.flush()?;
    Ok(summary)
}
