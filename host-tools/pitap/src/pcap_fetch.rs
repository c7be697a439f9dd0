//! `pitap pcap`: the packets behind flows, fetched from a tap's packet ring
//! through the collector. The request goes into the store; the running
//! collector carries it to the tap in its replies and stores the answer as
//! it comes; this command waits for it and writes a pcapng file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pitap_wire::messages::{FlowEnds, PacketRequest};

use crate::fields::Field;
use crate::networks::Networks;
use crate::progress::Progress;
use crate::store::engine::Scope;
use crate::store::fetches::{self, Fetch};
use crate::store::Store;

/// Flows one request names at most (a reply carries the request).
pub const MAX_FLOWS: usize = 16;

/// What to fetch.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Flows by their ends, in the window.
    Flows(Vec<FlowEnds>),
    /// The flows a query finds in the window (their times narrow it).
    Query(String),
    /// Every packet the tap kept in the window.
    Window,
}

pub struct Options {
    pub store: PathBuf,
    pub tap: String,
    pub selection: Selection,
    pub since_ms: u64,
    pub until_ms: u64,
    pub output: PathBuf,
    pub timeout: Duration,
    /// Keep every packet of the flows from now on (past the cut-off).
    pub flag: bool,
    pub networks: Option<Networks>,
}

fn end(text: &str) -> Result<(IpAddr, u16), String> {
    let sa: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not ADDRESS:PORT ([v6]:port)"))?;
    Ok((sa.ip(), sa.port()))
}

/// Parses `PROTO SRC:PORT DST:PORT` ("tcp 10.0.0.2:40000 10.0.0.1:80").
pub fn parse_flow(text: &str) -> Result<FlowEnds, String> {
    let parts: Vec<&str> = text.split_whitespace().filter(|p| *p != "->").collect();
    let [proto, a, b] = parts[..] else {
        return Err(format!(
            "--flow {text:?}: expected PROTO SRC:PORT DST:PORT, e.g. \"tcp 10.0.0.2:40000 10.0.0.1:80\""
        ));
    };
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "icmp" => 1,
        "icmpv6" => 58,
        n => n
            .parse()
            .map_err(|_| format!("--flow: unknown protocol {proto:?}"))?,
    };
    Ok(FlowEnds {
        proto,
        a: end(a)?,
        b: end(b)?,
    })
}

/// The flows a query finds (at most MAX_FLOWS, newest first) and the span
/// of their times.
fn query_flows(store: &Store, o: &Options, q: &str) -> Result<(Vec<FlowEnds>, u64, u64), String> {
    let expr = crate::query::parse(q).map_err(|e| e.to_string())?;
    let networks = store.networks(o.networks.clone())?;
    let scope = Scope {
        since_ms: o.since_ms,
        until_ms: o.until_ms,
        networks: &networks,
    };
    let start = Field::parse("start_ms").ok_or("no start_ms field")?;
    let (total, found) = store.page(&expr, &scope, start, true, 0, 1000)?;
    let found: Vec<_> = found.into_iter().filter(|f| f.tap == o.tap).collect();
    if found.is_empty() {
        return Err(format!(
            "the query finds no flow of tap {} in the window ({total} of any tap)",
            o.tap
        ));
    }
    if found.len() > MAX_FLOWS {
        return Err(format!(
            "the query finds {} flows of tap {}; a fetch takes {MAX_FLOWS} at most: narrow it",
            found.len(),
            o.tap
        ));
    }
    let since = found.iter().map(|f| f.record.start_ms).min().unwrap_or(0);
    let until = found.iter().map(|f| f.record.end_ms).max().unwrap_or(0);
    let flows = found
        .iter()
        .map(|f| FlowEnds {
            proto: f.record.proto,
            a: (f.record.src.addr, f.record.src.port),
            b: (f.record.dst.addr, f.record.dst.port),
        })
        .collect();
    Ok((flows, since, until))
}

/// A flow's ends as the comments and messages write them.
pub struct FlowEndsText<'a>(pub &'a FlowEnds);

