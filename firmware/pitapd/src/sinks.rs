//! Where a tap's records go: the uplink, stdout, or both.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use pitap_wire::format::{LineFormat, LineSink};
use pitap_wire::{FlowRecord, FlowSink};

use crate::uplink::{UdpUplink, UplinkCounters};

pub struct Sinks {
    pub print: Option<LineSink<io::BufWriter<io::Stdout>>>,
    pub uplink: Option<UdpUplink>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Sinks {
    pub fn open(
        print: Option<LineFormat>,
        uplink: Option<SocketAddr>,
        tap_id: &str,
    ) -> Result<Sinks, String> {
        Ok(Sinks {
            print: print.map(|f| LineSink::new(io::BufWriter::new(io::stdout()), tap_id, f)),
            uplink: match uplink {
                Some(addr) => Some(
                    UdpUplink::open(addr, tap_id).map_err(|e| format!("uplink to {addr}: {e}"))?,
                ),
                None => None,
            },
        })
    }

    /// Periodic work of a live tap: send a batch that waited long enough,
    /// make printed lines visible. Errors are reported, not fatal: the tap
    /// keeps tapping.
    pub fn tick(&mut self, flush_interval: Duration) {
        if let Some(u) = &mut self.uplink {
            u.flush_if_older(flush_interval);
            if let Some(e) = u.take_error() {
                eprintln!("pitapd: uplink: {e}");
            }
        }
        if let Some(p) = &mut self.print {
            if let Err(e) = p.finish() {
                eprintln!("pitapd: writing flows: {e}");
            }
        }
    }

    pub fn uplink_counters(&self) -> UplinkCounters {
        self.uplink
            .as_ref()
            .map(UdpUplink::counters)
            .unwrap_or_default()
    }

    /// Flushes the printer and sends the last batch, flagged final.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(p) = &mut self.print {
            p.finish().map_err(|e| format!("writing flows: {e}"))?;
        }
        if let Some(u) = &mut self.uplink {
            u.finish(now_ms()).map_err(|e| format!("uplink: {e}"))?;
        }
        Ok(())
    }
}

impl FlowSink for Sinks {
    fn emit(&mut self, record: &FlowRecord) {
        if let Some(p) = &mut self.print {
            p.emit(record);
        }
        if let Some(u) = &mut self.uplink {
            u.emit(record);
        }
    }
}
