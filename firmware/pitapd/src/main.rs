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
        Ok(Command::Run(opts)) => match pitapd::replay::run(&opts) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pitapd: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("pitapd: {e}\n\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}
