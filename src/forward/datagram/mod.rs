//! The datagram relay behind `socketkit forward -l udp:… --to udp:…`, as socat's
//! `UDP-LISTEN:…,fork UDP:…`, and with `unixgram:` on either side (`-l udp:…:514 --to
//! unixgram:/dev/log` relays syslog): each client (source address) gets its own upstream
//! socket, connected to the target, so the target sees one peer per client and its answers
//! go back to the right one. A client's upstream socket is closed after `idle_timeout` with
//! no datagram either way; the next datagram from that client opens a fresh one.
//!
//! A Unix datagram client that sent from an unbound socket has no address: its datagrams
//! are relayed (all such clients share one upstream socket), and answers to them cannot be
//! delivered (said at debug level). A Unix upstream socket is connected to the socket that
//! was bound at the target's path, not to the path: when a datagram is refused because that
//! socket has closed (a restarted syslog daemon makes /dev/log anew), the client gets a
//! fresh upstream socket (to the next target in turn, with several), and the datagram goes
//! through it.
//!
//! With several targets ([`DatagramForward::or`]), each new client goes to the next target
//! in turn (or, [`DatagramForward::by_source`], to the one its address hashes to) and stays
//! with it while its upstream socket lives; a datagram relay cannot tell
//! that a UDP target is down (a datagram is sent whether or not anyone takes it), so there
//! is no failover. [`DatagramForward::reload_targets`] puts a new list in force for the
//! clients that come next (SIGHUP's reload of `forward --to-file`).
//!
//! A datagram from a new client while `max_clients` are being relayed is dropped (and
//! logged at debug level): a datagram cannot be refused, and the sender retries if it cares.
//! So is a datagram from a source the access rules refuse
//! ([`DatagramForward::access_control`]), and a new client's past its source's limits
//! ([`DatagramForward::source_limits`]: clients at once, new clients per interval), each
//! counted in `socketkit_datagrams_dropped_total` by reason.
//!
//! With [`DatagramForward::metrics`], each listener counts under its own `listener` label
//! as a stream listener does, a client standing for a connection: its first datagram is a
//! connection accepted, it is active while its upstream socket is open, and its duration
//! runs until that socket closes; the bytes received are the clients' datagrams, the bytes
//! sent the answers relayed back to them. Each target counts its clients the same way
//! (`socketkit_forward_target_connections_total`, `…_active`), and the datagrams it did
//! not take or that could not be sent to it (`…_failures_total`); its `…_up` stays 1. A
//! Unix target whose queue is full is not waited for (one loop receives for every client):
//! the datagram is dropped and counted there, as a UDP target's receiver would drop it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::MAX_TARGETS;
use super::targets::{Balance, Reloaded, source_slot};
use crate::access::{AccessControl, SourceLimits};
use crate::endpoint::Endpoint;
use crate::error::{Error, Op, Result, describe};
use crate::metrics::{ListenerMetrics, Metrics};
use crate::net::ListenOptions;
use crate::server::DatagramListener;
use admission::Admission;
use opening::{Resolving, names_a_host, resolve, settled};
use session::{Clients, retire, transient};
use turns::{Target, Turns};

mod admission;
mod opening;
mod session;
mod turns;

/// The most a UDP datagram over IPv4 can carry: the receive buffers' size (they grow for a
/// longer Unix datagram, from a client or from the target).
const MAX_DATAGRAM: usize = 65_535;

/// How long a client's upstream socket lives without traffic, unless told otherwise.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// A datagram relay to a target (`udp:` or `unixgram:`), or to several in turn.
///
/// # Examples
///
/// ```
/// use socketkit::forward::datagram::DatagramForward;
/// assert!(DatagramForward::new("udp:127.0.0.1:53".parse().unwrap()).is_ok());
/// assert!(DatagramForward::new("unixgram:/dev/log".parse().unwrap()).is_ok());
/// assert!(DatagramForward::new("127.0.0.1:53".parse().unwrap()).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct DatagramForward {
    /// At least one; shared by the relay's clones (and so its bound listeners), which a
    /// reload reaches through it.
    targets: Arc<ArcSwap<Vec<Endpoint>>>,
    /// New clients go to the target their address hashes to, not the next in turn.
    by_source: bool,
    idle_timeout: Duration,
    max_clients: usize,
    metrics: Option<Arc<Metrics>>,
    unix_mode: Option<u32>,
    admission: Admission,
}

