//! The datagram relay's sockets, UDP or Unix datagram alike, so that one relay serves
//! `udp:` and `unixgram:` on either side: a listener that receives from and answers many
//! clients, and per client an upstream socket connected to the target. A Unix upstream
//! socket is bound to a file of its own in the temporary directory (removed with it), since
//! a Unix datagram server can only answer a client with an address.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use tokio::net::{UdpSocket, UnixDatagram};

use crate::net::{self, TempSocketPath};
use crate::socket::{Address, Socket, Type};

/// A non-blocking datagram socket registered with the runtime.
#[derive(Debug)]
pub(super) enum DatagramSocket {
    /// `udp:`.
    Udp(UdpSocket),
    /// `unixgram:`.
    Unix(UnixDatagram),
}

impl DatagramSocket {
    /// Takes over `socket` (a datagram socket of `address`'s family) for the runtime.
    pub(super) fn from_socket(socket: Socket, address: &Address) -> io::Result<DatagramSocket> {
        let fd = OwnedFd::from(socket);
        Ok(match address {
            Address::Unix(_) => {
                let socket = std::os::unix::net::UnixDatagram::from(fd);
                socket.set_nonblocking(true)?;
                DatagramSocket::Unix(UnixDatagram::from_std(socket)?)
            }
            Address::Inet(_) | Address::Inet6(_) => {
                let socket = std::net::UdpSocket::from(fd);
                socket.set_nonblocking(true)?;
                DatagramSocket::Udp(UdpSocket::from_std(socket)?)
            }
        })
    }

    /// Receives one datagram, and who sent it (an unbound Unix sender is an empty path,
    /// which cannot be answered).
    pub(super) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Address)> {
        match self {
            DatagramSocket::Udp(socket) => {
                let (len, from) = socket.recv_from(buf).await?;
                Ok((len, Address::from(from)))
            }
            DatagramSocket::Unix(socket) => {
                let (len, from) = socket.recv_from(buf).await?;
                let path = from.as_pathname().map(PathBuf::from).unwrap_or_default();
                Ok((len, Address::Unix(path)))
            }
        }
    }

    /// Sends one datagram to `to`.
    pub(super) async fn send_to(&self, buf: &[u8], to: &Address) -> io::Result<usize> {
        match (self, to) {
            (DatagramSocket::Udp(socket), _) => match to.as_socket_addr() {
                Some(to) => socket.send_to(buf, to).await,
                None => Err(io::ErrorKind::InvalidInput.into()),
            },
            (DatagramSocket::Unix(socket), Address::Unix(path)) if !path.as_os_str().is_empty() => {
                socket.send_to(buf, path).await
            }
            (DatagramSocket::Unix(_), _) => Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "an unbound Unix datagram sender cannot be answered",
            )),
        }
    }

    /// Sends one datagram to the connected peer.
    pub(super) async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(socket) => socket.send(buf).await,
            DatagramSocket::Unix(socket) => socket.send(buf).await,
        }
    }

    /// Receives one datagram from the connected peer.
    pub(super) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(socket) => socket.recv(buf).await,
            DatagramSocket::Unix(socket) => socket.recv(buf).await,
        }
    }
}

/// A client's socket towards the target, and (Unix) the file it is bound to.
#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) socket: DatagramSocket,
    // Removes the bound file when the socket goes.
    _path: Option<TempSocketPath>,
}

impl Upstream {
    /// Whether the target is a Unix socket (connected to a socket, not to a path: one bound
    /// at the same path later is another).
    pub(super) fn is_unix(&self) -> bool {
        matches!(self.socket, DatagramSocket::Unix(_))
    }

    /// A socket connected to `target` (a datagram connect does not wait: it only fixes the
    /// peer), bound first to a file of its own for a Unix target.
    pub(super) fn open(target: &Address) -> io::Result<Upstream> {
        let (socket, path) = net::connect_socket(target, Type::Datagram, None, false, None)
            .map_err(crate::Error::into_io_error)?;
        Ok(Upstream {
            socket: DatagramSocket::from_socket(socket, target)?,
            _path: path,
        })
    }
}
