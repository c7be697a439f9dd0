//! The first request of a cleartext HTTP/1.x client: method, target,
//! version and the Host header, from the head of the client's stream.

use pitap_wire::Text;

use super::AppError;

const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];
/// Longest request line or header line read.
const MAX_LINE: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: &'a [u8],
    pub host: Option<&'a [u8]>,
}

impl Request<'_> {
    /// Method and target as a record carries them ("GET /index.html"), cut
    /// at 128 bytes.
    pub fn line(&self) -> Text<128> {
        let mut line = heapless::Vec::<u8, 128>::new();
        let method = &self.method[..self.method.len().min(line.capacity())];
        // Cannot fail: each part is cut to the room left.
        let _ = line.extend_from_slice(method);
        let _ = line.push(b' ');
        let room = line.capacity() - line.len();
        let _ = line.extend_from_slice(&self.target[..self.target.len().min(room)]);
        Text::from_bytes(&line)
    }
}

/// `None` when `data` does not start with an HTTP request line.
pub fn parse_request(data: &[u8]) -> Result<Option<Request<'_>>, AppError> {
    let Some(space) = data.iter().take(10).position(|&b| b == b' ') else {
        return Ok(None);
    };
    let method = &data[..space];
    if !METHODS.contains(&method) {
        return Ok(None);
    }
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next().ok_or(AppError::Truncated)?;
    if first.len() > MAX_LINE || first.len() == data.len() {
        // No end of line within the data: a request line cut short.
        return Err(AppError::Truncated);
    }
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let mut parts = first.splitn(3, |&b| b == b' ');
    let (_, Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AppError::Unexpected);
    };
    if !version.starts_with(b"HTTP/") {
        return Err(AppError::Unexpected);
    }
    let mut host = None;
    for line in lines.take(100) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].eq_ignore_ascii_case(b"host") {
                host = Some(line[colon + 1..].trim_ascii());
                break;
            }
        }
    }
    Ok(Some(Request {
        method,
        target,
        version,
        host,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_and_host() {
        let r =
            parse_request(b"GET /a?b=1 HTTP/1.1\r\nUser-Agent: x\r\nHOST: www.example.net\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(r.method, b"GET");
        assert_eq!(r.target, b"/a?b=1");
        assert_eq!(r.host, Some(&b"www.example.net"[..]));
        assert_eq!(parse_request(b"\x16\x03\x01\x02\x00"), Ok(None));
        assert_eq!(parse_request(b"GET /no-end"), Err(AppError::Truncated));
    }
}
