//! `pitap collect`: the socket loop around the collector core. Lines are
//! written and the state saved before batches are acknowledged, so a batch
//! acknowledged is a batch kept. The state file also records how long the
//! output file was at that moment: a collector killed between writing lines
//! and saving its state rolls those lines back when it restarts (their
//! batches were never acknowledged, the tap sends them again), so with an
//! output file and a state file every flow is written exactly once.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pitap_wire::envelope::Key;
use pitap_wire::format::{LineFormat, LineSink};
use pitap_wire::FlowSink;

use crate::alerts::Alerts;
use crate::collector::{Collector, Outcome};
use crate::export::Exporter;
use crate::fetching::Fetching;
use crate::flow::StoredFlow;
use crate::networks::Networks;
use crate::store::{Retention, Store, StoredFile};
use crate::taps::TapState;
use crate::updating::Updating;

pub struct Options {
    pub listen: SocketAddr,
    pub format: LineFormat,
    pub output: Option<PathBuf>,
    /// `[tls] ca_file`: the CAs https receivers are checked against.
    pub tls_ca: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub keys: BTreeMap<String, Key>,
    pub allow_plaintext: bool,
    pub until_final: bool,
    pub idle_exit: Option<Duration>,
    pub status_interval: Option<Duration>,
    /// The flow store (None: lines only).
    pub store: Option<PathBuf>,
    pub retention: Retention,
    pub networks: Networks,
    pub alerts: Vec<crate::alerts::AlertRule>,
    pub exports: crate::export::ExportSection,
}

/// Retention is applied this often.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Receive buffer asked of the kernel: room for bursts of a few thousand
/// batches while lines are being written.
const RECV_BUFFER: usize = 8 << 20;
/// What one datagram of a batch takes of the receive buffer, at most (the
/// kernel counts its buffers, not just the payload).
const BUFFER_PER_BATCH: usize = 4096;
/// Replies wait at most this long (or for this many batches) so that lines
/// and state are written once per group, not per batch; taps measure the
/// wait into their round trips.
const ACK_DELAY: Duration = Duration::from_millis(50);
const ACK_GROUP: usize = 64;
/// With a store, one transaction per group: each commit writes a segment
/// and its pages, so larger groups cost less per flow (the store bench
/// commits 1,024 batches, ~15,000 flows, at a time).
const STORE_ACK_DELAY: Duration = Duration::from_millis(200);
const STORE_ACK_GROUP: usize = 1024;
/// The loop looks at its timers at least this often.
const READ_TIMEOUT: Duration = Duration::from_millis(25);
/// A group is answered once the socket was this quiet (the taps sent what
/// their windows allow and wait for the reply)...
const IDLE_FLUSH: Duration = Duration::from_millis(10);
/// ...but not more often than this: a steady trickle of batches still
/// makes groups, not a commit per batch.
const MIN_GROUP_GAP: Duration = Duration::from_millis(20);
/// The taps' health goes into the store at most this often.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// `--until-final`: a finished tap quiet this long is done even without a
/// goodbye; nobody is kept longer than FINAL_LINGER after the final batch.
/// Five of its longest probe timeouts: the reply to its final batch can be
/// lost, and then its probes too, several in a row on a lossy path (one
/// timeout was too short at 30 % loss each way: the collector left while
/// the tap still waited).
const FINAL_QUIET: Duration = Duration::from_millis(5 * pitap_wire::messages::MAX_PROBE_MS);
const FINAL_LINGER: Duration = Duration::from_secs(60);

/// Hellos and refused datagrams are answered at once, but a flood of them
/// makes at most one extra group this often.
const URGENT_EVERY: Duration = Duration::from_millis(5);

/// The socket, and the batches its receive buffer holds (the window taps
/// are told).
fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, u32)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel caps this at net.core.rmem_max; a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&addr.into())?;
    let room = socket.recv_buffer_size().unwrap_or(212_992) / BUFFER_PER_BATCH;
    Ok((socket.into(), room.clamp(16, 8192) as u32))
}

