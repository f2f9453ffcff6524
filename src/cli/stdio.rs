//! What `connect` and `listen` share: standard input and output as the two ends of a bridge,
//! and the bridge's options.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use socketkit::client::traffic::{TappedWriter, TrafficLog};
use socketkit::client::{
    BridgeEnd, BridgeOptions, CHUNK, Handshake, Input, Output, WaitingFile, bridge,
    bridge_datagrams, bridge_tls, max_datagram,
};
use socketkit::endpoint::Endpoint;
use socketkit::socket::Socket;

use super::args::BridgeArgs;
use super::exit::CliError;
use super::netcat::Netcat;

/// How long a datagram bridge waits for replies after stdin ends, without `--wait`.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// The bridge options of `--idle-timeout`, `--wait`, `--send-only` and `--recv-only`.
pub(crate) fn options(args: &BridgeArgs, netcat: &Netcat) -> BridgeOptions {
    BridgeOptions {
        idle_timeout: args.idle_timeout,
        wait: args.wait.unwrap_or(DEFAULT_WAIT),
        peer: None,
        peer_name: None,
        counts: None,
        direction: netcat.direction,
        keep_write_open: args.no_shutdown,
        shared_input: false,
    }
}

/// `--wait` is the datagram bridges' reply wait: on a stream `endpoint` it would be silently
/// ignored, and ncat's `--wait` (its connect timeout) would leave a connect unbounded.
/// `connect` says where its connect timeout is; a listener has none.
pub(crate) fn check_wait(
    args: &BridgeArgs,
    endpoint: &Endpoint,
    connect: bool,
) -> Result<(), CliError> {
    if args.wait.is_none() || !endpoint.transport().is_stream() {
        return Ok(());
    }
    let timeout = if connect {
        "; a connect timeout (ncat's --wait, nc's -w) is -w/--timeout here"
    } else {
        ""
    };
    Err(CliError::Usage(format!(
        "--wait is the UDP and unixgram reply wait, not for {}: endpoints{timeout}",
        endpoint.transport().scheme()
    )))
}

/// The largest read from standard input: for a datagram socket (`Some`), the most one
/// datagram on it can carry.
pub(crate) fn max_chunk(datagram: Option<&Socket>) -> usize {
    datagram.map_or(CHUNK, max_datagram)
}

/// Whether standard input is `/dev/null` (a background job's, by POSIX; `< /dev/null`):
/// input that ends before anything was read, and always will.
pub(crate) fn stdin_is_dev_null() -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (Ok(stdin), Ok(null)) = (
        stdin().and_then(|f| f.metadata().map_err(stdio_error)),
        std::fs::metadata("/dev/null"),
    ) else {
        return false;
    };
    stdin.file_type().is_char_device() && stdin.rdev() == null.rdev()
}

/// Standard input as a plain file.
pub(crate) fn stdin() -> Result<File, CliError> {
    let stdin = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(stdio_error)?;
    Ok(File::from(stdin))
}

/// Standard input, read on its own thread; for a datagram socket (`Some`) each read is at
/// most one datagram.
pub(crate) fn input(datagram: Option<&Socket>) -> Result<Input, CliError> {
    Input::file(stdin()?, max_chunk(datagram))
        .map(|input| input.named("stdin"))
        .map_err(input_error)
}

/// Why standard input's reader could not start: its thread (`EAGAIN` from the system, a
/// container at its process limit), which `i/o error on stdio` misnamed; else stdio.
pub(crate) fn input_error(err: io::Error) -> CliError {
    match err.kind() {
        io::ErrorKind::WouldBlock => CliError::Runtime(socketkit::Error::new(
            socketkit::error::Op::Spawn,
            "a thread for stdin",
            err,
        )),
        _ => stdio_error(err),
    }
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

/// Standard output for a bridge: spliced into when it is a pipe, unless the received bytes
/// have to be seen for a traffic log.
fn bridge_output(log: Option<&TrafficLog>) -> Result<Output<'static>, CliError> {
    match log {
        Some(log) => tapped_output(log),
        None => Ok(Output::file(output()?)),
    }
}

/// Standard output through the traffic log's tap; as [`Output::file`], waited for when left
/// non-blocking, and watched for its reader leaving when it is a pipe or socket.
fn tapped_output(log: &TrafficLog) -> Result<Output<'static>, CliError> {
    let tap = TappedWriter::new(WaitingFile::new(output()?), log.clone());
    Ok(Output::writer(tap).watching(&io::stdout()))
}

/// Bridges `socket` with stdin and stdout by its type.
pub(crate) fn run(
    socket: &mut Socket,
    datagrams: bool,
    input: &Input,
    options: BridgeOptions,
    log: Option<&TrafficLog>,
) -> Result<BridgeEnd, CliError> {
    let output = bridge_output(log)?;
    // The lines said so far (`connected to`, `connection from`, at -v) go out before the
    // peer's first byte: on one terminal they read in order.
    super::stderr::flush_in_order(LINES_FIRST);
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
    log: Option<&TrafficLog>,
) -> Result<BridgeEnd, CliError> {
    let output = match log {
        Some(log) => tapped_output(log)?,
        None => {
            Output::writer(LinesFirst::new(WaitingFile::new(output()?))).watching(&io::stdout())
        }
    };
    Ok(bridge_tls(socket, handshake, input, output, options)?)
}

/// How long the peer's first byte waits, at most, for the log lines said before it.
const LINES_FIRST: Duration = Duration::from_millis(200);

/// A writer whose first write waits (up to [`LINES_FIRST`]) for the log lines said before
/// it — a TLS session's, which the handshake says just before the peer's first byte — so
/// that on one terminal they read in order.
struct LinesFirst<W> {
    inner: W,
    waited: bool,
}

impl<W> LinesFirst<W> {
    fn new(inner: W) -> LinesFirst<W> {
        LinesFirst {
            inner,
            waited: false,
        }
    }
}

impl<W: io::Write> io::Write for LinesFirst<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !std::mem::replace(&mut self.waited, true) {
            super::stderr::flush_in_order(LINES_FIRST);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn stdio_error(err: io::Error) -> CliError {
    CliError::Runtime(socketkit::Error::new(
        socketkit::error::Op::Io,
        "stdio",
        err,
    ))
}
