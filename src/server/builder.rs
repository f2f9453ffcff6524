//! [`Builder`]: a server's listeners and limits, set with `&mut self` setters, then bound.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use super::access_stages::{AccessRule, PeerStage, SourceRule};
use super::admission::Admission;
use super::inherited::InheritedSocket;
use super::listener::ListenerGroup;
use super::pipeline::Stages;
use super::proxy::ProxyStage;
use super::tls::{DEFAULT_HANDSHAKE_TIMEOUT, ServerTlsSource, TlsHandshake};
use super::{IoEngine, Limits, Server};
use crate::access::{AccessControl, CidrSet, SourceLimits};
use crate::endpoint::{Endpoint, Transport};
use crate::error::{Error, Op, Result};
use crate::metrics::Metrics;
use crate::net::ListenOptions;
use crate::tls::ReloadableServerConfig;

/// The `listen(2)` backlog a server asks for unless told otherwise: Linux's own default
/// ceiling (`net.core.somaxconn` is 4096 since 5.4, and the kernel caps the backlog at it).
/// A connection storm — thousands of clients connecting at once — fills a smaller queue
/// faster than a worker drains it in bursts, and the kernel then drops handshakes, which
/// clients retry only a second later: with 1024, 5,000 concurrent clients of a greeting on
/// the io_uring engine saw 1,500–3,000 connections take over a second in three runs; with
/// 4096, 0–136 (docs/benchmarks.md). The queue costs nothing until connections wait in it.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Collects a server's endpoints and limits; [`Builder::bind`] makes the listeners.
///
/// Every setting has a default fit for a public service: no connection limit, no idle
/// timeout, a backlog of [`DEFAULT_BACKLOG`], 5 seconds of drain, 64 blocking threads.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketkit::Result<()> {
/// use std::time::Duration;
/// use socketkit::server::Server;
///
/// let mut builder = Server::builder();
/// builder
///     .listen("127.0.0.1:0".parse().unwrap())
///     .max_connections(100)
///     .idle_timeout(Duration::from_secs(30));
/// let server = builder.bind().await?;
/// assert_eq!(server.local_endpoints().len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    sources: Vec<Source>,
    limits: Limits,
    backlog: i32,
    unix_mode: Option<u32>,
    workers: usize,
    stages: Stages,
    tls: Option<ServerTlsSource>,
    tls_handshake_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            sources: Vec::new(),
            limits: Limits {
                max_connections: None,
                idle_timeout: None,
                drain_timeout: Duration::from_secs(5),
                shutdown_delay: Duration::ZERO,
                blocking_threads: 64,
                // A bad value is the CLI's to report; the library falls back to auto.
                engine: IoEngine::from_env().unwrap_or_default(),
            },
            backlog: DEFAULT_BACKLOG as i32,
            unix_mode: None,
            workers: 1,
            stages: Stages::default(),
            tls: None,
            tls_handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            metrics: None,
        }
    }
}

impl Builder {
    /// Adds a listener; call once per endpoint.
    pub fn listen(&mut self, endpoint: Endpoint) -> &mut Builder {
        self.sources.push(Source::Bind(endpoint));
        self
    }

    /// Adds a listener on a socket this process inherited (`fd:N`, socket activation, a
    /// restart's handover; see [`Inherited`](super::Inherited)), in the order of the
    /// listeners. Its backlog, permissions and address are as its parent made them.
    pub fn listen_inherited(&mut self, socket: InheritedSocket) -> &mut Builder {
        self.sources.push(Source::Inherited(socket));
        self
    }

    /// At most `max` connections at once: past it the server stops accepting (clients wait in
    /// the kernel's backlog) until one ends. It never accepts a connection only to drop it.
    /// [`Server::serve_blocking`] lowers it to twice [`Builder::blocking_threads`] if higher.
    pub fn max_connections(&mut self, max: usize) -> &mut Builder {
        self.limits.max_connections = Some(max.max(1));
        self
    }

