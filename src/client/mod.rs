//! The netcat side: connect to an [`Endpoint`] (or wait for one peer with [`listen()`]) and
//! bridge the socket with an input and an output — standard input and output in the CLI.
//!
//! The bridge's contract, written down in `docs/cli.md` and tested row by row:
//! - bytes pass untouched both ways at once, in constant memory;
//! - streams: end of input half-closes the socket (`shutdown(SHUT_WR)`) and output goes on;
//!   the peer closing ends the bridge successfully once everything it sent is written (and
//!   once input that keeps coming, each pause under a second, has gone to a peer that only
//!   half-closed); a reset is an error;
//! - datagrams: each input read is one datagram (at most [`max_datagram`] bytes); each
//!   datagram received is written whole, and one the system cut anyway is warned about;
//!   after end of input the bridge waits for replies until none has come for the `wait`
//!   duration;
//! - an output that goes away (`| head -c 10`) ends the bridge quietly, at once when it is
//!   a pipe or socket even if the peer sends nothing more (`| head -1` after a banner);
//! - standard input and output left non-blocking by the parent are waited for, never
//!   failed on ([`WaitingFile`]);
//! - TLS ([`bridge_tls`]): end of input sends close_notify before the half-close, the peer's
//!   close_notify is its end, and a peer that hangs up without one is an error (the data may
//!   be truncated). [`connect`] and [`listen()`] refuse a `tls:` endpoint, whose socket
//!   would be plain; [`connect_transport`] and [`listen_transport`] open its TCP side for
//!   the bridge to run the session over.

mod bridge;
mod datagram;
mod input;
mod listen;
mod output;
pub mod probe;
pub mod proxy;
mod tls;
mod tls_delivery;
mod tls_output;
mod tls_receive;
mod tls_runtime;
pub mod traffic;
mod waiting_file;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use bridge::{BridgeEnd, BridgeOptions, ByteCounts, Direction, bridge};
pub use datagram::{
    MAX_DATAGRAM, MAX_UDP_V4, MAX_UDP_V6, bridge_datagrams, max_datagram, recv_whole,
};
pub use input::{CHUNK, Input, Next};
pub use listen::{
    Listening, SocketFile, die_by_signal, listen, listen_inherited, listen_only_v6,
    listen_transport,
};
pub use output::Output;
pub use tls::{Handshake, bridge_tls};
pub use waiting_file::WaitingFile;

use crate::endpoint::{Endpoint, Transport};
use crate::error::{Error, Op, Result};
use crate::net::{self, TempSocketPath};
use crate::socket::{Address, Family, Socket, Type};

/// How to open a connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// Bound on each connection attempt.
    pub timeout: Option<Duration>,
    /// Only addresses of this family (`-4`: [`Family::Inet`], `-6`: [`Family::Inet6`]).
    pub family: Option<Family>,
    /// The local address to connect from (`-s`); only candidates of its family are tried.
    pub source_ip: Option<IpAddr>,
    /// The local port to connect from (`-p`).
    pub source_port: Option<u16>,
}

/// An open client socket, and for Unix datagrams the temporary path it is bound to (so that
/// the server can answer); the path is removed when this is dropped.
#[derive(Debug)]
pub struct Connected {
    /// The socket: connected, blocking, with no timeout.
    pub socket: Socket,
    datagram: bool,
    // Held for its Drop: the temporary socket file goes when the connection does.
    bound: Option<TempSocketPath>,
}

impl Connected {
    /// Whether the socket carries datagrams rather than a stream.
    pub fn is_datagram(&self) -> bool {
        self.datagram
    }

    /// The temporary socket file a Unix datagram client is bound to, for a signal handler
    /// to remove (dropping `Connected` removes it, but a process killed by a signal never
    /// drops it); `None` for every other kind of connection.
    pub fn socket_file(&self) -> Option<SocketFile> {
        let bound = self.bound.as_ref()?;
        net::UnixFileRemover::for_bound(bound.path()).map(SocketFile)
    }
}

/// Opens a connection to `endpoint`, trying every resolved address in order. Datagram
/// endpoints are "connected" too (`connect(2)` on a UDP or Unix datagram socket), so that
/// sends go to the peer and only its datagrams arrive.
///
/// A `tls:` endpoint is refused: the socket this returns is plain, and what is written to
/// it would go out in the clear. Open its TCP connection with [`connect_transport`] and run
/// the session over it with [`bridge_tls`] (or, in async code, [`crate::tls::Connector`]).
///
/// # Errors
///
/// `cannot connect to ENDPOINT: REASON` with the last attempt's reason, or a resolution
/// error; `InvalidInput` for a `tls:` endpoint.
///
/// # Examples
///
/// ```
/// use socketkit::client::{ConnectOptions, connect};
/// use socketkit::socket::create_server;
/// let server = create_server(("127.0.0.1", 0), 5, false)?;
/// let port = server.local_addr()?.port().unwrap();
/// let endpoint = format!("127.0.0.1:{port}").parse().unwrap();
/// let conn = connect(&endpoint, ConnectOptions::default())?;
/// assert_eq!(conn.socket.peer_addr()?, server.local_addr()?);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn connect(endpoint: &Endpoint, options: ConnectOptions) -> Result<Connected> {
    refuse_tls(endpoint, Op::Connect, "connect_transport")?;
    connect_transport(endpoint, options)
}

