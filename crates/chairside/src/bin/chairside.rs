//! `chairside`: the command-line program. `chairside --help` lists the commands; `chairside demo`
//! is the place to start.

// The command line's output is its user interface.
#![allow(
    clippy::print_stdout,
    reason = "the command line prints its results on stdout"
)]

use std::process::ExitCode;

use chairside::cli::{self, Cli};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli::init_tracing(
        cli.log_format,
        cli.verbose,
        matches!(cli.command, cli::Command::Demo(_) | cli::Command::Bench(_)),
    ) {
        eprintln!("chairside: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match chairside::app::runtime_builder(chairside::app::runtime_workers_here())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chairside: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(cli::dispatch(cli, &mut stdout));
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // Errors name the operation and the file or system involved, never patient data.
            eprintln!("chairside: {e:#}");
            ExitCode::FAILURE
        }
    }
}
