//! What `connect` and `listen` share: standard input and output as the two ends of a bridge,
//! and the bridge's options.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use socketkit::client::{
    BridgeEnd, BridgeOptions, CHUNK, Handshake, Input, MAX_DATAGRAM, Output, bridge,
    bridge_datagrams, bridge_tls,
};
use socketkit::socket::Socket;

use super::args::BridgeArgs;
use super::exit::CliError;

/// The bridge options of `--idle-timeout` and `--wait`.
pub(crate) fn options(args: &BridgeArgs) -> BridgeOptions {
    BridgeOptions {
        idle_timeout: args.idle_timeout,
        wait: args.wait,
        peer: None,
        counts: None,
    }
}

/// Standard input, read on its own thread; for datagrams each read is at most one datagram.
pub(crate) fn input(datagrams: bool) -> Result<Input, CliError> {
    let max_chunk = if datagrams { MAX_DATAGRAM } else { CHUNK };
    let stdin = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(stdio_error)?;
    Input::file(File::from(stdin), max_chunk).map_err(stdio_error)
}

/// Standard output as a plain file: unbuffered, so binary data moves in large writes rather
/// than through std's line-buffered stdout.
pub(crate) fn output() -> Result<File, CliError> {
    let stdout = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(stdio_error)?;
    Ok(File::from(stdout))
}

/// Bridges `socket` with stdin and stdout by its type.
pub(crate) fn run(
    socket: &mut Socket,
    datagrams: bool,
    input: &Input,
    options: BridgeOptions,
) -> Result<BridgeEnd, CliError> {
    let output = Output::file(output()?);
    let end = if datagrams {
        bridge_datagrams(socket, input, output, options)?
    } else {
        bridge(socket, input, output, options)?
    };
    Ok(end)
}

/// Makes the TLS handshake on `socket`, then bridges the session with stdin and stdout.
pub(crate) fn run_tls(
    socket: Socket,
    handshake: Handshake<'_>,
    input: &Input,
    options: BridgeOptions,
) -> Result<BridgeEnd, CliError> {
    let output = Output::writer(output()?);
    Ok(bridge_tls(socket, handshake, input, output, options)?)
}

fn stdio_error(err: io::Error) -> CliError {
    CliError::Runtime(socketkit::Error::new(
        socketkit::error::Op::Io,
        "stdio",
        err,
    ))
}
