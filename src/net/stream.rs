//! [`Stream`]: a connected TCP or Unix stream behind one type, so that servers, the relay of
//! `socketkit forward` and the connection wrapper need no per-transport code.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::socket::{Address, Socket, as_uninit};

/// A connected stream of either transport.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Polls for readability without reading (a handler allocates its buffer only then).
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }
}

impl Stream {
    /// Runs `op` (a non-blocking system call on the descriptor) once the stream is ready for
    /// `interest`, waiting again whenever it answers `EAGAIN` (tokio's `async_io`).
    pub(crate) async fn async_io<R>(
        &self,
        interest: Interest,
        op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Stream::Tcp(s) => s.async_io(interest, op).await,
            Stream::Unix(s) => s.async_io(interest, op).await,
        }
    }

    /// Runs `op` once if the stream is ready for `interest` (tokio's `try_io`): `WouldBlock`
    /// without calling it when it is not, and readiness cleared when `op` says `EAGAIN`.
    pub(crate) fn try_io<R>(
        &self,
        interest: Interest,
        op: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Stream::Tcp(s) => s.try_io(interest, op),
            Stream::Unix(s) => s.try_io(interest, op),
        }
    }

    /// Reads what is there without waiting; `WouldBlock` (and tokio's readiness cleared)
    /// when nothing is.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut short = None;
        let read = self.try_io(Interest::READABLE, || {
            let n = match self {
                Stream::Tcp(s) => socket2::SockRef::from(s).recv(as_uninit(buf))?,
                Stream::Unix(s) => socket2::SockRef::from(s).recv(as_uninit(buf))?,
            };
            if n > 0 && n < buf.len() {
                // A short read emptied the socket: the readiness is forgotten, so that the
                // next read waits for the kernel's next event instead of asking it for an
                // EAGAIN. Said as `WouldBlock` inside `try_io`, which clears the readiness it
                // saw *before* the read: bytes that arrived during it are a newer event, and
                // stay. (Cleared after the read, they were lost with it, and the connection
                // waited for an event that had come: a stall on a multi-thread runtime.)
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match short {
            Some(n) => Ok(n),
            None => read,
        }
    }

    /// Waits until bytes have arrived (or the end of stream), then copies them into `buf`
    /// without taking them off the socket (`recv(2)` with `MSG_PEEK`). `Ok(0)` is the end
    /// of stream. A peek that finds nothing clears tokio's readiness, so waiting again
    /// sleeps until the kernel reports new bytes rather than spinning.
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.async_io(Interest::READABLE, || match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).peek(as_uninit(buf)),
            Stream::Unix(s) => socket2::SockRef::from(s).peek(as_uninit(buf)),
        })
        .await
    }

    /// The local address, from `getsockname(2)`.
    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        let raw = match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).local_addr()?,
            Stream::Unix(s) => socket2::SockRef::from(s).local_addr()?,
        };
        Ok(Address::from_sockaddr(&raw).to_canonical())
    }

    /// Half-closes the stream (`shutdown(SHUT_WR)`) without going through `AsyncWrite`.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        let result = match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).shutdown(Shutdown::Write),
            Stream::Unix(s) => socket2::SockRef::from(s).shutdown(Shutdown::Write),
        };
        // The peer may already be gone; there is nobody left to tell.
        match result {
            Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            other => other,
        }
    }
}

impl Stream {
    /// Turns Nagle's algorithm off on a TCP stream (a Unix stream has none).
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(true),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// Makes the close a reset (`SO_LINGER` 0): for a connection refused after accept, or
    /// cut short by a forced shutdown. A Unix stream has no reset: its peer reads end of
    /// stream (`ECONNRESET` only if this side left bytes unread).
    pub(crate) fn reset_on_close(&self) {
        match self {
            Stream::Tcp(s) => close_with_reset(s.as_fd()),
            Stream::Unix(s) => close_with_reset(s.as_fd()),
        }
    }

    /// Shuts the connection down both ways, for every process that holds the socket (a
    /// failure means it is no longer connected: nothing left to end).
    pub(crate) fn shut_down(&self) {
        let _ = socket2::SockRef::from(self).shutdown(Shutdown::Both);
    }

    /// Resets the connection now, for every process that holds the socket (see
    /// [`reset_now`]).
    pub(crate) fn reset_now(&self) {
        match self {
            Stream::Tcp(s) => reset_now(s.as_fd()),
            Stream::Unix(s) => reset_now(s.as_fd()),
        }
    }
}

/// Makes the close of `socket` a reset (`SO_LINGER` 0); a Unix stream's close stays an end
/// of stream. Failing, the close is a FIN, which is all there is left to do.
pub(crate) fn close_with_reset(socket: BorrowedFd<'_>) {
    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
}

