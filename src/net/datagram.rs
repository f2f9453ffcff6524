//! [`ConnectedDatagram`]: a datagram socket connected to one peer, UDP or Unix, for the
//! clients among us (`bench`'s request/reply, `forward`'s upstream sockets).

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::net::{UdpSocket, UnixDatagram};

use super::{TempSocketPath, connect_socket};
use crate::socket::{Address, Type};

/// A non-blocking datagram socket connected to its peer and registered with the runtime.
/// A Unix one is bound first to a [`TempSocketPath`] (removed with it), since a Unix
/// datagram server can only answer a client with an address.
#[derive(Debug)]
pub(crate) enum ConnectedDatagram {
    Udp(UdpSocket),
    Unix {
        socket: UnixDatagram,
        // Held for its Drop: the socket's file goes with the socket.
        _path: Option<TempSocketPath>,
    },
}

impl ConnectedDatagram {
    /// A socket connected to `peer` (a datagram connect does not wait: it only fixes the
    /// peer; `@NAME` is the abstract namespace's); must run inside a tokio runtime.
    pub(crate) fn open(peer: &Address) -> io::Result<ConnectedDatagram> {
        let (socket, path) = connect_socket(peer, Type::Datagram, None, false, None)
            .map_err(crate::Error::into_io_error)?;
        socket
            .set_blocking(false)
            .map_err(crate::Error::into_io_error)?;
        let fd = OwnedFd::from(socket);
        Ok(match peer {
            Address::Unix(_) => ConnectedDatagram::Unix {
                socket: UnixDatagram::from_std(fd.into())?,
                _path: path,
            },
            Address::Inet(_) | Address::Inet6(_) => {
                ConnectedDatagram::Udp(UdpSocket::from_std(fd.into())?)
            }
        })
    }

    /// Whether the peer is a Unix socket (connected to that socket, not to its path: one
    /// bound at the same path later is another).
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, ConnectedDatagram::Unix { .. })
    }

    /// Sends one datagram to the peer.
    pub(crate) async fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            ConnectedDatagram::Udp(socket) => socket.send(data).await,
            ConnectedDatagram::Unix { socket, .. } => socket.send(data).await,
        }
    }

    /// Sends one datagram to the peer without waiting on a Unix peer's queue: a Unix
    /// socket that does not read holds a sender back until it does (a UDP one drops at the
    /// receiver), so a relay that serves many clients from one loop drops the datagram
    /// instead (`WouldBlock`) — as UDP would — rather than stop for everyone. A UDP send
    /// waits as [`ConnectedDatagram::send`] (its buffer drains whoever the peer is).
    pub(crate) async fn send_or_drop(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            ConnectedDatagram::Udp(socket) => socket.send(data).await,
            // Past tokio's readiness, which a full queue would clear until the peer reads.
            ConnectedDatagram::Unix { socket, .. } => socket2::SockRef::from(socket).send(data),
        }
    }

    /// Receives one datagram from the peer.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ConnectedDatagram::Udp(socket) => socket.recv(buf).await,
            ConnectedDatagram::Unix { socket, .. } => socket.recv(buf).await,
        }
    }

    /// Takes off the socket, without waiting, the datagrams already there (into `buf`), and
    /// returns how many: what a request/reply client clears before its next request, so
    /// that an answer the server sent twice is not taken for the next one's. An error the
    /// socket holds (ICMP port unreachable) is returned: the kernel reports it once.
    pub(crate) fn discard_queued(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut discarded = 0;
        loop {
            let taken = match self {
                ConnectedDatagram::Udp(socket) => socket.try_recv(buf),
                ConnectedDatagram::Unix { socket, .. } => socket.try_recv(buf),
            };
            match taken {
                Ok(_) => discarded += 1,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(discarded),
                Err(err) => return Err(err),
            }
        }
    }

    /// Receives one datagram from the peer whole, growing `buf` for a Unix datagram longer
    /// than it (see [`next_unix_datagram_len`]); a UDP datagram longer than `buf` is cut.
    pub(crate) async fn recv_whole(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            ConnectedDatagram::Udp(socket) => socket.recv(buf).await,
            ConnectedDatagram::Unix { socket, .. } => {
                let next = next_unix_datagram_len(socket).await?;
                if next > buf.len() {
                    buf.resize(next, 0);
                }
                socket.recv(buf).await
            }
        }
    }
}

/// The length of the next datagram on `socket`, once one has come (`MSG_PEEK |
/// MSG_TRUNC`): a Unix datagram can be longer than any UDP one (up to its sender's
/// buffer), and a receive into a shorter buffer cuts it without a word.
pub(crate) async fn next_unix_datagram_len(socket: &UnixDatagram) -> io::Result<usize> {
    socket
        .async_io(Interest::READABLE, || {
            socket2::SockRef::from(socket).recv_with_flags(
                &mut [],
                libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        })
        .await
}
