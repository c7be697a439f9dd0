//! A seeded generator of realistic traffic: many concurrent conversations
//! interleaved packet by packet — TCP sessions with handshakes, heavy-tailed
//! transfers and FIN or RST teardowns, refused SYNs, DNS over UDP (some
//! unanswered), ICMP echoes, other UDP; 13 % of conversations over IPv6,
//! 25 % VLAN-tagged; frames of 60 to 1514 bytes. The same seed and size
//! give the same bytes on every machine (xorshift64*, no floats in the
//! choices that matter).

use etherparse::PacketBuilder;

/// xorshift64* (Vigna): small, fast, deterministic everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// Heavy-tailed count: Pareto-like with shape 1.1 (integer arithmetic
    /// on a 2^-32 grid), at least `min`, at most `max`.
    pub fn heavy(&mut self, min: u64, max: u64) -> u64 {
        // u uniform in (0, 1]; x = min * u^(-1/1.1), approximated by a
        // table-free power via f64 (deterministic: IEEE 754 everywhere).
        let u = (self.below(1 << 32) + 1) as f64 / (1u64 << 32) as f64;
        let x = min as f64 * u.powf(-1.0 / 1.1);
        (x as u64).clamp(min, max)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    pub seed: u64,
    pub packets: u64,
    /// Conversations open at once.
    pub concurrent: usize,
    /// Mean gap between packets, nanoseconds.
    pub gap_ns: u64,
    pub start_us: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            packets: 5_000_000,
            concurrent: 20_000,
            gap_ns: 10_000,
            start_us: 1_760_000_000_000_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Refused,
    Dns,
    Icmp,
    Udp,
}

#[derive(Clone, Copy, Debug)]
struct Host {
    mac: [u8; 6],
    v4: [u8; 4],
    v6: [u8; 16],
}

#[derive(Clone, Copy, Debug)]
struct Session {
    kind: Kind,
    client: Host,
    server: Host,
    cport: u16,
    sport: u16,
    v6: bool,
    vlan: Option<u16>,
    /// Packets emitted so far.
    step: u32,
    /// Data packets still to send (TCP), echoes (ICMP), datagrams (UDP).
    left: u32,
    reset: bool,
    answered: bool,
    /// Teardown frames sent.
    tail: u32,
}

fn host(rng: &mut Rng, server: bool) -> Host {
    let n = if server {
        rng.below(5000)
    } else {
        rng.below(60_000)
    } as u32;
    let net: u8 = if server { 172 } else { 10 };
    let v4 = [
        net,
        (n >> 16) as u8 | if server { 16 } else { 0 },
        (n >> 8) as u8,
        n as u8,
    ];
    let mut v6 = [0u8; 16];
    v6[0] = 0xfd;
    v6[1] = u8::from(server);
    v6[12..].copy_from_slice(&n.to_be_bytes());
    Host {
        mac: [
            0x02,
            u8::from(server),
            0,
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        ],
        v4,
        v6,
    }
}

impl Session {
    fn new(rng: &mut Rng) -> Session {
        let kind = match rng.below(100) {
            0..=44 => Kind::Tcp,
            45..=54 => Kind::Refused,
            55..=84 => Kind::Dns,
            85..=94 => Kind::Icmp,
            _ => Kind::Udp,
        };
        let sport = match kind {
            Kind::Dns => 53,
            Kind::Udp => [123u16, 514, 5353, 4789][rng.below(4) as usize],
            _ => [443u16, 80, 22, 25, 8080, 3306][rng.below(6) as usize],
        };
        let left = match kind {
            Kind::Tcp => rng.heavy(6, 50_000) as u32,
            Kind::Icmp => 1 + rng.below(5) as u32,
            Kind::Udp => 1 + rng.below(8) as u32,
            _ => 0,
        };
        Session {
            kind,
            client: host(rng, false),
            server: host(rng, true),
            cport: 1024 + rng.below(64_000) as u16,
            sport,
            v6: rng.chance(130),
            vlan: rng
                .chance(250)
                .then(|| [10u16, 20, 30][rng.below(3) as usize]),
            step: 0,
            left,
            reset: rng.chance(100),
            answered: !rng.chance(50),
            tail: 0,
        }
    }

