//! The netcat side: connect to an [`Endpoint`] (or wait for one peer with [`listen`]) and
//! bridge the socket with an input and an output — standard input and output in the CLI.
//!
//! The bridge's contract, written down in `docs/cli.md` and tested row by row:
//! - bytes pass untouched both ways at once, in constant memory;
//! - streams: end of input half-closes the socket (`shutdown(SHUT_WR)`) and output goes on;
//!   the peer closing ends the bridge successfully once everything it sent is written; a
//!   reset is an error;
//! - datagrams: each input read is one datagram; after end of input the bridge waits for
//!   replies until none has come for the `wait` duration;
//! - an output that goes away (`| head -c 10`) ends the bridge quietly.

mod bridge;
mod datagram;
mod input;
mod listen;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use bridge::{BridgeEnd, BridgeOptions, Output, bridge};
pub use datagram::bridge_datagrams;
pub use input::{CHUNK, Input, Next};
pub use listen::{Listening, listen};

use crate::endpoint::{Endpoint, Host};
use crate::error::{Error, Op, Result};
use crate::socket::{Address, Family, Socket, ToAddress, Type};

/// The largest payload of one UDP datagram; each input read for a datagram transport is
/// at most this long.
pub const MAX_DATAGRAM: usize = 65_507;

/// How to open a connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// Bound on each connection attempt.
    pub timeout: Option<Duration>,
    /// Only addresses of this family (`-4`: [`Family::Inet`], `-6`: [`Family::Inet6`]).
    pub family: Option<Family>,
}

/// An open client socket, and for Unix datagrams the temporary path it is bound to (so that
/// the server can answer); the path is removed when this is dropped.
#[derive(Debug)]
pub struct Connected {
    /// The socket: connected, blocking, with no timeout.
    pub socket: Socket,
    datagram: bool,
    // Held for its Drop: the temporary socket file goes when the connection does.
    _bound: Option<TempSocketPath>,
}

impl Connected {
    /// Whether the socket carries datagrams rather than a stream.
    pub fn is_datagram(&self) -> bool {
        self.datagram
    }
}

/// Opens a connection to `endpoint`, trying every resolved address in order. Datagram
/// endpoints are "connected" too (`connect(2)` on a UDP or Unix datagram socket), so that
/// sends go to the peer and only its datagrams arrive.
///
/// # Errors
///
/// `cannot connect to ENDPOINT: REASON` with the last attempt's reason, or a resolution
/// error.
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
    let fail = |err: io::Error| Error::new(Op::Connect, endpoint, err);
    let ty = if endpoint.transport().is_stream() {
        Type::Stream
    } else {
        Type::Datagram
    };
    let candidates = candidates(endpoint, options.family)?;
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for address in candidates {
        match connect_one(&address, ty, options.timeout) {
            Ok(connected) => return Ok(connected),
            Err(err) => last = err.into_io_error(),
        }
    }
    Err(fail(last))
}

pub(crate) fn candidates(endpoint: &Endpoint, family: Option<Family>) -> Result<Vec<Address>> {
    let fail = |reason: &str| {
        let err = io::Error::new(io::ErrorKind::InvalidInput, reason.to_owned());
        Error::new(Op::Connect, endpoint, err)
    };
    let all = match (endpoint.host_port(), endpoint.path()) {
        (Some(hp), _) => match &hp.host {
            Host::Any => return Err(fail("a host is needed to connect (as in 127.0.0.1:PORT)")),
            Host::Ip(ip) => vec![Address::from(std::net::SocketAddr::new(*ip, hp.port))],
            Host::Name(name) => (name.as_str(), hp.port).to_addresses(None)?,
        },
        (None, Some(path)) => return Ok(vec![Address::unix(path)]),
        (None, None) => return Err(fail("no address")),
    };
    let wanted: Vec<Address> = all
        .into_iter()
        .filter(|a| family.is_none_or(|f| a.family() == f))
        .collect();
    if wanted.is_empty() {
        return Err(fail(match family {
            Some(Family::Inet6) => "no IPv6 address (-6 was given)",
            _ => "no IPv4 address (-4 was given)",
        }));
    }
    Ok(wanted)
}

fn connect_one(address: &Address, ty: Type, timeout: Option<Duration>) -> Result<Connected> {
    let mut socket = Socket::new(address.family(), ty)?;
    let mut bound = None;
    match (address.family(), ty) {
        // Interactive use: each line typed goes out at once rather than waiting for Nagle.
        (Family::Inet | Family::Inet6, Type::Stream) => socket.set_nodelay(true)?,
        // A Unix datagram server can only answer a client that has an address.
        (Family::Unix, Type::Datagram) => {
            let path = TempSocketPath::unique();
            socket.bind(path.path())?;
            bound = Some(path);
        }
        _ => {}
    }
    socket.set_timeout(timeout)?;
    socket.connect(address)?;
    socket.set_timeout(None)?;
    let datagram = ty == Type::Datagram;
    Ok(Connected {
        socket,
        datagram,
        _bound: bound,
    })
}

/// A unique socket file name in the temporary directory, removed on drop: the address a
/// Unix datagram client binds so that its server can answer it.
#[derive(Debug)]
pub(crate) struct TempSocketPath(PathBuf);

impl TempSocketPath {
    /// A name no other socket of this process uses (`socketkit-PID-N.sock`).
    pub(crate) fn unique() -> TempSocketPath {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("socketkit-{}-{n}.sock", std::process::id());
        TempSocketPath(std::env::temp_dir().join(name))
    }

    /// The path.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempSocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
