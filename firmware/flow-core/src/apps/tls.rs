//! The TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 server_name, RFC 7301
//! ALPN) at the start of a client's byte stream: the server name and the
//! offered application protocols. A ClientHello larger than one segment
//! (post-quantum key shares make them so) is reported as `NeedMore` with
//! the bytes it needs, so the caller can join the next segment.

use pitap_wire::Text;

use super::{AppError, Reader};

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// Records are at most 2^14 bytes (plus a little for ciphertext).
const MAX_RECORD: usize = 16_384 + 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClientHello<'a> {
    /// The host name of the server_name extension.
    pub sni: Option<&'a [u8]>,
    /// The ALPN protocol name list, as on the wire (length-prefixed names).
    pub alpn: Option<&'a [u8]>,
}

impl<'a> ClientHello<'a> {
    /// The offered ALPN protocols in order.
    pub fn alpn_protocols(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut rest = self.alpn.unwrap_or(&[]);
        core::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let name = tail.get(..usize::from(len))?;
            rest = &tail[usize::from(len)..];
            Some(name)
        })
    }

    /// The offered protocols comma-separated, as many whole names as fit a
    /// record's 32 bytes ("h2,http/1.1").
    pub fn alpn_list(&self) -> Text<32> {
        let mut list = heapless::Vec::<u8, 32>::new();
        for p in self.alpn_protocols() {
            let sep: &[u8] = if list.is_empty() { b"" } else { b"," };
            if list.len() + sep.len() + p.len() > list.capacity() {
                break;
            }
            // Cannot fail: the room was checked.
            let _ = list.extend_from_slice(sep);
            let _ = list.extend_from_slice(p);
        }
        Text::from_bytes(&list)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    Hello(ClientHello<'a>),
    /// A ClientHello record that continues past the data: this many bytes
    /// in total are needed.
    NeedMore(usize),
    /// Not a TLS handshake record.
    NotTls,
}

/// Reads the ClientHello at the start of `data`.
pub fn parse_client_hello(data: &[u8]) -> Result<Outcome<'_>, AppError> {
    let mut r = Reader::new(data);
    let (Ok(content), Ok(major)) = (r.u8(), r.u8()) else {
        return Ok(Outcome::NotTls);
    };
    if content != CONTENT_HANDSHAKE || major != 3 {
        return Ok(Outcome::NotTls);
    }
    r.skip(1)?; // minor version
    let record_len = usize::from(r.u16()?);
    if record_len > MAX_RECORD {
        return Err(AppError::AbsurdCount);
    }
    let (Ok(kind), Ok(hello_len)) = (r.u8(), r.u24()) else {
        return Ok(Outcome::NeedMore(5 + record_len));
    };
    if kind != HANDSHAKE_CLIENT_HELLO {
        return Ok(Outcome::NotTls);
    }
    let hello_len = hello_len as usize;
    // The hello may span records; only the first record is read, which is
    // where every client puts the whole hello.
    let available = data.len().saturating_sub(9);
    if hello_len > available {
        let needed = 9 + hello_len;
        return if needed > MAX_RECORD + 9 {
            Err(AppError::AbsurdCount)
        } else {
            Ok(Outcome::NeedMore(needed))
        };
    }
    let mut h = Reader::new(&data[9..9 + hello_len]);
    h.skip(2 + 32)?; // legacy_version, random
    let session = usize::from(h.u8()?);
    h.skip(session)?;
    let suites = usize::from(h.u16()?);
    h.skip(suites)?;
    let compression = usize::from(h.u8()?);
    h.skip(compression)?;
    let mut hello = ClientHello::default();
    if h.rest().is_empty() {
        return Ok(Outcome::Hello(hello)); // no extensions (old clients)
    }
    let ext_len = usize::from(h.u16()?);
    let mut e = Reader::new(h.bytes(ext_len)?);
    while !e.rest().is_empty() {
        let ext = e.u16()?;
        let len = usize::from(e.u16()?);
        let body = e.bytes(len)?;
        match ext {
            EXT_SERVER_NAME => {
                let mut s = Reader::new(body);
                let list = usize::from(s.u16()?);
                let mut l = Reader::new(s.bytes(list)?);
                while !l.rest().is_empty() {
                    let name_type = l.u8()?;
                    let n = usize::from(l.u16()?);
                    let name = l.bytes(n)?;
                    if name_type == 0 && hello.sni.is_none() {
                        hello.sni = Some(name);
                    }
                }
            }
            EXT_ALPN => {
                let mut a = Reader::new(body);
                let list = usize::from(a.u16()?);
                hello.alpn = Some(a.bytes(list)?);
            }
            _ => {}
        }
    }
    Ok(Outcome::Hello(hello))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        ext.extend_from_slice(&16u16.to_be_bytes());
        ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        // Padding, as big hellos carry: 1500 bytes.
        ext.extend_from_slice(&21u16.to_be_bytes());
        ext.extend_from_slice(&1500u16.to_be_bytes());
        ext.extend_from_slice(&[0; 1500]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut out = vec![22, 3, 1];
        out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        out.push(1);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn sni_and_alpn_also_across_two_segments() {
        let full = hello("C2.Example.NET", &["h2", "http/1.1"]);
        let Ok(Outcome::Hello(h)) = parse_client_hello(&full) else {
            panic!()
        };
        assert_eq!(h.sni, Some(&b"C2.Example.NET"[..]));
        let alpn: Vec<&[u8]> = h.alpn_protocols().collect();
        assert_eq!(alpn, [&b"h2"[..], b"http/1.1"]);
        // The first segment alone asks for the rest.
        assert_eq!(
            parse_client_hello(&full[..1200]),
            Ok(Outcome::NeedMore(full.len()))
        );
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Ok(Outcome::NotTls)
        );
        // A lie about a length is an error, not a read past the end.
        let mut bad = full.clone();
        bad[9 + 2 + 32 + 1] = 0xff; // cipher suites length
        assert!(parse_client_hello(&bad).is_err());
    }
}
