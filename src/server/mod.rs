//! The high level: the tutorial's `SocketServer`, done right. A server is a set of listeners,
//! a handler, and the limits every serious server needs, built in.
//!
//! # Organization
//! - [`Builder`]: endpoints (TCP, TLS, UDP, Unix, Unix datagram) and limits (`max_connections`,
//!   `idle_timeout`, `backlog`, `drain_timeout`, `blocking_threads`, `unix_mode`), then
//!   [`Builder::bind`].
//! - [`Server`]: the bound listeners. [`Server::serve`] runs an async [`Handler`] per stream
//!   connection, [`Server::serve_blocking`] a [`BlockingHandler`] on a thread pool,
//!   [`Server::serve_datagrams`] a [`DatagramHandler`] per datagram; [`Server::serve_both`]
//!   takes a stream and a datagram handler.
//! - [`Connection`] (async) and [`BlockingConnection`] (`Read + Write`): one accepted TCP or
//!   Unix stream with its addresses. [`Reply`]: a datagram handler's answers.
//! - [`ShutdownHandle`]: graceful shutdown with a drain deadline.
//! - Under a service manager: [`Inherited`] sockets (socket activation's `LISTEN_FDS`,
//!   `fd:N`), served with [`Builder::listen_inherited`]; a restart's [`Handover`] of the
//!   listening sockets to a new process, which reports with a [`ReadyReport`];
//!   [`notify_manager`] for systemd's `READY=1` and `STOPPING=1`;
//!   [`reset_inherited_signals`] to take back the signals a parent blocked or ignored.
//! - [`MeteredListener`] and [`MeteredConnection`]: the server's metrics and `-v` lines for
//!   connections a program accepts itself, without a `Server` (`socketkit listen`).
//! - [`Admission`]: a stage of the connection pipeline, which may refuse a new connection
//!   before the handler sees it ([`Builder::stage`]); a [`Refusal`] carries its
//!   [`RefusalReason`], and [`Server::refusals`] counts them.
//!
//! Every transport honours the same limits: past `max_connections` the accept loop stops
//! accepting until a connection ends; `idle_timeout` closes a connection with no bytes moving
//! either way; accept errors from exhausted resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) are
//! logged once per burst and waited out, never spun on. TCP connections come with Nagle's
//! algorithm off (`TCP_NODELAY`, set on the listener, which accepted sockets inherit on Linux
//! and the BSDs; on the connection itself under inetd): a reply written in pieces goes out as
//! written, so a handler that writes many small pieces should gather them (a `BufWriter`)
//! rather than lean on the kernel to. The tour is in [`crate::guide`].
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

mod acceptor;
mod access_stages;
mod admission;
mod blocking;
mod builder;
mod connection;
mod datagram;
mod engine;
mod exhaustion;
mod forced_wakers;
mod handover;
mod idle_timer;
mod inherited;
mod listener;
mod meter;
#[cfg(test)]
pub(crate) use meter::Meter;
mod metered;
mod notify;
mod pipeline;
mod program;
mod proxy;
#[cfg(target_os = "linux")]
mod ring;
mod serve;
mod shutdown;
mod steering;
mod task;
mod tls;

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use crate::net::sleep_running;
pub use admission::{Admission, Admit, Admitted, Refusal, Refusals};
pub use blocking::{BlockingConnection, BlockingHandler};
pub use builder::{Builder, DEFAULT_BACKLOG};
pub use connection::Connection;
pub use datagram::{DatagramHandler, Reply};
pub use engine::{IO_ENGINE_VAR, IoEngine, Routine, UnknownEngine};
pub use handover::{Handover, Successor};
pub use inherited::{Inherited, InheritedSocket, ReadyReport};
pub use metered::{MeteredConnection, MeteredListener};
pub use notify::{
    DescriptorLimit, ManagerState, notify_manager, reap_orphans, reset_inherited_signals,
    room_for_a_connection, use_the_hard_descriptor_limit,
};
pub use shutdown::ShutdownHandle;

/// Why a connection was refused; the metrics' reason, re-exported for admission stages.
pub use crate::metrics::RefusalReason;

pub(crate) use datagram::{DatagramListener, sent_by_itself};
pub(crate) use exhaustion::{handler_opened, handler_out_of_resources};
pub(crate) use meter::Tally;
pub(crate) use program::{ProgramConnection, ProgramGroup};
pub(crate) use shutdown::is_cut_short;

use crate::endpoint::Endpoint;
use crate::error::{Error, Op, Result};
use crate::metrics::Metrics;
use listener::ListenerGroup;
use pipeline::Stages;
use task::{AsyncSpawner, BlockingSpawner};

