//! `socketkit`: serve, connect, listen, forward and load-test from the command line.
//! Parsing, dispatch and exit codes live in [`cli`]; the work is the library's.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