/// A relay bound to its listening socket, ready to [`BoundDatagramForward::run`].
#[derive(Debug)]
pub struct BoundDatagramForward {
    relay: DatagramForward,
    socket: Arc<DatagramListener>,
    local: Endpoint,
    metrics: Option<ListenerMetrics>,
    /// The targets resolved ahead of `run`, and the list they came from.
    resolved: Option<(Arc<Vec<Endpoint>>, Vec<Target>)>,
}

impl DatagramForward {
    /// A relay to `target`, which must be a `udp:` endpoint with a host and a port, or a
    /// `unixgram:` one.
    ///
    /// # Errors
    ///
    /// Any other kind of target, in words for the command line.
    pub fn new(target: Endpoint) -> std::result::Result<DatagramForward, String> {
        Ok(DatagramForward {
            targets: Arc::new(ArcSwap::from_pointee(vec![datagram_target(target)?])),
            by_source: false,
            idle_timeout: DEFAULT_IDLE,
            max_clients: usize::MAX,
            metrics: None,
            unix_mode: None,
            admission: Admission::default(),
        })
    }

    /// Adds `target` after the others: each new client goes to the next target in turn, and
    /// keeps it while its upstream socket lives.
    ///
    /// # Errors
    ///
    /// As [`DatagramForward::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::datagram::DatagramForward;
    /// let relay = DatagramForward::new("udp:127.0.0.1:5301".parse().unwrap())
    ///     .and_then(|relay| relay.or("udp:127.0.0.1:5302".parse().unwrap()))
    ///     .unwrap();
    /// assert_eq!(relay.targets().len(), 2);
    /// ```
    pub fn or(self, target: Endpoint) -> std::result::Result<DatagramForward, String> {
        let mut targets = self.targets();
        if targets.len() == MAX_TARGETS {
            return Err(format!("a relay takes at most {MAX_TARGETS} targets"));
        }
        targets.push(datagram_target(target)?);
        self.targets.store(Arc::new(targets));
        Ok(self)
    }

    /// Puts `targets` in force in place of the relay's for the clients that come next (on
    /// every listener it was bound to): SIGHUP's reload of `forward --to-file`. Clients
    /// already relayed keep their target while their upstream socket lives; a target that
    /// left the list loses its metric series. Names are resolved by each listener's relay
    /// from its next datagram on, while it goes on relaying (new clients go to the targets
    /// before the reload until they are); one that does not resolve leaves that relay on the
    /// targets it had, and the log says why.
    ///
    /// # Errors
    ///
    /// Nothing changes when the list is empty or longer than [`MAX_TARGETS`], or names a
    /// stream target; in words for the command line.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::datagram::DatagramForward;
    /// let relay = DatagramForward::new("udp:127.0.0.1:5301".parse().unwrap()).unwrap();
    /// let serving = relay.clone();
    /// let changed = relay
    ///     .reload_targets(vec!["udp:127.0.0.1:5302".parse().unwrap()])
    ///     .unwrap();
    /// assert_eq!(changed.removed, ["udp:127.0.0.1:5301".parse().unwrap()]);
    /// assert_eq!(serving.targets(), ["udp:127.0.0.1:5302".parse().unwrap()]);
    /// ```
    pub fn reload_targets(&self, targets: Vec<Endpoint>) -> std::result::Result<Reloaded, String> {
        if targets.is_empty() {
            return Err("no target".into());
        }
        if targets.len() > MAX_TARGETS {
            return Err(format!(
                "{} targets, and a relay takes at most {MAX_TARGETS}",
                targets.len()
            ));
        }
        let targets = targets
            .into_iter()
            .map(datagram_target)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let listed = Arc::new(targets);
        let old = self.targets.swap(Arc::clone(&listed));
        let changed = Reloaded::between(&old, &listed);
        if let Some(metrics) = &self.metrics {
            for gone in changed.removed.iter().filter(|gone| !listed.contains(gone)) {
                metrics.forget_forward_target(&gone.to_string());
            }
        }
        Ok(changed)
    }

    /// Sends each new client to the target its IP address hashes to (as
    /// [`Balance::Source`] does for streams) instead of the next in
    /// turn, so that a client keeps its target across source ports and after its upstream
    /// socket has idled out. Unix clients are still taken in turn.
    pub fn by_source(mut self) -> DatagramForward {
        self.by_source = true;
        self
    }

