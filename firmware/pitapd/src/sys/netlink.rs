//! rtnetlink (linux/rtnetlink.h, linux/if_link.h): the handful of link
//! requests the tap needs, written out here. The Rust rtnetlink crates are
//! either async (tokio) or a family of message-type crates far larger than
//! these few requests: read a link, create a bridge, set its options, enslave
//! a port, bring a link up or down.
//!
//! Only the socket calls are unsafe; messages are built and parsed as bytes,
//! with every length checked.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_ROUTE: libc::c_int = 0;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_CARRIER: u16 = 33;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BR_AGEING_TIME: u16 = 4;
const IFLA_BR_STP_STATE: u16 = 5;
const IFLA_BR_GROUP_FWD_MASK: u16 = 9;
const IFLA_BR_MCAST_SNOOPING: u16 = 23;

const IFF_UP: u32 = 0x1;
const HEADER_LEN: usize = 16;
const IFINFO_LEN: usize = 16;

/// What PiTap needs to know of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// Carrier present (cable in, peer up).
    pub carrier: Option<bool>,
    /// RFC 2863 operational state (6 = up).
    pub operstate: u8,
    /// The bridge (or bond) this link is a port of.
    pub master: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// "bridge", "veth", ...; None for plain devices.
    pub kind: Option<String>,
}

/// Bridge settings of a transparent tap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeOptions {
    pub stp: bool,
    /// MAC ageing in centiseconds; 0 turns learning into flooding.
    pub ageing_time_cs: u32,
    pub multicast_snooping: bool,
    /// Link-local groups 01:80:C2:00:00:0X forwarded, bit X.
    pub group_fwd_mask: u16,
}

