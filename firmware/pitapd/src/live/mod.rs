//! The live tap: rings on the tap ports into the flow engine, flows out to
//! the sinks. [`run`] sets up each part (ports, rings, links, engine,
//! uplink, status panel, watchdog), turns the loop
//! (`wait; drain; expire; flush; report; show`) until SIGTERM or SIGINT,
//! then stops: the rings' last frames and every live flow go out before it
//! exits. [`views`] holds the counters and what is made of them.

mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitap_flow_core::{EngineConfig, FlowEngine, Frame, LinkType, PacketSource};
use pitap_wire::format::LineFormat;
use pitap_wire::messages::Health;
use pitap_wire::TapPort;

use crate::config::{self, Config, Mode};
use crate::health::BridgeCheck;
use crate::links::LinkMonitor;
use crate::ports::{self, TapPorts};
use crate::sinks::Sinks;
use crate::source::ring::RingSource;
use crate::stack::StackUdp;
use crate::status::bypass::{Bypass, State as BypassState};
use crate::status::bypass_drive::Driver;
use crate::status::{self, StatusPanel};
use crate::sys::ring::wait_readable;
use crate::update::{Action, Updater};
use crate::uplink::{kernel_clock_us, ClockMode, KernelUdp, Transport, Uplink};
use crate::watchdog::Watchdog;
use pitap_wire::messages::UpdateState;

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
/// How often flows are expired, batches sent, counters, links and the
/// status file refreshed.
const TICK: Duration = Duration::from_millis(250);
/// The longest wait of a turn while an update image arrives.
const UPDATE_TURN: Duration = Duration::from_millis(5);

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
    bridge: BridgeCheck,
    bypass: Option<BypassBoard>,
    /// The counters as last read (`refresh_counters`).
    counters: Health,
    /// Ring drops already told to the engine.
    drops_noted: u64,
    /// Signed updates from the collector, with an `[update]` section.
    updater: Option<Updater>,
    /// Whether the tap was healthy at the last look (for a trial boot).
    healthy: bool,
    /// Set when the updater asks for a reboot: the loop ends, the tap
    /// stops cleanly, and then the machine restarts.
    reboot: Option<Action>,
}

/// The bypass board: when to hold its relays, and the edges that do.
struct BypassBoard {
    machine: Bypass,
    driver: Driver,
}

impl BypassBoard {
    fn open(config: &Config) -> Option<BypassBoard> {
        let s = &config.status;
        let map = s.pinmap.as_ref().ok()?;
        let section = map.bypass.as_ref()?;
        match status::open_bypass(&s.backend, map, section)? {
            Ok(line) => {
                let driver = Driver::start(line, section.hold_ms);
                eprintln!(
                    "pitapd: bypass: {}, inline after {} ms healthy; the relays stay released until then",
                    driver.describe(),
                    section.arm_ms
                );
                Some(BypassBoard {
                    machine: Bypass::new(section.arm_ms),
                    driver,
                })
            }
            Err(e) => {
                eprintln!("pitapd: bypass board: {e}; its relays stay released (the cable joined around the tap)");
                None
            }
        }
    }

    /// One look: the state machine decides, the driver holds or lets go.
    fn look(&mut self, now_ms: u64, healthy: bool) {
        let (state, changed) = self.machine.update(now_ms, healthy);
        self.driver.hold(state.energized());
        if changed {
            eprintln!(
                "pitapd: bypass: {}",
                describe(state, self.machine.arm_wait_ms())
            );
        }
    }

    fn stop(&mut self) {
        self.machine.stop();
        self.driver.release_and_wait();
        eprintln!("pitapd: bypass: {}", describe(BypassState::Stopped, 0));
    }

    fn status(&self) -> serde_json::Value {
        let state = self.machine.state();
        let fault = match state {
            BypassState::Released { fault, .. } => Some(fault.name()),
            _ => None,
        };
        serde_json::json!({
            "state": state.name(),
            "energized": state.energized(),
            "fault": fault,
            "arm_wait_ms": self.machine.arm_wait_ms(),
        })
    }
}

fn describe(state: BypassState, arm_wait_ms: u64) -> String {
    match state {
        BypassState::Starting => "starting: relays released, waiting for the bridge".into(),
        BypassState::Arming { .. } => {
            format!("arming: healthy, inline in {arm_wait_ms} ms if it stays so")
        }
        BypassState::Inline { .. } => "inline: relays energized, the tap is in the cable".into(),
        BypassState::Released { fault, .. } => format!(
            "released ({}): the cable is joined around the tap; next try after {arm_wait_ms} ms healthy",
            fault.name()
        ),
        BypassState::Stopped => "stopped: relays released, the cable is joined around the tap".into(),
    }
}