fn ago(t: Option<SystemTime>) -> String {
    match t.and_then(|t| t.elapsed().ok()) {
        Some(d) => format!("{}s ago", d.as_secs()),
        None => "never".into(),
    }
}

/// One tap's status line.
pub fn status_line(id: &str, t: &TapState) -> String {
    let (missing, boot) = match &t.current {
        Some(b) => (
            b.missing(),
            b.boot[..4]
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>(),
        ),
        None => (0, "-".into()),
    };
    let lost = t.current.as_ref().map_or(0, |b| b.lost);
    let mut line = format!(
        "tap {id}: boot {boot}, {} batches, {} records, {} duplicates, {} waiting, {} lost (tap gave up), {} reboots ({} lost before), last seen {}",
        t.batches,
        t.records,
        t.duplicates,
        missing,
        lost,
        t.reboots,
        t.lost_before_reboot,
        ago(t.last_seen),
    );
    if let Some(h) = &t.health {
        let ring_drops: u64 = h.ports.iter().map(|p| p.ring_drops).sum();
        let links: Vec<String> = h
            .ports
            .iter()
            .map(|p| format!("{}:{}", p.port, if p.carrier { "up" } else { "down" }))
            .collect();
        let clock = if h.clock.synced {
            format!(
                "clock synced by {} {:+} ms (within {} us, {} steps)",
                h.clock.source, h.clock.offset_ms, h.clock.uncertainty_us, h.clock.steps
            )
        } else if h.clock.source == "capture" {
            "clock from the capture".to_string()
        } else {
            "clock UNSYNCED".to_string()
        };
        line.push_str(&format!(
            "; fw {}, up {}s, links {}, {} frames, {} ring drops, flows {}/{}, {} evicted, buffer {}/{}, {} retransmitted, {clock}",
            h.version,
            h.uptime_s,
            links.join(" "),
            h.frames,
            ring_drops,
            h.flows_active,
            h.flows_capacity,
            h.evictions,
            h.buffer_batches,
            h.buffer_capacity,
            h.uplink.retransmits,
        ));
    }
    line
}

/// What the state file holds.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SavedState {
    /// Length of the output file when this state was saved.
    output_len: Option<u64>,
    taps: BTreeMap<String, TapState>,
}

struct Loop {
    socket: UdpSocket,
    collector: Collector,
    sink: LineSink<Box<dyn Write>>,
    output: Option<PathBuf>,
    /// The output file as opened (its length is measured on it, not on the
    /// path, which logrotate may have moved).
    output_file: Option<std::fs::File>,
    state: Option<PathBuf>,
    /// Batches received since the last flush.
    group: usize,
    /// Batches the receive buffer holds.
    window: u32,
    last_flush: Instant,
    /// Flows received since the last flush, enriched.
    pending: Vec<StoredFlow>,
    /// File records arrived with the pending flows.
    pending_files: Vec<StoredFile>,
    /// Packet fetches waiting for taps' answers.
    fetching: Fetching,
    /// Updates offered to taps, and the taps' update status.
    updating: Updating,
    networks: Networks,
    store: Option<Store>,
    retention: Retention,
    last_retention: Instant,
    alerts: Alerts,
    exporters: Vec<Box<dyn Exporter>>,
    /// Flows stored so far, and (tests only) the count past which the
    /// collector kills itself just before committing.
    flows_committed: u64,
    kill_before_commit_at: Option<u64>,
    /// When the taps' health last went into the store (for the web UI).
    last_health: Option<Instant>,
}