/// Builds one netlink message.
struct Message {
    buf: Vec<u8>,
    /// Start offsets of nested attributes still open.
    open: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Message {
            buf,
            open: Vec::new(),
        }
    }

    /// `struct ifinfomsg`.
    fn ifinfo(mut self, index: u32, flags: u32, change: u32) -> Self {
        self.buf
            .extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.buf.extend_from_slice(&(index as i32).to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn begin(mut self, kind: u16) -> Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(mut self) -> Self {
        if let Some(start) = self.open.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Iterates (type, payload) over a run of attributes.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(ne_u16(b, 0)?);
        let kind = ne_u16(b, 2)? & !NLA_F_NESTED;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = b.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

fn parse_link(body: &[u8]) -> Option<LinkInfo> {
    let index = ne_u32(body, 4)?;
    let flags = ne_u32(body, 8)?;
    let mut link = LinkInfo {
        index,
        name: String::new(),
        up: flags & IFF_UP != 0,
        carrier: None,
        operstate: 0,
        master: None,
        mac: None,
        kind: None,
    };
    for (kind, data) in attrs(body.get(IFINFO_LEN..)?) {
        match kind {
            IFLA_IFNAME => {
                link.name = String::from_utf8_lossy(data.split(|b| *b == 0).next()?).into_owned()
            }
            IFLA_ADDRESS if data.len() == 6 => link.mac = data.try_into().ok(),
            IFLA_MASTER => link.master = ne_u32(data, 0),
            IFLA_OPERSTATE => link.operstate = *data.first()?,
            IFLA_CARRIER => link.carrier = data.first().map(|c| *c != 0),
            IFLA_LINKINFO => {
                for (k, d) in attrs(data) {
                    if k == IFLA_INFO_KIND {
                        link.kind = Some(
                            String::from_utf8_lossy(d.split(|b| *b == 0).next()?).into_owned(),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn bridge_data(m: Message, o: &BridgeOptions) -> Message {
    m.begin(IFLA_LINKINFO)
        .attr(IFLA_INFO_KIND, b"bridge")
        .begin(IFLA_INFO_DATA)
        .attr(IFLA_BR_STP_STATE, &u32::from(o.stp).to_ne_bytes())
        .attr(IFLA_BR_AGEING_TIME, &o.ageing_time_cs.to_ne_bytes())
        .attr(IFLA_BR_MCAST_SNOOPING, &[u8::from(o.multicast_snooping)])
        .attr(IFLA_BR_GROUP_FWD_MASK, &o.group_fwd_mask.to_ne_bytes())
        .end()
        .end()
}

fn name_attr(name: &str) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    Ok(v)
}

/// A route netlink socket.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket() takes no memory arguments; a non-negative result
        // is a new descriptor owned by nobody else.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rtnl {
            // SAFETY: fd is the descriptor just created.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 1,
            buf: vec![0; 32 * 1024],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid; we set the family, and
        // pid 0 addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msg and `to` are valid for the lengths passed.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram into the buffer; returns its length.
    fn recv(&mut self) -> io::Result<usize> {
        // SAFETY: buf is valid and writable for its length.
        let rc = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Sends a request and collects the reply messages of type `want`
    /// (bodies after the netlink header) until the kernel's ack or error.
    fn request(&mut self, msg: Vec<u8>, seq: u32, want: u16) -> io::Result<Vec<Vec<u8>>> {
        self.send(&msg)?;
        let mut replies = Vec::new();
        loop {
            let len = self.recv()?;
            let mut at = 0;
            while at + HEADER_LEN <= len {
                let data = &self.buf[..len];
                let mlen = ne_u32(data, at).unwrap_or(0) as usize;
                let kind = ne_u16(data, at + 4).unwrap_or(0);
                let mseq = ne_u32(data, at + 8).unwrap_or(0);
                if mlen < HEADER_LEN || at + mlen > len {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                let body = &data[at + HEADER_LEN..at + mlen];
                at += mlen.div_ceil(4) * 4;
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let errno = ne_u32(body, 0).unwrap_or(0) as i32;
                        if errno == 0 {
                            return Ok(replies);
                        }
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    NLMSG_DONE => return Ok(replies),
                    k if k == want => replies.push(body.to_vec()),
                    _ => {}
                }
            }
        }
    }

    /// Sends a request that only wants an acknowledgement.
    fn act(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        let seq = self.next_seq();
        self.request(build(seq), seq, 0).map(|_| ())
    }

    /// Looks a link up by name; `Ok(None)` when there is none.
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        let seq = self.next_seq();
        let msg = Message::new(RTM_GETLINK, NLM_F_ACK, seq)
            .ifinfo(0, 0, 0)
            .attr(IFLA_IFNAME, &name_attr(name)?)
            .finish();
        match self.request(msg, seq, RTM_NEWLINK) {
            Ok(replies) => Ok(replies.first().and_then(|b| parse_link(b))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge, administratively down.
    pub fn create_bridge(&mut self, name: &str, options: &BridgeOptions) -> io::Result<()> {
        let name = name_attr(name)?;
        self.act(|seq| {
            let m = Message::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)
                .ifinfo(0, 0, 0)
                .attr(IFLA_IFNAME, &name);
            bridge_data(m, options).finish()
        })
    }

    /// Applies bridge options to an existing bridge.
    pub fn configure_bridge(&mut self, index: u32, options: &BridgeOptions) -> io::Result<()> {
        self.act(|seq| {
            let m = Message::new(RTM_NEWLINK, NLM_F_ACK, seq).ifinfo(index, 0, 0);
            bridge_data(m, options).finish()
        })
    }

    /// Makes `port` a port of `master`.
    pub fn set_master(&mut self, port: u32, master: u32) -> io::Result<()> {
        self.act(|seq| {
            Message::new(RTM_NEWLINK, NLM_F_ACK, seq)
                .ifinfo(port, 0, 0)
                .attr(IFLA_MASTER, &master.to_ne_bytes())
                .finish()
        })
    }

    /// Brings a link administratively up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        self.act(|seq| {
            Message::new(RTM_NEWLINK, NLM_F_ACK, seq)
                .ifinfo(index, if up { IFF_UP } else { 0 }, IFF_UP)
                .finish()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_are_sized_and_parsed_back() {
        let opts = BridgeOptions {
            stp: false,
            ageing_time_cs: 0,
            multicast_snooping: false,
            group_fwd_mask: 0x4008,
        };
        let msg = bridge_data(Message::new(RTM_NEWLINK, 0, 7).ifinfo(3, 0, 0), &opts).finish();
        assert_eq!(ne_u32(&msg, 0), Some(msg.len() as u32));
        let body = &msg[HEADER_LEN + IFINFO_LEN..];
        let (kind, linkinfo) = attrs(body).next().unwrap();
        assert_eq!(kind, IFLA_LINKINFO);
        let inner: Vec<(u16, &[u8])> = attrs(linkinfo).collect();
        assert_eq!(inner[0], (IFLA_INFO_KIND, &b"bridge"[..]));
        let data: Vec<(u16, Vec<u8>)> = attrs(inner[1].1).map(|(k, d)| (k, d.to_vec())).collect();
        assert_eq!(data.len(), 4);
        assert_eq!(
            data[3],
            (IFLA_BR_GROUP_FWD_MASK, 0x4008u16.to_ne_bytes().to_vec())
        );
    }

    #[test]
    fn garbage_attributes_end_the_walk() {
        assert_eq!(attrs(&[0xff, 0xff, 1, 0]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
        assert!(parse_link(&[1, 2, 3]).is_none());
    }
}
