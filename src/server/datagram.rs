//! Datagram serving (UDP and Unix datagram): a [`DatagramHandler`] gets each payload with its
//! sender and answers through a [`Reply`]; the receive loop sends what it collected.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::UnixDatagram;

use super::EXHAUSTION_BACKOFF;
use super::meter::ListenerMeter;
use super::pipeline::Pipeline;
use super::shutdown::{Phase, Watcher};
use crate::net::{Destination, ServerUdp, UnixFile, is_resource_exhaustion};
use crate::socket::Address;

/// The receive buffer of a listener, one per listener: any UDP datagram fits. A longer Unix
/// datagram grows it to its length first, and once answered the buffer shrinks back.
const MAX_DATAGRAM: usize = 65_536;

/// Answers datagrams. Any `Fn(&[u8], &Address, &mut Reply) -> io::Result<()>` closure is one.
///
/// The handler runs on the listener's receive loop, so it must not block: compute the answer
/// and hand it to [`Reply::send`]. An `Err` is logged at debug level and the loop goes on; a
/// panic is logged as a warning, what the handler had queued for that datagram is not
/// sent, and the loop goes on.
pub trait DatagramHandler: Send + Sync + 'static {
    /// Handles one datagram of `payload` from `peer`; answers go into `reply`.
    fn datagram(&self, payload: &[u8], peer: &Address, reply: &mut Reply) -> io::Result<()>;
}

impl<F> DatagramHandler for F
where
    F: Fn(&[u8], &Address, &mut Reply) -> io::Result<()> + Send + Sync + 'static,
{
    fn datagram(&self, payload: &[u8], peer: &Address, reply: &mut Reply) -> io::Result<()> {
        self(payload, peer, reply)
    }
}

/// The datagrams to send back to the peer of the datagram being handled, in order.
///
/// It reuses one buffer for the life of the listener, so answering does not allocate.
#[derive(Debug, Default)]
pub struct Reply {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Reply {
    /// Queues one datagram of `data` to the peer.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut reply = socketkit::server::Reply::default();
    /// reply.send(b"one");
    /// reply.send(b"two");
    /// assert_eq!(reply.len(), 2);
    /// ```
    pub fn send(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.ends.push(self.bytes.len());
    }

    /// How many datagrams are queued.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// A bound datagram socket of either transport.
#[derive(Debug)]
pub(crate) enum DatagramListener {
    /// Answering each client from the address it sent to (see [`ServerUdp`]).
    Udp(ServerUdp),
    Unixgram {
        socket: UnixDatagram,
        /// The socket file, which goes with the listener (none when inherited).
        file: Option<UnixFile>,
    },
}

impl DatagramListener {
    /// The socket, and the flag that keeps its Unix socket file when it closes.
    pub(crate) fn handover_parts(&self) -> (BorrowedFd<'_>, Option<Arc<AtomicBool>>) {
        match self {
            DatagramListener::Udp(socket) => (socket.as_fd(), None),
            DatagramListener::Unixgram { socket, file } => {
                (socket.as_fd(), file.as_ref().map(UnixFile::keeper))
            }
        }
    }

    /// The socket file this listener removes when it closes, if any.
    pub(crate) fn socket_file(&self) -> Option<&UnixFile> {
        match self {
            DatagramListener::Udp(_) => None,
            DatagramListener::Unixgram { file, .. } => file.as_ref(),
        }
    }

    /// The next datagram, whole, in `buf`: a Unix one's length is asked first
    /// ([`crate::net::next_unix_datagram_len`]) and `buf` grown to it, not cut to fit. With
    /// it, the local address it was sent to where the listener must answer from it (a UDP
    /// socket bound to a wildcard address), to give [`DatagramListener::send_to`].
    pub(crate) async fn recv_from(
        &self,
        buf: &mut Vec<u8>,
    ) -> io::Result<(usize, Address, Option<Destination>)> {
        match self {
            DatagramListener::Udp(socket) => {
                let (n, peer, destination) = socket.recv_from(buf).await?;
                Ok((n, peer.into(), destination))
            }
            DatagramListener::Unixgram { socket, .. } => {
                let next = crate::net::next_unix_datagram_len(socket).await?;
                if next > buf.len() {
                    buf.resize(next, 0);
                }
                let (n, peer) = socket.recv_from(buf).await?;
                // A client bound to `@NAME` is answered there, as one bound to a path.
                let peer = Address::from_unix(&peer.into());
                Ok((n, peer, None))
            }
        }
    }

