//! Binding listeners for every transport behind private enums: the socket options a server
//! wants, the Unix socket-file rules, and accept errors sorted into "skip" and "back off".

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::net::{UdpSocket, UnixDatagram};

use super::datagram::DatagramListener;
use super::stream::Stream;

use crate::endpoint::{Endpoint, Host, HostPort, Transport};
use crate::error::{Error, Op, Result};
use crate::socket::{Address, Family, Socket, ToAddress, Type};
use crate::sys;

/// Options that shape how a listener is created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenOptions {
    pub(crate) backlog: i32,
    pub(crate) unix_mode: Option<u32>,
    /// Set `SO_REUSEPORT`, so that sibling listeners can share the port.
    pub(crate) reuse_port: bool,
}

/// The listeners of one endpoint: with `workers` > 1 on TCP, one `SO_REUSEPORT` listener per
/// worker where the kernel allows it (it then spreads connections over them), else one
/// listener that every worker's accept loop shares.
#[derive(Debug)]
pub(crate) struct ListenerGroup {
    pub(crate) endpoint: Endpoint,
    pub(crate) listeners: Vec<Listener>,
    /// Accept loops to run: one per listener, or `workers` on a shared one.
    pub(crate) loops: usize,
}

impl ListenerGroup {
    pub(crate) fn bind(
        endpoint: &Endpoint,
        options: ListenOptions,
        workers: usize,
    ) -> Result<ListenerGroup> {
        let workers = workers.max(1);
        let sharded = workers > 1 && matches!(endpoint, Endpoint::Tcp(_));
        let endpoint = if sharded {
            // SO_REUSEPORT would let us share a port another server of the same user holds.
            // Claim it alone first, so "address already in use" is still an error, then let
            // the shared listeners take the port the probe got.
            let probe = Listener::bind(endpoint, options)?;
            probe.local_endpoint()
        } else {
            endpoint.clone()
        };
        let options = ListenOptions {
            reuse_port: sharded,
            ..options
        };
        let first = Listener::bind(&endpoint, options)?;
        let local = first.local_endpoint();
        let mut listeners = vec![first];
        if sharded {
            // Siblings bind the port the first one got; a kernel without SO_REUSEPORT (or
            // one that refuses it) answers EADDRINUSE, and the first listener is shared.
            while listeners.len() < workers {
                match Listener::bind(&local, options) {
                    Ok(sibling) => listeners.push(sibling),
                    Err(_) => break,
                }
            }
        }
        let loops = if listeners.len() > 1 {
            listeners.len()
        } else {
            workers
        };
        Ok(ListenerGroup {
            endpoint: local,
            listeners,
            loops,
        })
    }
}

/// A bound listener of any transport.
#[derive(Debug)]
pub(crate) enum Listener {
    Stream(StreamListener),
    Datagram(DatagramListener),
}

impl Listener {
    /// Binds `endpoint`; must run inside a tokio runtime.
    pub(crate) fn bind(endpoint: &Endpoint, options: ListenOptions) -> Result<Listener> {
        let (socket, file) = bind_endpoint(endpoint, options)?;
        let fail = |err| Error::new(Op::Listen, endpoint, err);
        socket
            .set_blocking(false)
            .map_err(|err| fail(err.into_io_error()))?;
        let fd = OwnedFd::from(socket);
        Ok(match (endpoint, file) {
            (Endpoint::Tcp(_), _) => {
                let listener = register(fd.into()).map_err(fail)?;
                Listener::Stream(StreamListener::Tcp(listener))
            }
            (Endpoint::Udp(_), _) => {
                let socket = UdpSocket::from_std(fd.into()).map_err(fail)?;
                Listener::Datagram(DatagramListener::Udp(socket))
            }
            (Endpoint::Unix(_), Some(file)) => {
                let listener = register(fd.into()).map_err(fail)?;
                Listener::Stream(StreamListener::Unix(listener, file))
            }
            (Endpoint::Unixgram(_), Some(file)) => {
                let socket = UnixDatagram::from_std(fd.into()).map_err(fail)?;
                Listener::Datagram(DatagramListener::Unixgram(socket, file))
            }
            // bind_endpoint returns the file guard for every Unix endpoint.
            (Endpoint::Unix(_) | Endpoint::Unixgram(_), None) => {
                return Err(fail(io::ErrorKind::NotFound.into()));
            }
        })
    }

    /// The endpoint really listened on (the port the system chose for `:0`).
    pub(crate) fn local_endpoint(&self) -> Endpoint {
        match self {
            Listener::Stream(listener) => listener.local_endpoint(),
            Listener::Datagram(listener) => listener.local_endpoint(),
        }
    }
}

