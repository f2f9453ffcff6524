//! The Linux-only calls of `linux.rs`, for every other Unix (and for Linux itself when
//! built with `--cfg socketkit_sys_fallback`, which is how this file is tested):
//!
//! - no `splice(2)`: [`splice`] answers `ENOSYS`, which every caller already takes as "not
//!   supported here" and relays or writes by copying instead;
//! - pipes keep the size the system gives them;
//! - accepting costs two or three calls (`accept` or `accept4`, then `O_NONBLOCK`, and
//!   `FD_CLOEXEC` where there is no `accept4`) where Linux's `accept4` takes one;
//! - `IP_BIND_ADDRESS_NO_PORT` is missing: `bind` picks the port early, as it always did;
//! - `TCP_DEFER_ACCEPT` is missing: a connection is accepted before its first bytes;
//! - `SIOCOUTQ` is missing (BSDs have other calls for it): [`unacknowledged`] answers
//!   `Unsupported`, and `--send-only` takes its bytes as delivered once written and
//!   half-closed, without waiting for the peer's acknowledgement.
//! - `TCP_INFO` is missing: a connection whose bytes another process moves has no idle time
//!   (exec keeps it on pipes under an idle timeout).
//! - `POLLRDHUP` is missing: [`peer_has_closed`] peeks instead, and sees the peer's end only
//!   once the bytes it sent before have been read.
//! - the destination of a datagram (`IP_PKTINFO`, `IPV6_RECVPKTINFO`) is not asked for:
//!   [`ask_destinations`] answers `Unsupported`, and a UDP socket bound to a wildcard
//!   address answers from the address the system picks by its routes, which a client that
//!   sent to another of the host's addresses (and connected its socket) does not take.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{Destination, Pipe};

/// The size assumed for a pipe whose size cannot be asked (POSIX guarantees only
/// `PIPE_BUF`; common systems give 16–64 KiB, and nothing here relies on the figure while
/// splicing is unavailable).
const ASSUMED_PIPE: usize = 16 * 1024;

/// A non-blocking pipe of the system's default size; `size` cannot be asked for here.
pub(crate) fn pipe(_size: usize) -> io::Result<Pipe> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&read, &write] {
        let socket = socket2::SockRef::from(fd);
        // socket2's flag setters are plain fcntl calls, valid on any descriptor.
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
    }
    Ok(Pipe {
        read,
        write,
        capacity: ASSUMED_PIPE,
    })
}

/// The size of a pipe cannot be asked for or changed here: always `None`.
pub(crate) fn grow_pipe(_fd: RawFd, _size: usize) -> Option<usize> {
    None
}

/// No `splice(2)`: always `ENOSYS`, the error callers take as "copy instead".
pub(crate) fn splice(
    _from: RawFd,
    _to: RawFd,
    _len: usize,
    _nonblocking: bool,
) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// socket2's `accept` (with `FD_CLOEXEC`, set atomically where the system has `accept4`),
/// then `O_NONBLOCK`.
pub(crate) fn accept_nonblocking(listener: impl AsFd) -> io::Result<(OwnedFd, socket2::SockAddr)> {
    let (socket, peer) = socket2::SockRef::from(&listener.as_fd()).accept()?;
    socket.set_nonblocking(true)?;
    Ok((socket.into(), peer))
}

/// The peer's address (`getpeername`: elsewhere a reset connection may have none).
pub(crate) fn peer_name(socket: BorrowedFd<'_>) -> io::Result<socket2::SockAddr> {
    socket2::SockRef::from(&socket).peer_addr()
}

/// `IP_BIND_ADDRESS_NO_PORT` is Linux's: always `Unsupported` (callers bind anyway).
pub(crate) fn set_bind_address_no_port(_socket: &socket2::Socket) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `TCP_DEFER_ACCEPT` is Linux's: always `Unsupported` (listeners hand over connections
/// at once, and a PROXY header is waited for after the accept).
pub(crate) fn set_defer_accept(_listener: BorrowedFd<'_>, _seconds: u32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `SIOCOUTQ` is Linux's: always `Unsupported` (callers take the bytes as delivered).
pub(crate) fn unacknowledged(_fd: RawFd) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `TCP_INFO` is Linux's: always `Unsupported` (callers keep moving the bytes themselves,
/// and time the connection out as they do).
pub(crate) fn tcp_idle_time(_socket: BorrowedFd<'_>) -> io::Result<std::time::Duration> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `TCP_INFO` is Linux's: always `Unsupported` (callers then take every connection of the
/// listener for one that may lack what the listener was given later).
pub(crate) fn accept_queue_len(_listener: BorrowedFd<'_>) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `TCP_INFO` is Linux's: always `Unsupported` (callers count what they read, and ask
/// the receive queue for the rest).
pub(crate) fn tcp_bytes_received(_socket: BorrowedFd<'_>) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `TCP_INFO` is Linux's: always `Unsupported` (callers judge a peer's progress by the
/// program's own sends).
pub(crate) fn tcp_bytes_acked(_socket: BorrowedFd<'_>) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `TCP_INFO` is Linux's: always `Unsupported` (callers judge without the window).
pub(crate) fn tcp_send_window(_socket: BorrowedFd<'_>) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A reuseport group's BPF program is Linux's: always `Unsupported` (the kernel's own
/// spreading stays).
pub(crate) fn steer_reuseport_to_first(_listener: BorrowedFd<'_>) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// See [`steer_reuseport_to_first`]: always `Unsupported`.
pub(crate) fn unsteer_reuseport(_listener: BorrowedFd<'_>) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The destination of a datagram is asked for on Linux only: always `Unsupported` (the
/// socket is then read and answered with `recvfrom` and `sendto`, as before).
pub(crate) fn ask_destinations(_socket: BorrowedFd<'_>, _ipv6: bool) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Never called where [`ask_destinations`] refused: always `Unsupported`.
pub(crate) fn recv_with_destination(
    _socket: BorrowedFd<'_>,
    _buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Destination>)> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Never called where [`ask_destinations`] refused: always `Unsupported`.
pub(crate) fn send_from(
    _socket: BorrowedFd<'_>,
    _data: &[u8],
    _peer: &SocketAddr,
    _from: &Destination,
) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// No `PR_SET_DUMPABLE` here: what other systems do on a drop of privileges stands.
pub(crate) fn set_not_dumpable() -> io::Result<()> {
    Ok(())
}

/// Whether the peer of the stream socket `fd` has ended its side, asked without waiting: a
/// peek that finds the end of stream (or an error). Bytes still unread hide the end.
pub(crate) fn peer_has_closed(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv writes at most one byte into `byte`, which lives across the call.
    let rc = unsafe {
        libc::recv(
            fd,
            std::ptr::addr_of_mut!(byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    rc == 0 || (rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock)
}
