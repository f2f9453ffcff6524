//! Routing by the server name a TLS client asks for (SNI): each name (or `*.` wildcard)
//! has a target of its own, and clients that ask for no name, or for one no route has, go
//! to the relay's other targets. On a plain listener the relay does not terminate TLS: it
//! reads the client's ClientHello, chooses, and sends the target the very bytes it read
//! before relaying the rest (HAProxy's `req.ssl_sni`, nginx's `ssl_preread`), so each
//! backend keeps its own certificate. On a `tls:` listener the name is the one of the
//! session the relay terminated.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::server::Connection;
use crate::tls::{ClientHelloError, ServerNames, read_client_hello};

use super::targets::Targets;

/// The routes of a relay, by name.
#[derive(Debug, Clone)]
pub(crate) struct NameRoutes {
    names: ServerNames<Arc<Targets>>,
    /// How long a client on a plain listener may take to send its ClientHello.
    pub(crate) wait: Duration,
}

/// Where one client goes: to a route's targets (`None`: the relay's own), after `hello`,
/// the bytes read to learn the name it asked for.
#[derive(Debug)]
pub(crate) struct Route<'a> {
    pub(crate) targets: Option<&'a Targets>,
    pub(crate) hello: Vec<u8>,
}

impl NameRoutes {
    /// Ten seconds, as a `tls:` listener's handshake.
    pub(crate) const WAIT: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> NameRoutes {
        NameRoutes {
            names: ServerNames::default(),
            wait: NameRoutes::WAIT,
        }
    }

    /// Adds a route; `false` when `pattern` has one already.
    pub(crate) fn insert(&mut self, pattern: &str, targets: Targets) -> bool {
        self.names.insert(pattern, Arc::new(targets))
    }

    /// Every route's pattern and targets, sorted by pattern.
    pub(crate) fn routes(&self) -> Vec<(String, &Targets)> {
        let mut routes: Vec<_> = (self.names.iter())
            .map(|(pattern, targets)| (pattern, &**targets))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        routes
    }

    /// Counts the routes' targets into `metrics`, as the relay's own.
    pub(crate) fn set_metrics(&mut self, metrics: &Arc<Metrics>) {
        for targets in self.names.values_mut() {
            Arc::make_mut(targets).set_metrics(Arc::clone(metrics));
        }
    }

    /// The route for `client`: by its TLS session's name on a `tls:` listener, else by the
    /// ClientHello read off it (within [`NameRoutes::wait`]).
    ///
    /// # Errors
    ///
    /// The client's first bytes are not a ClientHello, or it took too long to send it.
    pub(crate) async fn route(&self, client: &mut Connection) -> Result<Route<'_>, RouteError> {
        let (name, hello) = if client.is_tls() {
            (client.server_name().map(str::to_owned), Vec::new())
        } else {
            let hello = tokio::time::timeout(self.wait, read_client_hello(client))
                .await
                .map_err(|_| RouteError::Slow(self.wait))??;
            (hello.server_name, hello.bytes)
        };
        let targets = name
            .as_deref()
            .and_then(|name| self.names.get(name))
            .map(|targets| &**targets);
        let to = match targets {
            Some(_) => "its route",
            None => "the other targets",
        };
        let asked = name.as_deref().unwrap_or("(none)");
        tracing::trace!(peer = %client.peer_addr(), "server name {asked}: {to}");
        Ok(Route { targets, hello })
    }
}

/// Why a client could not be routed by name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error(transparent)]
    Hello(#[from] ClientHelloError),
    #[error("the client sent no ClientHello within {}", humantime::format_duration(*.0))]
    Slow(Duration),
}
