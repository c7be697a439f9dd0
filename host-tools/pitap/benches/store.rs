//! Flow store benchmark (not a test), PiTap beside nfdump on the same
//! flows, in one run:
//!
//! 1. ingest: sealed batches of N realistic records through the collector
//!    core (open, challenge and replay check, decode), enriched, committed
//!    to the store in groups as `pitap collect` commits them (with its
//!    state), in flows/s; the store's bytes per flow on disk;
//! 2. the same records exported by `pitap`'s IPFIX encoder over loopback
//!    to `nfcapd` (Debian's nfdump 1.7), checked complete with `nfdump -I`;
//! 3. the same questions to both, best of 3: top 10 destinations by bytes,
//!    top destinations of TCP flows to ports 1-1023, a count with a CIDR
//!    term, and the flows of one client to SSH printed.
//!
//! `cargo bench -p pitap --bench store` (10M flows: ~2 GB in $TMPDIR and
//! ~3 minutes); `PITAP_BENCH_FLOWS=1000000` for a quicker run,
//! `PITAP_BENCH_INGEST_ONLY=1` to stop after ingest (profiling),
//! `PITAP_BENCH_WRITE=1` to put the table into BENCHMARKS.md. Without
//! nfcapd/nfdump the PiTap half still runs.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use pitap::collector::{Collector, Outcome};
use pitap::export::ipfix::{Encoder, Protocol};
use pitap::fields::single_field;
use pitap::flow::StoredFlow;
use pitap::networks::Networks;
use pitap::search::{self, Output};
use pitap::store::Store;
use pitap_wire::envelope::Key;
use pitap_wire::FlowRecord;

/// Batches per commit, as `pitap collect` groups them under full load.
const GROUP: usize = 1024;
const NFCAPD_PORT: u16 = 47_991;

