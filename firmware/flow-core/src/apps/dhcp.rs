//! DHCPv4 (RFC 2131/2132): the client's MAC, the offered or acknowledged
//! address, the message type and the hostname (option 12) or client FQDN
//! (option 81), enough to keep MAC <-> IP <-> hostname leases.

use super::{AppError, Reader};

const COOKIE: u32 = 0x6382_5363;
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dhcp<'a> {
    /// 1 request (client), 2 reply (server).
    pub op: u8,
    pub msg_type: Option<u8>,
    pub chaddr: [u8; 6],
    pub ciaddr: [u8; 4],
    pub yiaddr: [u8; 4],
    pub requested: Option<[u8; 4]>,
    pub hostname: Option<&'a [u8]>,
    /// The domain name of option 81 (client FQDN), as sent.
    pub fqdn: Option<&'a [u8]>,
}

pub fn parse(data: &[u8]) -> Result<Dhcp<'_>, AppError> {
    let mut r = Reader::new(data);
    let op = r.u8()?;
    let htype = r.u8()?;
    let hlen = r.u8()?;
    r.skip(1 + 4 + 2 + 2)?; // hops, xid, secs, flags
    let mut d = Dhcp {
        op,
        ..Dhcp::default()
    };
    d.ciaddr.copy_from_slice(r.bytes(4)?);
    d.yiaddr.copy_from_slice(r.bytes(4)?);
    r.skip(8)?; // siaddr, giaddr
    let chaddr = r.bytes(16)?;
    if htype == 1 && hlen == 6 {
        d.chaddr.copy_from_slice(&chaddr[..6]);
    }
    r.skip(64 + 128)?; // sname, file
    if r.u32()? != COOKIE {
        return Err(AppError::Unexpected);
    }
    // Options may end without the end option.
    while let Ok(code) = r.u8() {
        match code {
            0 => continue,
            255 => break,
            _ => {}
        }
        let len = usize::from(r.u8()?);
        let value = r.bytes(len)?;
        match (code, len) {
            (53, 1) => d.msg_type = Some(value[0]),
            (50, 4) => d.requested = Some([value[0], value[1], value[2], value[3]]),
            (12, 1..) => d.hostname = Some(value),
            (81, 4..) => d.fqdn = Some(&value[3..]),
            _ => {}
        }
    }
    Ok(d)
}