    /// Sends `data` to `peer`, from `from` (what [`DatagramListener::recv_from`] said `peer`
    /// sent to; `None` answers from the socket's own address). An unnamed Unix client cannot
    /// be answered: `InvalidInput`; one whose queue is full is not waited for: `WouldBlock`.
    pub(crate) async fn send_to(
        &self,
        data: &[u8],
        peer: &Address,
        from: Option<Destination>,
    ) -> io::Result<()> {
        match (self, peer) {
            (DatagramListener::Udp(socket), _) => match peer.as_socket_addr() {
                Some(addr) => socket.send_to(data, addr, from).await,
                None => Err(io::ErrorKind::InvalidInput.into()),
            },
            (DatagramListener::Unixgram { socket, .. }, Address::Unix(path)) => {
                if path.as_os_str().is_empty() {
                    // An unbound Unix client has no address to answer to.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the client's socket is unnamed (bind it to receive replies)",
                    ));
                }
                // Not waited for: a Unix client that does not read its replies would hold
                // the one loop that receives for every client until it did (a UDP client's
                // kernel drops instead). Its reply is dropped (`WouldBlock`), as UDP's. Sent
                // past tokio's readiness: a full queue is the client's, and the readiness
                // it cleared would drop the next client's reply too, untried.
                let to = peer.to_sockaddr()?;
                socket2::SockRef::from(socket).send_to(data, &to).map(drop)
            }
            (DatagramListener::Unixgram { .. }, _) => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    /// The address a UDP listener is bound to (`None` for a Unix one).
    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            DatagramListener::Udp(socket) => socket.local_addr().ok(),
            DatagramListener::Unixgram { .. } => None,
        }
    }

    /// Receives and answers datagrams until the server starts draining.
    pub(crate) async fn run(
        self,
        handler: std::sync::Arc<dyn DatagramHandler>,
        pipeline: Option<std::sync::Arc<Pipeline>>,
        meter: std::sync::Arc<ListenerMeter>,
        mut watcher: Watcher,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut reply = Reply::default();
        let local = self.local_addr();
        // The drain is waited for only when no datagram is there (as the accept loop).
        while !watcher.has_reached(Phase::Draining) {
            let received = tokio::select! {
                biased;
                received = self.recv_from(&mut buf) => received,
                () = watcher.reached(Phase::Draining) => return,
            };
            let (n, peer, destination) = match received {
                Ok(received) => received,
                Err(err) if is_resource_exhaustion(&err) => {
                    tracing::warn!(
                        listener = meter.name(),
                        "receive failed: {}; backing off",
                        crate::error::describe(&err)
                    );
                    tokio::time::sleep(EXHAUSTION_BACKOFF).await;
                    continue;
                }
                // ICMP errors from earlier sends surface here (ECONNREFUSED): not ours to fix.
                Err(err) => {
                    tracing::debug!("receive failed: {}", crate::error::describe(&err));
                    continue;
                }
            };
            tracing::debug!(
                peer = %peer.clone().to_canonical(),
                listener = meter.name(),
                bytes = n,
                "datagram"
            );
            if sent_by_itself(&peer, local, destination) {
                tracing::debug!(
                    listener = meter.name(),
                    "not answered: a datagram from this listener's own address (spoofed: \
                     answering it would answer itself without end)"
                );
                continue;
            }
            if pipeline
                .as_ref()
                .is_some_and(|p| !p.admits_datagram(&peer, &meter))
            {
                continue;
            }
            // A handler that panics on one datagram (an `unwrap` on what a client sent) must
            // not take the listener down with it: that datagram goes unanswered, the rest
            // are served, as a stream handler's panic ends only its own connection.
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handler.datagram(&buf[..n], &peer, &mut reply)
            }));
            match handled {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::debug!(%peer, "handler failed: {}", crate::error::describe(&err));
                }
                Err(_) => {
                    tracing::warn!(%peer, "the datagram handler panicked: no answer to this datagram");
                    reply.clear();
                }
            }
            let mut sent = 0;
            for datagram in reply.datagrams() {
                match self.send_to(datagram, &peer, destination).await {
                    Ok(()) => sent += datagram.len(),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        tracing::debug!(%peer, "reply dropped: the client's queue is full");
                    }
                    Err(err) => {
                        tracing::debug!(%peer, "reply failed: {}", crate::error::describe(&err));
                    }
                }
            }
            meter.datagram(n, sent);
            reply.clear();
            if buf.len() > MAX_DATAGRAM {
                buf = vec![0u8; MAX_DATAGRAM];
            }
        }
    }
}

/// Whether `peer` is the listener itself (bound to `local`; the datagram sent to
/// `destination` where the kernel told it): only a spoofed datagram comes from there, and
/// any answer to it would be the listener's next datagram, without end.
pub(crate) fn sent_by_itself(
    peer: &Address,
    local: Option<std::net::SocketAddr>,
    destination: Option<Destination>,
) -> bool {
    let (Some(peer), Some(local)) = (peer.as_socket_addr(), local) else {
        return false;
    };
    let from = crate::access::canonical(peer.ip());
    peer.port() == local.port()
        && match destination {
            Some(destination) => destination.ip == from,
            None => crate::access::canonical(local.ip()) == from,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_keeps_datagram_boundaries_and_reuses_its_buffer() {
        let mut reply = Reply::default();
        reply.send(b"ab");
        reply.send(b"");
        reply.send(b"cde");
        let all: Vec<&[u8]> = reply.datagrams().collect();
        assert_eq!(all, vec![&b"ab"[..], &b""[..], &b"cde"[..]]);
        let capacity = reply.bytes.capacity();
        reply.clear();
        assert!(reply.is_empty());
        reply.send(b"x");
        assert_eq!(reply.bytes.capacity(), capacity);
    }
}
