//! Routing by the server name a TLS client asks for (SNI): each name (or `*.` wildcard)
//! has a target of its own, and clients that ask for no name, or for one no route has, go
//! to the relay's other targets. On a plain listener the relay does not terminate TLS: it
//! reads the client's ClientHello, chooses, and sends the target the very bytes it read
//! before relaying the rest (HAProxy's `req.ssl_sni`, nginx's `ssl_preread`), so each
//! backend keeps its own certificate. On a `tls:` listener the name is the one of the
//! session the relay terminated.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::endpoint::Endpoint;
use crate::metrics::RefusalReason;
use crate::server::Connection;
use crate::tls::{
    ClientHelloError, InvalidServerName, ServerNames, check_server_name, read_client_hello,
};

use super::targets::{MAX_TARGETS, Targets};
use super::{Forward, UnsupportedTarget};

/// A route by server name that [`Forward::route_name`] cannot add.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRoute {
    /// Not a name a client can ask for.
    #[error(transparent)]
    Name(#[from] InvalidServerName),
    /// A reload of a relay that does not route by name ([`Forward::reload_name_routes`]).
    #[error("the relay does not route by server name (it started with no route)")]
    NotRouting,
    /// The target cannot be relayed to.
    #[error(transparent)]
    Target(#[from] UnsupportedTarget),
}

impl Forward {
    /// Sends the clients that ask for the server name `pattern` (SNI, in their TLS
    /// handshake) to `target` instead of the relay's targets, which keep the clients that
    /// ask for no name or for one no route has. `pattern` is a DNS name, or `*.` and a name
    /// for any one label in front of it (`*.example.com`: `shop.example.com`, not
    /// `example.com`); case does not count, and an exact name wins over a wildcard. A
    /// pattern given again adds a target to its route: the route's clients are spread over
    /// its targets by the relay's [`Balance`](super::Balance), and one that cannot be
    /// reached passes its client to the next, as with the relay's own targets.
    ///
    /// On a plain listener the relay does not terminate TLS: it reads the client's
    /// ClientHello (within [`Forward::name_wait`]), and the target gets it and the rest of
    /// the handshake as the client sent them, so it answers with its own certificate; a
    /// client whose first bytes are not a ClientHello is reset. On a `tls:` listener the
    /// name is the terminated session's.
    ///
    /// The route's target has the relay's connect timeout, proxy, PROXY header and TLS
    /// settings, and its own failure mark; health checks ([`Forward::check_every`]) check
    /// it by connection only ([`Forward::check_http`]'s request goes to the relay's own
    /// targets: behind a plain listener a route's target speaks its clients' TLS).
    ///
    /// # Errors
    ///
    /// A pattern no client can ask for, a target [`Forward::or`] would refuse, or more
    /// than [`MAX_TARGETS`] targets for one pattern.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::Forward;
    /// let relay = Forward::new("127.0.0.1:8443".parse().unwrap())
    ///     .unwrap()
    ///     .route_name("shop.example.com", "127.0.0.1:9443".parse().unwrap())
    ///     .and_then(|relay| relay.route_name("*.example.org", "127.0.0.1:9444".parse().unwrap()))
    ///     .unwrap();
    /// assert_eq!(relay.name_routes().len(), 2);
    /// // A second target for a name: the two take its clients in turn.
    /// let pooled = relay.clone().route_name("SHOP.example.com", "127.0.0.1:9445".parse().unwrap()).unwrap();
    /// assert_eq!(pooled.name_routes().len(), 3);
    /// assert!(relay.route_name("10.0.0.1", "127.0.0.1:1".parse().unwrap()).is_err());
    /// ```
    pub fn route_name(mut self, pattern: &str, target: Endpoint) -> Result<Forward, InvalidRoute> {
        check_server_name(pattern)?;
        let target = self.reachable(target)?;
        self.connector_for(&target)?;
        let like = Arc::clone(&self.targets);
        let names = (self.names).get_or_insert_with(|| Arc::new(NameRoutes::new()));
        Arc::make_mut(names).add(pattern, target, &like)?;
        Ok(self)
    }

    /// How long a client on a plain listener may take to send its ClientHello when the
    /// relay routes by name ([`Forward::route_name`]); ten seconds unless told. One that
    /// takes longer is reset.
    pub fn name_wait(mut self, wait: Duration) -> Forward {
        if let Some(names) = &mut self.names {
            Arc::make_mut(names).wait = wait;
        }
        self
    }

    /// Routes by server name even with no route yet, so that [`Forward::reload_name_routes`]
    /// can add some: every client of a plain listener must then start with a ClientHello.
    pub fn route_by_name(mut self) -> Forward {
        self.names
            .get_or_insert_with(|| Arc::new(NameRoutes::new()));
        self
    }

    /// Puts `routes` (pattern and target, as [`Forward::route_name`] takes them) in force
    /// in place of the relay's routes by name, for the clients that come next, on every
    /// clone of the relay: SIGHUP's reload of `forward --sni-route-file`. A route in both
    /// tables (the same pattern to the same target) keeps its failure mark and counters;
    /// relays already running go on.
    ///
    /// # Errors
    ///
    /// Nothing changes when a route is one [`Forward::route_name`] would refuse, when a
    /// `tls:` target joins a relay made with none (its TLS settings are made with it), or
    /// when the relay does not route by name ([`Forward::route_by_name`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::forward::Forward;
    /// let relay = Forward::new("127.0.0.1:8443".parse().unwrap())
    ///     .unwrap()
    ///     .route_name("a.test", "127.0.0.1:9001".parse().unwrap())
    ///     .unwrap();
    /// let serving = relay.clone();
    /// let changed = relay
    ///     .reload_name_routes(vec![("b.test".into(), "127.0.0.1:9002".parse().unwrap())])
    ///     .unwrap();
    /// assert_eq!(changed.removed, [("a.test".to_owned(), "127.0.0.1:9001".parse().unwrap())]);
    /// assert_eq!(serving.name_routes(), changed.added);
    /// ```
    pub fn reload_name_routes(
        &self,
        routes: Vec<(String, Endpoint)>,
    ) -> Result<RoutesReloaded, InvalidRoute> {
        let Some(names) = &self.names else {
            return Err(InvalidRoute::NotRouting);
        };
        let routes = routes
            .into_iter()
            .map(|(pattern, target)| {
                check_server_name(&pattern)?;
                match self.reachable(target)? {
                    tls @ Endpoint::Tls(_) if self.dial.tls.is_none() => {
                        Err(UnsupportedTarget::TlsAdded(tls).into())
                    }
                    target => Ok((pattern, target)),
                }
            })
            .collect::<Result<Vec<_>, InvalidRoute>>()?;
        let old = names.table.load_full();
        let table = table_of(routes, &old, &self.targets)?;
        let pairs = |table: &Table| -> HashSet<(String, Endpoint)> {
            (table.iter())
                .flat_map(|(pattern, targets)| {
                    (targets.endpoints().into_iter()).map(move |e| (pattern.clone(), e))
                })
                .collect()
        };
        let (before, after) = (pairs(&old), pairs(&table));
        let mut added: Vec<_> = after.difference(&before).cloned().collect();
        let mut removed: Vec<_> = before.difference(&after).cloned().collect();
        let by_route = |a: &(String, Endpoint), b: &(String, Endpoint)| {
            (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string()))
        };
        added.sort_by(by_route);
        removed.sort_by(by_route);
        if let Some(metrics) = self.targets.metrics() {
            // A series goes with the last route or target that counts into it.
            let own = self.targets.endpoints();
            let in_use: HashSet<&Endpoint> =
                (after.iter().map(|(_, e)| e)).chain(own.iter()).collect();
            for (_, endpoint) in &removed {
                if !in_use.contains(endpoint) {
                    metrics.forget_forward_target(&endpoint.to_string());
                }
            }
        }
        names.table.store(Arc::new(table));
        Ok(RoutesReloaded { added, removed })
    }

    /// The routes by server name, sorted by name: each pattern and its target.
    pub fn name_routes(&self) -> Vec<(String, Endpoint)> {
        self.names
            .as_ref()
            .map(|names| names.routes())
            .unwrap_or_default()
    }
}