/// Whether the stream socket `socket` holds bytes of its connection still on their way:
/// received and not read, or written and not acknowledged by the peer (what a quiet close
/// would leave to the kernel to deliver, or lose). Where the kernel cannot tell (no
/// `SIOCOUTQ`), only the unread bytes count.
pub(crate) fn holds_bytes(socket: BorrowedFd<'_>) -> bool {
    let fd = socket.as_raw_fd();
    crate::sys::receive_queued(fd).is_ok_and(|queued| queued > 0)
        || crate::sys::unacknowledged(fd).is_ok_and(|queued| queued > 0)
}

/// The most [`discard_unread`] reads: a request a program left unread, not a peer that
/// goes on sending (whose close is then a reset, as it would have been).
const DISCARDED_AT_MOST: usize = 1 << 20;

/// Reads and drops what the peer sent that nobody read, as far as it has arrived (never
/// waiting, at most [`DISCARDED_AT_MOST`]), before a close: a close with bytes unread is a
/// reset, which can reach the peer as an error under the answer it was sent (a program
/// that answered a request without reading it, as an HTTP responder's `printf` does).
/// With nothing unread the close is an end of stream.
pub(crate) fn discard_unread(socket: BorrowedFd<'_>) {
    let fd = socket.as_raw_fd();
    let mut buf = [0u8; 16 * 1024];
    let mut discarded = 0;
    while discarded < DISCARDED_AT_MOST {
        match crate::sys::recv_nowait(fd, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

/// Makes the close of a connection an idle timeout ended a reset if bytes of it are still
/// on their way ([`holds_bytes`]): to a client that stopped reading, a quiet close would
/// leave the rest of the stream to the kernel, which keeps sending it after a FIN for as
/// long as the client acknowledges, held by no process and counted by no limit, and the
/// client would read the cut as the stream's end. One that loses nothing closes quietly.
pub(crate) fn reset_if_cut_short(socket: BorrowedFd<'_>) {
    if holds_bytes(socket) {
        close_with_reset(socket);
    }
}

/// Resets the connection of `socket` now, under whoever waits in a read or write of it (a
/// blocking handler on another thread, an io_uring request): `SO_LINGER` 0, so that its
/// close is a reset whatever comes next, then a disconnect (`connect(2)` to `AF_UNSPEC`),
/// which sends the reset at once and fails every call waiting in it. A Unix stream has no
/// reset, and some kernels refuse the disconnect while a thread waits in the socket: then it
/// is shut down both ways, so the waiting calls still return; its peer reads end of stream
/// (a TCP peer then meets the reset at the close).
pub(crate) fn reset_now(socket: BorrowedFd<'_>) {
    close_with_reset(socket);
    if crate::sys::disconnect(socket.as_raw_fd()).is_err() {
        let _ = socket2::SockRef::from(&socket).shutdown(Shutdown::Both);
    }
}

/// What a stream whose bytes another process moves (an exec program with the socket as its
/// stdin and stdout) still answers, without a byte read here.
impl Stream {
    /// A second descriptor of the stream (`dup(2)`, close-on-exec), as a socket.
    pub(crate) fn duplicate(&self) -> io::Result<Socket> {
        let fd = match self {
            Stream::Tcp(s) => s.as_fd().try_clone_to_owned()?,
            Stream::Unix(s) => s.as_fd().try_clone_to_owned()?,
        };
        Ok(Socket::from_inherited(fd)?.0)
    }

    /// Waits until the connection fails — a reset, a keepalive that went unanswered: the
    /// kernel's `EPOLLERR`, which epoll reports whatever was asked — and answers its error
    /// (`SO_ERROR`, taken). A client's end of stream is not a failure: it waits on then.
    pub(crate) async fn failure(&self) -> io::Error {
        let ready = match self {
            Stream::Tcp(s) => s.ready(Interest::ERROR).await,
            Stream::Unix(s) => s.ready(Interest::ERROR).await,
        };
        if let Err(err) = ready {
            return err;
        }
        let pending = match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        };
        match pending {
            Ok(Some(err)) | Err(err) => err,
            // Taken by the other process's read or write in between.
            Ok(None) => io::Error::new(io::ErrorKind::ConnectionReset, "the connection failed"),
        }
    }

    /// How long no data has moved either way, by the kernel's clocks (`TCP_INFO`):
    /// `Unsupported` for a Unix stream, which has none, and off Linux.
    pub(crate) fn idle_time(&self) -> io::Result<Duration> {
        match self {
            Stream::Tcp(s) => crate::sys::tcp_idle_time(s.as_fd()),
            Stream::Unix(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    /// Vectored, as the sockets are: a TLS session hands all its queued records over in
    /// one call (its last words too — a failed handshake's alert behind the ServerHello,
    /// which a write of the first buffer alone would leave unsent).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