/// A bound, listening stream socket.
#[derive(Debug)]
pub(crate) enum StreamListener {
    // AsyncFd rather than tokio's listeners: accepting through it yields bare descriptors
    // (see `accept_raw`), where tokio's `accept` registers every connection at once.
    Tcp(AsyncFd<std::net::TcpListener>),
    Unix(AsyncFd<std::os::unix::net::UnixListener>, UnixFile),
}

/// The socket file a Unix listener created; removed when the listener goes, if the file at
/// the path is still the one we made (another server may have replaced it since).
#[derive(Debug)]
pub(crate) struct UnixFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl UnixFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixFile {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .map(|meta| Some((meta.dev(), meta.ino())) == self.identity)
            .unwrap_or(false);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl StreamListener {
    /// The endpoint this listener really listens on (the port the system chose for `:0`).
    pub(crate) fn local_endpoint(&self) -> Endpoint {
        match self {
            StreamListener::Tcp(listener) => match listener.get_ref().local_addr() {
                Ok(addr) => Endpoint::at(Transport::Tcp, &addr.into()),
                Err(_) => Endpoint::Tcp(HostPort {
                    host: Host::Any,
                    port: 0,
                }),
            },
            StreamListener::Unix(_, file) => Endpoint::Unix(file.path.clone()),
        }
    }

    /// Waits until a connection is pending, without taking it: the caller reserves a
    /// connection slot first, then accepts with [`Pending::accept`].
    pub(crate) async fn pending(&self) -> io::Result<Pending<'_>> {
        Ok(match self {
            StreamListener::Tcp(listener) => Pending::Tcp(listener.readable().await?),
            StreamListener::Unix(listener, _) => Pending::Unix(listener.readable().await?),
        })
    }
}

/// Registers a listener with the reactor for readability.
fn register<T: AsRawFd>(listener: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `listener` is a std listener that owns its descriptor: it stays open, and
    // `as_raw_fd` returns the same one, for as long as the AsyncFd owns the listener.
    unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
        .map_err(|err| err.into_parts().1)
}

/// A listener that has a connection waiting (or had: another accept loop may take it first).
pub(crate) enum Pending<'a> {
    Tcp(AsyncFdReadyGuard<'a, std::net::TcpListener>),
    Unix(AsyncFdReadyGuard<'a, std::os::unix::net::UnixListener>),
}

impl Pending<'_> {
    /// Takes the connection as a bare non-blocking descriptor, not yet known to tokio (a
    /// handler with an immediate reply answers it without the cost of registering it).
    /// `None`: it was gone (`EAGAIN`); the listener's readiness is cleared.
    pub(crate) fn accept(&mut self) -> Option<io::Result<RawConnection>> {
        let (accepted, unix) = match self {
            Pending::Tcp(ready) => (
                ready.try_io(|l| sys::accept_nonblocking(l.as_raw_fd())),
                false,
            ),
            Pending::Unix(ready) => (
                ready.try_io(|l| sys::accept_nonblocking(l.as_raw_fd())),
                true,
            ),
        };
        let accepted = accepted.ok()?;
        Some(accepted.map(|(fd, peer)| RawConnection { fd, peer, unix }))
    }
}

/// An accepted connection that tokio does not know yet.
#[derive(Debug)]
pub(crate) struct RawConnection {
    fd: OwnedFd,
    peer: socket2::SockAddr,
    unix: bool,
}

