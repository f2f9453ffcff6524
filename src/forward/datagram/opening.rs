//! A new client of the datagram relay: admitted by the access rules and per-source limits,
//! given the next target in turn and an upstream socket connected to it, counted, and its
//! answering task started; and the targets resolved (names off the runtime's threads, and,
//! after a reload, off the receive loop).

use std::io;
use std::sync::Arc;

use tokio::time::Instant;

use super::BoundDatagramForward;
use super::session::{Client, Clients, answer};
use super::turns::{Target, Turns};
use crate::access::SourceSlot;
use crate::endpoint::{Endpoint, Host};
use crate::error::{Error, Op, Result};
use crate::net::{self, ConnectedDatagram};
use crate::socket::Address;

/// Targets as given, each with the address it resolved to.
pub(super) type Resolved = Vec<(Endpoint, Address)>;

/// A reloaded list being resolved off the relay's loop: the list, and its lookups' task.
pub(super) type Resolving = (
    Arc<Vec<Endpoint>>,
    tokio::task::JoinHandle<Result<Resolved>>,
);

/// Each of `targets` resolved.
pub(super) async fn resolve(targets: Arc<Vec<Endpoint>>) -> Result<Resolved> {
    let mut resolved = Vec::with_capacity(targets.len());
    for target in targets.iter() {
        resolved.push((target.clone(), resolve_target(target).await?));
    }
    Ok(resolved)
}

/// Whether resolving `targets` asks the system's resolver (a host name among them), which
/// can take as long as the resolver's timeouts; addresses and paths resolve at once.
pub(super) fn names_a_host(targets: &[Endpoint]) -> bool {
    targets
        .iter()
        .any(|target| matches!(target.host_port().map(|hp| &hp.host), Some(Host::Name(_))))
}

/// Waits for `resolving` (for ever without one), and then has none: the list, and what it
/// resolved to.
pub(super) async fn settled(
    resolving: &mut Option<Resolving>,
) -> (Arc<Vec<Endpoint>>, Result<Resolved>) {
    let Some((_, handle)) = resolving.as_mut() else {
        return std::future::pending().await;
    };
    let outcome = handle
        .await
        .map_err(|err| Error::without_target(Op::Connect, io::Error::other(err)))
        .and_then(|resolved| resolved);
    let list = resolving.take().map(|(list, _)| list).unwrap_or_default();
    (list, outcome)
}

impl BoundDatagramForward {
    /// `resolved` as the relay's targets, each with its counters (made now: a list that
    /// never comes in force leaves no series behind).
    pub(super) fn counted(&self, resolved: Resolved) -> Vec<Target> {
        resolved
            .into_iter()
            .map(|(endpoint, address)| {
                let counted = self
                    .relay
                    .metrics
                    .as_ref()
                    .map(|metrics| metrics.forward_target(&endpoint.to_string()));
                Target::new(endpoint, address, counted)
            })
            .collect()
    }

    /// A reloaded list `resolved`: in force for the clients that come next, or, when it
    /// does not resolve, said.
    pub(super) fn put_in_force(&self, resolved: Result<Resolved>, turns: &mut Turns) {
        match resolved {
            Ok(targets) => turns.targets = self.counted(targets),
            Err(err) => tracing::warn!(
                "{}: new clients go to the targets before the reload: {err}",
                self.local
            ),
        }
    }

    /// The client of `from`, opening its upstream socket to the next target in turn if it is
    /// new (and there is room); `place`, its place in its source's count when it has one
    /// already (a fresh socket for a client relayed before).
    pub(super) fn client(
        &self,
        clients: &Clients,
        from: &Address,
        turns: &mut Turns,
        tasks: &mut tokio::task::JoinSet<()>,
        place: Option<Option<SourceSlot>>,
    ) -> Option<Arc<Client>> {
        {
            let map = clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(client) = map.get(from) {
                return Some(Arc::clone(client));
            }
            if map.len() >= self.relay.max_clients {
                if let Some(metrics) = &self.metrics {
                    metrics.dropped_past_max_connections();
                }
                tracing::debug!(
                    client = %from.clone().to_canonical(),
                    "dropped a datagram: --max-connections clients"
                );
                return None;
            }
        }
        let place = match place {
            Some(place) => place,
            None => self.relay.admission.place(from, self.metrics.as_ref())?,
        };
        let turn = turns.next(from);
        let upstream = match ConnectedDatagram::open(&turn.address) {
            Ok(upstream) => upstream,
            Err(err) => {
                // A datagram the target could not be sent (a Unix target's socket gone, a
                // log daemon restarting) is its failure, as a UDP target's refusal is.
                if let Some(metrics) = &turn.metrics
                    && !crate::net::is_resource_exhaustion(&err)
                {
                    metrics.failed.inc();
                    metrics.up.set(0);
                }
                // Once per shortage, not per datagram: a flood of new source ports near the
                // descriptor limit fails every one.
                turn.shortage.failed(from, &turn.endpoint, &err);
                return None;
            }
        };
        if let Some(metrics) = &turn.metrics {
            metrics.up.set(1);
        }
        turn.shortage.opened(&turn.endpoint);
        let (target, target_metrics) = (Arc::clone(&turn.address), turn.metrics.clone());
        tracing::debug!(
            client = %from.clone().to_canonical(),
            "new client, relayed to {}",
            turn.endpoint
        );
        let metered = self.metrics.as_ref().map(|metrics| {
            metrics.accepted.inc();
            metrics.active.inc();
            (metrics.clone(), Instant::now())
        });
        if let Some(metrics) = &target_metrics {
            metrics.connected.inc();
            metrics.active.inc();
        }
        let client = Arc::new(Client::new(
            upstream,
            target,
            metered,
            target_metrics,
            place,
        ));
        clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(from.clone(), Arc::clone(&client));
        tasks.spawn(answer(
            Arc::clone(&self.socket),
            Arc::clone(&client),
            from.clone(),
            Arc::clone(clients),
            self.relay.idle_timeout,
        ));
        Some(client)
    }
}

/// The target's first address (a name resolved off the runtime's threads).
async fn resolve_target(target: &Endpoint) -> Result<Address> {
    let target = target.clone();
    let found = net::on_blocking_pool(move || net::candidates(&target, None))
        .await
        .map_err(|err| Error::without_target(Op::Connect, err))??;
    found
        .into_iter()
        .next()
        .ok_or_else(|| Error::without_target(Op::Connect, io::ErrorKind::AddrNotAvailable.into()))
}