    /// Closes a connection when no byte has moved either way for `timeout` (at least 1 ms:
    /// a blocking handler's socket timeout cannot be zero).
    ///
    /// The limit is kept by the connection's own reads and writes, not by a watcher beside
    /// the handler: a read or write that has to wait fails with
    /// [`std::io::ErrorKind::TimedOut`] once no byte has moved for `timeout` (a blocking
    /// handler's, through its socket timeout, once that call has waited `timeout`). A
    /// handler busy with something else meanwhile (a backend, a lock) is not interrupted,
    /// and a read or write that can go at once still goes.
    pub fn idle_timeout(&mut self, timeout: Duration) -> &mut Builder {
        // At most a hundred years: a connection's moments plus the limit must not overflow
        // the clock (`Duration::MAX` panicked the relay's watchdog).
        self.limits.idle_timeout =
            Some(timeout.clamp(Duration::from_millis(1), crate::socket::FAR_FUTURE));
        self
    }

    /// How the server waits for its stream listeners and connections: io_uring where the
    /// kernel has it and the listener qualifies, else tokio's epoll reactor (see
    /// [`IoEngine`]). The default is what the `SOCKETKIT_IO_ENGINE` variable says, else
    /// [`IoEngine::Auto`].
    pub fn io_engine(&mut self, engine: IoEngine) -> &mut Builder {
        self.limits.engine = engine;
        self
    }

    /// The `listen(2)` backlog: connections the kernel completes before we accept them.
    pub fn backlog(&mut self, backlog: u32) -> &mut Builder {
        self.backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        self
    }

    /// How long a graceful shutdown lets in-flight connections run before closing them.
    /// Those still open then were cut short and close with a reset (`SO_LINGER` 0), so that
    /// their clients read `ECONNRESET` rather than a clean end (a Unix stream, which has no
    /// reset, ends as usual).
    pub fn drain_timeout(&mut self, timeout: Duration) -> &mut Builder {
        self.limits.drain_timeout = timeout;
        self
    }

    /// On shutdown, go on accepting for `delay` before closing the listeners, while the
    /// metrics' `/health` answers 503 (see [`Builder::metrics`]): a load balancer that
    /// checks it stops sending new clients here, so none is refused when the listeners
    /// close. Default zero: the listeners close at once. A second shutdown request ends
    /// the delay.
    pub fn shutdown_delay(&mut self, delay: Duration) -> &mut Builder {
        self.limits.shutdown_delay = delay;
        self
    }

    /// Counts into `metrics` (SPEC §3.5): per listener, connections accepted, open and
    /// refused by reason, bytes each way, accept errors by errno, and how long connections
    /// last; datagrams dropped by reason. A shutdown marks `metrics` as draining, so its
    /// `/health` answers 503 ([`crate::metrics::serve_http`]). Counting is atomic adds on
    /// handles each listener takes once: no lock, no allocation per connection.
    pub fn metrics(&mut self, metrics: Arc<Metrics>) -> &mut Builder {
        self.metrics = Some(metrics);
        self
    }

    /// Expects a PROXY protocol header (v1 or v2, SPEC §3.3) at the start of every stream
    /// connection, from the sources in `trusted` only, within `header_timeout`; the header's
    /// client address then becomes the connection's peer address for everything after it
    /// (access rules, limits, the handler, logs, metrics). A connection from anywhere else,
    /// or without a valid header in time, is refused (reason `proxy`). A v2 `LOCAL` header
    /// (a balancer's health check) keeps the proxy's own address. Clients of a Unix socket
    /// are local and trusted (the socket file's permissions say who may connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use socketkit::access::{CidrSet, parse_network};
    /// let trusted: CidrSet = [parse_network("10.0.0.0/8").unwrap()].into_iter().collect();
    /// let mut builder = socketkit::server::Server::builder();
    /// builder.proxy_protocol(trusted, Duration::from_secs(5));
    /// ```
    pub fn proxy_protocol(&mut self, trusted: CidrSet, header_timeout: Duration) -> &mut Builder {
        self.stages
            .add_proxy(ProxyStage::new(trusted, header_timeout));
        self
    }

