//! Where the uplink's datagrams go: the kernel's UDP socket, or the
//! user-space stack on a raw port (`crate::stack`).

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Kernel sockets, or a user-space stack on a raw port.
pub trait Transport {
    /// Sends one datagram to the collector. `WouldBlock` means "not now,
    /// nothing was sent"; any other error is counted and the datagram
    /// treated as lost on the way.
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
    /// A datagram from the collector, if one waits; never blocks.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Lets a user-space stack do its work (ARP, DHCP, timers).
    fn poll(&mut self) {}
    /// A line for logs: what this transport is and its state.
    fn describe(&self) -> String;
    /// The tap's own address on this transport, when it has one of its own.
    fn address(&self) -> Option<String> {
        None
    }
}

/// The kernel's UDP socket.
pub struct KernelUdp {
    socket: UdpSocket,
    collector: SocketAddr,
}

impl KernelUdp {
    pub fn open(collector: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if collector.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        // Not connected: a collector without a route yet (a link still coming
        // up) is a send error to count and retry, not a reason to stop.
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        Ok(KernelUdp { socket, collector })
    }
}

impl Transport for KernelUdp {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, self.collector).map(|_| ())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.socket.recv_from(buf) {
                // Only the collector's datagrams are read; others are noise.
                Ok((n, from)) if from == self.collector => return Ok(Some(n)),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // An ICMP error from an earlier send surfaces here: not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn describe(&self) -> String {
        format!("udp to {}", self.collector)
    }
}