/// What [`Forward::reload_name_routes`] changed: routes (pattern and target) that are new,
/// and routes that are gone, each sorted by pattern. A route whose target changed is in
/// both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesReloaded {
    /// Routes the new table has and the old did not.
    pub added: Vec<(String, Endpoint)>,
    /// Routes the old table had and the new does not.
    pub removed: Vec<(String, Endpoint)>,
}

/// The routes of a relay, by name: one table, swapped whole by a reload, so that a client
/// is routed by one table or the other, never a mix.
#[derive(Debug)]
pub(crate) struct NameRoutes {
    table: ArcSwap<Table>,
    /// How long a client on a plain listener may take to send its ClientHello.
    pub(crate) wait: Duration,
}

type Table = ServerNames<Arc<Targets>>;

/// A builder's copy: a table of its own (marks and counters start from the original's).
impl Clone for NameRoutes {
    fn clone(&self) -> NameRoutes {
        let mut table = Table::clone(&self.table.load());
        for targets in table.values_mut() {
            *targets = Arc::new(Targets::clone(targets));
        }
        NameRoutes {
            table: ArcSwap::from_pointee(table),
            wait: self.wait,
        }
    }
}

/// Where one client goes: to a route's targets (`None`: the relay's own), after `hello`,
/// the bytes read to learn the name it asked for. The default: the relay's own targets,
/// nothing read.
#[derive(Debug, Default)]
pub(crate) struct Route {
    pub(crate) targets: Option<Arc<Targets>>,
    pub(crate) hello: Vec<u8>,
    /// The name the client asked for.
    pub(crate) name: Option<String>,
}