    /// At most `threads` blocking handlers run at once ([`Server::serve_blocking`]); as many
    /// further connections wait, accepted, for a thread (in a graceful shutdown too, until
    /// the drain deadline), and past those the server stops accepting until one ends, as
    /// past [`Builder::max_connections`]. A silent client holds its thread until
    /// [`Builder::idle_timeout`] ends its read. Default 64; tokio caps it at 512.
    pub fn blocking_threads(&mut self, threads: usize) -> &mut Builder {
        self.limits.blocking_threads = threads.clamp(1, 512);
        self
    }

    /// Accept loops per TCP endpoint, to use `workers` cores: each gets its own
    /// `SO_REUSEPORT` listener where the kernel supports it (connections are then spread by
    /// the kernel), or all share one listener where it does not. Default 1. The runtime
    /// needs as many worker threads for the loops to run in parallel.
    pub fn workers(&mut self, workers: usize) -> &mut Builder {
        self.workers = workers.max(1);
        self
    }

    /// The permission bits of Unix socket files this server creates (e.g. `0o660`).
    pub fn unix_mode(&mut self, mode: u32) -> &mut Builder {
        self.unix_mode = Some(mode);
        self
    }

    /// Admits only the sources `control`'s rules allow (SPEC §3.2), checked on every new
    /// connection and every datagram; `control` can be reloaded while the server runs
    /// ([`AccessControl::reload`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use socketkit::access::{AccessControl, RuleSources};
    /// let rules = RuleSources { deny: vec!["192.0.2.0/24".parse().unwrap()], ..Default::default() };
    /// let mut builder = socketkit::server::Server::builder();
    /// builder.access_control(Arc::new(AccessControl::new(rules).unwrap()));
    /// ```
    pub fn access_control(&mut self, control: Arc<AccessControl>) -> &mut Builder {
        self.stage(PeerStage(AccessRule(control)))
    }

    /// Limits each source's connections at once and its rate of new ones (SPEC §3.2); a
    /// datagram counts against the rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::access::SourceLimits;
    /// let mut builder = socketkit::server::Server::builder();
    /// builder.source_limits(SourceLimits::new(Some(10), Some("20/1s".parse().unwrap())));
    /// ```
    pub fn source_limits(&mut self, limits: Arc<SourceLimits>) -> &mut Builder {
        self.stage(PeerStage(SourceRule(limits)))
    }

    /// Adds an admission stage: a check every new stream connection must pass before the
    /// handler sees it (see [`Admission`]). Stages run in SPEC §3's order — PROXY header,
    /// access control, per-source limits, TLS handshake — whatever order they are added
    /// in; stages of the same rule run in the order added. They apply to stream
    /// listeners; datagrams are not affected.
    pub fn stage(&mut self, stage: impl Admission) -> &mut Builder {
        self.stages.add(Arc::new(stage));
        self
    }

    /// The TLS configuration of every `tls:` listener (see [`crate::tls::server_config`]):
    /// on those listeners the TLS handshake is the last admission stage. It runs in each
    /// connection's own task, never on the accept loop, holds the connection's slot, and
    /// refuses (reason `tls`) a handshake that fails or misses
    /// [`Builder::tls_handshake_timeout`]; the handler sees only established sessions.
    pub fn tls(&mut self, config: Arc<rustls::ServerConfig>) -> &mut Builder {
        self.tls = Some(ServerTlsSource::Fixed(config));
        self
    }

