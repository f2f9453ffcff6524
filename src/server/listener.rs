//! A server's listeners: the sockets `net` binds, handed to tokio behind private enums, one
//! group per endpoint; and taking a connection off a stream listener.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::net::{UdpSocket, UnixDatagram};

use super::datagram::DatagramListener;
use crate::endpoint::{Endpoint, Transport};
use crate::error::{Error, Op, Result};
use crate::net::{self, Bound, ListenOptions, RawStream, UnixFile};

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
    /// Binds `endpoint` for `workers` accept loops; must run inside a tokio runtime.
    pub(crate) fn bind(
        endpoint: &Endpoint,
        options: ListenOptions,
        workers: usize,
    ) -> Result<ListenerGroup> {
        let set = net::bind_reuse_port_set(endpoint, options, workers.max(1))?;
        ListenerGroup::register(set, workers)
    }

    /// Serves sockets bound elsewhere (inherited: `fd:N`, a handover) for `workers` accept
    /// loops; must run inside a tokio runtime.
    pub(crate) fn register(set: Vec<Bound>, workers: usize) -> Result<ListenerGroup> {
        let workers = workers.max(1);
        let Some(first) = set.first() else {
            let none = io::Error::new(io::ErrorKind::InvalidInput, "no socket to listen on");
            return Err(Error::without_target(Op::Listen, none));
        };
        let local = first.endpoint.clone();
        let loops = if set.len() > 1 { set.len() } else { workers };
        let listeners = set
            .into_iter()
            .map(Listener::register)
            .collect::<Result<Vec<_>>>()?;
        Ok(ListenerGroup {
            endpoint: local,
            listeners,
            loops,
        })
    }

    /// Whether connections of this group speak TLS (a `tls:` endpoint).
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.endpoint, Endpoint::Tls(_))
    }
}

impl DatagramListener {
    /// Binds `endpoint` (`udp:` or `unixgram:`) on its own, outside a server (the datagram
    /// relay's listener), and says where it listens (the port chosen for port 0); must run
    /// inside a tokio runtime.
    pub(crate) fn bind(
        endpoint: &Endpoint,
        options: ListenOptions,
    ) -> Result<(DatagramListener, Endpoint)> {
        let not_datagram = || {
            let reason = io::Error::new(io::ErrorKind::InvalidInput, "not a datagram endpoint");
            Error::new(Op::Listen, endpoint, reason)
        };
        if endpoint.transport().is_stream() {
            return Err(not_datagram());
        }
        let bound = net::bind_endpoint(endpoint, options)?;
        let local = bound.endpoint.clone();
        match Listener::register(bound)? {
            Listener::Datagram(listener) => Ok((listener, local)),
            Listener::Stream(_) => Err(not_datagram()),
        }
    }
}

/// A bound listener of any transport.
#[derive(Debug)]
pub(crate) enum Listener {
    Stream(StreamListener),
    Datagram(DatagramListener),
}

impl Listener {
    /// Hands a bound socket to tokio; must run inside a tokio runtime.
    fn register(bound: Bound) -> Result<Listener> {
        let Bound {
            socket,
            endpoint,
            file,
        } = bound;
        let fail = |err| Error::new(Op::Listen, &endpoint, err);
        socket
            .set_blocking(false)
            .map_err(|err| fail(err.into_io_error()))?;
        let fd = OwnedFd::from(socket);
        Ok(match (&endpoint, file) {
            (Endpoint::Tcp(_) | Endpoint::Tls(_), _) => {
                let queued = QueuedWithNagle::after_setting_nodelay(fd.as_fd());
                let listener = register(fd.into()).map_err(fail)?;
                Listener::Stream(StreamListener::Tcp(listener, Arc::new(queued)))
            }
            (Endpoint::Udp(_), _) => {
                let socket = UdpSocket::from_std(fd.into()).map_err(fail)?;
                Listener::Datagram(DatagramListener::Udp(net::ServerUdp::new(socket)))
            }
            // No file guard: an inherited socket whose file is its manager's to remove.
            (Endpoint::Unix(_), file) => {
                let listener = register(fd.into()).map_err(fail)?;
                Listener::Stream(StreamListener::Unix(listener, file))
            }
            (Endpoint::Unixgram(_), file) => {
                let socket = UnixDatagram::from_std(fd.into()).map_err(fail)?;
                Listener::Datagram(DatagramListener::Unixgram { socket, file })
            }
        })
    }

