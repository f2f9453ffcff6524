//! Exit codes (SPEC §2.3) and the one `error:` line: only the CLI decides either.

use std::fmt;
use std::process::ExitCode;

/// 0 success, 1 runtime failure, 2 bad usage.
pub(crate) const FAILURE: u8 = 1;
pub(crate) const USAGE: u8 = 2;

/// Why a command failed, which decides its exit code.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line was wrong: exit 2.
    Usage(String),
    /// The work failed: exit 1.
    Runtime(socketkit::Error),
    /// The work ran but did not succeed (a load test that completed nothing), in words:
    /// exit 1.
    Failed(String),
}

impl From<socketkit::Error> for CliError {
    fn from(err: socketkit::Error) -> CliError {
        CliError::Runtime(err)
    }
}

impl CliError {
    /// A failure of `op` on `target` that is no socket error of the library's (a runtime,
    /// a signal handler, stdin): exit 1 with the library's wording.
    pub(crate) fn runtime(op: socketkit::error::Op, target: &str, err: std::io::Error) -> CliError {
        CliError::Runtime(socketkit::Error::new(op, target, err))
    }
}

/// The text of a file an option names (`what`, as in "cannot load WHAT FILE: REASON"): one
/// that cannot be read is a runtime failure, exit 1; one that is not text, bad usage (exit
/// 2, as any other wrong content).
pub(crate) fn read_text(what: &'static str, file: &std::path::Path) -> Result<String, CliError> {
    socketkit::option_file::read_text(file).map_err(|err| match err.kind() {
        std::io::ErrorKind::InvalidData => {
            CliError::Usage(format!("cannot load {what} {}: {err}", file.display()))
        }
        _ => CliError::Runtime(socketkit::Error::new(
            socketkit::error::Op::Load(what),
            file.display(),
            err,
        )),
    })
}

/// Writes all of `bytes` to stdout and flushes it. A closed stdout (`| head`) is not an
/// error: its reader wanted no more. Any other failure (a full disk, `/dev/full`) is: the
/// output is lost, and the exit code must say so.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    // Through a duplicate that waits when stdout is a non-blocking pipe that is full for a
    // moment (a parent left it so), where a plain write fails with `EAGAIN`.
    let written = match super::stdio::output() {
        Ok(file) => socketkit::client::WaitingFile::new(file).write_all(bytes),
        Err(_) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes).and_then(|()| stdout.flush())
        }
    };
    match written {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(stdout_error(err)),
        _ => Ok(()),
    }
}

/// A failed write to stdout, as the `error:` line names it.
pub(crate) fn stdout_error(err: std::io::Error) -> CliError {
    CliError::Runtime(socketkit::Error::new(
        socketkit::error::Op::Io,
        "stdout",
        err,
    ))
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(text) => f.write_str(text),
            CliError::Runtime(err) => err.fmt(f),
            CliError::Failed(text) => f.write_str(text),
        }
    }
}

impl CliError {
    /// Prints the `error:` line to stderr and gives the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        // Not `eprintln!`, which panics when stderr is closed (`2>&1 | true`): then there
        // is nobody to tell, and the exit code still says it.
        super::ready::write_whole(&format!("error: {}\n", sanitize(&self.to_string())));
        ExitCode::from(match self {
            CliError::Usage(_) => USAGE,
            CliError::Runtime(_) | CliError::Failed(_) => FAILURE,
        })
    }
}

/// Keeps a line one printable line whatever the input held: control characters (a newline
/// or an escape sequence in an endpoint someone typed, or in the path a Unix client bound)
/// are shown escaped. The `error:` line, the readiness lines and the text log's fields all
/// pass through here.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(sanitize("你好"), "你好");
    }
}
