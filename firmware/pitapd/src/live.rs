//! The live tap: rings on the tap ports into the flow engine, flows out to
//! the sinks, on a loop that also expires flows, sends batches, reads the
//! kernel's counters and link states, and on SIGTERM/SIGINT flushes every
//! live flow before it exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pitap_flow_core::{FlowEngine, Frame, LinkType, PacketSource};
use pitap_wire::format::LineFormat;
use pitap_wire::TapPort;
use serde_json::json;

use std::net::SocketAddr;

use pitap_wire::messages::{ClockHealth, Health, PortHealth, UplinkHealth};

use crate::config::{parse_cidr, parse_mac, Config, Mode};
use crate::links::LinkMonitor;
use crate::ports::{self, TapPorts};
use crate::sinks::Sinks;
use crate::source::ring::RingSource;
use crate::stack::{Addressing, StackUdp};
use crate::status::state::{Snapshot, UplinkSnapshot};
use crate::status::{self, StatusPanel};
use crate::sys::ring::wait_readable;
use crate::uplink::{ClockMode, KernelUdp, Transport, Uplink};
use crate::watchdog::Watchdog;

/// Frames handled before the loop looks at its timers again.
const BUDGET: usize = 65_536;
/// How often the LEDs and the button are looked at.
const STATUS_TICK: Duration = Duration::from_millis(40);
/// Top talkers fade by half every this long.
const TALKER_WINDOW: Duration = Duration::from_secs(60);
/// How long a stopping tap waits for its last batches to be acknowledged.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(3);
/// Slack on top of the block timeout before a frame is taken out of order.
const HOLD_MARGIN_US: u64 = 20_000;
/// How often counters, links and the status file are refreshed.
const TICK: Duration = Duration::from_millis(250);

fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Frames to or from the tap's own MACs (its uplink, the replies to it) are
/// the tap's traffic, not the network's: never counted as a user flow.
fn is_own_traffic(frame: &Frame<'_>, own: &[[u8; 6]]) -> bool {
    frame.link == LinkType::Ethernet
        && frame.data.len() >= 12
        && own
            .iter()
            .any(|mac| frame.data[..6] == mac[..] || frame.data[6..12] == mac[..])
}

struct Tap {
    config: Config,
    ports: TapPorts,
    sources: Vec<RingSource>,
    links: LinkMonitor,
    engine: FlowEngine,
    sinks: Sinks,
    own_traffic: u64,
    started: Instant,
    last_health: Option<Instant>,
    panel: StatusPanel,
    config_errors: Option<String>,
    board: String,
    last_decay: Instant,
    watchdog: Option<Watchdog>,
    /// The counters as last read (`refresh_counters`).
    counters: Health,
    /// Ring drops already told to the engine.
    drops_noted: u64,
}