    /// As [`Builder::tls`], with a configuration that can be read again from its files
    /// while the server runs ([`ReloadableServerConfig::reload`]): each handshake uses the
    /// one in force when it starts, and sessions already made keep theirs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use socketkit::tls::{Identity, ReloadableServerConfig, ServerOptions};
    /// let names = vec!["localhost".to_owned()];
    /// let tls = ReloadableServerConfig::new(ServerOptions::new(Identity::SelfSigned(names)))?;
    /// let mut builder = socketkit::server::Server::builder();
    /// builder.tls_reloadable(Arc::new(tls));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn tls_reloadable(&mut self, config: Arc<ReloadableServerConfig>) -> &mut Builder {
        self.tls = Some(ServerTlsSource::Reloadable(config));
        self
    }

    /// How long a client of a `tls:` listener has to finish its handshake. Default 10 s.
    pub fn tls_handshake_timeout(&mut self, timeout: Duration) -> &mut Builder {
        self.tls_handshake_timeout = timeout;
        self
    }

    /// Binds every endpoint, in order. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The first endpoint that cannot be bound, as `cannot listen on ENDPOINT: REASON`;
    /// listeners already bound are closed again. A `tls:` endpoint without
    /// [`Builder::tls`].
    pub async fn bind(&self) -> Result<Server> {
        let tls_stages = match &self.tls {
            Some(source) => {
                let mut stages = self.stages.clone();
                let handshake = TlsHandshake::new(source.clone(), self.tls_handshake_timeout);
                stages.add(Arc::new(handshake));
                Some(stages)
            }
            None => None,
        };
        if let (None, Some(endpoint)) = (
            &tls_stages,
            self.sources.iter().find_map(|source| match source {
                Source::Bind(endpoint) if endpoint.transport() == Transport::Tls => Some(endpoint),
                _ => None,
            }),
        ) {
            let reason = io::Error::new(
                io::ErrorKind::InvalidInput,
                "no TLS configuration was given (Builder::tls)",
            );
            return Err(Error::new(Op::Listen, endpoint, reason));
        }
        #[cfg(target_os = "linux")]
        if self.limits.engine == IoEngine::IoUring
            && let Some(reason) = super::ring::declined(self.limits.engine)
        {
            // Named as asked for: the engine may come from SOCKETKIT_IO_ENGINE, set long ago.
            let reason = io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the io_uring engine was asked for, and {reason}"),
            );
            // The first endpoint it would have served, as every listen error names one.
            let first = self.sources.first().map(|source| match source {
                Source::Bind(endpoint) => endpoint,
                Source::Inherited(socket) => socket.endpoint(),
            });
            return Err(match first {
                Some(endpoint) => Error::new(Op::Listen, endpoint, reason),
                None => Error::without_target(Op::Listen, reason),
            });
        }
        #[cfg(not(target_os = "linux"))]
        if self.limits.engine == IoEngine::IoUring {
            let reason = io::Error::new(
                io::ErrorKind::Unsupported,
                "the io_uring engine was asked for, and io_uring is Linux's",
            );
            return Err(Error::without_target(Op::Listen, reason));
        }
        let options = ListenOptions {
            backlog: self.backlog,
            unix_mode: self.unix_mode,
            reuse_port: false,
            only_v6: false,
        };
        let groups = self
            .sources
            .iter()
            .map(|source| match source {
                Source::Bind(endpoint) => ListenerGroup::bind(endpoint, options, self.workers),
                Source::Inherited(socket) => ListenerGroup::register(socket.take()?, self.workers),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Server::new(
            groups,
            self.limits,
            self.stages.clone(),
            tls_stages,
            self.metrics.clone(),
        ))
    }

    /// A server for the one connection already accepted on `conn` — what inetd (`nowait`)
    /// and systemd (`Accept=yes`) pass on standard input — with this builder's limits and
    /// stages and no listener. Serving it returns when the connection ends, or after the
    /// drain when it is shut down first. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// `cannot accept on NAME: REASON` when `conn` is not a connected stream socket
    /// (`name` is what the message calls it, such as `stdin`); `InvalidInput` when the
    /// builder has listeners.
    pub async fn bind_connection(&self, conn: OwnedFd, name: &str) -> Result<Server> {
        if !self.sources.is_empty() {
            let reason = "a server for one connection has no listeners";
            return Err(Error::new(
                Op::Accept,
                name,
                io::Error::new(io::ErrorKind::InvalidInput, reason),
            ));
        }
        let connection = crate::net::adopt_connection(conn, name)?;
        let mut server = Server::new(
            Vec::new(),
            self.limits,
            self.stages.clone(),
            None,
            self.metrics.clone(),
        );
        server.connection = Some(connection);
        Ok(server)
    }
}

/// Where a listener's sockets come from.
#[derive(Debug, Clone)]
enum Source {
    /// Bound by the server.
    Bind(Endpoint),
    /// Passed down by a parent.
    Inherited(InheritedSocket),
}