impl NameRoutes {
    /// Ten seconds, as a `tls:` listener's handshake.
    pub(crate) const WAIT: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> NameRoutes {
        NameRoutes {
            table: ArcSwap::from_pointee(Table::default()),
            wait: NameRoutes::WAIT,
        }
    }

    /// Every route's pattern and endpoint, sorted by pattern.
    pub(crate) fn routes(&self) -> Vec<(String, Endpoint)> {
        let table = self.table.load();
        let mut routes: Vec<_> = (table.iter())
            .flat_map(|(pattern, targets)| {
                (targets.endpoints().into_iter()).map(move |target| (pattern.clone(), target))
            })
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        routes
    }

    /// Each route's targets as they are now, for a round of health checks.
    pub(crate) fn snapshots(&self) -> Vec<Arc<super::targets::List>> {
        (self.table.load().iter())
            .map(|(_, targets)| targets.snapshot())
            .collect()
    }

    /// Changes every route's targets as `change` says (the builder's settings, which apply
    /// to the routes as to the relay's own targets).
    pub(crate) fn update(&mut self, change: impl Fn(&mut Targets)) {
        let mut table = Table::clone(&self.table.load());
        for targets in table.values_mut() {
            let mut changed = Targets::clone(targets);
            change(&mut changed);
            *targets = Arc::new(changed);
        }
        self.table.store(Arc::new(table));
    }

    /// Adds `target` to the route of `pattern` (a new route, spread and failed over as
    /// `like`), in the builder's own table: taken rather than copied, as no client routes
    /// by it yet.
    fn add(&mut self, pattern: &str, target: Endpoint, like: &Targets) -> Result<(), InvalidRoute> {
        let mut table = Arc::try_unwrap(self.table.swap(Arc::default()))
            .unwrap_or_else(|shared| Table::clone(&shared));
        let added = match table.pattern_mut(pattern) {
            Some(targets) => Arc::make_mut(targets).push(target.clone()),
            None => table.insert(pattern, Arc::new(pooled(vec![target.clone()], like))),
        };
        self.table.store(Arc::new(table));
        match added {
            true => Ok(()),
            false => Err(UnsupportedTarget::TooMany(target).into()),
        }
    }

