//! A UDP relay between taps and a collector on loopback, as a path the
//! tests control: it records every datagram each way, and can hold one
//! datagram back to swap it with the next (reordering) or send one twice.
//! What an attacker on the path has, the tests have: the recorded
//! datagrams, to replay whenever they like.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the path does to datagrams from taps.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathFaults {
    /// Every n-th datagram waits and goes after the next one.
    pub swap_every: Option<usize>,
    /// Every n-th datagram is sent twice.
    pub duplicate_every: Option<usize>,
}

#[derive(Default)]
pub struct Recorded {
    /// Tap to collector.
    pub up: Vec<Vec<u8>>,
    /// Collector to tap.
    pub down: Vec<Vec<u8>>,
}

pub struct Relay {
    pub addr: String,
    collector: SocketAddr,
    recorded: Arc<Mutex<Recorded>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(collector: &str, faults: PathFaults) -> Relay {
        let collector: SocketAddr = collector.parse().unwrap();
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let addr = front.local_addr().unwrap().to_string();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (recorded, stop) = (recorded.clone(), stop.clone());
            std::thread::spawn(move || relay(front, collector, faults, &recorded, &stop))
        };
        Relay {
            addr,
            collector,
            recorded,
            stop,
            thread: Some(thread),
        }
    }

    /// What went through so far.
    pub fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap()
    }

    /// Sends datagrams to the collector from an address of their own, as an
    /// attacker on the path would.
    pub fn inject(&self, datagrams: &[Vec<u8>]) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        for d in datagrams {
            sock.send_to(d, self.collector).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(
    front: UdpSocket,
    collector: SocketAddr,
    faults: PathFaults,
    recorded: &Mutex<Recorded>,
    stop: &AtomicBool,
) {
    // One socket towards the collector per tap address, so replies find
    // their way back.
    let mut backs: BTreeMap<SocketAddr, UdpSocket> = BTreeMap::new();
    let mut held: Option<(Vec<u8>, SocketAddr)> = None;
    let mut n = 0usize;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((len, from)) = front.recv_from(&mut buf) {
            let d = buf[..len].to_vec();
            recorded.lock().unwrap().up.push(d.clone());
            let back = backs.entry(from).or_insert_with(|| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(collector).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            });
            n += 1;
            if faults.swap_every.is_some_and(|k| n.is_multiple_of(k)) && held.is_none() {
                held = Some((d, from));
                continue;
            }
            let _ = back.send(&d);
            if faults.duplicate_every.is_some_and(|k| n.is_multiple_of(k)) {
                let _ = back.send(&d);
            }
            if let Some((h, hfrom)) = held.take() {
                if let Some(b) = backs.get(&hfrom) {
                    let _ = b.send(&h);
                }
            }
        }
        for (tap, back) in &backs {
            while let Ok(len) = back.recv(&mut buf) {
                recorded.lock().unwrap().down.push(buf[..len].to_vec());
                let _ = front.send_to(&buf[..len], tap);
            }
        }
    }
}