impl Tap {
    /// Takes what is ready from the rings, oldest frame first across all
    /// of them: each ring hands over its blocks on its own schedule, and a
    /// reply on one port must not reach the engine before its request on the
    /// other (the initiator is decided by who came first). A frame newer than
    /// the block timeout waits while another ring may still hold older ones
    /// in a block the kernel has not handed over yet, unless its own ring is
    /// half full (waiting longer would drop frames; order yields to loss);
    /// at shutdown (`everything`) nothing waits.
    ///
    /// Returns how long the oldest held frame still has to wait, if one does.
    fn drain(&mut self, everything: bool) -> Result<Option<Duration>, String> {
        let hold_us = u64::from(self.config.capture.block_timeout_ms) * 1000 + HOLD_MARGIN_US;
        for _ in 0..BUDGET {
            let mut oldest: Option<(usize, u64)> = None;
            let mut some_idle = false;
            for (i, source) in self.sources.iter_mut().enumerate() {
                match source.peek_ts_us() {
                    Some(ts) if oldest.is_none_or(|(_, t)| ts < t) => oldest = Some((i, ts)),
                    Some(_) => {}
                    None => some_idle = true,
                }
            }
            let Some((i, ts)) = oldest else {
                return Ok(None);
            };
            let now = wall_clock_us();
            if some_idle && !everything && ts + hold_us > now && !self.sources[i].under_pressure() {
                return Ok(Some(Duration::from_micros(ts + hold_us - now)));
            }
            let source = &mut self.sources[i];
            match source.next_frame() {
                Ok(Some(frame)) => {
                    if is_own_traffic(&frame, &self.ports.own_macs) {
                        self.own_traffic += 1;
                    } else {
                        self.engine.process(&frame, &mut self.sinks);
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(format!("reading port {:?}: {e}", source.port())),
            }
        }
        Ok(None)
    }

    fn tick(&mut self) {
        self.engine.expire(wall_clock_us(), &mut self.sinks);
        self.sinks.tick();
        let was_synced = self.counters.clock.synced;
        self.refresh_counters();
        let c = &self.counters.clock;
        if c.synced && !was_synced {
            eprintln!(
                "pitapd: clock synchronised by the {}: {:+} ms on the kernel's clock (within {} us)",
                c.source, c.offset_ms, c.uncertainty_us
            );
        }
        let health_every = Duration::from_secs(self.config.uplink.health_interval_s);
        if self.last_health.is_none_or(|t| t.elapsed() >= health_every) {
            self.send_health();
        }
        if self.last_decay.elapsed() >= TALKER_WINDOW {
            self.sinks.talkers.decay();
            self.last_decay = Instant::now();
        }
        self.write_status();
    }

    fn send_health(&mut self) {
        if let Some(u) = &mut self.sinks.uplink {
            u.send_health(&self.counters);
        }
        self.last_health = Some(Instant::now());
    }

    /// Reads the tap's counters once: the kernel's ring statistics, the
    /// links, the engine and the uplink. The display, the health report and
    /// the status file are all views of `self.counters`.
    fn refresh_counters(&mut self) {
        for source in &mut self.sources {
            if let Err(e) = source.update_counters() {
                eprintln!("pitapd: ring statistics of port {:?}: {e}", source.port());
            }
        }
        // Flows open now may have missed the frames the rings dropped.
        let drops: u64 = self.sources.iter().map(|s| s.counters().ring_drops).sum();
        if drops > self.drops_noted {
            self.engine.note_ring_drops(drops - self.drops_noted);
            self.drops_noted = drops;
        }
        self.links.refresh();
        let s = self.engine.stats();
        let u = self.sinks.uplink_counters();
        let uplink = self.sinks.uplink.as_ref();
        self.counters = Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            frames: s.frames,
            bytes: s.bytes,
            anomalies: pitap_flow_core::Anomaly::ALL
                .iter()
                .filter(|a| s.anomaly(**a) > 0)
                .map(|a| (a.as_str().to_string(), s.anomaly(*a)))
                .collect(),
            flows_active: self.engine.active_flows() as u64,
            flows_capacity: self.engine.config().capacity as u64,
            evictions: s.evictions,
            own_traffic_frames: self.own_traffic,
            ports: self
                .sources
                .iter()
                .zip(&self.links.states)
                .map(|(src, link)| {
                    let c = src.counters();
                    PortHealth {
                        port: src.port().as_str().to_string(),
                        name: link.name.clone(),
                        carrier: link.carrier,
                        admin_up: link.admin_up,
                        speed_mbps: link.speed_mbps,
                        frames: c.frames,
                        bytes: c.bytes,
                        ring_drops: c.ring_drops,
                        ring_freezes: c.ring_freezes,
                        bad_ring_entries: c.bad_entries,
                    }
                })
                .collect(),
            buffer_batches: u.pending,
            buffer_capacity: uplink.map_or(0, |u| u.buffer_capacity() as u64),
            dropped_batches: u.dropped,
            link_propagation_events: self.links.propagation_events,
            clock: uplink.map_or_else(ClockHealth::default, Uplink::clock_health),
            uplink: uplink.map_or_else(UplinkHealth::default, Uplink::uplink_health),
        };
    }

    /// What the status LEDs and display need: the counters, and what only
    /// the display shows.
    fn snapshot(&self) -> Snapshot {
        let h = &self.counters;
        let mac = self
            .ports
            .own_macs
            .last()
            .map(pitap_wire::format::mac_text)
            .unwrap_or_default();
        Snapshot {
            tap_id: self.config.tap.id.clone(),
            version: h.version.clone(),
            board: self.board.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            ports: h.ports.clone(),
            flows_active: self.engine.active_flows() as u64,
            flows_capacity: h.flows_capacity,
            malformed: self.engine.stats().dropped(),
            evictions: h.evictions,
            uplink: self.sinks.uplink.as_ref().map(|u| {
                let c = u.counters();
                UplinkSnapshot {
                    last_ack_ms_ago: u.last_ack().map(|t| t.elapsed().as_millis() as u64),
                    pending: c.pending,
                    dropped: c.dropped,
                    send_errors: c.send_errors,
                }
            }),
            clock: h.clock.clone(),
            address: self
                .sinks
                .uplink
                .as_ref()
                .and_then(|u| u.address())
                .unwrap_or_default(),
            mac,
            talkers: self.sinks.talkers.top(5),
            config_error: self.config_errors.is_some(),
        }
    }

    /// The status file: the counters, and what only the file shows.
    fn status(&self) -> serde_json::Value {
        let h = &self.counters;
        let s = self.engine.stats();
        let anomalies: serde_json::Map<String, serde_json::Value> = pitap_flow_core::Anomaly::ALL
            .iter()
            .map(|a| (a.as_str().to_string(), json!(s.anomaly(*a))))
            .collect();
        let u = self.sinks.uplink_counters();
        let uplink = self.sinks.uplink.as_ref();
        json!({
            "tap_id": self.config.tap.id,
            "version": h.version,
            "mode": match self.config.tap.mode { Mode::Inline => "inline", Mode::Span => "span" },
            "uptime_s": h.uptime_s,
            "ports": h.ports,
            "own_traffic_frames": h.own_traffic_frames,
            "link_propagation_events": h.link_propagation_events,
            "watchdog": self.watchdog.as_ref().map(|w| json!({ "feeds": w.feeds, "healthy": w.healthy })),
            "clock": h.clock,
            "engine": {
                "frames": h.frames,
                "bytes": h.bytes,
                "ip_frames": s.ip_frames,
                "dropped": s.dropped(),
                "anomalies": anomalies,
                "flows_active": h.flows_active,
                "flows_capacity": h.flows_capacity,
                "flows_created": s.flows_created,
                "records": s.records,
                "evictions": h.evictions,
            },
            "uplink": {
                "transport": uplink.map(Uplink::describe),
                "batches": u.batches,
                "records": u.records,
                "transmissions": u.transmissions,
                "acked": u.acked,
                "pending": u.pending,
                "in_flight": u.in_flight,
                "retransmits": u.retransmits,
                "dropped_batches": u.dropped,
                "send_errors": u.send_errors,
                "hellos": u.hellos,
                "round_trip_ms": uplink.and_then(Uplink::round_trip).map(|d| d.as_secs_f64() * 1e3),
                "rto_ms": h.uplink.rto_ms,
                "window": h.uplink.window,
                "challenge_after_ms": uplink.and_then(Uplink::challenge_after).map(|d| d.as_secs_f64() * 1e3),
                "refused_replies": uplink.map(|u| u.refused().map(|(r, n)| (r.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>()),
                "last_ack_s_ago": uplink.and_then(Uplink::last_ack).map(|t| t.elapsed().as_secs()),
                "last_sync_s_ago": uplink.and_then(Uplink::last_sync).map(|t| t.elapsed().as_secs()),
            },
        })
    }

    /// Writes the status file atomically (a reader never sees half of it).
    fn write_status(&self) {
        let Some(path) = &self.config.tap.status_file else {
            return;
        };
        let tmp = format!("{path}.tmp");
        let text = self.status().to_string();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            eprintln!("pitapd: status file {path}: {e}");
        }
    }
}

/// The uplink the configuration asks for: the kernel's UDP, or the user-space
/// stack on a raw interface (whose MAC is then the tap's own traffic too).
fn open_uplink(config: &Config, ports: &mut TapPorts) -> Result<Option<Uplink>, String> {
    let (Some(collector), Some(settings)) = (config.collector(), config.uplink_settings()) else {
        return Ok(None);
    };
    let transport: Box<dyn Transport> = match &config.uplink.stack {
        None => {
            Box::new(KernelUdp::open(collector).map_err(|e| format!("uplink to {collector}: {e}"))?)
        }
        Some(stack) => {
            let mac = parse_mac(&stack.mac).ok_or("uplink.stack.mac: not a MAC")?;
            let addressing = if stack.address == "dhcp" {
                Addressing::Dhcp
            } else {
                let (address, prefix) =
                    parse_cidr(&stack.address).ok_or("uplink.stack.address: not ADDRESS/PREFIX")?;
                Addressing::Static {
                    address,
                    prefix,
                    gateway: stack.gateway.as_ref().and_then(|g| g.parse().ok()),
                }
            };
            let SocketAddr::V4(collector) = collector else {
                return Err("uplink.collector: the uplink stack speaks IPv4".into());
            };
            if !ports.names.contains(&stack.interface) {
                crate::ports::prepare_uplink_port(&stack.interface)?;
            }
            let transport = StackUdp::open(&stack.interface, mac, addressing, collector)
                .map_err(|e| format!("uplink stack on {}: {e}", stack.interface))?;
            ports.own_macs.push(mac);
            Box::new(transport)
        }
    };
    Uplink::new(transport, settings).map(Some)
}

pub fn run(
    config: Config,
    print: Option<LineFormat>,
    config_errors: Option<String>,
) -> Result<(), String> {
    if let Some(e) = &config_errors {
        eprintln!("pitapd: running a fallback configuration; the configured one has errors:\n{e}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let ports = ports::setup(&config)?;
    let mut sources = Vec::new();
    for (i, name) in ports.names.iter().enumerate() {
        let port = if i == 0 { TapPort::A } else { TapPort::B };
        let source = RingSource::open(name, config.ring(), port)
            .map_err(|e| format!("capture on {name}: {e}"))?;
        sources.push(source);
    }
    let links = LinkMonitor::new(
        &ports.names,
        config.tap.link_propagation && config.tap.mode == Mode::Inline,
    )
    .map_err(|e| format!("link monitor: {e}"))?;
    let engine = FlowEngine::new(
        config
            .engine(crate::uplink::new_boot_id())
            .map_err(|e| e.to_string())?,
    );
    let mut ports = ports;
    let uplink = open_uplink(&config, &mut ports)?;
    let mut sinks = Sinks::new(print, &config.tap.id, uplink, ClockMode::Sync);
    sinks.track_talkers = true;
    eprintln!(
        "pitapd: tapping {} ({} mode{})",
        ports.names.join(" + "),
        match config.tap.mode {
            Mode::Inline => "inline",
            Mode::Span => "span",
        },
        match config.tap.mode {
            Mode::Inline if ports.adopted => format!(", bridge {} adopted", config.tap.bridge),
            Mode::Inline => format!(", bridge {}", config.tap.bridge),
            Mode::Span => String::new(),
        }
    );
    let panel = {
        let hw = status::open(
            &config.status_backend().map_err(|e| e.to_string())?,
            config.status.pinmap.as_deref().map(std::path::Path::new),
        )?;
        // Button timing from the pin map; its usual values if it is unreadable
        // (status::open has said so already).
        let (debounce, long) =
            status::pinmap::PinMap::load(config.status.pinmap.as_deref().map(std::path::Path::new))
                .map_or((30, 1500), |m| {
                    (m.button.debounce_ms, m.button.long_press_ms)
                });
        StatusPanel::new(hw, debounce, long)
    };
    eprintln!("pitapd: status: {}", panel.describe());
    let board = std::fs::read_to_string("/proc/device-tree/model")
        .map(|m| m.trim_end_matches('\0').to_string())
        .unwrap_or_else(|_| "Linux".to_string());
    let mut tap = Tap {
        config,
        ports,
        sources,
        links,
        engine,
        sinks,
        own_traffic: 0,
        started: Instant::now(),
        last_health: None,
        panel,
        config_errors,
        board,
        last_decay: Instant::now(),
        watchdog: None,
        counters: Health::default(),
        drops_noted: 0,
    };
    tap.watchdog = Watchdog::open(&tap.config);
    tap.refresh_counters();
    tap.write_status();
    let mut next_tick = Instant::now() + TICK;
    let mut next_status = Instant::now();
    let mut held: Option<Duration> = None;
    while !stop.load(Ordering::Relaxed) {
        let until_tick = next_tick
            .min(next_status)
            .saturating_duration_since(Instant::now());
        match held {
            // A held frame keeps its ring readable: poll would return at
            // once, so wait for the hold (or the other ring) by sleeping.
            Some(wait) => std::thread::sleep(wait.min(until_tick).min(Duration::from_millis(5))),
            None => {
                let fds: Vec<_> = tap.sources.iter().map(RingSource::fd).collect();
                wait_readable(&fds, until_tick.as_millis().min(100) as i32)
                    .map_err(|e| format!("poll: {e}"))?;
            }
        }
        held = tap.drain(false)?;
        if Instant::now() >= next_tick {
            tap.tick();
            if let Some(w) = &mut tap.watchdog {
                w.tick();
            }
            next_tick = Instant::now() + TICK;
        }
        if Instant::now() >= next_status {
            let snapshot = tap.snapshot();
            tap.panel.tick(&snapshot);
            next_status = Instant::now() + STATUS_TICK;
        }
    }
    // Frames in a block the kernel has not retired yet become visible only
    // when the block times out: wait that long once, reading as blocks
    // come, so the last frames before a stop are in the last records.
    let retire = Duration::from_millis(u64::from(tap.config.capture.block_timeout_ms) + 20);
    let until = Instant::now() + retire;
    while Instant::now() < until {
        let fds: Vec<_> = tap.sources.iter().map(RingSource::fd).collect();
        wait_readable(&fds, 10).map_err(|e| format!("poll: {e}"))?;
        tap.drain(true)?;
    }
    // What the rings still hold belongs in the last records.
    while tap.sources.iter_mut().any(|s| s.peek_ts_us().is_some()) {
        tap.drain(true)?;
    }
    // The last counters: the rings' last drops mark the flows still open,
    // and the collector hears them in a last health report.
    tap.refresh_counters();
    tap.send_health();
    tap.engine.flush(&mut tap.sinks);
    if let Err(e) = tap
        .sinks
        .finish(wall_clock_us() / 1000, Some(SHUTDOWN_ACK_WAIT))
    {
        eprintln!("pitapd: {e}");
    }
    tap.links.restore();
    if let Some(w) = &mut tap.watchdog {
        w.disarm();
    }
    tap.refresh_counters();
    tap.write_status();
    if let Some(u) = &tap.sinks.uplink {
        eprintln!("{}", crate::summary::uplink(u));
    }
    eprintln!(
        "{}",
        crate::summary::engine(&tap.ports.names.join("+"), tap.engine.stats())
    );
    for source in &tap.sources {
        let c = source.counters();
        eprintln!(
            "pitapd: port {}: {} frames, {} bytes, {} ring drops, {} ring freezes",
            source.port().as_str(),
            c.frames,
            c.bytes,
            c.ring_drops,
            c.ring_freezes
        );
    }
    eprintln!(
        "pitapd: own traffic: {} frames not counted",
        tap.own_traffic
    );
    Ok(())
}