impl Loop {
    /// Lines out, flows and state stored (one transaction), state file
    /// saved, then the replies (which acknowledge what is stored); alerts
    /// and exports last.
    fn flush(&mut self) -> Result<(), String> {
        self.sink
            .flush()
            .map_err(|e| format!("writing flows: {e}"))?;
        if self.kill_before_commit_at.is_some_and(|at| {
            !self.pending.is_empty() && self.flows_committed + self.pending.len() as u64 > at
        }) {
            kill_self();
        }
        self.save_state(self.group > 0 || !self.pending.is_empty())?;
        self.flows_committed += self.pending.len() as u64;
        if let Some(store) = &self.store {
            // Saved before the next load: an offer ended here is not
            // taken up again from its row.
            if self.updating.dirty() {
                self.updating.save(store.conn(), crate::search::now_ms())?;
            }
            self.updating.load(store)?;
            self.fetching.load(store)?;
            let mut requests = self.fetching.requests();
            let taps: Vec<String> = self.collector.requesting().map(str::to_string).collect();
            for tap in taps {
                requests.entry(tap).or_default();
            }
            for (tap, list) in requests {
                self.collector.set_requests(&tap, list);
            }
        }
        for (reply, to) in self.collector.take_replies(self.window) {
            // A lost reply costs nothing: the next one says it all.
            let _ = self.socket.send_to(&reply, to);
        }
        self.group = 0;
        if !self.alerts.is_empty() {
            for flow in &self.pending {
                self.alerts.observe(flow);
            }
            self.order_pcaps()?;
        }
        for exporter in &mut self.exporters {
            exporter.export(&self.pending);
        }
        self.pending.clear();
        self.pending_files.clear();
        if let Some(store) = &mut self.store {
            if self.last_retention.elapsed() >= RETENTION_EVERY {
                self.last_retention = Instant::now();
                let deleted = store.apply_retention(self.retention, crate::search::now_ms())?;
                if deleted > 0 {
                    eprintln!("pitap: retention removed {deleted} flows from the store");
                }
            }
        }
        if self.last_health.is_none_or(|t| t.elapsed() >= HEALTH_EVERY) {
            self.save_health()?;
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// The packet fetches alerts ordered, into the store's requests.
    fn order_pcaps(&mut self) -> Result<(), String> {
        let orders = self.alerts.take_pcap_orders();
        let Some(store) = &self.store else {
            if !orders.is_empty() {
                eprintln!("pitap: alert pcap actions need a store (not --no-store)");
            }
            return Ok(());
        };
        for o in orders {
            if let Some(dir) = o.output.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let fetch = crate::pcap_fetch::new_fetch(
                &o.tap,
                vec![o.flow],
                o.since_ms,
                o.until_ms,
                true,
                o.comment,
                Some(o.output.display().to_string()),
            )?;
            crate::store::fetches::insert(store.conn(), &fetch, crate::search::now_ms())?;
        }
        Ok(())
    }

    /// What each tap last said of itself and when, for `pitap serve`.
    fn save_health(&mut self) -> Result<(), String> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        self.last_health = Some(Instant::now());
        let by_tap: serde_json::Map<String, serde_json::Value> = self
            .collector
            .taps()
            .iter()
            .map(|(id, t)| {
                let seen = t.last_seen.and_then(|s| {
                    s.duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_millis() as u64)
                });
                (
                    id.clone(),
                    serde_json::json!({ "last_seen_ms": seen, "health": t.health }),
                )
            })
            .collect();
        store.save_health(&serde_json::Value::Object(by_tap).to_string())
    }

