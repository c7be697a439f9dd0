use std::process::ExitCode;

use pitapd::cli::{self, Command};

fn main() -> ExitCode {
    match cli::parse(std::env::args_os()) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("pitapd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Read(opts)) => report(pitapd::offline::run(&opts).map(|_| ())),
        Ok(Command::Live {
            config,
            print,
            config_errors,
        }) => report(pitapd::live::run(*config, print, config_errors)),
        Ok(Command::CheckConfig(path)) => match pitapd::config::Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{}: {e}", path.display());
                ExitCode::from(2)
            }
        },
        Err(cli::CliError::Usage(e)) => {
            // The error, not a page of usage burying it.
            eprintln!("pitapd: {e}\n(pitapd --help shows the usage)");
            ExitCode::from(2)
        }
        Err(cli::CliError::Invalid(e)) => {
            eprintln!("pitapd: {e}");
            ExitCode::from(2)
        }
    }
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pitapd: {e}");
            ExitCode::FAILURE
        }
    }
}
