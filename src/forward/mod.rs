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
//! loop with 32 KiB buffers does the same job.

pub mod splice;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::{Endpoint, Host};
use crate::net::{self, Stream};
use crate::server::{Connection, Handler};

/// The most one splice or copy takes in before passing it on (and so the size of a copy
/// buffer). Two things bound it, both measured with `bench/client_bench.py` (4 connections,
/// 3 rounds, 2026-11-30):
///
/// - A `splice` from a socket takes all that has arrived, up to the bound, before any of it
///   goes on, so with a large bound the bytes of a fast sender wait in large batches: in the
///   echo test, 32 KiB chunks moved 1.6× the bytes of 64 KiB or 256 KiB ones.
/// - Each chunk is sent as it comes (no Nagle), and a loopback segment holds less than
///   64 KiB (the 65,536-byte MTU less headers; `TCP_MAXSEG` read 47,616 here), so a 64 KiB
///   chunk goes out as two segments, one of them a small remainder: in the one-way test
///   64 KiB chunks cost 0.58 s of CPU per GB against 0.41 for 32 KiB, which fits one
///   segment. (256 KiB chunks cost 0.32 one way, but hold echo traffic back.)
pub(crate) const CHUNK: usize = 32 * 1024;

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
}

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
        })
    }

    /// Bounds each connection attempt to the target.
    pub fn connect_timeout(mut self, timeout: Duration) -> Forward {
        self.connect_timeout = Some(timeout);
        self
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
        // Pipes cost four descriptors a relay: near the descriptor limit, copy instead.
        if let Some(pipes) = splice::available()
            .then(splice::Pipes::new)
            .and_then(Result::ok)
        {
            let (client, idle) = client.into_parts();
            return splice::relay(&client, &upstream, pipes, idle).await;
        }
        let mut client = client;
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, CHUNK, CHUNK)
            .await
            .map(drop)
    }

    async fn connect(&self) -> io::Result<Stream> {
        net::connect_stream(&self.target, self.connect_timeout).await
    }
}
