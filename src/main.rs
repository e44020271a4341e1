//! The `hitgate` binary: parses the command line, runs it, maps failures to documented exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.downcast_ref::<cli::Exit>().map_or(1, |e| e.code);
            eprintln!("hitgate: {err:#}");
            ExitCode::from(code)
        }
    }
}
