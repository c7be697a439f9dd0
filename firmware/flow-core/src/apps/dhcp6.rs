//! DHCPv6 (RFC 8415) as far as leases need it: the message type, the
//! client's MAC from its DUID (link-layer, with or without time), the first
//! address of an IA_NA, and the client FQDN (RFC 4704).

use super::dns::{read_name, Name};
use super::{AppError, Reader};

pub const SOLICIT: u8 = 1;
pub const REQUEST: u8 = 3;
pub const REPLY: u8 = 7;
const OPTION_CLIENTID: u16 = 1;
const OPTION_IA_NA: u16 = 3;
const OPTION_IAADDR: u16 = 5;
const OPTION_CLIENT_FQDN: u16 = 39;
const HW_ETHERNET: u16 = 1;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dhcp6 {
    pub msg_type: u8,
    /// The MAC in the client's DUID (types 1 and 3, Ethernet).
    pub mac: Option<[u8; 6]>,
    /// The first address of the first IA_NA.
    pub addr: Option<[u8; 16]>,
    /// The client FQDN, lower case.
    pub fqdn: Option<Name>,
}

fn duid_mac(duid: &[u8]) -> Option<[u8; 6]> {
    let mut r = Reader::new(duid);
    let kind = r.u16().ok()?;
    let hw = r.u16().ok()?;
    if hw != HW_ETHERNET {
        return None;
    }
    if kind == 1 {
        r.skip(4).ok()?; // time
    } else if kind != 3 {
        return None;
    }
    let mac = r.bytes(6).ok()?;
    Some([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

pub fn parse(data: &[u8]) -> Result<Dhcp6, AppError> {
    let mut r = Reader::new(data);
    let msg_type = r.u8()?;
    if !(1..=13).contains(&msg_type) || msg_type == 12 || msg_type == 13 {
        // Relay messages (12, 13) wrap another message; not followed here.
        return Err(AppError::Unexpected);
    }
    r.skip(3)?; // transaction id
    let mut d = Dhcp6 {
        msg_type,
        ..Dhcp6::default()
    };
    while !r.rest().is_empty() {
        let code = r.u16()?;
        let len = usize::from(r.u16()?);
        let body = r.bytes(len)?;
        match code {
            OPTION_CLIENTID => d.mac = duid_mac(body),
            OPTION_IA_NA if d.addr.is_none() => {
                let mut ia = Reader::new(body);
                ia.skip(12)?; // IAID, T1, T2
                while !ia.rest().is_empty() {
                    let sub = ia.u16()?;
                    let sub_len = usize::from(ia.u16()?);
                    let sub_body = ia.bytes(sub_len)?;
                    if sub == OPTION_IAADDR && sub_len >= 16 {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&sub_body[..16]);
                        d.addr = Some(a);
                        break;
                    }
                }
            }
            OPTION_CLIENT_FQDN if len > 1 => {
                // Flags, then a DNS name (RFC 1035 encoding); a partial name
                // (no final zero) or a bad one is left out, not an error.
                d.fqdn = read_name(&body[1..], 0).ok().map(|(n, _)| n);
            }
            _ => {}
        }
    }
    Ok(d)
}
