//! The relay behind `socketkit forward`: every accepted connection is joined to a new
//! connection to the target, TCP, TLS and Unix in any combination.
//!
//! Both directions are copied at once. A FIN from either side becomes a `shutdown(SHUT_WR)`
//! towards the other, so half-closed protocols work through the relay; the relay ends when
//! both directions have ended, or when either side fails: then both are reset, so that
//! neither takes a cut stream for a whole one, what the failed side sent before going on
//! first (an idle timeout closes them, and resets them only when bytes were still on their
//! way). A relay still open at the server's drain deadline is cut too, and resets both
//! sides. A target that cannot be reached resets that one client, with the reason logged,
//! and the server goes on.
//!
//! As a [`Handler`](crate::server::Handler), a [`Forward`] gets the server's limits for free: `max_connections`,
//! `idle_timeout` (no bytes either way) and graceful shutdown.
//!
//! With [`Forward::send_proxy`], each relayed connection starts with a PROXY protocol header
//! naming the client (as the server sees it, so possibly from a PROXY header of its own), so
//! a target behind the relay still knows who connected; to a `tls:` target the header goes
//! first, in the clear, as HAProxy expects it.
//!
//! With [`Forward::or`], a relay has several targets: each client goes to the next one in
//! turn, to the first that is up, to the one holding fewest relays, or to the one its
//! address hashes to ([`Balance`]), and a target that cannot be reached passes the client
//! on to the next ([`targets`] has the rules); [`Forward::check_every`] adds health checks,
//! connections or ([`Forward::check_http`]) HTTP requests.
//!
//! With [`Forward::route_name`], clients are routed by the server name their TLS handshake
//! asks for (SNI), the handshake itself passed through to the target (`forward/by_name.rs`).
//!
//! [`Forward::proxy`] reaches the target through a SOCKS5 or HTTP proxy; [`socks`] is the
//! other way round, a SOCKS5 proxy whose clients each name their target, relayed the same
//! way.
//!
//! Where the kernel supports it, bytes are moved with `splice(2)` through a pipe and never
//! copied into user space ([`splice`]); elsewhere, or with `SOCKETKIT_NO_SPLICE=1`, a copy
//! loop with 32 KiB buffers does the same job. A `tls:` target is always copied (the bytes
//! are encrypted in user space); its close_notify and the half-close of the other side map
//! onto each other.

mod by_name;
mod checks;
pub mod datagram;
mod dial;
mod relay;
pub mod socks;
pub mod splice;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use crate::client::proxy::Proxy;
use crate::endpoint::{Endpoint, Host};
use crate::metrics::Metrics;
use crate::proxy_protocol::{self, Version};
use crate::tls::{ClientOptions, Connector, client_config};

use by_name::NameRoutes;
pub use by_name::{InvalidRoute, RoutesReloaded};
use dial::Dialer;
use targets::Targets;
pub use targets::{Balance, MAX_TARGETS, Reloaded};

/// Forwards each connection to a target endpoint, or to one of several.
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
    /// Shared: a relay is cloned for every connection, and its targets' failure marks are
    /// the whole server's.
    targets: Arc<Targets>,
    dial: Dialer,
    send_proxy: Option<Version>,
    check_interval: Option<Duration>,
    /// The path a health check asks for over HTTP; none: the connection is the check.
    check_http: Option<Arc<str>>,
    /// Consecutive checks that take a target back, and that take it out.
    check_rise: u32,
    check_fall: u32,
    /// Targets by the server name clients ask for ([`Forward::route_name`]); shared, as
    /// the targets are.
    names: Option<Arc<NameRoutes>>,
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
    /// A `tls:` target, and the system's CA store cannot be loaded to verify it.
    #[error("{0}")]
    Tls(crate::Error),
    /// A Unix target, which a proxy cannot reach ([`Forward::proxy`]).
    #[error("cannot forward to {0} through a proxy: a proxy carries tcp: and tls: targets only")]
    ThroughProxy(Endpoint),
    /// More than [`MAX_TARGETS`] targets ([`Forward::or`]).
    #[error("cannot forward to {0}: a relay takes at most {MAX_TARGETS} targets")]
    TooMany(Endpoint),
    /// An empty list of targets ([`Forward::reload_targets`]).
    #[error("a relay needs a target at least")]
    None,
    /// A `tls:` target reloaded into a relay that was made without any
    /// ([`Forward::reload_targets`]): its TLS settings are made with it.
    #[error(
        "cannot forward to {0}: the relay started with no tls: target, so it has no TLS settings for one"
    )]
    TlsAdded(Endpoint),
}

/// A path [`Forward::check_http`] cannot ask for.
#[derive(Debug, thiserror::Error)]
#[error("invalid path {0:?}: it starts with / and holds visible ASCII only (no spaces)")]
pub struct InvalidCheckPath(pub String);