    /// Saves the state (with the output file's length): into the store
    /// with the pending flows in one transaction (`commit`: there is
    /// something to commit), and into the state file.
    fn save_state(&mut self, commit: bool) -> Result<(), String> {
        if self.state.is_none() && self.store.is_none() {
            return Ok(());
        }
        let output_len = match &self.output_file {
            Some(file) => Some(
                file.metadata()
                    .map_err(|e| format!("the output file: {e}"))?
                    .len(),
            ),
            None => None,
        };
        let saved = SavedState {
            output_len,
            taps: self.collector.taps().clone(),
        };
        let text = serde_json::to_string(&saved).map_err(|e| e.to_string())?;
        if let Some(store) = &mut self.store {
            if commit {
                let fetching = &mut self.fetching;
                store.commit_with(&self.pending, &self.pending_files, Some(&text), |conn| {
                    fetching.commit(conn)
                })?;
                self.fetching.write_outputs(store)?;
            }
        }
        if let Some(path) = &self.state {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn print_status(&self) {
        for (id, t) in self.collector.taps() {
            if t.current.is_some() {
                eprintln!("pitap: {}", status_line(id, t));
            }
        }
    }

    /// Datagrams refused so far, by reason, on one line.
    fn print_refusals(&self) {
        let rejected = self.collector.rejected();
        if !rejected.is_empty() {
            let parts: Vec<String> = rejected
                .iter()
                .map(|(reason, n)| format!("{n} {}", reason.as_str()))
                .collect();
            eprintln!("pitap: refused so far: {}", parts.join(", "));
        }
    }
}

fn load_state(path: &PathBuf) -> Result<SavedState, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SavedState::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Tests only (`PITAP_TEST_KILL_BEFORE_COMMIT_AT=N`): a real SIGKILL at the
/// worst moment, lines written and nothing committed, by the commit that
/// would take the store past N flows.
fn kill_self() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort()
}

/// The output file, appended to, and a handle to measure it by.
fn open_output(path: &Path) -> Result<(Box<dyn Write>, std::fs::File), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let measure = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((Box::new(io::BufWriter::new(file)), measure))
}

impl Loop {
    /// After SIGHUP: everything so far is written and committed with the
    /// old file's length, the old file is finished (Zeek's `#close`), and
    /// lines go on in a file opened anew at the path, whose length the
    /// state then holds. Nothing is lost or written twice across the two.
    fn reopen_output(&mut self) -> Result<(), String> {
        let Some(path) = self.output.clone() else {
            return Ok(());
        };
        self.flush()?;
        let (out, file) = open_output(&path)?;
        self.sink
            .reopen(out)
            .map_err(|e| format!("finishing the old output: {e}"))?;
        self.output_file = Some(file);
        self.save_state(true)?;
        eprintln!("pitap: SIGHUP: reopened {}", path.display());
        Ok(())
    }
}

/// Cuts the output back to what the saved state covers.
fn roll_back(output: &PathBuf, committed: u64) -> Result<(), String> {
    let file = match OpenOptions::new().write(true).open(output) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", output.display())),
    };
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len > committed {
        file.set_len(committed)
            .map_err(|e| format!("{}: {e}", output.display()))?;
        eprintln!(
            "pitap: {}: rolled back {} bytes of lines whose batches were never acknowledged",
            output.display(),
            len - committed
        );
    }
    Ok(())
}

/// `pitap collect --check-config`: what `run` would refuse, refused here,
/// with no socket bound and no file written; a summary of what it would
/// run.
pub fn check(opts: &Options) -> Result<String, String> {
    if opts.keys.is_empty() && !opts.allow_plaintext {
        return Err("no tap keys: [taps.ID] key = ... (pitap keygen)".into());
    }
    let alerts = Alerts::new(&opts.alerts, opts.tls_ca.as_deref())?;
    opts.exports.check()?;
    Ok(format!(
        "listen {}, {} taps, {} networks, {} alert rules, store {}, output {}",
        opts.listen,
        opts.keys.len(),
        opts.networks.names().count(),
        alerts.rules(),
        opts.store
            .as_ref()
            .map_or_else(|| "none".into(), |p| p.display().to_string()),
        opts.output
            .as_ref()
            .map_or_else(|| "stdout".into(), |p| p.display().to_string()),
    ))
}