impl RawConnection {
    /// Sends what it can of `data` without waiting; returns how much went out.
    pub(crate) fn send_now(&self, data: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(&self.fd).send(data)
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> Address {
        Address::from_sockaddr(&self.peer)
    }

    /// Registers the connection with tokio; returns it with its peer's address.
    pub(crate) fn into_stream(self) -> io::Result<(Stream, Address)> {
        let peer = self.peer();
        if self.unix {
            let stream = tokio::net::UnixStream::from_std(self.fd.into())?;
            return Ok((Stream::Unix(stream), peer));
        }
        let stream = tokio::net::TcpStream::from_std(self.fd.into())?;
        Ok((Stream::Tcp(stream), peer))
    }
}

/// A bound socket for `endpoint` (listening, for streams), in blocking mode, with the guard
/// that removes a Unix socket file. The server and `socketkit listen` both bind through it.
pub(crate) fn bind_endpoint(
    endpoint: &Endpoint,
    options: ListenOptions,
) -> Result<(Socket, Option<UnixFile>)> {
    match endpoint {
        Endpoint::Tcp(hp) => Ok((bind_ip(hp, Type::Stream, options, endpoint)?, None)),
        Endpoint::Udp(hp) => Ok((bind_ip(hp, Type::Datagram, options, endpoint)?, None)),
        Endpoint::Unix(path) => bind_unix(path, Type::Stream, options, endpoint).map(wrap_file),
        Endpoint::Unixgram(path) => {
            bind_unix(path, Type::Datagram, options, endpoint).map(wrap_file)
        }
    }
}

fn wrap_file((socket, file): (Socket, UnixFile)) -> (Socket, Option<UnixFile>) {
    (socket, Some(file))
}

/// A bound (and, for streams, listening) IP socket for `hp`.
fn bind_ip(hp: &HostPort, ty: Type, options: ListenOptions, endpoint: &Endpoint) -> Result<Socket> {
    let addresses: Vec<Address> = match &hp.host {
        // One dual-stack socket serves IPv4 and IPv6 on one port (port 0 must stay one port);
        // where the kernel has no IPv6, fall back to IPv4 alone.
        Host::Any => vec![
            Address::from(std::net::SocketAddr::from(([0u16; 8], hp.port))),
            Address::from(std::net::SocketAddr::from(([0u8; 4], hp.port))),
        ],
        Host::Ip(ip) => vec![Address::from(std::net::SocketAddr::new(*ip, hp.port))],
        Host::Name(name) => {
            let found = (name.as_str(), hp.port).to_addresses(None)?;
            found.into_iter().take(1).collect()
        }
    };
    let mut last = None;
    for address in &addresses {
        match bind_ip_on(address, ty, options, endpoint.transport()) {
            Ok(socket) => return Ok(socket),
            Err(err) if ipv6_missing(&err) && addresses.len() > 1 => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| Error::new(Op::Listen, endpoint, io::ErrorKind::NotFound.into())))
}

fn ipv6_missing(err: &Error) -> bool {
    matches!(
        err.io_error().raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

fn bind_ip_on(
    address: &Address,
    ty: Type,
    options: ListenOptions,
    transport: Transport,
) -> Result<Socket> {
    let setup = || -> Result<Socket> {
        let socket = Socket::new(address.family(), ty)?;
        // SO_REUSEADDR: a restarted server binds its port even with old connections in
        // TIME_WAIT, as Python's create_server does on POSIX.
        socket.set_reuse_address(true)?;
        if options.reuse_port {
            // Where the option is missing the siblings fail to bind and the listener is
            // shared instead; that is the fallback, so the error itself is not one.
            let _ = socket.set_reuse_port(true);
        }
        if address.family() == Family::Inet6 {
            let dual = address.ip().is_some_and(|ip| ip.is_unspecified());
            socket.set_only_v6(!dual)?;
        }
        socket.bind(address)?;
        if ty == Type::Stream {
            socket.listen(options.backlog)?;
        }
        Ok(socket)
    };
    setup().map_err(|err| {
        Error::new(
            Op::Listen,
            Endpoint::at(transport, address),
            err.into_io_error(),
        )
    })
}

/// A bound Unix socket at `path` and the guard that removes its file.
fn bind_unix(
    path: &Path,
    ty: Type,
    options: ListenOptions,
    endpoint: &Endpoint,
) -> Result<(Socket, UnixFile)> {
    let fail = |err: io::Error| Error::new(Op::Listen, endpoint, err);
    clear_stale_socket(path, ty).map_err(fail)?;
    let socket = Socket::new(Family::Unix, ty)?;
    socket.bind(path).map_err(|err| fail(err.into_io_error()))?;
    let identity = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    // From here on the file is ours: the guard removes it if a later step fails.
    let file = UnixFile {
        path: path.to_path_buf(),
        identity,
    };
    if let Some(mode) = options.unix_mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    if ty == Type::Stream {
        socket
            .listen(options.backlog)
            .map_err(|err| fail(err.into_io_error()))?;
    }
    Ok((socket, file))
}

/// A socket file nobody listens on is left over from a server that died: replace it. A live
/// socket or anything that is not a socket is refused and left untouched.
pub(crate) fn clear_stale_socket(path: &Path, ty: Type) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not replacing it",
        ));
    }
    // Connecting is the only way to ask whether anybody is bound there; a socket of the
    // other type answers EPROTOTYPE, and may be live, so it is left alone.
    let probe = Socket::new(Family::Unix, ty).map_err(Error::into_io_error)?;
    match probe.connect(path) {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server is listening on this socket",
        )),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path),
        Err(err) => Err(err.into_io_error()),
    }
}

/// Accept errors that mean "out of a resource for now": wait for it to come back.
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accept errors about one connection that died in the queue: skip it and go on at once.
pub(crate) fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(err.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

/// How long the accept loop sleeps after resource exhaustion: long enough not to spin,
/// short enough that a freed descriptor is used soon.
pub(crate) const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(50);