impl Forward {
    /// A relay to `target` (TCP, TLS or Unix stream). A `tls:` target is verified against
    /// the system's CA store; [`Forward::tls`] takes a connector of your own.
    ///
    /// # Errors
    ///
    /// A datagram target, a target without a host, or (`tls:`) no system CA store.
    pub fn new(target: Endpoint) -> Result<Forward, UnsupportedTarget> {
        let tls = match target {
            Endpoint::Tls(_) => {
                let config =
                    client_config(&ClientOptions::default()).map_err(UnsupportedTarget::Tls)?;
                Some(Connector::new(config))
            }
            _ => None,
        };
        Forward::with(target, tls)
    }

    /// A relay to `target` whose `tls:` connections are made by `connector` (its CA, client
    /// certificate, server name and ALPN); for other targets the connector is not used.
    ///
    /// # Errors
    ///
    /// A datagram target, or a target without a host.
    pub fn tls(target: Endpoint, connector: Connector) -> Result<Forward, UnsupportedTarget> {
        Forward::with(target, Some(connector))
    }

    fn with(target: Endpoint, tls: Option<Connector>) -> Result<Forward, UnsupportedTarget> {
        let target = usable(target)?;
        Ok(Forward {
            targets: Arc::new(Targets::one(target)),
            dial: Dialer {
                tls,
                ..Dialer::default()
            },
            send_proxy: None,
            check_interval: None,
            check_http: None,
            check_rise: 1,
            check_fall: 1,
            names: None,
        })
    }

    /// Reaches the target through `proxy` (SOCKS5 or HTTP `CONNECT`, see
    /// [`crate::client::proxy`]); a `tls:` target's handshake is made inside the tunnel, and
    /// the connect timeout bounds the whole of it.
    ///
    /// # Errors
    ///
    /// A Unix target.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::Forward;
    /// let proxy = "socks5h://127.0.0.1:1080".parse().unwrap();
    /// let relay = Forward::new("db.internal:5432".parse().unwrap()).unwrap();
    /// assert!(relay.proxy(proxy).is_ok());
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Result<Forward, UnsupportedTarget> {
        let routed = self.name_routes().into_iter().map(|(_, target)| target);
        if let Some(target) = (self.targets().into_iter().chain(routed)).find(|t| !proxy_carries(t))
        {
            return Err(UnsupportedTarget::ThroughProxy(target));
        }
        self.dial.proxy = Some(Arc::new(proxy));
        Ok(self)
    }

    /// Adds `target` after the others: clients are spread over the targets by the
    /// [`Balance`] (round robin unless told), and a client whose target cannot be reached
    /// (connection, PROXY header, TLS handshake; each bounded by the connect timeout) is
    /// passed to the next, until one takes it or none is left; then it is reset. A target
    /// that failed is tried after the others for [`Forward::retry_after`] (ten seconds
    /// unless told), or until it takes a client again.
    ///
    /// A `tls:` target added to a relay made without a connector is verified against the
    /// system's CA store; one made by [`Forward::tls`] uses its connector for every `tls:`
    /// target.
    ///
    /// # Errors
    ///
    /// As [`Forward::new`]; a Unix target on a relay through a proxy; more than
    /// [`MAX_TARGETS`] targets.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::{Balance, Forward};
    /// let relay = Forward::new("127.0.0.1:9001".parse().unwrap())
    ///     .and_then(|relay| relay.or("127.0.0.1:9002".parse().unwrap()))
    ///     .unwrap()
    ///     .balance(Balance::First);
    /// assert_eq!(relay.targets().len(), 2);
    /// ```
    pub fn or(mut self, target: Endpoint) -> Result<Forward, UnsupportedTarget> {
        let target = self.reachable(target)?;
        self.connector_for(&target)?;
        if Arc::make_mut(&mut self.targets).push(target.clone()) {
            Ok(self)
        } else {
            Err(UnsupportedTarget::TooMany(target))
        }
    }

    /// How clients are spread over several targets ([`Forward::or`]).
    pub fn balance(mut self, balance: Balance) -> Forward {
        if let Some(names) = &mut self.names {
            Arc::make_mut(names).update(|targets| targets.set_balance(balance));
        }
        Arc::make_mut(&mut self.targets).set_balance(balance);
        self
    }

