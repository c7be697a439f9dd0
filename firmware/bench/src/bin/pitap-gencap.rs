//! Writes the benchmark capture: `pitap-gencap OUT.pcap [--packets N] [--seed S]`.

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
    match pitap_bench::gen::write_pcap(std::path::Path::new(&out), &config) {
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