    /// Writes the next frame into `buf`; false when the session is over
    /// (nothing written).
    fn next(&mut self, rng: &mut Rng, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let step = self.step;
        self.step += 1;
        // (from client?, tcp flags or none, payload length)
        let (from_client, flags, payload): (bool, &str, usize) = match self.kind {
            Kind::Tcp => match step {
                0 => (true, "S", 0),
                1 => (false, "SA", 0),
                2 => (true, "A", 0),
                _ if self.left > 0 => {
                    self.left -= 1;
                    // Servers send most of the bytes, in full segments.
                    if rng.chance(700) {
                        let n = if rng.chance(800) {
                            1448
                        } else {
                            1 + rng.below(1448) as usize
                        };
                        (false, "PA", n)
                    } else {
                        (true, "A", rng.below(200) as usize)
                    }
                }
                _ => {
                    let k = self.tail;
                    self.tail += 1;
                    match (self.reset, k) {
                        (true, 0) => (true, "RA", 0),
                        (false, 0) => (true, "FA", 0),
                        (false, 1) => (false, "FA", 0),
                        (false, 2) => (true, "A", 0),
                        _ => return false,
                    }
                }
            },
            Kind::Refused => match step {
                0 => (true, "S", 0),
                1 => (false, "RA", 0),
                _ => return false,
            },
            Kind::Dns => match step {
                0 => (true, "", 20 + rng.below(40) as usize),
                1 if self.answered => (false, "", 40 + rng.below(400) as usize),
                _ => return false,
            },
            Kind::Icmp => {
                if step / 2 > self.left {
                    return false;
                }
                (step.is_multiple_of(2), "", 56)
            }
            Kind::Udp => {
                if step >= self.left {
                    return false;
                }
                (rng.chance(600), "", 20 + rng.below(1200) as usize)
            }
        };
        let (src, dst) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let (sp, dp) = if from_client {
            (self.cport, self.sport)
        } else {
            (self.sport, self.cport)
        };
        // Frames stay within 1514 bytes whatever the headers.
        let l4 = match self.kind {
            Kind::Tcp | Kind::Refused => 20,
            _ => 8,
        };
        let overhead =
            14 + if self.vlan.is_some() { 4 } else { 0 } + if self.v6 { 40 } else { 20 } + l4;
        let payload = payload.min(1514 - overhead);
        let eth = PacketBuilder::ethernet2(src.mac, dst.mac);
        let body = vec_payload(payload);
        // Tagged or not, v4 or v6: one IP builder step for the transport.
        let ip = match (self.vlan, self.v6) {
            (Some(v), v6) => {
                let tagged = eth.single_vlan(
                    etherparse::VlanId::try_new(v).unwrap_or(etherparse::VlanId::ZERO),
                );
                if v6 {
                    tagged.ipv6(src.v6, dst.v6, 64)
                } else {
                    tagged.ipv4(src.v4, dst.v4, 64)
                }
            }
            (None, true) => eth.ipv6(src.v6, dst.v6, 64),
            (None, false) => eth.ipv4(src.v4, dst.v4, 64),
        };
        let written = self.l4(ip, sp, dp, flags, step, &body, buf);
        if !written {
            return false;
        }
        // Ethernet pads short frames to 60 bytes (without the FCS).
        if buf.len() < 60 {
            buf.resize(60, 0);
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn l4(
        &self,
        ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
        sp: u16,
        dp: u16,
        flags: &str,
        step: u32,
        body: &[u8],
        buf: &mut Vec<u8>,
    ) -> bool {
        match self.kind {
            Kind::Tcp | Kind::Refused => {
                let mut b = ip.tcp(sp, dp, 1000 + step * 1448, 64_240);
                for f in flags.chars() {
                    b = match f {
                        'S' => b.syn(),
                        'A' => b.ack(7 + step),
                        'F' => b.fin(),
                        'R' => b.rst(),
                        'P' => b.psh(),
                        _ => b,
                    };
                }
                b.write(buf, body).is_ok()
            }
            Kind::Dns | Kind::Udp => ip.udp(sp, dp).write(buf, body).is_ok(),
            Kind::Icmp => {
                let seq = (step / 2) as u16;
                let request = step.is_multiple_of(2);
                match (self.v6, request) {
                    (true, true) => ip
                        .icmpv6_echo_request(self.cport, seq)
                        .write(buf, body)
                        .is_ok(),
                    (true, false) => ip
                        .icmpv6_echo_reply(self.cport, seq)
                        .write(buf, body)
                        .is_ok(),
                    (false, true) => ip
                        .icmpv4_echo_request(self.cport, seq)
                        .write(buf, body)
                        .is_ok(),
                    (false, false) => ip
                        .icmpv4_echo_reply(self.cport, seq)
                        .write(buf, body)
                        .is_ok(),
                }
            }
        }
    }
}

fn vec_payload(n: usize) -> Vec<u8> {
    vec![0x5a; n]
}

/// What a generation made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenSummary {
    pub packets: u64,
    pub bytes: u64,
    pub sessions: u64,
}

/// Writes the generated frames as a pcap file (microseconds, Ethernet).
pub fn write_pcap(path: &std::path::Path, config: &GenConfig) -> std::io::Result<GenSummary> {
    let mut summary = GenSummary::default();
    crate::http::write_pcap(path, |emit| summary = generate(config, emit))?;
    Ok(summary)
}

/// Generates `config.packets` frames, in time order, into `emit(ts_us, frame)`.
pub fn generate(config: &GenConfig, mut emit: impl FnMut(u64, &[u8])) -> GenSummary {
    let mut rng = Rng::new(config.seed);
    let mut sessions: Vec<Session> = (0..config.concurrent.max(1))
        .map(|_| Session::new(&mut rng))
        .collect();
    let mut summary = GenSummary {
        sessions: sessions.len() as u64,
        ..GenSummary::default()
    };
    let mut buf = Vec::with_capacity(2048);
    let mut t_ns = config.start_us * 1000;
    while summary.packets < config.packets {
        let i = rng.below(sessions.len() as u64) as usize;
        if !sessions[i].next(&mut rng, &mut buf) {
            sessions[i] = Session::new(&mut rng);
            summary.sessions += 1;
            continue;
        }
        t_ns += 1 + rng.below(2 * config.gap_ns);
        emit(t_ns / 1000, &buf);
        summary.packets += 1;
        summary.bytes += buf.len() as u64;
    }
    summary
}
