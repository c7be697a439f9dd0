//! The flow line as RFC 5424 syslog over UDP (facility local0, severity
//! informational), for rsyslog, syslog-ng or a SIEM's syslog input:
//! `<134>1 2026-11-25T10:00:00.000Z TAP pitap - flow - TIME ACTION ...`.

use std::net::{SocketAddr, UdpSocket};

use pitap_wire::format::{text_line, time_text};

use super::Exporter;
use crate::flow::StoredFlow;

pub fn message(flow: &StoredFlow, now_ms: u64) -> String {
    // A HOSTNAME has no spaces and at most 255 printable characters.
    let host: String = flow
        .tap
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    let host = if host.is_empty() {
        "-".to_string()
    } else {
        host
    };
    format!(
        "<134>1 {}Z {host} pitap - flow - {}",
        time_text(now_ms, 'T'),
        text_line(&flow.record, &flow.tap)
    )
}

pub struct Syslog {
    socket: UdpSocket,
    to: SocketAddr,
    sent: u64,
    errors: u64,
}

impl Syslog {
    pub fn new(to: SocketAddr) -> Result<Self, String> {
        Ok(Syslog {
            socket: super::udp_to(to)?,
            to,
            sent: 0,
            errors: 0,
        })
    }
}

impl Exporter for Syslog {
    fn export(&mut self, flows: &[StoredFlow]) {
        let now = crate::search::now_ms();
        for flow in flows {
            match self.socket.send(message(flow, now).as_bytes()) {
                Ok(_) => self.sent += 1,
                Err(_) => self.errors += 1,
            }
        }
    }

    fn counts(&self) -> (u64, u64) {
        (self.sent, self.errors)
    }

    fn describe(&self) -> String {
        format!("syslog to {}", self.to)
    }
}
