//! The relay behind `socketkit forward`: every accepted connection is joined to a new
//! connection to the target, TCP and Unix in any combination.
//!
//! Both directions are copied at once. A FIN from either side becomes a `shutdown(SHUT_WR)`
//! towards the other, so half-closed protocols work through the relay; the relay ends when
//! both directions have ended, or when either side fails (then both are closed). A target
//! that cannot be reached closes that one client, with the reason logged, and the server
//! goes on.
//!
//! As a [`Handler`], a [`Forward`] gets the server's limits for free: `max_connections`,
//! `idle_timeout` (no bytes either way) and graceful shutdown.
//!
//! Where the kernel supports it, bytes are moved with `splice(2)` through a pipe and never
//! copied into user space ([`splice`]); elsewhere, or with `SOCKETKIT_NO_SPLICE=1`, a copy
//! loop with 64 KiB buffers does the same job.

pub mod splice;
mod threaded;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::endpoint::{Endpoint, Host};
use crate::server::stream::Stream;
use crate::server::{Connection, Handler};
use threaded::RelayThreads;

/// The size of each direction's copy buffer.
const BUFFER: usize = 64 * 1024;

/// Forwards each connection to a target endpoint.
///
/// # Examples
///
/// ```
/// use socketkit::forward::Forward;
/// let relay = Forward::new("127.0.0.1:8080".parse().unwrap()).unwrap();
/// assert_eq!(relay.target().to_string(), "tcp:127.0.0.1:8080");
/// assert!(Forward::new("udp:127.0.0.1:53".parse().unwrap()).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Forward {
    target: Arc<Endpoint>,
    connect_timeout: Option<Duration>,
    threads: Arc<RelayThreads>,
}

/// How many relays run on their own threads at once by default ([`Forward::relay_threads`]).
pub const DEFAULT_RELAY_THREADS: usize = 256;

/// A target that a stream relay cannot use.
#[derive(Debug, thiserror::Error)]
pub enum UnsupportedTarget {
    /// UDP or Unix datagram.
    #[error("cannot forward to {0}: only TCP and Unix stream targets are supported")]
    Datagram(Endpoint),
    /// `:PORT`, which names every local address rather than one to connect to.
    #[error("cannot forward to {0}: the target needs a host (as in 127.0.0.1:PORT)")]
    NoHost(Endpoint),
}

impl Forward {
    /// A relay to `target` (TCP or Unix stream).
    ///
    /// # Errors
    ///
    /// A datagram target.
    pub fn new(target: Endpoint) -> Result<Forward, UnsupportedTarget> {
        if !target.transport().is_stream() {
            return Err(UnsupportedTarget::Datagram(target));
        }
        if target.host_port().is_some_and(|hp| hp.host == Host::Any) {
            return Err(UnsupportedTarget::NoHost(target));
        }
        Ok(Forward {
            target: Arc::new(target),
            connect_timeout: None,
            threads: Arc::new(RelayThreads::new(DEFAULT_RELAY_THREADS)),
        })
    }

    /// Bounds each connection attempt to the target.
    pub fn connect_timeout(mut self, timeout: Duration) -> Forward {
        self.connect_timeout = Some(timeout);
        self
    }

    /// At most `limit` relays at a time run on two threads of their own (one per
    /// direction, blocked in the kernel: the fastest way through on a busy link); the others
    /// run as tasks on the runtime, which scale to any number of connections. 0 runs every
    /// relay as a task. The default is [`DEFAULT_RELAY_THREADS`].
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::Forward;
    /// let relay = Forward::new("127.0.0.1:8080".parse().unwrap()).unwrap().relay_threads(0);
    /// assert_eq!(relay.threads_limit(), 0);
    /// ```
    pub fn relay_threads(mut self, limit: usize) -> Forward {
        self.threads = Arc::new(RelayThreads::new(limit));
        self
    }

    /// How many relays may run on their own threads at once.
    pub fn threads_limit(&self) -> usize {
        self.threads.limit()
    }

    /// The target endpoint.
    pub fn target(&self) -> &Endpoint {
        &self.target
    }
}

impl Handler for Forward {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let relay = self.clone();
        async move { relay.relay(conn).await }
    }
}

impl Forward {
    async fn relay(&self, client: Connection) -> io::Result<()> {
        let mut upstream = match self.connect().await {
            Ok(upstream) => upstream,
            Err(err) => {
                tracing::warn!(
                    peer = %client.peer_addr(),
                    "cannot reach {}: {}; closing the client",
                    self.target,
                    crate::error::describe(&err)
                );
                return Ok(());
            }
        };
        // A relay passes on writes as they come; holding a partial segment back for an ACK
        // (Nagle) would only add a round trip the sender did not ask for.
        client.stream().set_nodelay()?;
        if let Some(threads) = self.threads.reserve() {
            let (client, idle) = client.into_parts();
            return threaded::relay(threads, client, upstream, idle).await;
        }
        // Pipes cost four descriptors a relay: near the descriptor limit, copy instead.
        if let Some(pipes) = splice::available()
            .then(splice::Pipes::new)
            .and_then(Result::ok)
        {
            let (client, idle) = client.into_parts();
            return splice::relay(&client, &upstream, pipes, idle).await;
        }
        let mut client = client;
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER)
            .await
            .map(drop)
    }

    async fn connect(&self) -> io::Result<Stream> {
        let attempt = async {
            match &*self.target {
                Endpoint::Tcp(hp) => {
                    let stream = match &hp.host {
                        Host::Ip(ip) => TcpStream::connect((*ip, hp.port)).await?,
                        Host::Name(name) => TcpStream::connect((name.as_str(), hp.port)).await?,
                        // Refused by Forward::new.
                        Host::Any => return Err(io::ErrorKind::InvalidInput.into()),
                    };
                    stream.set_nodelay(true)?;
                    Ok(Stream::Tcp(stream))
                }
                Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
                Endpoint::Udp(_) | Endpoint::Unixgram(_) => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a stream target",
                )),
            }
        };
        match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))),
            None => attempt.await,
        }
    }
}