    /// The listening socket, and the flag that keeps its Unix socket file when it closes.
    pub(crate) fn handover_parts(&self) -> (BorrowedFd<'_>, Option<Arc<AtomicBool>>) {
        match self {
            Listener::Stream(StreamListener::Tcp(listener, _)) => {
                (listener.get_ref().as_fd(), None)
            }
            Listener::Stream(StreamListener::Unix(listener, file)) => (
                listener.get_ref().as_fd(),
                file.as_ref().map(UnixFile::keeper),
            ),
            Listener::Datagram(listener) => listener.handover_parts(),
        }
    }

    /// The socket file this listener made (or took over) and removes when it closes.
    pub(crate) fn socket_file(&self) -> Option<&UnixFile> {
        match self {
            Listener::Stream(StreamListener::Tcp(..)) => None,
            Listener::Stream(StreamListener::Unix(_, file)) => file.as_ref(),
            Listener::Datagram(listener) => listener.socket_file(),
        }
    }
}

/// A bound, listening stream socket.
#[derive(Debug)]
pub(crate) enum StreamListener {
    // AsyncFd rather than tokio's listeners: accepting through it yields bare descriptors
    // (see `RawStream`), where tokio's `accept` registers every connection at once.
    /// With the count of connections it queued before it had `TCP_NODELAY`.
    Tcp(AsyncFd<std::net::TcpListener>, Arc<QueuedWithNagle>),
    /// With the guard of its socket file, unless the file is not ours (inherited).
    Unix(AsyncFd<std::os::unix::net::UnixListener>, Option<UnixFile>),
}

impl AsFd for StreamListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            StreamListener::Tcp(listener, _) => listener.get_ref().as_fd(),
            StreamListener::Unix(listener, _) => listener.get_ref().as_fd(),
        }
    }
}

impl StreamListener {
    /// Waits until a connection is pending, without taking it: the caller reserves a
    /// connection slot first, then accepts with [`Pending::accept`].
    pub(crate) async fn pending(&self) -> io::Result<Pending<'_>> {
        Ok(match self {
            StreamListener::Tcp(listener, queued) => {
                Pending::Tcp(listener.readable().await?, queued)
            }
            StreamListener::Unix(listener, _) => Pending::Unix(listener.readable().await?),
        })
    }
}

impl StreamListener {
    /// Asks the kernel to hand over a TCP connection only once its first bytes are there
    /// (`TCP_DEFER_ACCEPT`): for a listener whose clients always speak first (a balancer's
    /// PROXY header), so that the header is read at once on accept instead of waited for.
    /// The kernel's shortest wait, one second (one SYN-ACK retransmission), is asked: a
    /// client that stays silent is then accepted and given `header_timeout` as before, so
    /// it is refused a second later than without the option. With a `header_timeout` under
    /// a second that would more than double it, so the option is left off. Where the
    /// option is missing, connections are accepted at once, as without it.
    pub(crate) fn defer_accept(&self, header_timeout: Duration) {
        let StreamListener::Tcp(listener, _) = self else {
            return;
        };
        if header_timeout < Duration::from_secs(1) {
            return;
        }
        if let Err(err) = net::set_defer_accept(listener.get_ref().as_fd(), 1) {
            tracing::debug!("TCP_DEFER_ACCEPT is not available: {err}");
        }
    }