    /// How new clients are spread over the targets: [`Balance::RoundRobin`] unless
    /// [`DatagramForward::by_source`] was asked for.
    pub fn balancing(&self) -> Balance {
        if self.by_source {
            Balance::Source
        } else {
            Balance::RoundRobin
        }
    }

    /// Closes a client's upstream socket after this long without a datagram either way.
    pub fn idle_timeout(mut self, idle: Duration) -> DatagramForward {
        // At most a hundred years: a client's last datagram plus the limit must not overflow
        // the clock.
        self.idle_timeout = idle.min(crate::socket::FAR_FUTURE);
        self
    }

    /// Relays at most this many clients at once.
    pub fn max_clients(mut self, max: usize) -> DatagramForward {
        self.max_clients = max.max(1);
        self
    }

    /// Drops the datagrams of sources `control` refuses (checked on every datagram, so
    /// that [`AccessControl::reload`] applies to clients already relayed too).
    pub fn access_control(mut self, control: Arc<AccessControl>) -> DatagramForward {
        self.admission.control = Some(control);
        self
    }

    /// Drops a new client's datagrams past `limits`: its source's clients at once, or its
    /// rate of new clients. A client holds its place while its upstream socket lives.
    pub fn source_limits(mut self, limits: Arc<SourceLimits>) -> DatagramForward {
        self.admission.limits = Some(limits);
        self
    }

    /// The permission bits of a `unixgram:` listener's socket file (as `chmod`).
    pub fn unix_mode(mut self, mode: u32) -> DatagramForward {
        self.unix_mode = Some(mode);
        self
    }

    /// Counts each listener's clients and bytes into `metrics` (see the module docs).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> DatagramForward {
        self.metrics = Some(metrics);
        self
    }

    /// The (first) target.
    pub fn target(&self) -> Endpoint {
        self.targets.load()[0].clone()
    }

    /// Every target, in the order given (the list in force since the last reload).
    pub fn targets(&self) -> Vec<Endpoint> {
        self.targets.load().to_vec()
    }

    /// Binds `listen` (a `udp:` or `unixgram:` endpoint) inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// `cannot listen on ENDPOINT: REASON`.
    pub fn bind(&self, listen: &Endpoint) -> Result<BoundDatagramForward> {
        let options = ListenOptions {
            backlog: 0,
            unix_mode: self.unix_mode,
            reuse_port: false,
            only_v6: false,
        };
        let (socket, endpoint) = DatagramListener::bind(listen, options)?;
        let metrics = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.listener(&endpoint.to_string()));
        Ok(BoundDatagramForward {
            relay: self.clone(),
            socket: Arc::new(socket),
            local: endpoint,
            metrics,
            resolved: None,
        })
    }
}

impl BoundDatagramForward {
    /// The endpoint really listened on (with the port the system chose for port 0).
    pub fn local_endpoint(&self) -> &Endpoint {
        &self.local
    }

    /// Resolves the targets' names now, before anything is received (`run` does it
    /// first otherwise): a name that does not resolve is an error before a service says
    /// it is ready.
    ///
    /// # Errors
    ///
    /// A target does not resolve.
    pub async fn resolve_targets(&mut self) -> Result<()> {
        let listed = self.relay.targets.load_full();
        let targets = self.counted(resolve(Arc::clone(&listed)).await?);
        self.resolved = Some((listed, targets));
        Ok(())
    }

