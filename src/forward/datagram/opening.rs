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
use crate::metrics::Metrics;
use crate::net::{self, ConnectedDatagram};
use crate::socket::Address;

/// A list of targets and, once resolved, what it resolved to.
pub(super) type Resolving = tokio::task::JoinHandle<Result<Vec<Target>>>;

/// Each of `targets` resolved, with its counters in `metrics`.
pub(super) async fn resolve(
    metrics: Option<Arc<Metrics>>,
    targets: Arc<Vec<Endpoint>>,
) -> Result<Vec<Target>> {
    let mut resolved = Vec::with_capacity(targets.len());
    for target in targets.iter() {
        let counted = metrics
            .as_ref()
            .map(|metrics| metrics.forward_target(&target.to_string()));
        let address = resolve_target(target).await?;
        resolved.push(Target::new(target.clone(), address, counted));
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

/// Waits for `resolving` (for ever without one), and then has none.
pub(super) async fn settled(resolving: &mut Option<Resolving>) -> Result<Vec<Target>> {
    let Some(handle) = resolving.as_mut() else {
        return std::future::pending().await;
    };
    let outcome = handle.await;
    *resolving = None;
    outcome.map_err(|err| Error::without_target(Op::Connect, io::Error::other(err)))?
}

impl BoundDatagramForward {
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