    /// The listening socket taken back from tokio's reactor, with the guard of its socket
    /// file (for the io_uring engine, which accepts on it itself) or, for TCP, the count of
    /// its connections without `TCP_NODELAY`.
    pub(crate) fn into_parts(self) -> (OwnedFd, StreamKind) {
        match self {
            StreamListener::Tcp(listener, queued) => {
                (listener.into_inner().into(), StreamKind::Tcp(queued))
            }
            StreamListener::Unix(listener, file) => {
                (listener.into_inner().into(), StreamKind::Unix(file))
            }
        }
    }

    /// [`StreamListener::into_parts`] undone: the socket handed back to tokio's reactor
    /// (when the io_uring engine's workers could not start after all).
    pub(crate) fn from_parts(fd: OwnedFd, kind: StreamKind) -> io::Result<StreamListener> {
        Ok(match kind {
            StreamKind::Unix(file) => StreamListener::Unix(register(fd.into())?, file),
            StreamKind::Tcp(queued) => StreamListener::Tcp(register(fd.into())?, queued),
        })
    }
}

/// What a stream listener is besides its socket: a Unix one with the guard of its socket
/// file, or a TCP one with the count of its connections without `TCP_NODELAY`.
pub(crate) enum StreamKind {
    Tcp(Arc<QueuedWithNagle>),
    Unix(Option<UnixFile>),
}

/// The connections a TCP listener queued before it had `TCP_NODELAY` — an inherited
/// listener's: the client whose connection started a socket-activated server, those an
/// older process left at a restart — which did not inherit it, and get it when accepted.
/// One atomic load per accept once they are gone.
#[derive(Debug, Default)]
pub(crate) struct QueuedWithNagle(AtomicUsize);

impl QueuedWithNagle {
    /// Sets `TCP_NODELAY` on `listener` (see [`set_nodelay`]), then counts the connections
    /// already in its queue; where the queue cannot be read (no `TCP_INFO`), none.
    fn after_setting_nodelay(listener: BorrowedFd<'_>) -> QueuedWithNagle {
        set_nodelay(listener);
        QueuedWithNagle(AtomicUsize::new(
            net::queued_connections(listener).unwrap_or(0),
        ))
    }

    /// Gives the accepted connection `conn` `TCP_NODELAY` if it may be one of the queued.
    pub(crate) fn accepted(&self, conn: BorrowedFd<'_>) {
        if self.0.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            let _ = socket2::SockRef::from(&conn).set_tcp_nodelay(true);
        }
    }
}

/// Turns Nagle's algorithm off on a TCP listener, whose connections inherit it (Linux and
/// the BSDs copy `TCP_NODELAY` to each accepted socket): no connection pays a system call
/// for it. With Nagle on, a reply written in pieces (an echo of a message longer than one
/// read, a handler's line after line) holds each piece after the first until the client
/// acknowledges the one before, and a client's delayed ACK takes 40 ms. Only latency rides
/// on it, so a socket that refuses the option is served as it is.
fn set_nodelay(listener: BorrowedFd<'_>) {
    if let Err(err) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
        tracing::debug!("TCP_NODELAY on a listener: {err}");
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
    Tcp(
        AsyncFdReadyGuard<'a, std::net::TcpListener>,
        &'a QueuedWithNagle,
    ),
    Unix(AsyncFdReadyGuard<'a, std::os::unix::net::UnixListener>),
}

impl Pending<'_> {
    /// Takes the connection as a bare non-blocking descriptor, not yet known to tokio (a
    /// handler with an immediate reply answers it without the cost of registering it).
    /// `None`: it was gone (`EAGAIN`); the listener's readiness is cleared.
    pub(crate) fn accept(&mut self) -> Option<io::Result<RawStream>> {
        let accepted = match self {
            Pending::Tcp(ready, queued) => ready.try_io(|l| {
                let conn = RawStream::accept(l.get_ref(), Transport::Tcp)?;
                queued.accepted(conn.as_fd());
                Ok(conn)
            }),
            Pending::Unix(ready) => {
                ready.try_io(|l| RawStream::accept(l.get_ref(), Transport::Unix))
            }
        };
        accepted.ok()
    }
}