    /// Relays until `shutdown` completes; every upstream socket is closed then. After a
    /// reload ([`DatagramForward::reload_targets`]) naming hosts, the names are resolved
    /// while the relay goes on: new clients go to the targets before the reload until then.
    ///
    /// # Errors
    ///
    /// A target does not resolve (unless [`resolve_targets`](Self::resolve_targets) did
    /// it), or receiving on the listening socket fails for good.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut listed = self.relay.targets.load_full();
        let targets = match self.resolved.take() {
            Some((from, targets)) if Arc::ptr_eq(&from, &listed) => targets,
            _ => self.counted(resolve(Arc::clone(&listed)).await?),
        };
        let mut turns = Turns {
            targets,
            by_source: self.relay.by_source,
            next: 0,
        };
        // A reloaded list's names being resolved, off this loop (a slow name must not stop
        // the clients already relayed).
        let mut resolving: Option<Resolving> = None;
        let clients: Clients = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let own = self.socket.local_addr();
        tokio::pin!(shutdown);
        loop {
            let (len, from, destination) = tokio::select! {
                () = &mut shutdown => break,
                (list, resolved) = settled(&mut resolving) => {
                    if Arc::ptr_eq(&list, &self.relay.targets.load()) {
                        self.put_in_force(resolved, &mut turns);
                    } else {
                        // Reloaded again meanwhile: the next datagram resolves the newest.
                        tracing::debug!(
                            "{}: a list reloaded since resolved, and was set aside",
                            self.local
                        );
                    }
                    continue;
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok(got) => got,
                    // An ICMP error for an earlier send_to a client that has gone: not ours.
                    Err(err) if transient(&err) => continue,
                    Err(err) => return Err(Error::at_local(Op::Receive, &self.local, err)),
                },
            };
            // A forged datagram from the relay's own address: relaying it, and then the
            // target's answer to "the client", would feed the relay its own datagrams
            // without end (as `serve` drops it, see `sent_by_itself`).
            if crate::server::sent_by_itself(&from, own, destination) {
                tracing::debug!(
                    "{}: a datagram from the relay's own address dropped (forged: relaying \
                     it would loop)",
                    self.local
                );
                continue;
            }
            if !self.relay.admission.admits(&from, self.metrics.as_ref()) {
                continue;
            }
            // Reap finished relays so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
            if !Arc::ptr_eq(&self.relay.targets.load(), &listed) {
                // Reloaded: the new list, for the clients that come next.
                listed = self.relay.targets.load_full();
                let resolution = resolve(Arc::clone(&listed));
                if let Some((_, earlier)) = resolving.take() {
                    // A list reloaded since: its names are no longer wanted.
                    earlier.abort();
                }
                if names_a_host(&listed) {
                    resolving = Some((Arc::clone(&listed), tokio::spawn(resolution)));
                } else {
                    // Addresses and paths: in force for this very client.
                    self.put_in_force(resolution.await, &mut turns);
                }
            }
            let client = match self.client(&clients, &from, &mut turns, &mut tasks, None) {
                Some(client) => client,
                None => continue,
            };
            client.came(destination);
            // Counted once taken for a client, as `serve` counts a datagram it admits: one
            // dropped above is counted as dropped, with its reason, and nowhere else.
            if let Some(metrics) = &self.metrics {
                metrics.received.inc_by(len as u64);
            }
            let mut sent = client.upstream.send_or_drop(&buf[..len]).await;
            if let Err(err) = &sent
                && client.upstream.is_unix()
                && err.kind() == io::ErrorKind::ConnectionRefused
            {
                // The socket this one is connected to has closed; whatever is bound at the
                // target's path now takes the datagram, through a fresh socket.
                tracing::debug!(client = %from.clone().to_canonical(), "{} was closed: connecting again", client.target);
                retire(&clients, &from, &client);
                // The fresh socket is the same client's: it keeps its place in its source's
                // count (the old one would refuse it under `--max-per-source 1`).
                let place = client.take_place();
                sent = match self.client(&clients, &from, &mut turns, &mut tasks, Some(place)) {
                    Some(fresh) => {
                        fresh.came(destination);
                        fresh.upstream.send_or_drop(&buf[..len]).await
                    }
                    // Said by `client`.
                    None => Ok(len),
                };
            }
            if let Err(err) = sent {
                if let Some(metrics) = &client.target_metrics {
                    metrics.failed.inc();
                }
                let why = match err.kind() {
                    // A Unix target that does not read (see `send_or_drop`).
                    io::ErrorKind::WouldBlock => "its queue is full, the datagram dropped".into(),
                    _ => describe(&err),
                };
                tracing::debug!(client = %from.clone().to_canonical(), "relaying to {} failed: {why}", client.target);
            }
        }
        tasks.shutdown().await;
        Ok(())
    }
}

/// `target`, if a datagram relay can send to it.
fn datagram_target(target: Endpoint) -> std::result::Result<Endpoint, String> {
    if target.transport().is_stream() {
        return Err(format!(
            "a datagram listener relays to a udp: or unixgram: target, not {target}"
        ));
    }
    Ok(target)
}