/// Handles one connection. Any `Fn(Connection) -> impl Future<Output = io::Result<()>>`
/// closure is a handler; implement the trait on a type to carry state.
///
/// An `Err` ends the connection and is logged at debug level (`-v`); it never stops the
/// server.
///
/// The future `call` returns outlives the borrow of `self` (each connection runs in a task
/// of its own), so it cannot be an `async fn` that borrows the handler: take what the
/// connection needs of the state first (clone an `Arc`), then move it into an `async move`
/// block.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use socketkit::server::{Connection, Handler};
/// use tokio::io::AsyncWriteExt;
///
/// struct Counter(Arc<AtomicU64>);
///
/// impl Handler for Counter {
///     fn call(
///         &self,
///         mut conn: Connection,
///     ) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
///         let count = Arc::clone(&self.0);
///         async move {
///             let n = count.fetch_add(1, Ordering::Relaxed) + 1;
///             conn.write_all(format!("you are visitor {n}\n").as_bytes()).await
///         }
///     }
/// }
/// # let _ = Counter(Arc::default());
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Serves `conn` until done; the connection is closed when the future completes (with an
    /// `Err` too: the handler decided to end, and may have answered in full). Unless the
    /// handler half-closed it or a read or write failed, it is half-closed first, as Python's
    /// `socketserver` does, so that a request left unread does not turn the close into a
    /// reset the client would read as an error after its answer. A handler that
    /// panics leaves its answer cut short: its connection is reset, so that the client does
    /// not take what it got for a whole answer.
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static;

    /// For a handler whose whole job is to send some bytes and close (a greeting, the
    /// time): those bytes. The server then answers each connection on the spot in its accept
    /// loop — one `send(2)` and a close, with no task, no registration with the reactor and
    /// no allocation — and only falls back to a task when the reply does not fit the socket
    /// buffer. `call` is not used for such a handler. The default is `None`.
    fn immediate_reply(&self) -> Option<Cow<'_, [u8]>> {
        None
    }

    /// Whether [`Handler::immediate_reply`] has bytes for every connection, asked once when
    /// the server starts (the io_uring engine then answers in the kernel's queue). The
    /// default asks `immediate_reply` itself; override it when asking has a cost or a side
    /// effect (a quote that changes with each call).
    fn replies_immediately(&self) -> bool {
        self.immediate_reply().is_some()
    }

    /// Whether the handler opens a descriptor of its own for each connection (a relay's
    /// target socket). Near the descriptor limit the accept loop then keeps one in reserve
    /// for it and lets clients in one at a time, each once the handler before it has
    /// opened its descriptor (or a moment has passed), so that the clients it has no room for
    /// wait in the kernel's backlog rather than being accepted and closed. The default is
    /// `false`.
    fn opens_descriptors(&self) -> bool {
        false
    }

    /// For a handler that only echoes or only discards: which, so that the io_uring engine
    /// ([`IoEngine`]) can run it in the kernel's queue instead of calling it. The epoll
    /// engine calls the handler as always, so it must do exactly what it declares. The
    /// default is `None`.
    fn routine(&self) -> Option<Routine> {
        None
    }
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

/// How long an accept or receive loop sleeps after resource exhaustion (`EMFILE`…): long
/// enough not to spin, short enough that a freed descriptor is used soon.
const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(50);

/// The limits every listener of a server honours.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: Option<usize>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) drain_timeout: Duration,
    pub(crate) shutdown_delay: Duration,
    pub(crate) blocking_threads: usize,
    pub(crate) engine: IoEngine,
}

