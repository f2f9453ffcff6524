//! Connecting to an endpoint: the addresses to try, a blocking socket connected within a
//! timeout (the netcat client), and an async [`Stream`] (the relay's upstream).

use std::io;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use super::lookup::lookup;
use super::{Stream, TempSocketPath};
use crate::endpoint::{Endpoint, Host};
use crate::error::{Error, Op, Result};
use crate::socket::{Address, Family, Socket, ToAddress, Type};

/// The addresses to try, in order, to reach `endpoint` (names resolved), only those of
/// `family` when one is given.
///
/// # Errors
///
/// `:PORT` (no host to connect to), no address of `family`, or a name that does not resolve.
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
            Some(Family::Inet6) => "no IPv6 address (IPv6 only: -6, or an IPv6 -s source)",
            _ => "no IPv4 address (IPv4 only: -4, or an IPv4 -s source)",
        }));
    }
    Ok(wanted)
}

/// A blocking socket of type `ty` connected to `address` within `timeout`, with no timeout
/// left on it. A Unix datagram socket is first bound to a [`TempSocketPath`] (returned: the
/// file goes when it is dropped), since its server can only answer a client with an
/// address; with `nodelay`, a TCP socket sends each write at once; with `source`, the socket
/// is bound there first (`nc -s ADDR -p PORT`).
pub(crate) fn connect_socket(
    address: &Address,
    ty: Type,
    timeout: Option<Duration>,
    nodelay: bool,
    source: Option<Address>,
) -> Result<(Socket, Option<TempSocketPath>)> {
    let (socket, bound) = open_socket(address, ty, nodelay, source)?;
    socket.set_timeout(timeout)?;
    socket.connect(address)?;
    socket.set_timeout(None)?;
    Ok((socket, bound))
}

/// A TCP socket connected to the first of `addresses` to answer, a name's several
/// addresses raced (Happy Eyeballs, RFC 8305: the next one tried a quarter of a second
/// after the one before if it has not answered); otherwise as [`connect_socket`], whose
/// `nodelay` and `source` (given for each address) it takes, `timeout` bounding each
/// attempt.
///
/// # Errors
///
/// Our own end's (`Op::Bind`) at once, or the error of the attempt that ended last.
pub(crate) fn connect_racing(
    addresses: &[Address],
    timeout: Option<Duration>,
    nodelay: bool,
    source: impl Fn(&Address) -> Option<Address>,
) -> Result<Socket> {
    super::happy_eyeballs::race_blocking(addresses, timeout, |address| {
        open_socket(address, Type::Stream, nodelay, source(address)).map(|(socket, _)| socket)
    })
}

/// A socket of type `ty` for `address`'s family, not yet connected: bound to `source` (or,
/// for a Unix datagram client, to a [`TempSocketPath`], returned), `TCP_NODELAY` set with
/// `nodelay`.
fn open_socket(
    address: &Address,
    ty: Type,
    nodelay: bool,
    source: Option<Address>,
) -> Result<(Socket, Option<TempSocketPath>)> {
    let socket = Socket::new(address.family(), ty)?;
    let mut bound = None;
    if let Some(source) = source {
        // A fixed source port is often one a previous run left in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(source)?;
    }
    match (address.family(), ty) {
        (Family::Inet | Family::Inet6, Type::Stream) if nodelay => socket.set_nodelay(true)?,
        (Family::Unix, Type::Datagram) => {
            let path = TempSocketPath::unique();
            socket
                .bind(path.path())
                .map_err(|err| reply_socket_error(&path, err))?;
            bound = Some(path);
        }
        _ => {}
    }
    Ok((socket, bound))
}

/// A reply socket that cannot be bound, named as what failed: the file in `$TMPDIR`
/// (`cannot bind the reply socket /nonexistent/socketkit-PID-0-RANDOM.sock in $TMPDIR: no such
/// file or directory`), not the server's path, which is fine.
fn reply_socket_error(path: &TempSocketPath, err: Error) -> Error {
    let dir = match std::env::var_os("TMPDIR").is_some_and(|dir| !dir.is_empty()) {
        true => " in $TMPDIR",
        false => "",
    };
    let target = format!("the reply socket {}{dir}", path.path().display());
    Error::new(Op::Bind, target, err.into_io_error())
}

/// A stream connected to `endpoint` (TCP with `TCP_NODELAY`, or Unix), names resolved
/// without blocking the runtime and their addresses raced (Happy Eyeballs), the whole
/// attempt bounded by `timeout`.
///
/// # Errors
///
/// A datagram endpoint or `:PORT` (`InvalidInput`), `TimedOut`, or the connect's own error.
pub(crate) async fn connect_stream(
    endpoint: &Endpoint,
    timeout: Option<Duration>,
) -> io::Result<Stream> {
    let attempt = async {
        match endpoint {
            // A tls: endpoint's TCP connection; the caller runs the handshake on it.
            Endpoint::Tcp(hp) | Endpoint::Tls(hp) => {
                let stream = match &hp.host {
                    Host::Ip(ip) => TcpStream::connect((*ip, hp.port)).await?,
                    // Raced when there are several (Happy Eyeballs).
                    Host::Name(name) => {
                        super::happy_eyeballs::race_tcp(lookup(name, hp.port).await?).await?
                    }
                    Host::Any => return Err(io::ErrorKind::InvalidInput.into()),
                };
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Endpoint::Unix(path) => Ok(Stream::Unix(connect_unix(path).await?)),
            Endpoint::Udp(_) | Endpoint::Unixgram(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a stream target",
            )),
        }
    };
    within(timeout, attempt).await
}

/// Awaits `work`, failing with `timed out` (`TimedOut`) after `limit`, if there is one.
///
/// The limit counts time the program ran ([`within_running`](super::within_running)): an
/// answer that came while it was stopped is no timeout (an outside audit: a health check
/// answered in 0.3 s marked its target down in 12 of 20 stops of `forward`).
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let Some(limit) = limit else {
        return work.await;
    };
    super::within_running(limit, std::pin::pin!(work))
        .await
        .unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
}

/// A tokio stream connected to the Unix socket at `path`, or to `@NAME` in the abstract
/// namespace (which tokio's path-based connect would take for a file).
pub(crate) async fn connect_unix(path: &std::path::Path) -> io::Result<UnixStream> {
    if crate::socket::abstract_name(path).is_none() {
        return UnixStream::connect(path).await;
    }
    // A Unix connect does not wait on the network: it succeeds (or fails) at once.
    let stream = std::os::unix::net::UnixStream::connect_addr(&unix_address(path)?)?;
    stream.set_nonblocking(true)?;
    UnixStream::from_std(stream)
}

/// The std address of `path`, or of `@NAME` in the abstract namespace.
pub(crate) fn unix_address(path: &std::path::Path) -> io::Result<std::os::unix::net::SocketAddr> {
    match crate::socket::abstract_name(path) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Some(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the abstract socket namespace is Linux's own",
        )),
        None => std::os::unix::net::SocketAddr::from_pathname(path),
    }
}
