//! Taking a connection off a listening socket as a bare descriptor ([`RawStream`]), and
//! sorting `accept(2)` errors into "skip this one" and "out of a resource for now".

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::Stream;
use crate::endpoint::Transport;
use crate::socket::{Address, as_uninit};

/// An accepted connection that tokio does not know yet: a server can answer it with one
/// `send` and close it without ever registering it with the reactor.
#[derive(Debug)]
pub(crate) struct RawStream {
    fd: OwnedFd,
    peer: socket2::SockAddr,
    unix: bool,
}

impl AsFd for RawStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl RawStream {
    /// `accept4(2)` on the listening socket `listener` of `transport` (TCP or Unix): the
    /// connection, non-blocking and close-on-exec, in one system call on Linux.
    pub(crate) fn accept(listener: impl AsFd, transport: Transport) -> io::Result<RawStream> {
        let (fd, peer) = crate::sys::accept_nonblocking(listener)?;
        let unix = transport == Transport::Unix;
        Ok(RawStream { fd, peer, unix })
    }

    /// Sends what it can of `data` without waiting, and returns how much went out; if the
    /// socket took all of it, the FIN goes after it in the same segment (`MSG_MORE`, then
    /// `shutdown(SHUT_WR)`): what an immediate reply does before the close. A part the
    /// socket took short of all is held back until the rest is written.
    pub(crate) fn send_now_and_finish(&self, data: &[u8]) -> io::Result<usize> {
        let socket = socket2::SockRef::from(&self.fd);
        let sent = socket.send_with_flags(data, libc::MSG_MORE | libc::MSG_NOSIGNAL)?;
        if sent == data.len() {
            socket.shutdown(std::net::Shutdown::Write)?;
        }
        Ok(sent)
    }

    /// Copies what has arrived into `buf` without taking it off the socket and without
    /// waiting (`recv(2)` with `MSG_PEEK | MSG_DONTWAIT`): `WouldBlock` when nothing has.
    pub(crate) fn peek_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        socket2::SockRef::from(&self.fd)
            .recv_with_flags(as_uninit(buf), libc::MSG_PEEK | libc::MSG_DONTWAIT)
    }

    /// Takes up to `buf.len()` bytes off the socket without waiting (`recv(2)`).
    pub(crate) fn take_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        socket2::SockRef::from(&self.fd).recv_with_flags(as_uninit(buf), libc::MSG_DONTWAIT)
    }

    /// Closes the connection with a reset (`SO_LINGER` 0): for a refused client, which is
    /// told at once and leaves no `TIME_WAIT` behind on our side.
    pub(crate) fn reset(self) {
        super::close_with_reset(self.fd.as_fd());
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> Address {
        Address::from_sockaddr(&self.peer).to_canonical()
    }

    /// The address the peer connected to (`getsockname(2)`), if the socket can say.
    pub(crate) fn local(&self) -> Option<Address> {
        let local = socket2::SockRef::from(&self.fd).local_addr().ok()?;
        Some(Address::from_sockaddr(&local).to_canonical())
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

/// Accept (or receive) errors that mean "out of a resource for now": wait for it to come
/// back rather than try again at once.
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accept errors about one connection that died in the queue: skip it and go on at once.
///
/// Not `EPERM`: accept(2) gives it for a connection a firewall rule forbids, but a seccomp
/// filter or a security module that refuses `accept4` itself gives it for every try, with
/// the connection left in the queue and the listener readable: skipped at once, that spun
/// the loop for ever and kept the shutdown from running. It backs off as exhaustion does
/// (one warning, 50 ms between tries), which costs a firewall's single refusal 50 ms.
pub(crate) fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || err.raw_os_error() == Some(libc::EPROTO)
}

/// How many connections wait in the accept queue of the TCP listener `listener`; an error
/// where the system cannot tell (see `sys::accept_queue_len`).
pub(crate) fn queued_connections(listener: std::os::fd::BorrowedFd<'_>) -> io::Result<usize> {
    crate::sys::accept_queue_len(listener)
}
