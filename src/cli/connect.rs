//! `socketkit connect`: a netcat client on standard input and output.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use socketkit::client;
use socketkit::endpoint::Endpoint;

use super::args::ConnectArgs;
use super::exit::CliError;
use super::{init_logging, resolve};

pub(crate) fn run(args: ConnectArgs) -> Result<(), CliError> {
    let endpoint: Endpoint = resolve::endpoint(&args.endpoint)?;
    let timeout = resolve::optional_duration("--timeout", args.timeout.as_deref())?;
    if !endpoint.transport().is_stream() {
        return Err(CliError::Usage(format!(
            "connect does not support {} endpoints yet",
            endpoint.transport().scheme()
        )));
    }
    init_logging(&args.log);
    let socket = client::connect(&endpoint, timeout)?;
    let (input, output) = raw_stdio().map_err(|err| {
        CliError::Runtime(socketkit::Error::new(
            socketkit::error::Op::Io,
            "stdio",
            err,
        ))
    })?;
    client::bridge(socket, input, output)?;
    Ok(())
}

/// Standard input and output as plain files: unbuffered, so binary data moves in large
/// reads and writes rather than through std's line-buffered stdout.
fn raw_stdio() -> io::Result<(File, File)> {
    let input = io::stdin().as_fd().try_clone_to_owned()?;
    let output = io::stdout().as_fd().try_clone_to_owned()?;
    Ok((File::from(input), File::from(output)))
}
