//! `pitap collect`: receive batches from any number of taps, check them,
//! print one line per flow. A datagram that is not a well-formed batch is
//! rejected and counted by reason, never half-printed.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pitap_wire::format::{LineFormat, LineSink};
use pitap_wire::{BatchHeader, BatchReader, FlowRecord, FlowSink, WireError};

use crate::taps::{Arrival, Taps};

pub struct Options {
    pub listen: SocketAddr,
    pub format: LineFormat,
    pub output: Option<PathBuf>,
    pub until_final: bool,
    pub idle_exit: Option<Duration>,
}

/// Receive buffer asked of the kernel: room for bursts of a few thousand
/// batches while lines are being written.
const RECV_BUFFER: usize = 8 << 20;

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel caps this at net.core.rmem_max; a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Decodes a whole datagram before anything of it is printed.
fn decode(datagram: &[u8]) -> Result<(BatchHeader<'_>, Vec<FlowRecord>), WireError> {
    let reader = BatchReader::new(datagram)?;
    let header = reader.header;
    let records = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((header, records))
}

pub fn run(opts: &Options) -> Result<(), String> {
    let socket = bind(opts.listen).map_err(|e| format!("listen on {}: {e}", opts.listen))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(250)))
        .map_err(|e| e.to_string())?;
    let out: Box<dyn Write> = match &opts.output {
        Some(path) => Box::new(io::BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => Box::new(io::BufWriter::new(io::stdout())),
    };
    let mut sink = LineSink::new(out, "", opts.format);
    let mut taps = Taps::default();
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut last_datagram = Instant::now();
    eprintln!(
        "pitap: collecting on {}",
        socket.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                sink.finish().map_err(|e| format!("writing flows: {e}"))?;
                if opts.idle_exit.is_some_and(|d| last_datagram.elapsed() >= d) {
                    break;
                }
                continue;
            }
            Err(e) => return Err(format!("receive: {e}")),
        };
        last_datagram = Instant::now();
        let (header, records) = match decode(&buf[..len]) {
            Ok(decoded) => decoded,
            Err(e) => {
                let n = rejected.entry(e.to_string()).or_default();
                *n += 1;
                if *n == 1 {
                    eprintln!("pitap: rejected datagram from {from}: {e}");
                }
                continue;
            }
        };
        if taps.arrive(&header, records.len() as u64) == Arrival::Duplicate {
            continue;
        }
        sink.set_tap(header.tap_id);
        for record in &records {
            sink.emit(record);
        }
        if opts.until_final && taps.iter().any(|(_, t)| t.said_final) {
            break;
        }
    }
    sink.finish().map_err(|e| format!("writing flows: {e}"))?;
    for (id, t) in taps.iter() {
        eprintln!(
            "pitap: tap {id}: {} batches, {} records, {} batches lost, {} duplicates, {} reboots",
            t.batches, t.records, t.lost_batches, t.duplicates, t.reboots
        );
    }
    for (reason, n) in &rejected {
        eprintln!("pitap: rejected {n} datagrams: {reason}");
    }
    Ok(())
}
