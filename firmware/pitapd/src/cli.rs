//! Command-line options. Parsed with `lexopt` (tiny, no dependencies) to keep
//! the static firmware binary small.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use pitap_wire::envelope::Key;
use pitap_wire::format::LineFormat;

use crate::config::Config;
use crate::uplink::{ClockMode, Sealing, UplinkSettings};

pub const USAGE: &str = "\
usage: pitapd --config FILE [--print] [--format text|json|zeek|zeek-json|ecs] [--config-errors FILE]
       pitapd --check-config FILE
       pitapd --read FILE [--config FILE] [--print] [--files] [--format text|json|zeek|zeek-json|ecs]
              [--uplink HOST:PORT (--key HEX | --insecure-plaintext)] [--tap-id ID]
              [--wire-version 1|2] [--no-deflate] [--ack-timeout SECS] [--flows N] [--idle-timeout SECS] [--active-timeout SECS]
              [--progress] [--quiet]

  --config FILE          the tap's pitap.toml; without --read, tap the ports it names
  --check-config FILE    validate a pitap.toml: ok, or the key and the reason (exit 2)
  --config-errors FILE   a file of configuration errors to show on the display
                         (the boot fallback runs with it)
  --read FILE            replay a pcap or pcapng capture through the flow engine
                         (gzip'd too; - reads standard input)
  --print                write one line per flow to stdout
  --files                write one line per file record (an HTTP body: hashes, size,
                         type, URL) to stdout
  --format FORMAT        line format for --print: text (default), json, Zeek's
                         conn.log as zeek (TSV) or zeek-json, or ecs (Elastic)
  --uplink HOST:PORT     send flow batches to a collector over UDP
  --key HEX              the tap's key (pitap keygen); every datagram is sealed with it
  --insecure-plaintext   send without sealing (tests only; the collector must agree)
  --tap-id ID            name of this tap in records (default: pitap)
  --wire-version N       batch encoding: 2 (default), or 1 for collectors older
                         than 2, which refuse 2 (uplink.wire_version in the file)
  --no-deflate           send version 2 batches as built, not deflated (less CPU,
                         more bytes; uplink.deflate in the file)
  --ack-timeout SECS     give up when the collector has acknowledged nothing for
                         this long (default: wait as long as it takes, saying so)
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
    /// Lines for file records too.
    pub files: bool,
    pub format: LineFormat,
    /// The collector and how to reach it.
    pub uplink: Option<(SocketAddr, UplinkSettings)>,
    pub tap_id: String,
    pub engine: pitap_flow_core::EngineConfig,
    pub progress: bool,
    pub quiet: bool,
    /// How long a replay waits for the collector at most (None: for ever).
    pub ack_timeout: Option<std::time::Duration>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Read a capture file offline (`--read`).
    Read(Box<Options>),
    /// Tap the ports of the configuration.
    Live {
        config: Box<Config>,
        print: Option<LineFormat>,
        /// Errors of the configuration the user wrote (we run a fallback).
        config_errors: Option<String>,
    },
    /// Validate a configuration file.
    CheckConfig(PathBuf),
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

/// The value of option `name`, a positive number of seconds, in µs.
fn seconds_value(parser: &mut lexopt::Parser, name: &str) -> Result<u64, String> {
    seconds_to_us(name, &value(parser, name)?)
}

/// Parses the command line (the first item is the program name) and loads
/// the configuration it names. `Err(Usage)` is a wrong command line,
/// `Err(Invalid)` a configuration that cannot be used.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, CliError> {
    let raw = parse_flags(args).map_err(CliError::Usage)?;
    raw.into_command()
}

#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    Usage(String),
    Invalid(String),
}

/// The flags as given, before the configuration file is read.
struct Flags {
    read: Option<PathBuf>,
    config_path: Option<PathBuf>,
    print: bool,
    files: bool,
    format: LineFormat,
    uplink: Option<SocketAddr>,
    key: Option<String>,
    insecure_plaintext: bool,
    wire_version: Option<u8>,
    no_deflate: bool,
    tap_id: Option<String>,
    capacity: Option<usize>,
    idle_us: Option<u64>,
    active_us: Option<u64>,
    ack_timeout_us: Option<u64>,
    progress: bool,
    quiet: bool,
    help: bool,
    version: bool,
    check_config: Option<PathBuf>,
    config_errors: Option<PathBuf>,
}

