//! How the framework examples end: an `error:` line and exit code 1 on failure, as the CLI
//! ends (a `main` that returned the error would print its `Debug` form, a struct dump).

use std::process::ExitCode;

/// Exit code 0 for `Ok`; for `Err`, `error: …` on stderr and exit code 1.
pub(crate) fn outcome<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
