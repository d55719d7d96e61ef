//! `reprise`: parse the arguments, run one command, turn its outcome into
//! an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = reprise_cli::Cli::parse();
    match reprise_cli::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(error) => {
            eprintln!("reprise: {}", reprise_cli::one_line(&error));
            ExitCode::from(reprise_cli::Outcome::Error.code())
        }
    }
}
