//! DNS responses (RFC 1035): the question name and the A, AAAA and CNAME
//! answers, with name compression followed at most [`MAX_JUMPS`] times.

use super::{AppError, Reader};

/// Longest name in presentation form (RFC 1035: 255 octets on the wire).
pub const MAX_NAME: usize = 253;
/// Compression pointers followed per name before it counts as a loop.
pub const MAX_JUMPS: usize = 32;
/// More answers than this is not a response a resolver sends.
pub const MAX_RECORDS: u16 = 512;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;

/// A domain name, lower case, dot-separated, without the trailing dot.
#[derive(Clone, Default)]
pub struct Name {
    text: heapless::Vec<u8, MAX_NAME, u8>,
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Name {
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// The name as text; bytes outside printable ASCII were replaced by
    /// `?` when read, so this never fails.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    fn push_label(&mut self, label: &[u8]) -> Result<(), AppError> {
        let dot = usize::from(!self.is_empty());
        if self.text.len() + dot + label.len() > MAX_NAME {
            return Err(AppError::BadName);
        }
        // Cannot fail from here: the room was checked.
        if dot == 1 {
            let _ = self.text.push(b'.');
        }
        for &b in label {
            let _ = self.text.push(match b {
                b'A'..=b'Z' => b + 32,
                0x21..=0x7e => b,
                _ => b'?',
            });
        }
        Ok(())
    }
}

/// Reads the name at `pos`; returns it and the position after it in the
/// record (not after the compressed target).
pub fn read_name(msg: &[u8], pos: usize) -> Result<(Name, usize), AppError> {
    let mut name = Name::default();
    let mut at = pos;
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at).ok_or(AppError::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((name, after.unwrap_or(at + 1)));
                }
                let label = msg
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or(AppError::Truncated)?;
                name.push_label(label)?;
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *msg.get(at + 1).ok_or(AppError::Truncated)?;
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return Err(AppError::BadName);
                }
                after.get_or_insert(at + 2);
                at = usize::from(u16::from_be_bytes([len & 0x3f, low]));
            }
            _ => return Err(AppError::BadName),
        }
    }
}

/// One answer record. Names are inline (no allocation); answers are handed
/// to a visitor one at a time, never stored in bulk, so the size of the
/// larger variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    A {
        name: Name,
        addr: [u8; 4],
        ttl: u32,
    },
    Aaaa {
        name: Name,
        addr: [u8; 16],
        ttl: u32,
    },
    Cname {
        name: Name,
        target: Name,
        ttl: u32,
    },
    Other,
}

/// A parsed response: its question name and where its answers are.
pub struct Response<'a> {
    msg: &'a [u8],
    pub id: u16,
    pub qname: Name,
    /// Records in the answer, authority and additional sections.
    counts: [u16; 3],
    answers_at: usize,
}

/// The section a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// Parses a DNS response (QR set) far enough to read its answers.
pub fn parse_response(msg: &[u8]) -> Result<Response<'_>, AppError> {
    let mut r = Reader::new(msg);
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err(AppError::Unexpected);
    }
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let nscount = r.u16()?;
    let arcount = r.u16()?;
    if qdcount > 16 || ancount > MAX_RECORDS || nscount > MAX_RECORDS || arcount > MAX_RECORDS {
        return Err(AppError::AbsurdCount);
    }
    let mut qname = Name::default();
    let mut pos = r.pos;
    for i in 0..qdcount {
        let (name, next) = read_name(msg, pos)?;
        if i == 0 {
            qname = name;
        }
        pos = next + 4; // type, class
        if pos > msg.len() {
            return Err(AppError::Truncated);
        }
    }
    Ok(Response {
        msg,
        id,
        qname,
        counts: [ancount, nscount, arcount],
        answers_at: pos,
    })
}

impl Response<'_> {
    /// Calls `visit` for each record of the answer section, in order: what
    /// a name cache learns from.
    pub fn answers(&self, mut visit: impl FnMut(Answer)) -> Result<(), AppError> {
        self.records(|section, a| {
            if section == Section::Answer {
                visit(a);
            }
        })
    }

    /// Calls `visit` for every record of the three sections, in order.
    pub fn records(&self, mut visit: impl FnMut(Section, Answer)) -> Result<(), AppError> {
        let mut pos = self.answers_at;
        let sections = [
            (Section::Answer, self.counts[0]),
            (Section::Authority, self.counts[1]),
            (Section::Additional, self.counts[2]),
        ];
        for (section, _) in sections
            .iter()
            .flat_map(|&(s, n)| (0..n).map(move |_| (s, ())))
        {
            let (name, next) = read_name(self.msg, pos)?;
            let mut r = Reader {
                data: self.msg,
                pos: next,
            };
            let rtype = r.u16()?;
            let _class = r.u16()?;
            let ttl = r.u32()?;
            let rdlen = usize::from(r.u16()?);
            let rdata_at = r.pos;
            let rdata = r.bytes(rdlen)?;
            visit(
                section,
                match (rtype, rdlen) {
                    (TYPE_A, 4) => Answer::A {
                        name,
                        addr: [rdata[0], rdata[1], rdata[2], rdata[3]],
                        ttl,
                    },
                    (TYPE_AAAA, 16) => {
                        let mut addr = [0u8; 16];
                        addr.copy_from_slice(rdata);
                        Answer::Aaaa { name, addr, ttl }
                    }
                    (TYPE_CNAME, _) => Answer::Cname {
                        name,
                        target: read_name(self.msg, rdata_at)?.0,
                        ttl,
                    },
                    _ => Answer::Other,
                },
            );
            pos = r.pos;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_loops_and_long_names_are_errors() {
        // Header (response, 1 question, 0 answers), then a name pointing at itself.
        let mut msg = [
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ]
        .to_vec();
        assert!(matches!(parse_response(&msg), Err(AppError::BadName)));
        msg[12] = 0x80; // reserved label type
        assert!(matches!(parse_response(&msg), Err(AppError::BadName)));
        // 5 labels of 63 bytes: longer than 253.
        let mut long = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0].to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(matches!(parse_response(&long), Err(AppError::BadName)));
        // A query is not a response; counts past reason are refused.
        assert!(matches!(
            parse_response(&[0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
            Err(AppError::Unexpected)
        ));
        assert!(matches!(
            parse_response(&[0, 0, 0x81, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0]),
            Err(AppError::AbsurdCount)
        ));
    }
}
