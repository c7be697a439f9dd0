//! GELF 1.1 (Graylog Extended Log Format) over UDP and TCP. One message per
//! flow: `short_message` is the flow line, `host` the tap, `timestamp` the
//! flow's start (seconds with milliseconds), and every flow field as an
//! additional field with a leading underscore (`_src_addr`, `_bytes`, ...).
//! UDP messages larger than one chunk are split into GELF chunks (magic
//! 0x1e 0x0f, 8-byte message id, sequence number, count; at most 128), as
//! Graylog's GELF UDP input reassembles them; TCP messages end with a NUL.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use pitap_wire::format::text_line;

use super::Exporter;
use crate::flow::StoredFlow;

/// Graylog drops a message of more chunks than this.
pub const MAX_CHUNKS: usize = 128;
const CHUNK_HEADER: usize = 12;

/// The GELF message for one flow.
pub fn message(flow: &StoredFlow) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("version".into(), "1.1".into());
    m.insert("host".into(), flow.tap.clone().into());
    m.insert(
        "short_message".into(),
        text_line(&flow.record, &flow.tap).into(),
    );
    m.insert(
        "timestamp".into(),
        serde_json::json!((flow.record.start_ms as f64) / 1000.0),
    );
    m.insert("level".into(), 6.into()); // informational
    if let serde_json::Value::Object(fields) = flow.json() {
        for (k, v) in fields {
            // GELF reserves `_id`; null fields are left out (Graylog drops them).
            if k == "id" || v.is_null() {
                continue;
            }
            m.insert(format!("_{k}"), v);
        }
    }
    serde_json::Value::Object(m)
}

/// Splits an encoded message into GELF UDP datagrams of at most
/// `chunk_size` bytes; None if it needs more than 128 chunks.
pub fn chunks(payload: &[u8], chunk_size: usize, id: [u8; 8]) -> Option<Vec<Vec<u8>>> {
    if payload.len() <= chunk_size {
        return Some(vec![payload.to_vec()]);
    }
    let per = chunk_size - CHUNK_HEADER;
    let count = payload.len().div_ceil(per);
    if count > MAX_CHUNKS {
        return None;
    }
    Some(
        payload
            .chunks(per)
            .enumerate()
            .map(|(i, part)| {
                let mut d = Vec::with_capacity(CHUNK_HEADER + part.len());
                d.extend_from_slice(&[0x1e, 0x0f]);
                d.extend_from_slice(&id);
                d.push(i as u8);
                d.push(count as u8);
                d.extend_from_slice(part);
                d
            })
            .collect(),
    )
}

pub struct GelfUdp {
    socket: UdpSocket,
    to: SocketAddr,
    chunk_size: usize,
    next_id: u64,
    sent: u64,
    errors: u64,
}

impl GelfUdp {
    pub fn new(to: SocketAddr, chunk_size: usize) -> Result<Self, String> {
        let seed = crate::keygen::random_bytes::<8>()?;
        Ok(GelfUdp {
            socket: super::udp_to(to)?,
            to,
            chunk_size,
            next_id: u64::from_be_bytes(seed),
            sent: 0,
            errors: 0,
        })
    }
}

impl Exporter for GelfUdp {
    fn export(&mut self, flows: &[StoredFlow]) {
        for flow in flows {
            let payload = message(flow).to_string();
            self.next_id = self.next_id.wrapping_add(1);
            match chunks(
                payload.as_bytes(),
                self.chunk_size,
                self.next_id.to_be_bytes(),
            ) {
                Some(datagrams) => {
                    for d in datagrams {
                        match self.socket.send(&d) {
                            Ok(_) => self.sent += 1,
                            Err(_) => self.errors += 1,
                        }
                    }
                }
                None => self.errors += 1,
            }
        }
    }

    fn counts(&self) -> (u64, u64) {
        (self.sent, self.errors)
    }

    fn describe(&self) -> String {
        format!("GELF/UDP to {}", self.to)
    }
}

/// GELF over TCP: NUL-terminated messages on one connection, made again
/// when it breaks (messages that met a broken connection are counted lost).
pub struct GelfTcp {
    to: SocketAddr,
    stream: Option<TcpStream>,
    sent: u64,
    errors: u64,
}

impl GelfTcp {
    pub fn new(to: SocketAddr) -> Self {
        GelfTcp {
            to,
            stream: None,
            sent: 0,
            errors: 0,
        }
    }
}

impl Exporter for GelfTcp {
    fn export(&mut self, flows: &[StoredFlow]) {
        if flows.is_empty() {
            return;
        }
        let mut data = Vec::new();
        for flow in flows {
            data.extend_from_slice(message(flow).to_string().as_bytes());
            data.push(0);
        }
        if self.stream.is_none() {
            self.stream = TcpStream::connect_timeout(&self.to, Duration::from_secs(2)).ok();
            if let Some(s) = &self.stream {
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            }
        }
        match self.stream.as_mut().map(|s| s.write_all(&data)) {
            Some(Ok(())) => self.sent += flows.len() as u64,
            _ => {
                self.stream = None;
                self.errors += flows.len() as u64;
            }
        }
    }

    fn counts(&self) -> (u64, u64) {
        (self.sent, self.errors)
    }

    fn describe(&self) -> String {
        format!("GELF/TCP to {}", self.to)
    }
}
