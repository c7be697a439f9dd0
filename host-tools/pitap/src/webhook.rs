//! HTTP POST of alert JSON to a webhook, from a thread of its own so a slow
//! or dead receiver never holds up collection (a full queue drops and says
//! so). Plain `http://` only, written by hand: one request line and three
//! headers do not justify an HTTP client with TLS in the collector; put a
//! local relay in front of an `https://` receiver.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;

const QUEUE: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(3);

/// `http://host[:port]/path` -> (host, port, path).
pub fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// webhooks (put a relay in front of https)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(|c| c == '[' || c == ']'),
            p.parse::<u16>().map_err(|_| format!("{url:?}: bad port"))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// Sends one POST and returns the HTTP status.
pub fn post(url: &str, body: &str) -> Result<u16, String> {
    let (host, port, path) = parse_url(url)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{url}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: pitap\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| format!("{url}: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))
}

pub struct Poster {
    queue: Option<SyncSender<(String, String)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Alerts queued before the collector stops are still posted.
impl Drop for Poster {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Poster {
    pub fn start() -> Poster {
        let (tx, rx) = sync_channel::<(String, String)>(QUEUE);
        let thread = std::thread::spawn(move || {
            for (url, body) in rx {
                match post(&url, &body) {
                    Ok(code) if (200..300).contains(&code) => {}
                    Ok(code) => eprintln!("pitap: webhook {url}: HTTP {code}"),
                    Err(e) => eprintln!("pitap: webhook {e}"),
                }
            }
        });
        Poster {
            queue: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn post(&self, url: &str, body: String) -> Result<(), String> {
        let Some(queue) = &self.queue else {
            return Err("webhook thread stopped".into());
        };
        match queue.try_send((url.to_string(), body)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err("webhook queue full: alert not posted".into()),
            Err(TrySendError::Disconnected(_)) => Err("webhook thread gone".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:9000/hook"),
            Ok(("127.0.0.1".into(), 9000, "/hook".into()))
        );
        assert_eq!(
            parse_url("http://example.net"),
            Ok(("example.net".into(), 80, "/".into()))
        );
        assert_eq!(
            parse_url("http://[::1]:81/x"),
            Ok(("::1".into(), 81, "/x".into()))
        );
        assert!(parse_url("https://example.net/").is_err());
        assert!(parse_url("http://:80/").is_err());
    }
}