/// Opens the connection under `endpoint` as [`connect`] does; for a `tls:` endpoint, the
/// TCP connection a TLS session then runs over ([`bridge_tls`] with
/// [`Handshake::Client`]): until it does, bytes written to the socket go out in the clear.
///
/// # Errors
///
/// As [`connect`], but for the refusal of `tls:`.
///
/// # Examples
///
/// ```
/// use socketkit::client::{ConnectOptions, connect, connect_transport};
/// use socketkit::socket::create_server;
/// let server = create_server(("127.0.0.1", 0), 5, false)?;
/// let port = server.local_addr()?.port().unwrap();
/// let endpoint = format!("tls:127.0.0.1:{port}").parse().unwrap();
/// assert!(connect(&endpoint, ConnectOptions::default()).is_err());
/// let tcp = connect_transport(&endpoint, ConnectOptions::default())?;
/// assert_eq!(tcp.socket.peer_addr()?, server.local_addr()?);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn connect_transport(endpoint: &Endpoint, options: ConnectOptions) -> Result<Connected> {
    connect_to(endpoint, resolve(endpoint, options)?, options)
}

/// The addresses of `endpoint` that [`connect_transport`] tries, with `options`' family
/// (or its source's): the name lookup, which `-w` does not bound (as nc's).
pub(crate) fn resolve(endpoint: &Endpoint, options: ConnectOptions) -> Result<Vec<Address>> {
    let family = match options.source_ip {
        Some(IpAddr::V4(_)) => Some(Family::Inet),
        Some(IpAddr::V6(_)) => Some(Family::Inet6),
        None => options.family,
    };
    net::candidates(endpoint, family)
}

/// [`connect_transport`] to `endpoint`'s `candidates` ([`resolve`]d already).
pub(crate) fn connect_to(
    endpoint: &Endpoint,
    candidates: Vec<Address>,
    options: ConnectOptions,
) -> Result<Connected> {
    let fail = |err: io::Error| Error::new(Op::Connect, endpoint, err);
    let ty = if endpoint.transport().is_stream() {
        Type::Stream
    } else {
        Type::Datagram
    };
    // A name's several TCP addresses are raced (Happy Eyeballs), unless a fixed source port
    // (`-p`) would have two attempts bind it at once.
    if ty == Type::Stream && candidates.len() > 1 && options.source_port.is_none() {
        let source = |address: &Address| source_for(address, options);
        return match net::connect_racing(&candidates, options.timeout, true, source) {
            Ok(socket) => Ok(Connected {
                socket,
                datagram: false,
                bound: None,
            }),
            Err(err) if err.op() == Op::Bind => Err(err),
            Err(err) => Err(fail(err.into_io_error())),
        };
    }
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for address in candidates {
        // TCP_NODELAY: in interactive use each line typed goes out at once rather than
        // waiting for Nagle.
        let source = source_for(&address, options);
        match net::connect_socket(&address, ty, options.timeout, true, source) {
            Ok((socket, bound)) => {
                return Ok(Connected {
                    socket,
                    datagram: ty == Type::Datagram,
                    bound,
                });
            }
            // Our own end (`-s`/`-p`, or a Unix datagram client's reply socket): no other
            // address would do better, and the error names it, not the server.
            Err(err) if err.op() == Op::Bind => return Err(err),
            Err(err) => last = err.into_io_error(),
        }
    }
    Err(fail(last))
}

/// Refuses a `tls:` endpoint to a call that would hand back a plain socket for it: its
/// caller would speak in the clear where TLS was asked for. `instead` names the call that
/// opens the transport on purpose.
fn refuse_tls(endpoint: &Endpoint, op: Op, instead: &str) -> Result<()> {
    if endpoint.transport() != Transport::Tls {
        return Ok(());
    }
    let reason = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "a tls: endpoint needs a TLS session, which a plain socket does not carry \
             (open the TCP side with client::{instead}, then run the session with \
             client::bridge_tls)"
        ),
    );
    Err(Error::new(op, endpoint, reason))
}

/// The local address `-s`/`-p` ask for when connecting to `address`, or `None` (the system
/// chooses); without `-s` the port goes with the unspecified address of `address`'s family.
fn source_for(address: &Address, options: ConnectOptions) -> Option<Address> {
    if options.source_ip.is_none() && options.source_port.is_none() {
        return None;
    }
    let ip = options.source_ip.or_else(|| match address.family() {
        Family::Inet => Some(IpAddr::from([0u8; 4])),
        Family::Inet6 => Some(IpAddr::from([0u16; 8])),
        Family::Unix => None,
    })?;
    Some(Address::from(SocketAddr::new(
        ip,
        options.source_port.unwrap_or(0),
    )))
}
