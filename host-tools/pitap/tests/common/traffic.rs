//! Captures written by the tests: TCP sessions that complete, are refused
//! or go unanswered, with chosen MACs, addresses, ports, sizes and times,
//! so each analysis meets the case it looks for (and the cases it must not
//! flag) after the real path: pcap -> pitapd -> sealed uplink -> collector.

use std::path::Path;

use etherparse::PacketBuilder;
use pitap_flow_core::LinkType;
use pitapd::source::pcap_writer::PcapWriter;

/// One host: MAC and IPv4 address.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    pub mac: [u8; 6],
    pub ip: [u8; 4],
}

pub fn host(last_mac: u8, ip: [u8; 4]) -> Host {
    Host {
        mac: [0x02, 0, 0, 0, ip[2], last_mac],
        ip,
    }
}

/// How a TCP session goes.
#[derive(Clone, Debug)]
pub enum Session {
    /// Handshake, `up` bytes from the client, `down` from the server, FINs.
    Complete { up: usize, down: usize },
    /// SYN answered by RST.
    Refused,
    /// SYN, SYN again, nothing back.
    Unanswered,
    /// Handshake, then these bytes from the client (a ClientHello, an HTTP
    /// request), `down` bytes back, FINs.
    Payload { first: Vec<u8>, down: usize },
}

/// A TLS ClientHello naming `sni` (any bytes: a test's hostile name).
pub fn client_hello(sni: &[u8]) -> Vec<u8> {
    let mut name = vec![0u8];
    name.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    name.extend_from_slice(sni);
    let mut list = (name.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&name);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&list);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[1; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut out = vec![22, 3, 1];
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.push(1);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&body);
    out
}

pub const T0_MS: u64 = 1_700_000_000_000;

#[derive(Default)]
pub struct Traffic {
    frames: Vec<(u64, Vec<u8>)>,
}

impl Traffic {
    fn tcp(
        &mut self,
        at_us: u64,
        from: Host,
        to: Host,
        ports: (u16, u16),
        flags: &str,
        payload: usize,
    ) {
        let mut b = PacketBuilder::ethernet2(from.mac, to.mac)
            .ipv4(from.ip, to.ip, 64)
            .tcp(ports.0, ports.1, 1000, 65_000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(1),
                'F' => b.fin(),
                'R' => b.rst(),
                'P' => b.psh(),
                _ => b,
            };
        }
        let mut bytes = Vec::new();
        b.write(&mut bytes, &vec![0x5a; payload]).expect("frame");
        self.frames.push((at_us, bytes));
    }

    fn tcp_bytes(&mut self, at_us: u64, from: Host, to: Host, ports: (u16, u16), payload: &[u8]) {
        let b = PacketBuilder::ethernet2(from.mac, to.mac)
            .ipv4(from.ip, to.ip, 64)
            .tcp(ports.0, ports.1, 1000, 65_000)
            .psh()
            .ack(1);
        let mut bytes = Vec::new();
        b.write(&mut bytes, payload).expect("frame");
        self.frames.push((at_us, bytes));
    }

    /// A session from `client:sport` to `server:dport` starting at
    /// `start_ms` after T0.
    pub fn session(
        &mut self,
        start_ms: u64,
        client: Host,
        sport: u16,
        server: Host,
        dport: u16,
        how: Session,
    ) {
        let mut t = (T0_MS + start_ms) * 1000;
        let mut step = || {
            t += 700;
            t
        };
        let up = (sport, dport);
        let down = (dport, sport);
        match how {
            Session::Refused => {
                self.tcp(step(), client, server, up, "S", 0);
                self.tcp(step(), server, client, down, "RA", 0);
            }
            Session::Unanswered => {
                self.tcp(step(), client, server, up, "S", 0);
                self.tcp(step() + 1_000_000, client, server, up, "S", 0);
            }
            Session::Complete { up: u, down: d } => {
                self.tcp(step(), client, server, up, "S", 0);
                self.tcp(step(), server, client, down, "SA", 0);
                self.tcp(step(), client, server, up, "A", 0);
                let mut left = u;
                while left > 0 {
                    let n = left.min(1400);
                    self.tcp(step(), client, server, up, "PA", n);
                    left -= n;
                }
                let mut left = d;
                while left > 0 {
                    let n = left.min(1400);
                    self.tcp(step(), server, client, down, "PA", n);
                    left -= n;
                }
                self.tcp(step(), client, server, up, "FA", 0);
                self.tcp(step(), server, client, down, "FA", 0);
                self.tcp(step(), client, server, up, "A", 0);
            }
            Session::Payload { first, down: d } => {
                self.tcp(step(), client, server, up, "S", 0);
                self.tcp(step(), server, client, down, "SA", 0);
                self.tcp(step(), client, server, up, "A", 0);
                self.tcp_bytes(step(), client, server, up, &first);
                if d > 0 {
                    self.tcp(step(), server, client, down, "PA", d.min(1400));
                }
                self.tcp(step(), client, server, up, "FA", 0);
                self.tcp(step(), server, client, down, "FA", 0);
                self.tcp(step(), client, server, up, "A", 0);
            }
        }
    }

    /// A DHCP ACK from `server` giving `client` its address, with a hostname.
    pub fn dhcp_ack(&mut self, at_ms: u64, server: Host, client: Host, hostname: &str) {
        let mut bootp = vec![2, 1, 6, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        bootp.extend_from_slice(&[0; 4]); // ciaddr
        bootp.extend_from_slice(&client.ip); // yiaddr
        bootp.extend_from_slice(&server.ip); // siaddr
        bootp.extend_from_slice(&[0; 4]); // giaddr
        bootp.extend_from_slice(&client.mac);
        bootp.extend_from_slice(&[0; 10 + 192]);
        bootp.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 5, 12, hostname.len() as u8]);
        bootp.extend_from_slice(hostname.as_bytes());
        bootp.push(255);
        let mut bytes = Vec::new();
        PacketBuilder::ethernet2(server.mac, client.mac)
            .ipv4(server.ip, client.ip, 64)
            .udp(67, 68)
            .write(&mut bytes, &bootp)
            .expect("frame");
        self.frames.push(((T0_MS + at_ms) * 1000, bytes));
    }

    /// Writes the frames in time order.
    pub fn write(mut self, path: &Path) {
        self.frames.sort_by_key(|f| f.0);
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet).expect("pcap");
        for (t, bytes) in &self.frames {
            w.write_packet(*t, bytes, bytes.len() as u32)
                .expect("packet");
        }
        std::fs::write(path, w.into_inner()).expect("write capture");
    }
}
