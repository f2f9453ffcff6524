//! The server's metering for a listener that a program accepts on itself, without a
//! [`Server`](super::Server): `socketkit listen`, which takes one peer at a time on a
//! blocking socket. Its connections are counted in the same metrics and leave the same
//! `-v` lines as a server's — `peer`, `local`, `listener`, `bytes_in`, `bytes_out`,
//! `duration_ms` (SPEC §3.5) — because these types are the server's own meter behind a
//! public face, not a second copy of its event.

use std::sync::Arc;

use super::meter::{ListenerMeter, Meter, log_refusal};
use crate::metrics::{Metrics, RefusalReason};
use crate::socket::Address;

/// A listener's name and metric handles, for connections accepted outside a server.
#[derive(Debug)]
pub struct MeteredListener {
    meter: Arc<ListenerMeter>,
}

impl MeteredListener {
    /// The listener called `name` — its endpoint as the `listening on` line prints it, the
    /// `listener` field of its log lines and label of its metrics — counted in `metrics`,
    /// if given.
    pub fn new(name: String, metrics: Option<&Arc<Metrics>>) -> MeteredListener {
        MeteredListener {
            meter: ListenerMeter::new(name, metrics),
        }
    }

    /// Counts a connection taken off the listener, before any admission rule.
    pub fn accepted(&self) {
        self.meter.accepted();
    }

    /// Counts a connection refused for `reason` (the caller logs why).
    pub fn refused(&self, reason: RefusalReason) {
        self.meter.refused(reason);
    }

    /// Counts a connection from `peer` refused for `reason` before it was served (an
    /// access rule, a PROXY header), and logs it at `-v` as a server logs its refusals:
    /// `refused: DETAIL` with `peer` (an IPv4-mapped address as the IPv4 one), `local`,
    /// `listener` and `reason`. `local` is asked only when that line is logged.
    pub fn refuse(
        &self,
        peer: &Address,
        local: impl FnOnce() -> Option<Address>,
        reason: RefusalReason,
        detail: &str,
    ) {
        self.meter.refused(reason);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let local = local().map(Address::to_canonical);
            let name = Some(self.meter.name());
            log_refusal(
                &peer.clone().to_canonical(),
                local.as_ref(),
                name,
                reason,
                detail,
            );
        }
    }

    /// Starts metering a connection from `peer` (the PROXY header's client, if one named
    /// it; an IPv4-mapped address as the IPv4 one): counted as open from now on. `local`,
    /// the address the client connected to, is asked only when the debug log (`-v`) is on,
    /// for the lines that name it.
    pub fn connection(
        &self,
        peer: Address,
        local: impl FnOnce() -> Option<Address>,
    ) -> MeteredConnection {
        // An IPv4 client of a dual-stack listener is named as IPv4, as a server names it.
        let local = || local().map(Address::to_canonical);
        MeteredConnection {
            meter: Meter::start(peer.to_canonical(), &self.meter, local),
        }
    }
}

/// One connection of a [`MeteredListener`]: open in the metrics until it drops, when its
/// duration and bytes are counted and, at `-v`, its `closed` line is logged.
#[derive(Debug)]
pub struct MeteredConnection {
    meter: Meter,
}

impl MeteredConnection {
    /// The client's address.
    pub fn peer(&self) -> &Address {
        self.meter.peer()
    }

    /// Logs at `-v` that the connection was accepted: `connection from PEER`, with the
    /// fields `peer`, `local` and `listener`.
    pub fn log_accepted(&self) {
        self.meter.log_accepted();
    }

    /// Counts `n` bytes received from the client.
    pub fn received(&mut self, n: u64) {
        self.meter.received(as_usize(n));
    }

    /// Counts `n` bytes sent to the client.
    pub fn sent(&mut self, n: u64) {
        self.meter.sent(as_usize(n));
    }

    /// Ends the connection as refused for `reason` after all (a TLS handshake that failed):
    /// counted among its listener's refusals and not in the duration histogram, which is
    /// for served connections, and logged at `-v` as `refused: DETAIL` in place of a
    /// `closed` line.
    pub fn refuse(mut self, reason: RefusalReason, detail: &str) {
        let listener = self.meter.listener_name();
        log_refusal(
            self.meter.peer(),
            self.meter.local(),
            listener,
            reason,
            detail,
        );
        self.meter.refused(reason);
    }

    /// From now on the connection's bytes pass elsewhere (its socket was handed to a
    /// program): nothing more is counted, and the closing line leaves the bytes out
    /// rather than give a count that would be wrong.
    pub fn stop_counting_bytes(&mut self) {
        self.meter.stop_counting_bytes();
    }
}

/// `n` as a `usize`: the meter counts in the sizes reads and writes return. A count past
/// `usize::MAX` (only on a 32-bit target) saturates rather than wraps.
fn as_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_counts_into_its_listener_until_it_drops() {
        let metrics = Metrics::new();
        let listener = MeteredListener::new("tcp:127.0.0.1:9".into(), Some(&metrics));
        listener.accepted();
        let peer = Address::from(std::net::SocketAddr::from(([192, 0, 2, 7], 4000)));
        let mut connection = listener.connection(peer.clone(), || None);
        assert_eq!(connection.peer(), &peer);
        connection.received(5);
        connection.sent(3);
        let active = "socketkit_connections_active{listener=\"tcp:127.0.0.1:9\"}";
        assert!(metrics.render().contains(&format!("{active} 1")));
        drop(connection);
        listener.refused(RefusalReason::Acl);
        let text = metrics.render();
        for line in [
            format!("{active} 0"),
            "socketkit_bytes_received_total{listener=\"tcp:127.0.0.1:9\"} 5".into(),
            "socketkit_bytes_sent_total{listener=\"tcp:127.0.0.1:9\"} 3".into(),
            "socketkit_connections_refused_total{listener=\"tcp:127.0.0.1:9\",reason=\"acl\"} 1"
                .into(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
