//! The tap's clock against the real collector core, over a path the test
//! controls: a tap whose kernel clock is 10 years behind synchronises on the
//! collector's sealed replies, the records it made before are moved onto the
//! collector's clock, none leaves with the old time, and replies that are
//! replayed, forged, meant for another boot or delayed on the path move
//! nothing. (The emulator system test boots the image with its clock at
//! 1970 and 10 years ahead; this one looks at every refusal.)

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use pitap::collector::{Collector, Outcome};
use pitap_wire::envelope::{self, DatagramKind, Header, Key};
use pitap_wire::messages::{self, Reply};
use pitap_wire::{ClockState, FlowRecord, FlowSink};
use pitapd::uplink::{
    kernel_clock_us, ClockMode, Refusal, Sealing, Transport, Uplink, UplinkSettings,
};

const TEN_YEARS_US: u64 = 3_652 * 86_400 * 1_000_000;
const KEY: [u8; 32] = [0x42; 32];

fn ten_years_behind() -> u64 {
    kernel_clock_us() - TEN_YEARS_US
}

#[derive(Default)]
struct Path {
    up: VecDeque<Vec<u8>>,
    down: VecDeque<Vec<u8>>,
    /// Every reply the collector sent, as an attacker records them.
    replies: Vec<Vec<u8>>,
}

struct TapSide(Rc<RefCell<Path>>);

impl Transport for TapSide {
    fn send(&mut self, datagram: &[u8]) -> std::io::Result<()> {
        self.0.borrow_mut().up.push_back(datagram.to_vec());
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        Ok(self.0.borrow_mut().down.pop_front().map(|d| {
            buf[..d.len()].copy_from_slice(&d);
            d.len()
        }))
    }
    fn describe(&self) -> String {
        "in-process path".into()
    }
}

struct World {
    path: Rc<RefCell<Path>>,
    tap: Uplink,
    collector: Collector,
    received: Vec<FlowRecord>,
}

impl World {
    fn new() -> World {
        let path = Rc::new(RefCell::new(Path::default()));
        let tap = Uplink::with_clock(
            Box::new(TapSide(path.clone())),
            UplinkSettings {
                tap_id: "edge".into(),
                sealing: Sealing::Key(Key::from_bytes(KEY)),
                buffer_batches: 64,
                flush_interval: Duration::from_millis(10),
                clock: ClockMode::Sync,
                wire_version: pitap_wire::codec::VERSION,
                deflate: true,
            },
            ten_years_behind,
        )
        .unwrap();
        let mut keys = BTreeMap::new();
        keys.insert("edge".to_string(), Key::from_bytes(KEY));
        World {
            path,
            tap,
            collector: Collector::new(keys, false, [7; 16], [8; 32]),
            received: Vec::new(),
        }
    }

    /// One turn: the tap ticks, the collector takes what came and answers
    /// (as `pitap collect` does after a commit).
    fn turn(&mut self) {
        self.tap.tick();
        let from = SocketAddr::from(([127, 0, 0, 1], 40_000));
        while let Some(d) = self.path.borrow_mut().up.pop_front() {
            if let Outcome::Batch { records, .. } =
                self.collector.handle(&d, from, SystemTime::now())
            {
                self.received.extend(records);
            }
        }
        for (reply, _) in self.collector.take_replies(64) {
            let mut p = self.path.borrow_mut();
            p.replies.push(reply.clone());
            p.down.push_back(reply);
        }
    }

