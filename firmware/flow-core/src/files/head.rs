//! The head of one HTTP/1.x message (start line and the headers that say
//! how its body is framed and coded), parsed from a complete head.

use pitap_wire::Text;

/// Methods a request may start with (what a tap tells HTTP from the rest).
const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Whether `data` starts like an HTTP request ("GET ").
pub fn looks_like_request(data: &[u8]) -> bool {
    METHODS
        .iter()
        .any(|m| data.len() > m.len() && data.starts_with(m) && data[m.len()] == b' ')
}

/// How a message's body is coded (Content-Encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    /// A coding the tap does not undo (br, compress, several).
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a [u8],
        target: &'a [u8],
        host: Option<&'a [u8]>,
        /// A request line without a version: HTTP/0.9, whose response is
        /// bare bytes until the connection closes.
        http09: bool,
    },
    Response {
        status: u16,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub start: StartLine<'a>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub coding: Coding,
}

/// Where a head ends in `data` (just past its empty line), if it does.
pub fn head_end(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from.saturating_sub(3);
    while let Some(p) = data.get(i..).and_then(|d| memchr::memchr(b'\n', d)) {
        let nl = i + p;
        match data.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if data.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Where an HTTP/0.9 request ends: its one line, a method and a target
/// without a version, is all of it.
pub fn http09_end(data: &[u8]) -> Option<usize> {
    let nl = memchr::memchr(b'\n', data)?;
    let line = data[..nl].strip_suffix(b"\r").unwrap_or(&data[..nl]);
    (looks_like_request(line) && line.split(|&b| b == b' ').filter(|p| !p.is_empty()).count() == 2)
        .then_some(nl + 1)
}

fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Parses a complete head; `None` when it is not an HTTP/1.x message head.
pub fn parse(head: &[u8]) -> Option<Head<'_>> {
    let mut it = lines(head);
    let first = it.next()?;
    let start = if first.starts_with(b"HTTP/") {
        let mut parts = first.splitn(3, |&b| b == b' ');
        parts.next();
        let code = parts.next()?;
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let status = code.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        StartLine::Response { status }
    } else if looks_like_request(first) {
        let mut parts = first.splitn(3, |&b| b == b' ');
        let method = parts.next()?;
        let target = parts.next()?;
        let version = parts.next();
        if version.is_some_and(|v| !v.starts_with(b"HTTP/")) {
            return None;
        }
        StartLine::Request {
            method,
            target,
            host: None,
            http09: version.is_none(),
        }
    } else {
        return None;
    };
    let mut h = Head {
        start,
        content_length: None,
        chunked: false,
        coding: Coding::Identity,
    };
    for line in it.take(200) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            h.content_length = core::str::from_utf8(value).ok()?.parse().ok();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked is always the last coding when present (RFC 9112 6.1).
            h.chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            h.coding = match value {
                v if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") => {
                    Coding::Gzip
                }
                v if v.eq_ignore_ascii_case(b"deflate") => Coding::Deflate,
                v if v.is_empty() || v.eq_ignore_ascii_case(b"identity") => Coding::Identity,
                _ => Coding::Other,
            };
        } else if name.eq_ignore_ascii_case(b"host") {
            if let StartLine::Request { host, .. } = &mut h.start {
                *host = Some(value);
            }
        }
    }
    Some(h)
}

/// The URL a request names: an absolute-form target as it is, else
/// `http://` and the Host header before the target (as tshark's
/// `http.request.full_uri`).
pub fn url(target: &[u8], host: Option<&[u8]>) -> Text<255> {
    if target.starts_with(b"http://") || target.starts_with(b"https://") {
        return Text::from_bytes(target);
    }
    let Some(host) = host else {
        return Text::from_bytes(target);
    };
    let mut buf = [0u8; 255];
    let mut n = 0;
    for part in [&b"http://"[..], host, target] {
        let take = part.len().min(buf.len() - n);
        buf[n..n + take].copy_from_slice(&part[..take]);
        n += take;
    }
    Text::from_bytes(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let h = parse(b"GET /a.png HTTP/1.1\r\nHost: x.net\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(
            h.start,
            StartLine::Request {
                method: b"GET",
                target: b"/a.png",
                host: Some(b"x.net"),
                http09: false
            }
        );
        let h = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\ncontent-encoding: GZIP\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.start, StartLine::Response { status: 200 });
        assert!(h.chunked);
        assert_eq!(h.coding, Coding::Gzip);
        assert_eq!(parse(b"HTTP/1.1 2x0 OK\r\n\r\n"), None);
        assert_eq!(parse(b"SSH-2.0-x\r\n\r\n"), None);
        let h = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(h.content_length, Some(12));
        assert_eq!(url(b"/x", Some(b"h")).as_str(), "http://h/x");
        assert_eq!(url(b"http://h/x", Some(b"o")).as_str(), "http://h/x");
    }

    #[test]
    fn head_ends_are_found_across_line_endings() {
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\r\nBODY", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\nBODY", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\nA: b\r\n", 0), None);
        // Resumed where the last search stopped.
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\r\n", 15), Some(18));
        assert_eq!(http09_end(b"GET /bad.html\r\n"), Some(15));
        assert_eq!(http09_end(b"GET /bad.html HTTP/1.0\r\n"), None);
        assert_eq!(http09_end(b"HTTP/1.0 200 OK\r\n"), None);
    }
}
