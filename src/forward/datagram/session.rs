//! One client of the datagram relay: its upstream socket, connected to its target, and the
//! task that sends the target's answers back to it until the pair has been idle, from the
//! address the client sent to (a listener bound to a wildcard address has many).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::MAX_DATAGRAM;
use crate::access::SourceSlot;
use crate::error::describe;
use crate::metrics::{ListenerMetrics, TargetMetrics};
use crate::net::{ConnectedDatagram, Destination};
use crate::server::DatagramListener;
use crate::socket::Address;

/// One client's upstream socket and when traffic last passed either way.
#[derive(Debug)]
pub(super) struct Client {
    pub(super) upstream: ConnectedDatagram,
    /// Where `upstream` is connected.
    pub(super) target: Arc<Address>,
    /// When traffic last passed either way, and where the client's last datagram was sent
    /// (one lock for both: each datagram from the client sets them together).
    seen: Mutex<Seen>,
    /// Told when the client's upstream socket is replaced: its answering task ends.
    retired: tokio::sync::Notify,
    /// The listener's metrics, and when the client came: its "connection" ends when the
    /// last reference to it drops (idle, failed, or the relay stopped).
    metered: Option<(ListenerMetrics, Instant)>,
    /// The target's counters: a client is one of its connections while it lives.
    pub(super) target_metrics: Option<TargetMetrics>,
    /// Its place in its source's count (`--max-per-source`), given back when it goes (or
    /// passed on to the fresh socket that replaces this one).
    place: Mutex<Option<SourceSlot>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some((metrics, opened)) = &self.metered {
            metrics.closed(opened.elapsed());
        }
        if let Some(metrics) = &self.target_metrics {
            metrics.active.dec();
        }
    }
}

impl Client {
    /// A client relayed through `upstream` to `target`, counted in `metered` and
    /// `target_metrics`, holding `place` in its source's count, its traffic last seen now.
    pub(super) fn new(
        upstream: ConnectedDatagram,
        target: Arc<Address>,
        metered: Option<(ListenerMetrics, Instant)>,
        target_metrics: Option<TargetMetrics>,
        place: Option<SourceSlot>,
    ) -> Client {
        Client {
            upstream,
            target,
            seen: Mutex::new(Seen {
                last: Instant::now(),
                destination: None,
            }),
            retired: tokio::sync::Notify::new(),
            metered,
            target_metrics,
            place: Mutex::new(place),
        }
    }

    /// Its place in its source's count, taken for the socket that replaces this one.
    pub(super) fn take_place(&self) -> Option<SourceSlot> {
        self.place.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Marks traffic passing now (an answer from the target).
    pub(super) fn touch(&self) {
        self.seen().last = Instant::now();
    }

    /// Marks a datagram from the client passing now, sent to the local address
    /// `destination`: the target's answers go out from it, so that a client that connected
    /// its socket to that address takes them.
    pub(super) fn came(&self, destination: Option<Destination>) {
        *self.seen() = Seen {
            last: Instant::now(),
            destination,
        };
    }

    /// When traffic last passed either way.
    fn last(&self) -> Instant {
        self.seen().last
    }

    /// The local address answers to the client go out from (see [`Client::came`]).
    fn destination(&self) -> Option<Destination> {
        self.seen().destination
    }

    /// The client's traffic record, locked (a panic while it was held leaves plain data).
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a client's traffic last did.
#[derive(Debug)]
struct Seen {
    /// When traffic last passed either way.
    last: Instant,
    /// The local address the client's last datagram was sent to (`None`: the listener has
    /// one address, or cannot tell).
    destination: Option<Destination>,
}

pub(super) type Clients = Arc<Mutex<HashMap<Address, Arc<Client>>>>;

/// Takes `client` out of `clients` (unless another has taken its place) and ends its
/// answering task.
pub(super) fn retire(clients: &Clients, from: &Address, client: &Arc<Client>) {
    let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
    if map
        .get(from)
        .is_some_and(|current| Arc::ptr_eq(current, client))
    {
        map.remove(from);
    }
    client.retired.notify_one();
}

/// Sends the target's answers back to the client until the pair has been idle (or the
/// client's upstream socket has been replaced).
pub(super) async fn answer(
    listener: Arc<DatagramListener>,
    client: Arc<Client>,
    from: Address,
    clients: Clients,
    idle: Duration,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut looked_again = false;
    loop {
        let deadline = client.last() + idle;
        if deadline > Instant::now() {
            looked_again = false;
        }
        tokio::select! {
            // The target's answers before the idle limit: a relay stopped past the limit
            // (^Z, a paused VM) wakes with both ready, and an answer that came during the
            // stop is traffic, not idleness.
            biased;
            () = client.retired.notified() => return,
            received = client.upstream.recv_whole(&mut buf) => match received {
                Ok(len) => {
                    client.touch();
                    match listener.send_to(&buf[..len], &from, client.destination()).await {
                        // A datagram goes whole or not at all.
                        Ok(()) => {
                            if let Some((metrics, _)) = &client.metered {
                                metrics.sent.inc_by(len as u64);
                            }
                        }
                        Err(err) => tracing::debug!(client = %from.clone().to_canonical(), "answering failed: {}", describe(&err)),
                    }
                    if buf.len() > MAX_DATAGRAM {
                        // A long Unix answer grew it: one client keeps no more than the rest.
                        buf = vec![0u8; MAX_DATAGRAM];
                    }
                }
                // Nothing listens at the target (ICMP port unreachable): the client's
                // datagram is lost, as it would be without the relay; said at -v, and
                // counted against the target.
                Err(err) if transient(&err) => {
                    if let Some(metrics) = &client.target_metrics {
                        metrics.failed.inc();
                    }
                    tracing::debug!(
                        client = %from.clone().to_canonical(),
                        "the target did not take a datagram: {}",
                        describe(&err)
                    );
                }
                Err(err) => {
                    tracing::debug!(client = %from.clone().to_canonical(), "upstream receive failed: {}", describe(&err));
                    retire(&clients, &from, &client);
                    return;
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                if !looked_again {
                    // Not idle yet: the client's datagrams are read by the listener's
                    // task, which a relay woken from a stop may not have run. One more look
                    // (the target's answers first again) once it has.
                    looked_again = true;
                    tokio::task::yield_now().await;
                    continue;
                }
                // Checked again under the lock: a datagram may have come in meanwhile.
                let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
                if client.last() + idle <= Instant::now() {
                    if map.get(&from).is_some_and(|current| Arc::ptr_eq(current, &client)) {
                        map.remove(&from);
                    }
                    tracing::debug!(client = %from.clone().to_canonical(), "idle: closed its upstream socket");
                    return;
                }
            }
        }
    }
}

/// Errors a UDP socket reports for an earlier datagram (ICMP), and a Unix datagram socket
/// while nothing is bound at the target (`ECONNREFUSED`): both leave it usable.
pub(super) fn transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
