//! The high level: the tutorial's `SocketServer`, done right. A server is a set of listeners,
//! a handler, and the limits every serious server needs, built in.
//!
//! # Organization
//! - [`Builder`]: endpoints and limits (`max_connections`, `idle_timeout`, `backlog`,
//!   `drain_timeout`, `unix_mode`), then [`Builder::bind`].
//! - [`Server`]: the bound listeners; [`Server::serve`] runs a [`Handler`] per connection.
//! - [`Connection`]: one accepted TCP or Unix stream with its addresses.
//! - [`ShutdownHandle`]: graceful shutdown with a drain deadline.
//!
//! # Examples
//!
//! The tutorial's greeting server:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> socketkit::Result<()> {
//! use socketkit::server::Server;
//! use tokio::io::AsyncWriteExt;
//!
//! let mut builder = Server::builder();
//! builder.listen("127.0.0.1:0".parse().unwrap());
//! let server = builder.bind().await?;
//! # let addr = server.local_endpoints()[0].to_string();
//! # let handle = server.shutdown_handle();
//! # let client = tokio::task::spawn_blocking(move || {
//! #     let addr = addr.trim_start_matches("tcp:").to_string();
//! #     let s = socketkit::socket::create_connection(addr.as_str(), None).unwrap();
//! #     let got = s.recv(64).unwrap();
//! #     handle.shutdown();
//! #     got
//! # });
//! server
//!     .serve(|mut conn: socketkit::server::Connection| async move {
//!         conn.write_all("你好".as_bytes()).await
//!     })
//!     .await?;
//! # assert_eq!(client.await.unwrap(), "你好".as_bytes());
//! # Ok(()) }
//! ```

mod builder;
mod connection;
mod listener;
mod shutdown;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use builder::Builder;
pub use connection::Connection;
pub use shutdown::ShutdownHandle;

use crate::endpoint::Endpoint;
use crate::error::Result;
use listener::{EXHAUSTION_BACKOFF, StreamListener};
use shutdown::{Phase, Watcher};

/// Handles one connection. Any `Fn(Connection) -> impl Future<Output = io::Result<()>>`
/// closure is a handler; implement the trait on a type to carry state.
///
/// An `Err` ends the connection and is logged at debug level (`-v`); it never stops the
/// server.
pub trait Handler: Send + Sync + 'static {
    /// Serves `conn` until done; the connection is closed when the future completes.
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static;
}

impl<F, Fut> Handler for F
where
    F: Fn(Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        self(conn)
    }
}

/// The limits every listener of a server honours.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: Option<usize>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) drain_timeout: Duration,
}

/// A server with its listeners bound, ready to [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server {
    listeners: Vec<StreamListener>,
    limits: Limits,
    shutdown: ShutdownHandle,
}

impl Server {
    /// A builder with every default; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn new(listeners: Vec<StreamListener>, limits: Limits) -> Server {
        Server {
            listeners,
            limits,
            shutdown: ShutdownHandle::new(),
        }
    }

    /// The endpoints really listened on, in the order they were added (port 0 resolved).
    pub fn local_endpoints(&self) -> Vec<Endpoint> {
        self.listeners
            .iter()
            .map(StreamListener::local_endpoint)
            .collect()
    }

    /// A handle that shuts this server down; take it before calling `serve`.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Accepts and serves connections until shut down through a [`ShutdownHandle`], then
    /// drains. Returns once every connection is closed.
    ///
    /// # Errors
    ///
    /// None today: accept errors are logged and waited out, handler errors end only their
    /// own connection. The `Result` leaves room for failures of the server as a whole.
    pub async fn serve<H: Handler>(self, handler: H) -> Result<()> {
        let handler = Arc::new(handler);
        let slots = self
            .limits
            .max_connections
            .map(|max| Arc::new(Semaphore::new(max)));
        let mut tasks = Vec::with_capacity(self.listeners.len());
        for listener in self.listeners {
            let acceptor = Acceptor {
                listener,
                handler: Arc::clone(&handler),
                slots: slots.clone(),
                idle_timeout: self.limits.idle_timeout,
                shutdown: self.shutdown.clone(),
            };
            tasks.push(tokio::spawn(acceptor.run(self.shutdown.watcher())));
        }
        let mut watcher = self.shutdown.watcher();
        watcher.reached(Phase::Draining).await;
        drop(watcher);
        for task in tasks {
            // The accept loops return as soon as draining starts, closing their listeners.
            let _ = task.await;
        }
        let forced = self.shutdown.drain(self.limits.drain_timeout).await;
        if forced > 0 {
            tracing::info!("closed {forced} connection(s) still open at the drain deadline");
        }
        Ok(())
    }
}

/// One listener's accept loop.
struct Acceptor<H> {
    listener: StreamListener,
    handler: Arc<H>,
    slots: Option<Arc<Semaphore>>,
    idle_timeout: Option<Duration>,
    shutdown: ShutdownHandle,
}

impl<H: Handler> Acceptor<H> {
    async fn run(self, mut watcher: Watcher) {
        let mut exhausted = false;
        loop {
            let permit = tokio::select! {
                biased;
                () = watcher.reached(Phase::Draining) => return,
                permit = self.slot() => permit,
            };
            let accepted = tokio::select! {
                biased;
                () = watcher.reached(Phase::Draining) => return,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer, local)) => {
                    if exhausted {
                        tracing::info!("accepting again on {}", self.listener.local_endpoint());
                        exhausted = false;
                    }
                    tracing::debug!(%peer, "accepted");
                    let conn = Connection::new(stream, peer, local, self.idle_timeout);
                    self.spawn(conn, permit);
                }
                Err(err) if listener::is_connection_error(&err) => {}
                Err(err) => {
                    // Log once per burst: a full descriptor table fails every accept until
                    // something closes, and a line per attempt would flood the log.
                    if !exhausted || !listener::is_resource_exhaustion(&err) {
                        tracing::warn!(
                            "accept on {} failed: {}; backing off",
                            self.listener.local_endpoint(),
                            crate::error::describe(&err)
                        );
                    }
                    exhausted = true;
                    drop(permit);
                    tokio::select! {
                        () = watcher.reached(Phase::Draining) => return,
                        () = tokio::time::sleep(EXHAUSTION_BACKOFF) => {}
                    }
                }
            }
        }
    }

    /// Waits for a free connection slot; with no limit there is always one.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        // The semaphore is never closed, so acquiring cannot fail.
        Arc::clone(slots).acquire_owned().await.ok()
    }

    fn spawn(&self, conn: Connection, permit: Option<OwnedSemaphorePermit>) {
        let handler = Arc::clone(&self.handler);
        let mut watcher = self.shutdown.watcher();
        tokio::spawn(async move {
            let peer = conn.peer_addr().clone();
            tokio::select! {
                biased;
                result = handler.call(conn) => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, "connection ended: {}", crate::error::describe(&err));
                    } else {
                        tracing::debug!(%peer, "closed");
                    }
                }
                () = watcher.reached(Phase::Forced) => {
                    tracing::debug!(%peer, "closed by shutdown");
                }
            }
            drop(permit);
            drop(watcher);
        });
    }
}