impl std::fmt::Display for FlowEndsText<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let f = self.0;
        let name = pitap_wire::proto_name(f.proto)
            .map(str::to_string)
            .unwrap_or_else(|| f.proto.to_string());
        write!(
            out,
            "{name} {} -> {}",
            SocketAddr::new(f.a.0, f.a.1),
            SocketAddr::new(f.b.0, f.b.1)
        )
    }
}

fn describe(flows: &[FlowEnds]) -> String {
    flows
        .iter()
        .map(|f| FlowEndsText(f).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new fetch (random id) of `flows` in a window, not yet stored.
pub fn new_fetch(
    tap: &str,
    flows: Vec<FlowEnds>,
    since_ms: u64,
    until_ms: u64,
    flag: bool,
    comment: String,
    output: Option<String>,
) -> Result<Fetch, String> {
    let id = u64::from_le_bytes(crate::keygen::random_bytes::<8>()?) >> 1;
    Ok(Fetch {
        id,
        tap: tap.to_string(),
        request: PacketRequest {
            id,
            flows,
            since_ms,
            until_ms,
            flag,
            have: 0,
        },
        comment,
        done: false,
        boot: None,
        total: None,
        packets: 0,
        left_out: 0,
        output,
    })
}

/// Puts a fetch in the store for the collector to carry out; returns it.
pub fn request(o: &Options) -> Result<Fetch, String> {
    let store = Store::open_existing(&o.store)?;
    let (flows, since, until) = match &o.selection {
        Selection::Flows(f) => (f.clone(), o.since_ms, o.until_ms),
        Selection::Query(q) => query_flows(&store, o, q)?,
        Selection::Window => (Vec::new(), o.since_ms, o.until_ms),
    };
    if flows.len() > MAX_FLOWS {
        return Err(format!(
            "{} flows; a fetch takes {MAX_FLOWS} at most",
            flows.len()
        ));
    }
    let what = if flows.is_empty() {
        "every packet kept".to_string()
    } else {
        format!("flow {}", describe(&flows))
    };
    let comment = format!(
        "pitap: packets from tap {}: {what}, {} to {}",
        o.tap,
        pitap_wire::format::time_text(since, 'T'),
        pitap_wire::format::time_text(until.min(i64::MAX as u64), 'T'),
    );
    let fetch = new_fetch(&o.tap, flows, since, until, o.flag, comment, None)?;
    fetches::insert(store.conn(), &fetch, crate::search::now_ms())?;
    Ok(fetch)
}

/// `pitap pcap`: requests, waits, writes the file; returns the packets.
pub fn run(o: &Options) -> Result<u64, String> {
    let fetch = request(o)?;
    let store = Store::open_existing(&o.store)?;
    let started = Instant::now();
    let mut progress = Progress::stderr("fetching").counting("chunks received");
    loop {
        let now = fetches::get(store.conn(), fetch.id)?
            .ok_or("the fetch went from the store (another pitap deleted it)")?;
        if now.done {
            let bytes = crate::fetching::pcapng_file(&store, &now)?;
            write(&o.output, &bytes)?;
            progress.finish();
            let left = match now.left_out {
                0 => String::new(),
                n => format!(" ({n} more left out: an answer is 32 MiB at most)"),
            };
            eprintln!(
                "pitap: {} packets from tap {} in {}{left}",
                now.packets,
                o.tap,
                o.output.display()
            );
            return Ok(now.packets);
        }
        if started.elapsed() >= o.timeout {
            store
                .conn()
                .execute("DELETE FROM fetches WHERE id = ?1", [fetch.id as i64])
                .map_err(|e| e.to_string())?;
            return Err(format!(
                "tap {} did not answer in {} s: is `pitap collect` running with this store, and is the tap connected?",
                o.tap,
                o.timeout.as_secs()
            ));
        }
        let have = fetches::have(store.conn(), fetch.id)?;
        progress.update(have, now.total.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
