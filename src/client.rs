//! The netcat side: open a connection to an [`Endpoint`] and bridge it with a reader and a
//! writer (standard input and output in the CLI).
//!
//! The bridge's contract, the one OpenBSD `nc -N` users expect and the CLI documents:
//! - bytes pass untouched both ways at once, in constant memory;
//! - end of input half-closes the socket (`shutdown(SHUT_WR)`) and output goes on;
//! - the peer closing ends the bridge successfully once everything it sent is written;
//! - a reset from the peer is an error; an output that goes away (`| head -c 10`) ends the
//!   bridge quietly.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use crate::endpoint::{Endpoint, Host};
use crate::error::{Error, Op, Result};
use crate::socket::{Address, Family, Socket, ToAddress, Type};

/// The size of each read from either side: large enough for full-speed loopback copies,
/// small enough to keep the bridge's memory constant.
const CHUNK: usize = 64 * 1024;

/// Opens a stream connection (TCP or Unix) to `endpoint`, trying every resolved address in
/// order; `timeout` bounds each attempt. The returned socket is blocking, with no timeout.
///
/// # Errors
///
/// `cannot connect to ENDPOINT: REASON` with the last attempt's reason, or a resolution
/// error. A datagram endpoint is `InvalidInput`.
///
/// # Examples
///
/// ```
/// use socketkit::socket::create_server;
/// let server = create_server(("127.0.0.1", 0), 5, false)?;
/// let port = server.local_addr()?.port().unwrap();
/// let endpoint = format!("127.0.0.1:{port}").parse().unwrap();
/// let socket = socketkit::client::connect(&endpoint, None)?;
/// assert_eq!(socket.peer_addr()?, server.local_addr()?);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn connect(endpoint: &Endpoint, timeout: Option<Duration>) -> Result<Socket> {
    let fail = |err: io::Error| Error::new(Op::Connect, endpoint, err);
    let candidates = match endpoint {
        Endpoint::Tcp(hp) => match &hp.host {
            Host::Any => {
                let reason = "a host is needed to connect (as in 127.0.0.1:PORT)";
                return Err(fail(io::Error::new(io::ErrorKind::InvalidInput, reason)));
            }
            Host::Ip(ip) => vec![Address::from(std::net::SocketAddr::new(*ip, hp.port))],
            Host::Name(name) => (name.as_str(), hp.port).to_addresses(None)?,
        },
        Endpoint::Unix(path) => vec![Address::unix(path)],
        Endpoint::Udp(_) | Endpoint::Unixgram(_) => {
            let reason = "not a stream endpoint";
            return Err(fail(io::Error::new(io::ErrorKind::InvalidInput, reason)));
        }
    };
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for address in candidates {
        match connect_one(&address, timeout) {
            Ok(socket) => return Ok(socket),
            Err(err) => last = err.into_io_error(),
        }
    }
    Err(fail(last))
}

fn connect_one(address: &Address, timeout: Option<Duration>) -> Result<Socket> {
    let mut socket = Socket::new(address.family(), Type::Stream)?;
    if address.family() != Family::Unix {
        // Interactive use: each line typed goes out at once rather than waiting for Nagle.
        socket.set_nodelay(true)?;
    }
    socket.set_timeout(timeout)?;
    socket.connect(address)?;
    socket.set_timeout(None)?;
    Ok(socket)
}

/// How a bridge ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeEnd {
    /// The peer closed the connection and everything it sent was written out.
    PeerClosed,
    /// The output was closed (a broken pipe); the rest of the peer's bytes were not wanted.
    OutputClosed,
}

/// Bridges `socket` with `input` and `output` until the peer closes (see the module
/// documentation for the rules). `input` is read on a thread of its own so that both
/// directions move at once; that thread is left behind, blocked on its read, if the peer
/// closes first.
///
/// # Errors
///
/// A reset or failed read from the socket (`cannot receive from ADDRESS: connection reset
/// by peer`), or an output that fails other than by closing.
///
/// # Examples
///
/// ```
/// let (ours, theirs) = socketkit::socket::socketpair()?;
/// let peer = std::thread::spawn(move || {
///     let got = theirs.recv(64).unwrap();   // "ping", then our half-close
///     theirs.sendall(b"pong").unwrap();
///     got
/// });
/// let mut output = Vec::new();
/// let end = socketkit::client::bridge(ours, &b"ping"[..], &mut output)?;
/// assert_eq!(end, socketkit::client::BridgeEnd::PeerClosed);
/// assert_eq!(output, b"pong");
/// assert_eq!(peer.join().unwrap(), b"ping");
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn bridge<R, W>(socket: Socket, input: R, mut output: W) -> Result<BridgeEnd>
where
    R: Read + Send + 'static,
    W: Write,
{
    let sender = socket.try_clone()?;
    thread::Builder::new()
        .name("socketkit-input".into())
        .spawn(move || pump_input(input, &sender))
        .map_err(|err| Error::without_target(Op::Io, err))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = socket.recv_into(&mut buf)?;
        if n == 0 {
            return finish(&mut output);
        }
        if let Err(err) = output.write_all(&buf[..n]) {
            return output_failed(err);
        }
    }
}

fn finish<W: Write>(output: &mut W) -> Result<BridgeEnd> {
    match output.flush() {
        Ok(()) => Ok(BridgeEnd::PeerClosed),
        Err(err) => output_failed(err),
    }
}

fn output_failed(err: io::Error) -> Result<BridgeEnd> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(BridgeEnd::OutputClosed)
    } else {
        Err(Error::new(Op::Io, "output", err))
    }
}

/// Copies input to the socket; at end of input, half-closes. A send that fails means the
/// peer is gone, which the receiving side reports; the pump just stops.
fn pump_input<R: Read>(mut input: R, socket: &Socket) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if socket.sendall(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!("reading input failed: {}", crate::error::describe(&err));
                break;
            }
        }
    }
    let _ = socket.shutdown(Shutdown::Write);
}