/// A server with its listeners bound, ready to serve.
///
/// Stream listeners (TCP, Unix) need a stream handler ([`Server::serve`],
/// [`Server::serve_blocking`]); datagram listeners (UDP, Unix datagram) a
/// [`DatagramHandler`] ([`Server::serve_datagrams`]); [`Server::serve_both`] takes one of
/// each for a server with both kinds.
#[derive(Debug)]
pub struct Server {
    groups: Vec<ListenerGroup>,
    /// The one connection of an inetd-style server ([`Builder::bind_connection`]).
    connection: Option<(crate::net::Stream, crate::socket::Address)>,
    limits: Limits,
    stages: Stages,
    /// The stages of `tls:` listeners: `stages` and the TLS handshake last.
    tls_stages: Option<Stages>,
    refusals: Refusals,
    dropped: Refusals,
    metrics: Option<Arc<Metrics>>,
    shutdown: ShutdownHandle,
    /// Told once a `serve` method has set up every listener (see [`Server::ready`]).
    ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// A builder with every default; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn new(
        groups: Vec<ListenerGroup>,
        limits: Limits,
        stages: Stages,
        tls_stages: Option<Stages>,
        metrics: Option<Arc<Metrics>>,
    ) -> Server {
        // Each listener's series exist (at 0) from the bind on, not from when its accept
        // loops start: a scrape between the readiness lines and `serve` — a restart's new
        // process serves its metrics socket from then on — shows every listener.
        if let Some(metrics) = &metrics {
            for group in &groups {
                metrics.listener(&group.endpoint.to_string());
            }
        }
        Server {
            groups,
            connection: None,
            limits,
            stages,
            tls_stages,
            refusals: Refusals::default(),
            dropped: Refusals::default(),
            metrics,
            shutdown: ShutdownHandle::new(),
            ready: None,
        }
    }

    /// The endpoints really listened on, in the order they were added (port 0 resolved).
    pub fn local_endpoints(&self) -> Vec<Endpoint> {
        self.groups
            .iter()
            .map(|group| group.endpoint.clone())
            .collect()
    }

    /// The Unix socket files this server made, or took over from the process it replaced,
    /// and removes when it stops (not those of inherited sockets, which are their service
    /// manager's).
    pub fn socket_files(&self) -> Vec<std::path::PathBuf> {
        self.groups
            .iter()
            .flat_map(|group| &group.listeners)
            .filter_map(|listener| listener.socket_file())
            .map(|file| file.path().to_path_buf())
            .collect()
    }

    /// The counts of connections the admission stages ([`Builder::stage`]) refused, by
    /// reason; take it before calling a `serve` method, and read it at any time.
    pub fn refusals(&self) -> Refusals {
        self.refusals.clone()
    }

    /// The counts of datagrams the peer-only admission stages (access rules, per-source
    /// rate) dropped, by reason; take it before calling a `serve` method.
    pub fn dropped_datagrams(&self) -> Refusals {
        self.dropped.clone()
    }

    /// A future that resolves once a `serve` method has set up every listener — its accept
    /// loops, and with the io_uring engine every worker's ring and thread — to `true`: the
    /// moment to tell others the server is up (a readiness line, a service manager's
    /// `READY=1`). It resolves to `false` if serving failed before (the `serve` method
    /// returns why) or its future was dropped. Take it before calling a `serve` method.
    ///
    /// Binding alone does not make a server ready: a worker's ring or thread can still fail
    /// for want of descriptors or threads.
    pub fn ready(&mut self) -> impl Future<Output = bool> + Send + 'static {
        let (tell, told) = tokio::sync::oneshot::channel();
        self.ready = Some(tell);
        async move { told.await.is_ok() }
    }

    /// A handle that shuts this server down; take it before calling a `serve` method.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves every stream listener with an async `handler`, a task per connection, until
    /// shut down; then drains. Returns once every connection is closed.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the server has datagram listeners, which need a
    /// [`DatagramHandler`]. Accept errors are logged and waited out; handler errors end only
    /// their own connection.
    pub async fn serve<H: Handler>(self, handler: H) -> Result<()> {
        self.run(Some(Arc::new(AsyncSpawner(Arc::new(handler)))), None)
            .await
    }

    /// Serves every stream listener with a blocking `handler` on a pool of at most
    /// [`Builder::blocking_threads`] threads.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`]; and `InvalidInput` for a `tls:` listener, whose session a
    /// blocking handler cannot drive.
    ///
    /// # Caveats
    ///
    /// A thread is held for as long as its handler runs: clients that connect and say
    /// nothing hold every thread of the pool unless [`Builder::idle_timeout`] ends their
    /// reads, and the next client waits until one ends. As many connections again may
    /// wait, accepted, for a thread; past that (or past [`Builder::max_connections`], if
    /// lower) the server stops accepting, and clients wait in the kernel's backlog.
    ///
    /// At the drain deadline a handler still running has its connection reset and `serve`
    /// returns, but its thread cannot be stopped: a handler that never returns (a `sleep`
    /// that no reset ends) keeps tokio's blocking pool busy, and dropping the runtime waits
    /// for it (`#[tokio::main]` does not return). Use `Runtime::shutdown_timeout` where
    /// that can happen.
    pub async fn serve_blocking<B: BlockingHandler>(mut self, handler: B) -> Result<()> {
        if let Some(group) = self.groups.iter().find(|group| group.is_tls()) {
            let reason = io::Error::new(
                io::ErrorKind::InvalidInput,
                "a blocking handler cannot serve TLS; use an async handler",
            );
            return Err(Error::new(Op::Listen, &group.endpoint, reason));
        }
        // As many connections as the pool has threads may wait, accepted, for one (and are
        // served in a drain); past that the server stops accepting, as past
        // `max_connections`, and the kernel's backlog holds the rest: clients that hold
        // their threads without a word must not grow a queue of descriptors without bound.
        let accepted_at_most = self.limits.blocking_threads.saturating_mul(2);
        self.limits.max_connections = Some(
            self.limits
                .max_connections
                .map_or(accepted_at_most, |max| max.min(accepted_at_most)),
        );
        let spawner = BlockingSpawner {
            handler: Arc::new(handler),
            pool: blocking::pool(self.limits.blocking_threads),
        };
        self.run(Some(Arc::new(spawner)), None).await
    }

    /// Serves every datagram listener with `handler`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the server has stream listeners.
    pub async fn serve_datagrams<D: DatagramHandler>(self, handler: D) -> Result<()> {
        self.run(None, Some(Arc::new(handler))).await
    }

    /// Serves stream listeners with `stream` and datagram listeners with `datagram`.
    ///
    /// # Errors
    ///
    /// None of its own; see [`Server::serve`].
    pub async fn serve_both<H: Handler, D: DatagramHandler>(
        self,
        stream: H,
        datagram: D,
    ) -> Result<()> {
        self.run(
            Some(Arc::new(AsyncSpawner(Arc::new(stream)))),
            Some(Arc::new(datagram)),
        )
        .await
    }
}