fn ingest(path: &Path, flows: u64, networks: &Networks) -> f64 {
    let key = Key::from_bytes([0x5a; 32]);
    let dgs = support::datagrams(flows, Some(&key));
    let mut keys = BTreeMap::new();
    keys.insert(support::TAP.to_string(), key);
    let mut collector = Collector::new(keys, false, [5; 16], support::SECRET);
    let mut store = Store::open(path).expect("store");
    let from = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut pending: Vec<StoredFlow> = Vec::new();
    let start = Instant::now();
    let mut n = 0u64;
    for (i, d) in dgs.iter().enumerate() {
        if let Outcome::Batch { tap, records, .. } = collector.handle(d, from, SystemTime::now()) {
            n += records.len() as u64;
            pending.extend(
                records
                    .iter()
                    .map(|r| StoredFlow::new(tap.clone(), *r, networks)),
            );
        }
        if i % GROUP == GROUP - 1 || i + 1 == dgs.len() {
            let state = serde_json::to_string(collector.taps()).expect("state");
            store.commit(&pending, &[], Some(&state)).expect("commit");
            pending.clear();
            std::hint::black_box(collector.take_replies(GROUP as u32));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(n, flows, "every flow arrived");
    println!(
        "ingest: {flows} flows sealed in {} datagrams, decoded and committed in {secs:.1} s = {:.0} flows/s ({GROUP} batches per commit)",
        dgs.len(),
        flows as f64 / secs
    );
    flows as f64 / secs
}

fn file_size(path: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path.to_path_buf(), wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The best of three runs of `f`, in seconds, and its last result.
fn best_of_3<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..3 {
        let t = Instant::now();
        last = Some(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, last.expect("ran"))
}

fn pitap_query(store: &Path, query: &str, output: Output, networks: &Networks) -> (u64, String) {
    let mut out = Vec::new();
    let n = search::run(
        &search::Options {
            json: false,
            store: store.to_path_buf(),
            query: query.into(),
            since_ms: 0,
            until_ms: u64::MAX,
            output,
            networks: Some(networks.clone()),
        },
        &mut out,
    )
    .expect("query");
    (n, String::from_utf8_lossy(&out).into_owned())
}

/// The records sent to nfcapd as IPFIX; returns its file once it stopped.
fn to_nfcapd(dir: &Path, flows: u64) -> Option<PathBuf> {
    let nf_dir = dir.join("nfcapd");
    std::fs::create_dir_all(&nf_dir).ok()?;
    let mut nfcapd = Command::new("nfcapd")
        .args([
            "-b",
            "127.0.0.1",
            "-p",
            &NFCAPD_PORT.to_string(),
            "-t",
            "86400",
            "-B",
            "33554432",
            "-w",
        ])
        .arg(&nf_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    socket.connect(("127.0.0.1", NFCAPD_PORT)).expect("connect");
    let mut encoder = Encoder::new(Protocol::Ipfix, 0);
    let start = Instant::now();
    let mut sent = 0u64;
    let chunk = 10_000u64;
    for c in (0..flows).step_by(chunk as usize) {
        let records: Vec<FlowRecord> = (c..(c + chunk).min(flows)).map(support::record).collect();
        let refs: Vec<&FlowRecord> = records.iter().collect();
        for (k, msg) in encoder
            .encode(&refs, true, 1_760_000_000_000)
            .iter()
            .enumerate()
        {
            let _ = socket.send(msg);
            sent += 1;
            // Paced: nfcapd reads one datagram at a time.
            if k % 32 == 31 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").arg(nfcapd.id().to_string()).status();
    let _ = nfcapd.wait();
    println!(
        "nfcapd: {flows} flows as IPFIX in {sent} messages over loopback in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    std::fs::read_dir(&nf_dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nfcapd.2"))
        })
}

fn nfdump(file: &Path, args: &[&str]) -> String {
    let out = Command::new("nfdump")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("nfdump");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let flows: u64 = std::env::var("PITAP_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!("pitap-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("flows.db");
    let mut table = BTreeMap::new();
    table.insert(
        "internal".to_string(),
        vec!["172.30.0.0/16".to_string(), "fd00::/8".to_string()],
    );
    let networks = Networks::from_config(&table).expect("networks");

    let rate = ingest(&path, flows, &networks);
    let size = file_size(&path);
    println!(
        "store: {:.0} MB, {:.1} bytes/flow on disk (database and WAL)",
        size as f64 / 1e6,
        size as f64 / flows as f64
    );
    let mut rows = vec![format!(
        "| ingest: sealed, decoded, committed | {:.0} k flows/s | — | | |",
        rate / 1e3
    )];
    let mut sizes = format!("PiTap {:.1} B/flow", size as f64 / flows as f64);
    if std::env::var_os("PITAP_BENCH_INGEST_ONLY").is_some() {
        // For profiling the ingest path alone.
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let nf = if Command::new("nfdump").arg("-V").output().is_ok() {
        to_nfcapd(&dir, flows)
    } else {
        None
    };
    let nf_flows = nf.as_ref().map(|f| {
        let stats = nfdump(f, &["-I"]);
        let n: u64 = stats
            .lines()
            .find_map(|l| l.strip_prefix("Flows: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        sizes += &format!(", nfcapd {:.1} B/flow", size as f64 / n.max(1) as f64);
        println!(
            "nfcapd file: {n} flows ({}), {:.1} bytes/flow",
            if n == flows {
                "complete"
            } else {
                "INCOMPLETE: loss on loopback"
            },
            size as f64 / n.max(1) as f64
        );
        n
    });

    let field = |n: &str| single_field(n).expect("field");
    let client = "172.30.0.5";
    let cases: Vec<(&str, String, Output, Vec<String>)> = vec![
        (
            "top 10 destinations by bytes",
            String::new(),
            Output::Sum {
                field: field("bytes"),
                by: field("dst_addr"),
                limit: 10,
            },
            vec!["-s".into(), "dstip/bytes".into(), "-n".into(), "10".into()],
        ),
        (
            "top 10 destinations of TCP to ports 1-1023",
            "proto:tcp AND dst_port:[1 TO 1023]".into(),
            Output::Top {
                field: field("dst_addr"),
                limit: 10,
            },
            vec![
                "-s".into(),
                "dstip".into(),
                "-n".into(),
                "10".into(),
                "proto tcp and dst port > 0 and dst port < 1024".into(),
            ],
        ),
        (
            "count: TCP to ports 1-1023 of a /26",
            "dst_addr:198.51.100.0/26 AND proto:tcp AND dst_port:[1 TO 1023]".into(),
            Output::Count,
            vec![
                "-s".into(),
                "proto".into(),
                "-n".into(),
                "1".into(),
                "dst net 198.51.100.0/26 and proto tcp and dst port > 0 and dst port < 1024".into(),
            ],
        ),
        (
            "one client's SSH flows printed",
            format!("src_addr:{client} AND dst_port:22"),
            Output::Lines,
            vec!["-q".into(), format!("src ip {client} and dst port 22")],
        ),
    ];
    println!("\n{HEADER}");
    for (label, query, output, nf_args) in cases {
        let (t, (matched, ours_out)) = best_of_3(|| pitap_query(&path, &query, output, &networks));
        let ours_rate = flows as f64 / t;
        let ours = format!(
            "{t:.3} s ({:.1} M flows/s; {matched} matched)",
            ours_rate / 1e6
        );
        let (theirs, ratio, same) = match (&nf, nf_flows) {
            (Some(file), Some(n)) => {
                let args: Vec<&str> = nf_args.iter().map(String::as_str).collect();
                let (tn, out) = best_of_3(|| nfdump(file, &args));
                let rate = n as f64 / tn;
                let same = if answer(output, &ours_out, matched) == nf_answer(output, &out) {
                    "yes"
                } else {
                    "NO"
                };
                (
                    format!("{tn:.3} s ({:.1} M flows/s)", rate / 1e6),
                    format!("{:.1}", ours_rate / rate),
                    same,
                )
            }
            _ => ("not run".into(), "-".into(), "-"),
        };
        let row = format!("| {label} | {ours} | {theirs} | {ratio} | {same} |");
        println!("{row}");
        rows.push(row);
    }
    rows.push(format!("| on disk | {sizes} | | | |"));
    if std::env::var_os("PITAP_BENCH_WRITE").is_some() {
        write_section(flows, &rows);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replaces BENCHMARKS.md's flow store section (scripts/bench.sh keeps it).
fn write_section(flows: u64, rows: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let head = old.split(SECTION).next().unwrap_or("").trim_end();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let text = format!(
        "{head}\n\n{SECTION}\n\nProduced by `PITAP_BENCH_WRITE=1 cargo bench -p pitap --bench store` \
         on {} cores, {date}: {flows} generated flows (benches/support: 4,000 clients, \
         3,000 servers, web, DNS, SSH, refused attempts, TLS names), the same records \
         sent to nfcapd through pitap's IPFIX export and checked complete with \
         `nfdump -I`. Best of 3; flows/s is the flows in the store (or file) divided \
         by the time; \"same answer\": the ten addresses of a top 10, the count, the \
         lines printed are the same.\n\n{HEADER}\n{}\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        rows.join("\n")
    );
    std::fs::write(&path, text).expect("write BENCHMARKS.md");
    println!("wrote {}", path.display());
}

const SECTION: &str = "## The flow store beside nfdump";
const HEADER: &str =
    "| work | PiTap | nfdump 1.7 | PiTap flows/s ÷ nfdump's | same answer |\n|---|---|---|---|---|";

/// What an answer says, comparable across the two tools: the addresses
/// of a top 10 (sorted: ties may come in another order), a count, the
/// number of flows printed.
fn answer(output: Output, out: &str, matched: u64) -> Vec<String> {
    match output {
        Output::Sum { .. } | Output::Top { .. } => {
            let mut a: Vec<String> = out
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| w.parse::<std::net::IpAddr>().is_ok())
                .map(String::from)
                .collect();
            a.sort();
            a
        }
        _ => vec![matched.to_string()],
    }
}

fn nf_answer(output: Output, out: &str) -> Vec<String> {
    match output {
        Output::Sum { .. } | Output::Top { .. } => {
            // "date time duration proto address flows(%) ..."
            let mut a: Vec<String> = out
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|w| w.parse::<std::net::IpAddr>().is_ok())
                .map(String::from)
                .collect();
            a.sort();
            a
        }
        Output::Count => vec![out
            .lines()
            .find_map(|l| l.strip_prefix("Summary: total flows: "))
            .and_then(|r| r.split(',').next())
            .unwrap_or("?")
            .to_string()],
        _ => vec![out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
            .to_string()],
    }
}