pub fn run(
    config: Config,
    print: Option<LineFormat>,
    config_errors: Option<String>,
) -> Result<(), String> {
    if let Some(e) = &config_errors {
        eprintln!("pitapd: running a fallback configuration; the configured one has errors:\n{e}");
    }
    let stop = stop_on_signals()?;
    let mut tap = Tap::open(config, print, config_errors)?;
    tap.turn_until(&stop)?;
    let reboot = tap.reboot;
    tap.stop()?;
    if let Some(Action::Reboot { tryboot }) = reboot {
        let command = tryboot.then_some(crate::sys::power::TRYBOOT);
        eprintln!(
            "pitapd: rebooting{}",
            command.map_or(String::new(), |c| format!(" with {c:?}"))
        );
        let e = crate::sys::power::restart(command);
        return Err(format!("reboot: {e}"));
    }
    Ok(())
}

/// Set when SIGTERM or SIGINT comes.
fn stop_on_signals() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    Ok(stop)
}

/// A ring on each tap port, A first.
fn open_rings(config: &Config, ports: &TapPorts) -> Result<Vec<RingSource>, String> {
    ports
        .names
        .iter()
        .zip([TapPort::A, TapPort::B])
        .map(|(name, port)| {
            RingSource::open(name, config.ring, port).map_err(|e| format!("capture on {name}: {e}"))
        })
        .collect()
}

fn open_links(config: &Config, ports: &TapPorts) -> Result<LinkMonitor, String> {
    LinkMonitor::new(
        &ports.names,
        config.tap.link_propagation && config.tap.mode == Mode::Inline,
    )
    .map_err(|e| format!("link monitor: {e}"))
}

/// The engine, its hash keyed with a value nobody on the wire knows.
fn open_engine(config: &Config) -> FlowEngine {
    FlowEngine::new(EngineConfig {
        hash_seed: crate::uplink::new_boot_id(),
        ..config.engine
    })
}

/// The uplink the configuration asks for: the kernel's UDP, or the user-space
/// stack on a raw interface (whose MAC is then the tap's own traffic too).
fn open_uplink(config: &Config, ports: &mut TapPorts) -> Result<Option<Uplink>, String> {
    let u = &config.uplink;
    let (Some(collector), Some(settings)) =
        (u.collector, u.settings(&config.tap.id, ClockMode::Sync))
    else {
        return Ok(None);
    };
    let transport: Box<dyn Transport> = match &u.stack {
        None => {
            Box::new(KernelUdp::open(collector).map_err(|e| format!("uplink to {collector}: {e}"))?)
        }
        Some(stack) => {
            let collector = config::stack_collector(collector)?;
            if !ports.names.contains(&stack.interface) {
                crate::ports::prepare_uplink_port(&stack.interface)?;
            }
            let transport =
                StackUdp::open(&stack.interface, stack.mac, stack.addressing, collector)
                    .map_err(|e| format!("uplink stack on {}: {e}", stack.interface))?;
            ports.own_macs.push(stack.mac);
            Box::new(transport)
        }
    };
    Uplink::new(transport, settings).map(Some)
}

/// The LEDs, display and button, with the button's timing from the pin map
/// (its usual values if the map is unreadable: `status::open` said so).
fn open_panel(config: &Config) -> Result<StatusPanel, String> {
    let s = &config.status;
    let hw = status::open(&s.backend, &s.pinmap)?;
    let (debounce, long) = s.pinmap.as_ref().map_or((30, 1500), |m| {
        (m.button.debounce_ms, m.button.long_press_ms)
    });
    let panel = StatusPanel::new(hw, debounce, long);
    eprintln!("pitapd: status: {}", panel.describe());
    Ok(panel)
}

fn board_name() -> String {
    std::fs::read_to_string("/proc/device-tree/model")
        .map(|m| m.trim_end_matches('\0').to_string())
        .unwrap_or_else(|_| "Linux".to_string())
}

/// When the loop's periodic work is due.
struct Timers {
    next_tick: Instant,
    next_status: Instant,
}

impl Timers {
    fn start() -> Timers {
        Timers {
            next_tick: Instant::now() + TICK,
            next_status: Instant::now(),
        }
    }

    fn until_next(&self) -> Duration {
        self.next_tick
            .min(self.next_status)
            .saturating_duration_since(Instant::now())
    }

    fn tick_due(&mut self) -> bool {
        let due = Instant::now() >= self.next_tick;
        if due {
            self.next_tick = Instant::now() + TICK;
        }
        due
    }

    fn status_due(&mut self) -> bool {
        let due = Instant::now() >= self.next_status;
        if due {
            self.next_status = Instant::now() + STATUS_TICK;
        }
        due
    }
}