    /// The route for `client`: by its TLS session's name on a `tls:` listener, else by the
    /// ClientHello read off it (within [`NameRoutes::wait`]). `None` when there is none to
    /// take: the client closed before its first byte (a TCP health check: closed quietly),
    /// or its first bytes are not a ClientHello in time (reset, logged at `-v` as the
    /// admission stages' refusals are, and counted as a failed handshake).
    pub(crate) async fn route(&self, client: &mut Connection) -> Option<Route> {
        match self.read_route(client).await {
            Ok(route) => Some(route),
            Err(err) if err.is_quiet_close() => {
                tracing::debug!(peer = %client.peer_addr(), "closed before its ClientHello");
                None
            }
            Err(err) => {
                // Counted before the line, which a reader may wait for.
                client.meter_mut().refused(RefusalReason::Tls);
                tracing::debug!(peer = %client.peer_addr(), "cannot route by server name: {err}; resetting the client");
                client.reset_on_close();
                None
            }
        }
    }

    async fn read_route(&self, client: &mut Connection) -> Result<Route, RouteError> {
        let (name, hello) = if client.is_tls() {
            (client.server_name().map(str::to_owned), Vec::new())
        } else {
            // The wait counts time the relay ran: a ClientHello that came while it was
            // stopped is in time.
            let hello =
                crate::net::within_running(self.wait, std::pin::pin!(read_client_hello(client)))
                    .await
                    .ok_or(RouteError::Slow(self.wait))??;
            (hello.server_name, hello.bytes)
        };
        let targets = name
            .as_deref()
            .and_then(|name| self.table.load().get(name).cloned());
        let to = match targets {
            Some(_) => "its route",
            None => "the other targets",
        };
        let asked = name.as_deref().unwrap_or("(none)");
        tracing::trace!(peer = %client.peer_addr(), "server name {asked}: {to}");
        Ok(Route {
            targets,
            hello,
            name,
        })
    }
}

/// The table `routes` make: the targets of one pattern pooled into one route, in the order
/// given, spread and failed over as the relay's own (`like`: its balance, retry and
/// metrics); a route whose list `old` has already keeps its targets, marks and counters.
fn table_of(
    routes: Vec<(String, Endpoint)>,
    old: &Table,
    like: &Targets,
) -> Result<Table, InvalidRoute> {
    let mut lists: Vec<(String, Vec<Endpoint>)> = Vec::new();
    let mut at = std::collections::HashMap::new();
    for (pattern, target) in routes {
        let pattern = pattern.to_ascii_lowercase();
        let slot = *at.entry(pattern.clone()).or_insert_with(|| {
            lists.push((pattern, Vec::new()));
            lists.len() - 1
        });
        let list = &mut lists[slot].1;
        if list.len() == MAX_TARGETS {
            return Err(UnsupportedTarget::TooMany(target).into());
        }
        list.push(target);
    }
    let mut table = Table::default();
    for (pattern, endpoints) in lists {
        let kept = (old.pattern(&pattern)).filter(|targets| targets.endpoints() == endpoints);
        let targets = match kept {
            Some(targets) => Arc::clone(targets),
            None => Arc::new(pooled(endpoints, like)),
        };
        table.insert(&pattern, targets);
    }
    Ok(table)
}

/// One route's targets, `endpoints` (one at least, at most [`MAX_TARGETS`]) in order,
/// spread and failed over as `like` (the relay's own: its balance, retry and metrics).
fn pooled(endpoints: Vec<Endpoint>, like: &Targets) -> Targets {
    let mut endpoints = endpoints.into_iter();
    // Callers pool one endpoint at least; an empty list would be a route to nowhere.
    let first = endpoints.next().expect("a route has a target");
    let mut targets = Targets::one(first);
    for endpoint in endpoints {
        targets.push(endpoint);
    }
    targets.set_balance(like.balance());
    targets.set_retry_after(like.retry_after());
    if let Some(metrics) = like.metrics() {
        targets.set_metrics(Arc::clone(metrics));
    }
    targets
}

/// Why a client could not be routed by name.
#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error(transparent)]
    Hello(#[from] ClientHelloError),
    #[error("the client sent no ClientHello within {}", humantime::format_duration(*.0))]
    Slow(Duration),
}

impl RouteError {
    /// Whether the client closed without sending a byte, as a load balancer's TCP check
    /// does: nothing to route, nothing lost, nothing to warn of.
    fn is_quiet_close(&self) -> bool {
        matches!(self, RouteError::Hello(ClientHelloError::Closed(0)))
    }
}
