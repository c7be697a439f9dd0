//! `pitap`, the PiTap host tool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pitap::config::CollectorConfig;
use pitap::{collect, keygen};
use pitap_wire::format::LineFormat;

#[derive(Parser)]
#[command(
    name = "pitap",
    version,
    about = "PiTap host tools: collect and read flow records from taps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive flow batches from taps, acknowledge them, write one line per flow.
    Collect {
        /// collector.toml: listen address, output, state file, tap keys.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 0.0.0.0:4739 or [::]:4739.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Line format: text or json.
        #[arg(long)]
        format: Option<LineFormat>,
        /// Append lines to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Remember what arrived across restarts (no batch printed twice).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Accept plaintext datagrams from any tap id: for tests only.
        #[arg(long)]
        insecure_plaintext: bool,
        /// Exit once a tap sent its final batch and everything before it.
        #[arg(long)]
        until_final: bool,
        /// Exit after this many seconds without a datagram.
        #[arg(long, value_name = "SECS")]
        idle_exit: Option<f64>,
        /// Print every tap's status line this often (seconds).
        #[arg(long, value_name = "SECS")]
        status_every: Option<f64>,
    },
    /// The SD card image.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Make a key for a tap: a snippet for its pitap.toml and one for collector.toml.
    Keygen {
        #[arg(long)]
        tap_id: String,
        /// The collector's address as the tap will reach it.
        #[arg(long, default_value = "192.0.2.10:4739")]
        collector: String,
        /// Write ID.tap.toml and ID.collector.toml here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Write an image to an SD card or a file and bake the tap's identity into pitap.toml.
    Write {
        /// The image (image/out/pitap-VERSION-arm64.img).
        #[arg(long)]
        image: PathBuf,
        /// The SD card (/dev/sdX, /dev/mmcblkN) or a file.
        #[arg(long)]
        target: PathBuf,
        #[arg(long)]
        tap_id: String,
        /// The collector as the tap will reach it.
        #[arg(long)]
        collector: Option<String>,
        /// The tap's key (from pitap keygen).
        #[arg(long)]
        key: Option<String>,
        /// More pitap.toml settings, appended as they are.
        #[arg(long)]
        extra: Option<PathBuf>,
    },
}

fn seconds(s: Option<f64>) -> Option<Duration> {
    s.filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

fn collect_options(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    format: Option<LineFormat>,
    output: Option<PathBuf>,
    state: Option<PathBuf>,
    insecure_plaintext: bool,
) -> Result<collect::Options, String> {
    let file = match &config {
        Some(path) => CollectorConfig::load(path)?,
        None => CollectorConfig::default(),
    };
    let c = &file.collector;
    let listen = match (listen, &c.listen) {
        (Some(l), _) => l,
        (None, Some(l)) => l
            .parse()
            .map_err(|_| "collector.listen: not ADDRESS:PORT")?,
        (None, None) => return Err("give --listen ADDR (or collector.listen in --config)".into()),
    };
    let format = match (format, &c.format) {
        (Some(f), _) => f,
        (None, Some(f)) => f.parse()?,
        (None, None) => LineFormat::Text,
    };
    Ok(collect::Options {
        listen,
        format,
        output: output.or_else(|| c.output.as_ref().map(PathBuf::from)),
        state: state.or_else(|| c.state.as_ref().map(PathBuf::from)),
        keys: file.keys()?,
        allow_plaintext: insecure_plaintext || c.insecure_plaintext,
        until_final: false,
        idle_exit: None,
        status_interval: c.status_interval_s.map(Duration::from_secs),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Collect {
            config,
            listen,
            format,
            output,
            state,
            insecure_plaintext,
            until_final,
            idle_exit,
            status_every,
        } => collect_options(config, listen, format, output, state, insecure_plaintext).and_then(
            |mut opts| {
                opts.until_final = until_final;
                opts.idle_exit = seconds(idle_exit);
                opts.status_interval = seconds(status_every).or(opts.status_interval);
                collect::run(opts)
            },
        ),
        Command::Image {
            command:
                ImageCommand::Write {
                    image,
                    target,
                    tap_id,
                    collector,
                    key,
                    extra,
                },
        } => pitap::image_write::run(&pitap::image_write::Options {
            image,
            target,
            tap_id,
            collector,
            key,
            extra,
        }),
        Command::Keygen {
            tap_id,
            collector,
            out_dir,
        } => keygen::run(&tap_id, &collector, out_dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pitap: {e}");
            ExitCode::FAILURE
        }
    }
}
