//! `pitap`, the PiTap host tool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pitap_wire::format::LineFormat;

mod collect;
mod taps;

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
    /// Receive flow batches from taps and write one line per flow.
    Collect {
        /// Address to listen on, e.g. 0.0.0.0:4739 or [::]:4739.
        #[arg(long)]
        listen: SocketAddr,
        /// Line format: text or json.
        #[arg(long, default_value = "text")]
        format: LineFormat,
        /// Append lines to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Exit after a tap sends its final batch (the end of a replay).
        #[arg(long)]
        until_final: bool,
        /// Exit after this many seconds without a datagram.
        #[arg(long, value_name = "SECS")]
        idle_exit: Option<f64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Collect {
            listen,
            format,
            output,
            until_final,
            idle_exit,
        } => collect::run(&collect::Options {
            listen,
            format,
            output,
            until_final,
            idle_exit: idle_exit
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pitap: {e}");
            ExitCode::FAILURE
        }
    }
}
