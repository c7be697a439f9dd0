//! Command-line options. Parsed with `lexopt` (tiny, no dependencies) to keep
//! the static firmware binary small.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use pitap_flow_core::EngineConfig;
use pitap_wire::format::LineFormat;

pub const USAGE: &str = "\
usage: pitapd --read FILE [--print] [--format text|json] [--uplink HOST:PORT]
              [--tap-id ID] [--flows N] [--idle-timeout SECS]
              [--active-timeout SECS] [--progress] [--quiet]

  --read FILE            replay a pcap or pcapng capture through the flow engine
  --print                write one line per flow to stdout
  --format text|json     line format for --print (default text)
  --uplink HOST:PORT     send flow batches to a collector over UDP
  --tap-id ID            name of this tap in records (default: pitap)
  --flows N              flow table capacity (default 65536)
  --idle-timeout SECS    end a flow after this long without packets (default 60)
  --active-timeout SECS  report long flows in parts of this length (default 300)
  --progress             show a progress bar on stderr
  --quiet                no summary on stderr
";

#[derive(Debug)]
pub struct Options {
    pub read: PathBuf,
    pub print: bool,
    pub format: LineFormat,
    pub uplink: Option<SocketAddr>,
    pub tap_id: String,
    pub engine: EngineConfig,
    pub progress: bool,
    pub quiet: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Options>),
    Help,
    Version,
}

fn seconds_to_us(option: &str, value: &str) -> Result<u64, String> {
    match value.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s < 1e9 => Ok((s * 1e6) as u64),
        _ => Err(format!(
            "{option}: expected a positive number of seconds, got {value:?}"
        )),
    }
}

fn text(option: &str, value: OsString) -> Result<String, String> {
    value
        .into_string()
        .map_err(|v| format!("{option}: not valid UTF-8: {v:?}"))
}

fn value(parser: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    text(name, v)
}

/// Parses the command line; the first item is the program name.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut read = None;
    let mut print = false;
    let mut format = LineFormat::Text;
    let mut uplink = None;
    let mut tap_id = String::from("pitap");
    let mut engine = EngineConfig::default();
    let mut progress = false;
    let mut quiet = false;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("read") | Short('r') => read = Some(PathBuf::from(value(&mut parser, "--read")?)),
            Long("print") => print = true,
            Long("format") => format = value(&mut parser, "--format")?.parse()?,
            Long("uplink") => {
                let v = value(&mut parser, "--uplink")?;
                uplink = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("--uplink: {v:?} is not HOST:PORT ({e})"))?,
                );
            }
            Long("tap-id") => {
                let v = value(&mut parser, "--tap-id")?;
                if v.is_empty() || v.len() > pitap_wire::codec::MAX_TAP_ID {
                    return Err(format!(
                        "--tap-id: must be 1 to {} bytes",
                        pitap_wire::codec::MAX_TAP_ID
                    ));
                }
                tap_id = v;
            }
            Long("flows") => {
                let v = value(&mut parser, "--flows")?;
                engine.capacity = match v.parse::<usize>() {
                    Ok(n) if (1..=16_777_216).contains(&n) => n,
                    _ => return Err(format!("--flows: expected 1 to 16777216, got {v:?}")),
                };
            }
            Long("idle-timeout") => {
                engine.idle_timeout_us =
                    seconds_to_us("--idle-timeout", &value(&mut parser, "--idle-timeout")?)?
            }
            Long("active-timeout") => {
                engine.active_timeout_us =
                    seconds_to_us("--active-timeout", &value(&mut parser, "--active-timeout")?)?
            }
            Long("progress") => progress = true,
            Long("quiet") | Short('q') => quiet = true,
            Long("help") | Short('h') => return Ok(Command::Help),
            Long("version") | Short('V') => return Ok(Command::Version),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let read = read.ok_or("--read FILE is required (live capture comes with the tap ports)")?;
    if !print && uplink.is_none() {
        return Err(
            "nothing to do with the flows: give --print, --uplink HOST:PORT or both".into(),
        );
    }
    Ok(Command::Run(Box::new(Options {
        read,
        print,
        format,
        uplink,
        tap_id,
        engine,
        progress,
        quiet,
    })))
}