    /// Counts each target into `metrics`: its connections and failed attempts
    /// (`socketkit_forward_target_connections_total{target}`,
    /// `socketkit_forward_target_failures_total{target}`), whether it is up
    /// (`socketkit_forward_target_up`) and its relays open now
    /// (`socketkit_forward_target_active`). The server's own families (bytes, durations)
    /// count the client side, as for any handler.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Forward {
        if let Some(names) = &mut self.names {
            Arc::make_mut(names).update(|targets| targets.set_metrics(Arc::clone(&metrics)));
        }
        Arc::make_mut(&mut self.targets).set_metrics(metrics);
        self
    }

    /// Checks every target every `interval` ([`Forward::health_checks`]): a connection
    /// made as a client's would be (proxy, PROXY header naming no client, TLS handshake),
    /// then closed. A target that fails its check is tried after the others until a check
    /// or a client's connection succeeds; one that passes is taken again at once, whatever
    /// [`Forward::retry_after`] says.
    pub fn check_every(mut self, interval: Duration) -> Forward {
        self.check_interval = Some(interval);
        self
    }

    /// Makes each health check ([`Forward::check_every`]) an HTTP request as well:
    /// `GET path HTTP/1.1` (`Host` the target's, `Connection: close`) once connected, and
    /// only a `2xx` or `3xx` status passes (HAProxy's `option httpchk`), within the
    /// connect timeout (or the interval) again. A target that accepts connections and
    /// answers `503` while it drains, or hangs, is taken out.
    ///
    /// # Errors
    ///
    /// A path that does not start with `/` or holds anything but visible ASCII (a space
    /// or a line break would let it write headers of its own).
    pub fn check_http(mut self, path: &str) -> Result<Forward, InvalidCheckPath> {
        if !path.starts_with('/') || !path.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(InvalidCheckPath(path.to_owned()));
        }
        self.check_http = Some(path.into());
        Ok(self)
    }

    /// How many health checks in a row decide ([`Forward::check_every`]; HAProxy's `rise`
    /// and `fall`): `fall` failed checks take a target out, `rise` passing ones take it back
    /// (both 1 unless told; 0 counts as 1), so that a target that fails one check in a
    /// while, or comes back for a moment, does not flap. A client that reaches a target
    /// marked down still clears the mark at once, and a client that fails one marks it down
    /// at once, as without checks.
    pub fn check_counts(mut self, rise: u32, fall: u32) -> Forward {
        self.check_rise = rise.max(1);
        self.check_fall = fall.max(1);
        self
    }

    /// The health checks of [`Forward::check_every`], to spawn beside the server once the
    /// relay is complete (after the last builder call: a later one leaves the checks
    /// watching the relay as it was, and they stop); they end when the relay is dropped.
    /// `None` without `check_every`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use socketkit::forward::Forward;
    /// let relay = Forward::new("127.0.0.1:9001".parse().unwrap())
    ///     .and_then(|relay| relay.or("127.0.0.1:9002".parse().unwrap()))
    ///     .unwrap()
    ///     .check_every(Duration::from_secs(2));
    /// if let Some(checks) = relay.health_checks() {
    ///     tokio::spawn(checks);
    /// }
    /// // server.serve(relay).await
    /// # }
    /// ```
    pub fn health_checks(&self) -> Option<impl Future<Output = ()> + Send + use<>> {
        // tokio's interval takes no zero.
        let interval = self.check_interval?.max(Duration::from_millis(1));
        let checks = checks::Checks {
            targets: Arc::downgrade(&self.targets),
            routes: self.names.as_ref().map(Arc::downgrade),
            // Without a connect timeout, a check gives up at the next round.
            dial: Dialer {
                timeout: Some(self.dial.timeout.unwrap_or(interval)),
                ..self.dial.clone()
            },
            header: self
                .send_proxy
                .map(|version| proxy_protocol::encode(version, None, None)),
            http_path: self.check_http.clone(),
            rise: self.check_rise,
            fall: self.check_fall,
            interval,
        };
        Some(checks.run())
    }

    /// How long a target that failed is tried after the others ([`Forward::or`]).
    pub fn retry_after(mut self, retry_after: Duration) -> Forward {
        if let Some(names) = &mut self.names {
            Arc::make_mut(names).update(|targets| targets.set_retry_after(retry_after));
        }
        Arc::make_mut(&mut self.targets).set_retry_after(retry_after);
        self
    }

    /// Bounds each connection attempt to the target.
    pub fn connect_timeout(mut self, timeout: Duration) -> Forward {
        self.dial.timeout = Some(timeout);
        self
    }

    /// Starts each connection to the target with a PROXY protocol header of `version`
    /// (SPEC §3.3: `forward --send-proxy v1|v2`): the client's address and the address it
    /// connected to. A client of a Unix socket has no IP address to name; its header says so
    /// (v1 `UNKNOWN`, v2 `LOCAL`).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::Forward;
    /// use socketkit::proxy_protocol::Version;
    /// let relay = Forward::new("127.0.0.1:8080".parse().unwrap()).unwrap().send_proxy(Version::V2);
    /// # let _ = relay;
    /// ```
    pub fn send_proxy(mut self, version: Version) -> Forward {
        self.send_proxy = Some(version);
        self
    }

    /// The proxy the target is reached through, if any.
    pub fn through(&self) -> Option<&Proxy> {
        self.dial.proxy.as_deref()
    }

    /// The (first) target endpoint.
    pub fn target(&self) -> Endpoint {
        // A relay has one target at least: made with one, and a reload takes no empty list.
        self.targets().swap_remove(0)
    }

    /// Every target in force, in the order given.
    pub fn targets(&self) -> Vec<Endpoint> {
        self.targets.endpoints()
    }

    /// Puts `targets` in force in place of the relay's for the clients that come next
    /// (every clone of the relay: they share their targets): SIGHUP's reload of
    /// `forward --to-file`. A target in both lists keeps what is known of it — its failure
    /// mark, its open connections for [`Balance::LeastConnections`], its counters — and
    /// relays already running go on to whichever target they have. The balance, timeouts,
    /// proxy and TLS settings stay; so do the health checks, which check the new list from
    /// their next round.
    ///
    /// # Errors
    ///
    /// Nothing changes when the list is empty or longer than [`MAX_TARGETS`], or names a
    /// target the relay cannot reach: as [`Forward::or`] refuses them, and a `tls:` target
    /// on a relay that was made with none (its TLS connector is made with the relay).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::Forward;
    /// let relay = Forward::new("127.0.0.1:9001".parse().unwrap()).unwrap();
    /// let serving = relay.clone();
    /// let changed = relay
    ///     .reload_targets(vec!["127.0.0.1:9001".parse().unwrap(), "127.0.0.1:9002".parse().unwrap()])
    ///     .unwrap();
    /// assert_eq!(changed.added, ["127.0.0.1:9002".parse().unwrap()]);
    /// assert_eq!(serving.targets().len(), 2);
    /// ```
    pub fn reload_targets(&self, targets: Vec<Endpoint>) -> Result<Reloaded, UnsupportedTarget> {
        if targets.is_empty() {
            return Err(UnsupportedTarget::None);
        }
        if let Some(extra) = targets.get(MAX_TARGETS) {
            return Err(UnsupportedTarget::TooMany(extra.clone()));
        }
        let targets = targets
            .into_iter()
            .map(|target| match self.reachable(target)? {
                tls @ Endpoint::Tls(_) if self.dial.tls.is_none() => {
                    Err(UnsupportedTarget::TlsAdded(tls))
                }
                target => Ok(target),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.targets.reload(targets))
    }

    /// Puts `config` in force for the `tls:` targets' handshakes that start from now on
    /// (every clone of the relay: they share the connector): a renewed client certificate,
    /// new CAs. Relays already running keep their sessions. Returns `false`, changing
    /// nothing, on a relay that has no `tls:` target.
    pub fn reload_tls(&self, config: Arc<rustls::ClientConfig>) -> bool {
        match &self.dial.tls {
            Some(connector) => {
                connector.replace_config(config);
                true
            }
            None => false,
        }
    }

    /// Makes the connector of the `tls:` targets if `target` is the first: verifying
    /// against the system's CA store.
    pub(crate) fn connector_for(&mut self, target: &Endpoint) -> Result<(), UnsupportedTarget> {
        if matches!(target, Endpoint::Tls(_)) && self.dial.tls.is_none() {
            let config =
                client_config(&ClientOptions::default()).map_err(UnsupportedTarget::Tls)?;
            self.dial.tls = Some(Connector::new(config));
        }
        Ok(())
    }

    /// `target`, if this relay can connect to it: a stream target with a host, and one its
    /// proxy (if any) carries.
    pub(crate) fn reachable(&self, target: Endpoint) -> Result<Endpoint, UnsupportedTarget> {
        let target = usable(target)?;
        if self.dial.proxy.is_some() && !proxy_carries(&target) {
            return Err(UnsupportedTarget::ThroughProxy(target));
        }
        Ok(target)
    }

    /// How clients are spread over the targets.
    pub fn balancing(&self) -> Balance {
        self.targets.balance()
    }
}

/// `target`, if a stream relay can connect to it.
fn usable(target: Endpoint) -> Result<Endpoint, UnsupportedTarget> {
    if !target.transport().is_stream() {
        return Err(UnsupportedTarget::Datagram(target));
    }
    if target.host_port().is_some_and(|hp| hp.host == Host::Any) {
        return Err(UnsupportedTarget::NoHost(target));
    }
    Ok(target)
}

/// Whether a proxy can carry a connection to `target`.
fn proxy_carries(target: &Endpoint) -> bool {
    matches!(target, Endpoint::Tcp(_) | Endpoint::Tls(_))
}