    fn turns(&mut self, n: usize) {
        for _ in 0..n {
            self.turn();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Hands the tap a datagram as if it came from the collector.
    fn deliver_to_tap(&mut self, datagram: Vec<u8>) {
        self.path.borrow_mut().down.push_back(datagram);
        self.tap.tick();
    }

    fn refused(&self, why: Refusal) -> u64 {
        self.tap
            .refused()
            .find(|(r, _)| *r == why)
            .map_or(0, |(_, n)| n)
    }

    /// A record of a flow that started and ended now, by the tap's clock.
    fn emit_now(&mut self, port: u16) {
        let now_ms = ten_years_behind() / 1000;
        let raw = FlowRecord {
            start_ms: now_ms - 500,
            end_ms: now_ms,
            proto: 17,
            ..FlowRecord::default()
        };
        let mut raw = raw;
        raw.src.port = port;
        let stamped = self.tap.stamp(&raw);
        self.tap.emit(&stamped);
    }
}

fn real_now_ms() -> u64 {
    kernel_clock_us() / 1000
}

#[test]
fn a_tap_ten_years_behind_sends_only_synchronised_times() {
    let mut w = World::new();
    // Before the collector answered: the record waits, on the tap's clock.
    w.emit_now(1000);
    assert!(!w.tap.clock().is_synced());
    w.turns(20);
    assert!(w.tap.clock().is_synced(), "synced by the first reply");
    let offset_ms = w.tap.clock().correction_ms();
    assert!(
        offset_ms.abs_diff((TEN_YEARS_US / 1000) as i64) < 50,
        "correction {offset_ms} ms"
    );
    w.emit_now(2000);
    w.turns(20);
    assert_eq!(w.received.len(), 2, "{:?}", w.received);
    for r in &w.received {
        assert_eq!(r.clock, ClockState::Synced, "{r:?}");
        let off = r.end_ms.abs_diff(real_now_ms());
        assert!(off < 2_000, "a record {off} ms from the collector's clock");
    }
    assert_eq!(w.tap.clock().steps(), 0);
}

#[test]
fn replayed_forged_foreign_and_delayed_replies_move_nothing() {
    let mut w = World::new();
    w.turns(10);
    assert!(w.tap.clock().is_synced());
    let correction = w.tap.clock().correction_us();
    // Old enough that, taken, it would move the clock by a second or more.
    std::thread::sleep(Duration::from_millis(1_200));
    w.turns(3);
    let old = w.path.borrow().replies[0].clone();

    // Replayed: the datagram it answers was answered already.
    w.deliver_to_tap(old.clone());
    assert_eq!(w.refused(Refusal::Replayed), 1);

    // Forged: a byte of the sealed time changed, or sealed with another key.
    let mut flipped = old.clone();
    let at = flipped.len() - 30;
    flipped[at] ^= 0x10;
    w.deliver_to_tap(flipped);
    let (header, payload) = envelope::open(&old, Some(&Key::from_bytes(KEY)), false).unwrap();
    let mut reply: Reply = messages::decode(&payload).unwrap();
    let seal = |reply: &Reply, key: [u8; 32], counter: u64| {
        envelope::seal(
            &Header {
                sealed: true,
                kind: DatagramKind::Reply,
                tap_id: "edge",
                boot: header.boot,
                counter,
                challenge: [0; 8],
            },
            Some(&Key::from_bytes(key)),
            &messages::encode(reply).unwrap(),
        )
        .unwrap()
    };
    reply.time_us += 365 * 86_400 * 1_000_000;
    w.deliver_to_tap(seal(&reply, [0x43; 32], 1 << 40));
    assert_eq!(w.refused(Refusal::Forged), 2);

    // For another boot of the tap (sealed right: a recording of the past).
    let mut foreign = reply.clone();
    foreign.tap_boot = [0xee; 16];
    w.deliver_to_tap(seal(&foreign, KEY, 1 << 41));
    assert_eq!(w.refused(Refusal::OtherBoot), 1);

    // Delayed on the path by 1.5 s, but genuine: its interval is wider and
    // still holds the truth, so the clock keeps its correction.
    let refused_before: u64 = w.tap.refused().map(|(_, n)| n).sum();
    w.emit_now(3000);
    std::thread::sleep(Duration::from_millis(15));
    w.turn(); // the batch goes, the collector answers, the path holds it
    let held: Vec<Vec<u8>> = w.path.borrow_mut().down.drain(..).collect();
    assert_eq!(held.len(), 1, "the reply to the batch");
    std::thread::sleep(Duration::from_millis(1_500));
    for d in held {
        w.deliver_to_tap(d);
    }
    assert_eq!(w.tap.counters().pending, 0, "the delayed reply was taken");
    assert_eq!(w.tap.refused().map(|(_, n)| n).sum::<u64>(), refused_before);
    w.turns(5);
    assert_eq!(
        w.tap.clock().correction_us(),
        correction,
        "nothing moved the clock"
    );
    assert_eq!(w.tap.clock().steps(), 0);
    println!(
        "clock correction {:.3} s (10 years behind) kept through a replayed, 2 forged, a foreign and a delayed reply; within {} us",
        correction as f64 / 1e6,
        w.tap.clock().uncertainty_us()
    );
}
