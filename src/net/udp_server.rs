//! [`ServerUdp`]: a UDP socket that serves clients (`serve`'s datagram listeners, the
//! datagram relay's), and answers each one from the address it sent to.
//!
//! A socket bound to a wildcard address (`udp::PORT`, `0.0.0.0`, `[::]`) takes datagrams
//! sent to any of the host's addresses, but a plain `sendto` goes out from the address the
//! route to the client picks: a client that sent to 127.0.0.2 (or to the second address of
//! a multi-homed host) gets its answer from 127.0.0.1, and a connected client (`nc -u`,
//! `socketkit connect udp:`) drops it. On such a socket the kernel is asked to tell each
//! datagram's destination (`IP_PKTINFO`, `IPV6_RECVPKTINFO`), and answers go out from it
//! (`sendmsg` with the same control message). A socket bound to one address needs none of
//! it and keeps `recvfrom`/`sendto`; so does every socket where the kernel cannot tell
//! (`sys`'s fallback: docs/platform-notes.md).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::sys::{self, Destination};

/// A UDP socket registered with the runtime, serving clients; see the module docs.
#[derive(Debug)]
pub(crate) struct ServerUdp {
    socket: UdpSocket,
    /// The kernel tells each datagram's destination: the socket is bound to a wildcard
    /// address, and the system has `IP_PKTINFO`.
    destinations: bool,
}

impl ServerUdp {
    /// Serves on `socket`, asking for each datagram's destination if it is bound to a
    /// wildcard address (where the system cannot tell it, answers go out as before, and
    /// `-v` says so once for the listener).
    pub(crate) fn new(socket: UdpSocket) -> ServerUdp {
        let destinations = match socket.local_addr() {
            Ok(local) if local.ip().is_unspecified() => {
                match sys::ask_destinations(socket.as_fd(), local.is_ipv6()) {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::debug!(
                            "udp:{local}: answers go out from the address the route picks, \
                             not the one each client sent to (no IP_PKTINFO: {err})"
                        );
                        false
                    }
                }
            }
            _ => false,
        };
        ServerUdp {
            socket,
            destinations,
        }
    }

    /// The address the socket is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// The next datagram in `buf`: its length, its sender, and the local address it was
    /// sent to when the socket is bound to a wildcard address (`None` otherwise: answers
    /// go out from the one address the socket has).
    pub(crate) async fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Destination>)> {
        if !self.destinations {
            let (len, peer) = self.socket.recv_from(buf).await?;
            return Ok((len, peer, None));
        }
        self.socket
            .async_io(Interest::READABLE, || {
                sys::recv_with_destination(self.socket.as_fd(), buf)
            })
            .await
    }

    /// Sends `data` to `peer`, from `from` when it is known (the address `peer` sent its
    /// datagram to), whole or not at all.
    pub(crate) async fn send_to(
        &self,
        data: &[u8],
        peer: SocketAddr,
        from: Option<Destination>,
    ) -> io::Result<()> {
        match from {
            Some(from) if self.destinations => self
                .socket
                .async_io(Interest::WRITABLE, || {
                    sys::send_from(self.socket.as_fd(), data, &peer, &from)
                })
                .await
                .map(drop),
            _ => self.socket.send_to(data, peer).await.map(drop),
        }
    }
}

impl AsFd for ServerUdp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
