//! The uplink without a kernel address: smoltcp's IPv4 stack (ARP, DHCPv4
//! or a static address, UDP) on a raw AF_PACKET socket, with its own locally
//! administered MAC. On a management port, or in-band on a tap port, where
//! the tap then shows up as one host while the bridge stays invisible.
//!
//! The raw socket would see every frame of the port; a BPF filter lets
//! through only what is for this stack (its MAC, broadcast, ARP), so the
//! uplink costs nothing per tapped packet.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use afpacket::sync::RawPacketStream;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Cidr};

use crate::uplink::Transport;

/// How the stack gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    Dhcp,
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    },
}

/// Classic BPF (`struct sock_filter`): accept ARP, frames to `mac`, and
/// broadcast frames; drop everything else in the kernel.
fn filter_for(mac: [u8; 6]) -> Vec<(u16, u8, u8, u32)> {
    const LDH_ABS: u16 = 0x28;
    const LD_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let head = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
    let tail = u32::from(u16::from_be_bytes([mac[4], mac[5]]));
    vec![
        (LDH_ABS, 0, 0, 12),        // 0: ethertype
        (JEQ_K, 7, 0, 0x0806),      // 1: ARP -> accept
        (LD_ABS, 0, 0, 0),          // 2: destination MAC, first 4 bytes
        (JEQ_K, 0, 2, head),        // 3: ours? -> 4, else -> 6
        (LDH_ABS, 0, 0, 4),         // 4: last 2 bytes
        (JEQ_K, 3, 4, tail),        // 5: ours -> accept, else drop
        (JEQ_K, 0, 3, 0xffff_ffff), // 6: broadcast? -> 7, else drop
        (LDH_ABS, 0, 0, 4),         // 7
        (JEQ_K, 0, 1, 0xffff),      // 8: broadcast -> accept, else drop
        (RET_K, 0, 0, 0x0004_0000), // 9: accept
        (RET_K, 0, 0, 0),           // 10: drop
    ]
}

/// A smoltcp device on a raw socket.
struct RawDevice {
    socket: RawPacketStream,
    rx: Vec<u8>,
    mtu: usize,
}

struct RxToken<'a> {
    frame: &'a [u8],
}

struct TxToken<'a> {
    socket: &'a RawPacketStream,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        // A full transmit queue loses this frame; UDP above retransmits.
        let mut socket = self.socket;
        let _ = socket.write(&frame);
        result
    }
}

impl Device for RawDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let mut socket = &self.socket;
        let n = socket.read(&mut self.rx).ok()?;
        Some((
            RxToken {
                frame: &self.rx[..n],
            },
            TxToken {
                socket: &self.socket,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            socket: &self.socket,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        // A sender on this host with checksum offload (a veth, most NICs)
        // hands the packet socket its UDP datagrams before the checksum is
        // filled in (TP_STATUS_CSUMNOTREADY): checking it would refuse them.
        // What matters is authenticated by the AEAD tag; DHCP's answers
        // come the same way. Checksums are still written on what we send.
        caps.checksum.udp = Checksum::Tx;
        caps
    }
}

/// The uplink's UDP over smoltcp.
pub struct StackUdp {
    interface_name: String,
    mac: [u8; 6],
    device: RawDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    dhcp: Option<SocketHandle>,
    collector: SocketAddrV4,
    address: Option<Ipv4Cidr>,
}

impl StackUdp {
    pub fn open(
        ifname: &str,
        mac: [u8; 6],
        addressing: Addressing,
        collector: SocketAddrV4,
    ) -> io::Result<StackUdp> {
        let mut socket = RawPacketStream::new()?;
        socket.set_bpf_filter(filter_for(mac))?;
        socket.bind(ifname)?;
        // Frames the bridge sends out of this port belong to the other side.
        crate::sys::ring::ignore_outgoing(socket.as_raw_fd())?;
        // The stack's MAC is not the NIC's: let it through the NIC's filter.
        crate::sys::ring::add_unicast_address(socket.as_raw_fd(), ifname, mac)?;
        socket.set_non_blocking()?;
        let mut device = RawDevice {
            socket,
            rx: vec![0; 65_536],
            mtu: 1514,
        };
        let mut config = IfaceConfig::new(EthernetAddress(mac).into());
        config.random_seed = crate::uplink::new_boot_id();
        let mut iface = Interface::new(config, &mut device, Instant::now());
        let mut sockets = SocketSet::new(Vec::new());
        let udp_socket = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1500]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 256 * 1500]),
        );
        let udp = sockets.add(udp_socket);
        let local_port = 40_000 + (crate::uplink::new_boot_id() % 20_000) as u16;
        sockets
            .get_mut::<udp::Socket>(udp)
            .bind(local_port)
            .map_err(|e| io::Error::other(format!("uplink stack: bind: {e}")))?;
        let mut address = None;
        let dhcp = match addressing {
            Addressing::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
            Addressing::Static {
                address: addr,
                prefix,
                gateway,
            } => {
                let cidr = Ipv4Cidr::new(addr, prefix);
                iface.update_ip_addrs(|addrs| {
                    let _ = addrs.push(IpCidr::Ipv4(cidr));
                });
                if let Some(gw) = gateway {
                    let _ = iface.routes_mut().add_default_ipv4_route(gw);
                }
                address = Some(cidr);
                None
            }
        };
        Ok(StackUdp {
            interface_name: ifname.to_string(),
            mac,
            device,
            iface,
            sockets,
            udp,
            dhcp,
            collector,
            address,
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn poll_stack(&mut self) {
        let now = Instant::now();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        let Some(dhcp) = self.dhcp else {
            return;
        };
        match self.sockets.get_mut::<dhcpv4::Socket>(dhcp).poll() {
            Some(dhcpv4::Event::Configured(config)) => {
                let cidr = config.address;
                let router = config.router;
                self.iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(cidr));
                });
                match router {
                    Some(r) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                eprintln!(
                    "pitapd: uplink stack on {}: DHCP gave {cidr}",
                    self.interface_name
                );
                self.address = Some(cidr);
            }
            Some(dhcpv4::Event::Deconfigured) => {
                eprintln!(
                    "pitapd: uplink stack on {}: DHCP lease lost",
                    self.interface_name
                );
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.address = None;
            }
            None => {}
        }
    }

    /// The stack's address, once it has one.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        self.address
    }
}

impl Transport for StackUdp {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.poll_stack();
        if self.address.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the uplink stack has no address yet",
            ));
        }
        let udp = self.sockets.get_mut::<udp::Socket>(self.udp);
        udp.send_slice(datagram, (*self.collector.ip(), self.collector.port()))
            .map_err(|e| io::Error::new(io::ErrorKind::WouldBlock, e.to_string()))?;
        self.poll_stack();
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.poll_stack();
        let collector = (*self.collector.ip(), self.collector.port());
        let udp = self.sockets.get_mut::<udp::Socket>(self.udp);
        while udp.can_recv() {
            match udp.recv_slice(buf) {
                Ok((n, meta))
                    if meta.endpoint.addr == collector.0.into()
                        && meta.endpoint.port == collector.1 =>
                {
                    return Ok(Some(n))
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        Ok(None)
    }

    fn poll(&mut self) {
        self.poll_stack();
    }

    fn address(&self) -> Option<String> {
        self.address.map(|a| a.to_string())
    }

    fn describe(&self) -> String {
        let m = self.mac;
        format!(
            "smoltcp on {} ({:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {}) to {}",
            self.interface_name,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            self.address
                .map_or_else(|| "no address yet".to_string(), |a| a.to_string()),
            self.collector
        )
    }
}