fn parse_flags<I: IntoIterator<Item = OsString>>(args: I) -> Result<Flags, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut read = None;
    let mut config_path: Option<PathBuf> = None;
    let mut print = false;
    let mut files = false;
    let mut format = LineFormat::Text;
    let mut uplink = None;
    let mut key = None;
    let mut insecure_plaintext = false;
    let mut wire_version = None;
    let mut no_deflate = false;
    let mut tap_id: Option<String> = None;
    let mut capacity = None;
    let mut idle_us = None;
    let mut active_us = None;
    let mut ack_timeout_us = None;
    let mut progress = false;
    let mut quiet = false;
    let mut help = false;
    let mut version = false;
    let mut check_config = None;
    let mut config_errors = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") | Short('c') => {
                config_path = Some(PathBuf::from(value(&mut parser, "--config")?))
            }
            Long("read") | Short('r') => read = Some(PathBuf::from(value(&mut parser, "--read")?)),
            Long("print") => print = true,
            Long("files") => files = true,
            Long("format") => format = value(&mut parser, "--format")?.parse()?,
            Long("uplink") => {
                let v = value(&mut parser, "--uplink")?;
                uplink = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("--uplink: {v:?} is not HOST:PORT ({e})"))?,
                );
            }
            Long("key") => key = Some(value(&mut parser, "--key")?),
            Long("insecure-plaintext") => insecure_plaintext = true,
            Long("no-deflate") => no_deflate = true,
            Long("wire-version") => {
                let v = value(&mut parser, "--wire-version")?;
                wire_version = Some(match v.parse::<u8>() {
                    Ok(n)
                        if (pitap_wire::codec::VERSION_1..=pitap_wire::codec::VERSION)
                            .contains(&n) =>
                    {
                        n
                    }
                    _ => return Err(format!("--wire-version: 1 or 2, got {v:?}")),
                });
            }
            Long("tap-id") => {
                let v = value(&mut parser, "--tap-id")?;
                pitap_wire::codec::check_tap_id(&v).map_err(|e| format!("--tap-id: {e}"))?;
                tap_id = Some(v);
            }
            Long("flows") => {
                let v = value(&mut parser, "--flows")?;
                capacity = Some(match v.parse::<usize>() {
                    Ok(n) if (1..=16_777_216).contains(&n) => n,
                    _ => return Err(format!("--flows: expected 1 to 16777216, got {v:?}")),
                });
            }
            Long("idle-timeout") => idle_us = Some(seconds_value(&mut parser, "--idle-timeout")?),
            Long("active-timeout") => {
                active_us = Some(seconds_value(&mut parser, "--active-timeout")?)
            }
            Long("ack-timeout") => {
                ack_timeout_us = Some(seconds_value(&mut parser, "--ack-timeout")?)
            }
            Long("check-config") => {
                check_config = Some(PathBuf::from(value(&mut parser, "--check-config")?))
            }
            Long("config-errors") => {
                config_errors = Some(PathBuf::from(value(&mut parser, "--config-errors")?))
            }
            Long("progress") => progress = true,
            Long("quiet") | Short('q') => quiet = true,
            Long("help") | Short('h') => help = true,
            Long("version") | Short('V') => version = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Flags {
        read,
        config_path,
        print,
        files,
        format,
        uplink,
        key,
        insecure_plaintext,
        wire_version,
        no_deflate,
        tap_id,
        capacity,
        idle_us,
        active_us,
        ack_timeout_us,
        progress,
        quiet,
        help,
        version,
        check_config,
        config_errors,
    })
}

impl Flags {
    fn into_command(self) -> Result<Command, CliError> {
        if self.help {
            return Ok(Command::Help);
        }
        if self.version {
            return Ok(Command::Version);
        }
        if let Some(path) = self.check_config {
            return Ok(Command::CheckConfig(path));
        }
        let config = match &self.config_path {
            Some(path) => Some(
                Config::load(path)
                    .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        let Some(read) = self.read else {
            return match config {
                Some(config) => Ok(Command::Live {
                    config: Box::new(config),
                    print: self.print.then_some(self.format),
                    // A missing or unreadable file means no errors to show.
                    config_errors: self
                        .config_errors
                        .and_then(|p| std::fs::read_to_string(p).ok())
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty()),
                }),
                None => Err(CliError::Usage(
                    "give --config FILE to tap live, or --read FILE to replay a capture".into(),
                )),
            };
        };
        // Command-line values win over the file's.
        let mut engine = config
            .as_ref()
            .map_or_else(pitap_flow_core::EngineConfig::default, |c| c.engine);
        engine.capacity = self.capacity.unwrap_or(engine.capacity);
        engine.idle_timeout_us = self.idle_us.unwrap_or(engine.idle_timeout_us);
        engine.active_timeout_us = self.active_us.unwrap_or(engine.active_timeout_us);
        let mut uplink = config
            .as_ref()
            .map_or_else(crate::config::Uplink::default, |c| c.uplink.clone());
        uplink.collector = self.uplink.or(uplink.collector);
        uplink.wire_version = self.wire_version.unwrap_or(uplink.wire_version);
        uplink.deflate &= !self.no_deflate;
        let tap_id = self
            .tap_id
            .or_else(|| config.as_ref().map(|c| c.tap.id.clone()))
            .unwrap_or_else(|| "pitap".to_string());
        match (&self.key, self.insecure_plaintext) {
            (Some(_), true) => {
                return Err(CliError::Usage(
                    "--key and --insecure-plaintext exclude each other".into(),
                ))
            }
            (Some(k), false) => {
                uplink.sealing = Some(Sealing::Key(
                    Key::from_hex(k).map_err(|e| CliError::Usage(format!("--key: {e}")))?,
                ))
            }
            (None, true) => uplink.sealing = Some(Sealing::Plaintext),
            (None, false) => {}
        }
        // A replay's times are the capture's own.
        let uplink = match (
            uplink.collector,
            uplink.settings(&tap_id, ClockMode::Capture),
        ) {
            (Some(addr), Some(settings)) => Some((addr, settings)),
            (Some(_), None) => {
                return Err(CliError::Usage(
                    "--uplink needs --key HEX (pitap keygen makes one) or --insecure-plaintext"
                        .into(),
                ))
            }
            (None, _) => None,
        };
        if !self.print && !self.files && uplink.is_none() {
            return Err(CliError::Usage(
                "nothing to do with the flows: give --print, --uplink HOST:PORT or both".into(),
            ));
        }
        Ok(Command::Read(Box::new(Options {
            read,
            print: self.print,
            files: self.files,
            format: self.format,
            uplink,
            tap_id,
            engine,
            progress: self.progress,
            quiet: self.quiet,
            ack_timeout: self.ack_timeout_us.map(std::time::Duration::from_micros),
        })))
    }
}