impl Tap {
    /// Sets up every part, in the order each needs the last.
    fn open(
        config: Config,
        print: Option<LineFormat>,
        config_errors: Option<String>,
    ) -> Result<Tap, String> {
        let mut ports = ports::setup(&config)?;
        let sources = open_rings(&config, &ports)?;
        let links = open_links(&config, &ports)?;
        let engine = open_engine(&config);
        let uplink = open_uplink(&config, &mut ports)?;
        let mut sinks = Sinks::new(
            print.map(|f| (f, true, false)),
            &config.tap.id,
            uplink,
            ClockMode::Sync,
        );
        sinks.track_talkers = true;
        eprintln!(
            "pitapd: tapping {} ({} mode{})",
            ports.names.join(" + "),
            config.tap.mode.as_str(),
            match config.tap.mode {
                Mode::Inline if ports.adopted => format!(", bridge {} adopted", config.tap.bridge),
                Mode::Inline => format!(", bridge {}", config.tap.bridge),
                Mode::Span => String::new(),
            }
        );
        let panel = open_panel(&config)?;
        let bridge = BridgeCheck::new(&config);
        // A watchdog fed only while a bridge nobody can see is whole would
        // reset the board for good: none then, as before the check moved.
        let watchdog = if bridge.can_look() {
            Watchdog::open(&config)
        } else {
            eprintln!(
                "pitapd: no netlink socket to watch the bridge: running without the watchdog"
            );
            None
        };
        let bypass = BypassBoard::open(&config);
        let updater = config.update.clone().map(|settings| {
            let u = Updater::new(settings, env!("CARGO_PKG_VERSION"), Instant::now());
            let boot = u.boot();
            eprintln!(
                "pitapd: updates: {} (boot partition {}{}){}",
                u.state().as_str(),
                boot.partition,
                if boot.tryboot { ", trial boot" } else { "" },
                if u.detail().is_empty() {
                    String::new()
                } else {
                    format!(": {}", u.detail())
                }
            );
            u
        });
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
            board: board_name(),
            last_decay: Instant::now(),
            watchdog,
            bridge,
            bypass,
            counters: Health::default(),
            drops_noted: 0,
            updater,
            healthy: false,
            reboot: None,
        };
        tap.refresh_counters();
        tap.write_status();
        Ok(tap)
    }

    /// The main loop.
    fn turn_until(&mut self, stop: &AtomicBool) -> Result<(), String> {
        let mut timers = Timers::start();
        let mut held: Option<Duration> = None;
        while !stop.load(Ordering::Relaxed) && self.reboot.is_none() {
            // An image arriving is served at every turn, not every tick.
            let receiving = self.receiving_update();
            let until = timers.until_next();
            self.wait(
                held,
                if receiving {
                    until.min(UPDATE_TURN)
                } else {
                    until
                },
            )?;
            held = self.drain(false)?;
            if receiving {
                self.sinks.tick();
                self.update();
            }
            if timers.tick_due() {
                self.expire();
                self.flush();
                self.report();
            }
            if timers.status_due() {
                self.show();
            }
        }
        Ok(())
    }

    /// Until a ring has frames or a timer is due. A held frame keeps its
    /// ring readable (poll would return at once): then sleep out the hold.
    fn wait(&self, held: Option<Duration>, until_timer: Duration) -> Result<(), String> {
        match held {
            Some(wait) => {
                std::thread::sleep(wait.min(until_timer).min(Duration::from_millis(5)));
                Ok(())
            }
            None => {
                let fds: Vec<_> = self.sources.iter().map(RingSource::fd).collect();
                wait_readable(&fds, until_timer.as_millis().min(100) as i32)
                    .map(|_| ())
                    .map_err(|e| format!("poll: {e}"))
            }
        }
    }

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
        let hold_us = u64::from(self.config.ring.block_timeout_ms) * 1000 + HOLD_MARGIN_US;
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
            let now = kernel_clock_us();
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

    /// Ends the flows whose time is up, even while the link is quiet.
    fn expire(&mut self) {
        self.engine.expire(kernel_clock_us(), &mut self.sinks);
    }

    /// Replies in, batches, printed lines and answers to packet requests
    /// out; the updater's turn.
    fn flush(&mut self) {
        self.sinks.tick();
        if let Some(u) = &mut self.sinks.uplink {
            crate::forensics::serve(&mut self.engine, u);
        }
        self.update();
    }

    fn receiving_update(&self) -> bool {
        self.updater
            .as_ref()
            .is_some_and(|u| u.state() == UpdateState::Receiving)
    }

    /// What the collector sent for the updater, its status out, and a
    /// reboot when it asks for one.
    fn update(&mut self) {
        let (Some(updater), Some(uplink)) = (&mut self.updater, &mut self.sinks.uplink) else {
            return;
        };
        let now = Instant::now();
        for data in uplink.take_update_data() {
            updater.take(&data, now);
        }
        // Healthy for a trial: the bridge whole at the last look (the
        // collector's part is its acknowledgement).
        let (status, action) = updater.poll(now, self.healthy);
        if let Some(status) = status {
            uplink.send_update_status(&status);
        }
        if action.is_some() {
            self.reboot = action;
        }
    }

    /// The counters, read once; what is made of them; the watchdog fed
    /// while the tap is healthy.
    fn report(&mut self) {
        let was_synced = self.counters.clock.synced;
        self.refresh_counters();
        let c = &self.counters.clock;
        if c.synced && !was_synced {
            eprintln!(
                "pitapd: clock synchronised by the {}: {:+} ms on the kernel's clock (within {} us)",
                c.source, c.offset_ms, c.uncertainty_us
            );
        }
        if self
            .last_health
            .is_none_or(|t| t.elapsed() >= self.config.uplink.health_interval)
        {
            self.send_health();
        }
        if self.last_decay.elapsed() >= TALKER_WINDOW {
            self.sinks.talkers.decay();
            self.last_decay = Instant::now();
        }
        // The bridge is looked at only for those who act on it, when they
        // do: the bypass at every tick, the watchdog once a second.
        let on_trial = self
            .updater
            .as_ref()
            .is_some_and(|u| u.state() == UpdateState::Trial);
        if self.bypass.is_some() || on_trial || self.watchdog.as_ref().is_some_and(Watchdog::due) {
            let whole = self.bridge.whole();
            self.healthy = whole;
            if let Some(w) = &mut self.watchdog {
                w.tick(whole);
            }
            let now_ms = self.started.elapsed().as_millis() as u64;
            if let Some(b) = &mut self.bypass {
                b.look(now_ms, whole);
            }
        }
        self.write_status();
    }

    /// LEDs, button and display.
    fn show(&mut self) {
        let snapshot = self.snapshot();
        self.panel.tick(&snapshot);
    }

    fn send_health(&mut self) {
        if let Some(u) = &mut self.sinks.uplink {
            u.send_health(&self.counters);
        }
        self.last_health = Some(Instant::now());
    }

    /// Writes the status file atomically (a reader never sees half of it).
    fn write_status(&self) {
        let Some(path) = &self.config.tap.status_file else {
            return;
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let text = self.status().to_string();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            eprintln!("pitapd: status file {}: {e}", path.display());
        }
    }

    /// After the signal: the last frames, every live flow out, the links and
    /// the watchdog as they were, the summary.
    fn stop(mut self) -> Result<(), String> {
        // Frames in a block the kernel has not retired yet become visible
        // only when the block times out: wait that long once, reading as
        // blocks come, so the last frames before a stop are in the last
        // records.
        let retire = Duration::from_millis(u64::from(self.config.ring.block_timeout_ms) + 20);
        let until = Instant::now() + retire;
        while Instant::now() < until {
            let fds: Vec<_> = self.sources.iter().map(RingSource::fd).collect();
            wait_readable(&fds, 10).map_err(|e| format!("poll: {e}"))?;
            self.drain(true)?;
        }
        // What the rings still hold belongs in the last records.
        while self.sources.iter_mut().any(|s| s.peek_ts_us().is_some()) {
            self.drain(true)?;
        }
        // The last counters: the rings' last drops mark the flows still
        // open, and the collector hears them in a last health report.
        self.refresh_counters();
        self.send_health();
        self.engine.flush(&mut self.sinks);
        if let Err(e) = self
            .sinks
            .finish(kernel_clock_us() / 1000, Some(SHUTDOWN_ACK_WAIT))
        {
            eprintln!("pitapd: {e}");
        }
        // The cable is joined around the tap before its bridge goes.
        if let Some(b) = &mut self.bypass {
            b.stop();
        }
        self.links.restore();
        if let Some(w) = &mut self.watchdog {
            w.disarm();
        }
        self.refresh_counters();
        self.write_status();
        if let Some(u) = &self.sinks.uplink {
            eprintln!("{}", crate::summary::uplink(u));
        }
        eprintln!(
            "{}",
            crate::summary::engine(&self.ports.names.join("+"), self.engine.stats())
        );
        if let Some(line) = crate::summary::files(self.engine.file_stats()) {
            eprintln!("{line}");
        }
        if let Some(ring) = self.engine.ring() {
            eprintln!("{}", crate::summary::ring(ring));
        }
        for source in &self.sources {
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
            self.own_traffic
        );
        Ok(())
    }
}