pub fn run(opts: Options) -> Result<(), String> {
    if opts.keys.is_empty() && !opts.allow_plaintext {
        return Err(
            "no tap keys: give --config collector.toml with [taps.ID] key = ... (pitap keygen), \
             or --insecure-plaintext for tests"
                .into(),
        );
    }
    let store = match &opts.store {
        Some(path) => {
            let mut store = Store::open(path)?;
            // Queries given no collector.toml follow the networks in use.
            store.save_networks(&opts.networks)?;
            Some(store)
        }
        None => None,
    };
    // With a store, the state committed with the rows is the one to trust;
    // a store that has none yet committed nothing.
    let saved = match (&store, &opts.state) {
        (Some(store), _) => match store.saved_state()? {
            Some(text) => serde_json::from_str(&text).map_err(|e| format!("store state: {e}"))?,
            None => SavedState::default(),
        },
        (None, Some(path)) => load_state(path)?,
        (None, None) => SavedState::default(),
    };
    let flows_committed = match &store {
        Some(store) => store.count()?,
        None => 0,
    };
    let alerts = Alerts::new(&opts.alerts, opts.tls_ca.as_deref())?;
    let exporters = crate::export::from_config(&opts.exports, opts.tls_ca.as_deref())?;
    if let (Some(out), Some(committed)) = (&opts.output, saved.output_len) {
        roll_back(out, committed)?;
    }
    let (socket, window) =
        bind(opts.listen).map_err(|e| format!("listen on {}: {e}", opts.listen))?;
    socket
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let (out, output_file) = match &opts.output {
        Some(path) => {
            let (out, file) = open_output(path)?;
            (out, Some(file))
        }
        None => (
            Box::new(io::BufWriter::new(io::stdout())) as Box<dyn Write>,
            None,
        ),
    };
    // SIGHUP: reopen the output file (logrotate moved it).
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
        .map_err(|e| format!("SIGHUP handler: {e}"))?;
    let mut collector = Collector::new(
        opts.keys.clone(),
        opts.allow_plaintext,
        crate::keygen::random_bytes::<16>()?,
        crate::keygen::random_bytes::<32>()?,
    );
    collector.restore(saved.taps);
    eprintln!(
        "pitap: collecting on {}",
        socket.local_addr().map_err(|e| e.to_string())?
    );
    let mut state = Loop {
        socket,
        collector,
        sink: {
            let sink = LineSink::new(out, "", opts.format);
            // Zeek's local_orig/local_resp follow the internal networks.
            if opts
                .networks
                .names()
                .any(|n| n == crate::networks::INTERNAL)
            {
                let networks = opts.networks.clone();
                sink.with_locality(Box::new(move |a| networks.is_internal(a)))
            } else {
                sink
            }
        },
        output: opts.output.clone(),
        output_file,
        state: opts.state.clone(),
        group: 0,
        window,
        last_flush: Instant::now(),
        pending: Vec::new(),
        pending_files: Vec::new(),
        fetching: Fetching::default(),
        updating: Updating::default(),
        networks: opts.networks.clone(),
        store,
        retention: opts.retention,
        last_retention: Instant::now(),
        alerts,
        exporters,
        flows_committed,
        kill_before_commit_at: std::env::var("PITAP_TEST_KILL_BEFORE_COMMIT_AT")
            .ok()
            .and_then(|v| v.parse().ok()),
        last_health: None,
    };
    // What the output file holds now is committed: a collector killed
    // before its first commit rolls back to here, not to nothing known.
    state.save_state(true)?;
    if let Some(path) = &opts.store {
        eprintln!("pitap: storing flows in {}", path.display());
    }
    for e in &state.exporters {
        eprintln!("pitap: exporting {}", e.describe());
    }
    let mut buf = vec![0u8; 65_536];
    let mut last_datagram = Instant::now();
    let mut last_status = Instant::now();
    let mut read_timeout = READ_TIMEOUT;
    let mut finished_at: Option<Instant> = None;
    loop {
        // With a group waiting, a short silence means the burst is over.
        let wanted = if state.group > 0 {
            IDLE_FLUSH
        } else {
            READ_TIMEOUT
        };
        if wanted != read_timeout {
            state
                .socket
                .set_read_timeout(Some(wanted))
                .map_err(|e| e.to_string())?;
            read_timeout = wanted;
        }
        let received = match state.socket.recv_from(&mut buf) {
            Ok(got) => Some(got),
            Err(e)
                if matches!(
                    e.kind(),
                    // Interrupted: a signal (SIGHUP) came during the wait.
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => return Err(format!("receive: {e}")),
        };
        if let Some((len, from)) = received {
            last_datagram = Instant::now();
            match state.collector.handle(&buf[..len], from, SystemTime::now()) {
                Outcome::Batch {
                    tap,
                    records,
                    files,
                    ..
                } => {
                    state.group += 1;
                    state.sink.set_tap(&tap);
                    for file in files {
                        state.pending_files.push(StoredFile {
                            tap: tap.clone(),
                            file,
                        });
                    }
                    for record in &records {
                        state.sink.emit(record);
                        state
                            .pending
                            .push(StoredFlow::new(tap.clone(), *record, &state.networks));
                    }
                }
                Outcome::Packets { tap, boot, chunk } => {
                    if state.fetching.chunk(&tap, &boot, chunk) {
                        state.group += 1;
                    }
                }
                Outcome::UpdateStatus {
                    tap,
                    boot,
                    from,
                    status,
                } => {
                    for data in state.updating.answer(&tap, boot, status) {
                        if let Some(datagram) = state.collector.seal_update(&tap, &data) {
                            let _ = state.socket.send_to(&datagram, from);
                        }
                    }
                }
                Outcome::Health { .. } | Outcome::Hello { .. } | Outcome::Goodbye { .. } => {}
                Outcome::Rejected(reason) => {
                    if state.collector.rejected().get(&reason) == Some(&1) {
                        eprintln!(
                            "pitap: rejected a datagram from {from}: {}",
                            reason.as_str()
                        );
                    }
                }
            }
        }
        let (delay, group) = if state.store.is_some() {
            (STORE_ACK_DELAY, STORE_ACK_GROUP)
        } else {
            (ACK_DELAY, ACK_GROUP)
        };
        let since = state.last_flush.elapsed();
        if state.group >= group
            || (state.group > 0 && since >= delay)
            || (state.group > 0 && received.is_none() && since >= MIN_GROUP_GAP)
            || (received.is_none() && since >= delay)
            || (state.collector.has_urgent_replies() && since >= URGENT_EVERY)
        {
            state.flush()?;
        }
        if hangup.swap(false, Ordering::Relaxed) {
            state.reopen_output()?;
        }
        if opts.until_final && state.collector.any_finished() {
            // The last replies may be lost: stay until the tap says goodbye,
            // or has been quiet longer than any of its probe timeouts.
            let finished = *finished_at.get_or_insert_with(Instant::now);
            if state.collector.any_gone()
                || last_datagram.elapsed() >= FINAL_QUIET
                || finished.elapsed() >= FINAL_LINGER
            {
                break;
            }
        }
        if opts.idle_exit.is_some_and(|d| last_datagram.elapsed() >= d) {
            break;
        }
        if opts
            .status_interval
            .is_some_and(|d| last_status.elapsed() >= d)
        {
            state.print_status();
            state.print_refusals();
            last_status = Instant::now();
        }
    }
    state.flush()?;
    state
        .sink
        .finish()
        .map_err(|e| format!("writing flows: {e}"))?;
    state.print_status();
    for e in &mut state.exporters {
        e.finish();
    }
    for e in &state.exporters {
        let (sent, errors) = e.counts();
        eprintln!("pitap: {}: {sent} sent, {errors} errors", e.describe());
    }
    if state.alerts.fired > 0 {
        eprintln!("pitap: {} alerts fired", state.alerts.fired);
    }
    for (reason, n) in state.collector.rejected() {
        eprintln!("pitap: rejected {n} datagrams: {}", reason.as_str());
    }
    Ok(())
}
