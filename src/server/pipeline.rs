//! The connection pipeline: after accept, an ordered chain of admission stages, each a small
//! type with one job ([`Admission`]), that may refuse a connection before the service sees
//! a byte of it. The builder collects the stages ([`Stages`]); the server runs them on each
//! connection ([`Pipeline`]), counts a refusal by reason ([`Refusals`]) and logs it, with
//! the source, at debug level (`-v`).
//!
//! The chain keeps SPEC §3's order whatever order the stages were added in: PROXY header →
//! access control → per-source limits (connections, then rate) → TLS handshake → the
//! service. A server with no stage takes none of this path: connections are answered or
//! handed to their task exactly as before (see `acceptor.rs`).

use std::fmt;
use std::sync::Arc;

use super::Connection;
use super::admission::{Admission, Admitted, Held, Refusal, Refusals, late};
use super::meter::ListenerMeter;
use super::proxy::ProxyStage;
use crate::socket::Address;

/// The ordered stages of a server, as the builder collects them.
#[derive(Clone, Default)]
pub(crate) struct Stages {
    list: Vec<Arc<dyn Admission>>,
    /// The server's own PROXY stage, if it has one: it may be tried on the accept loop.
    proxy: Option<Arc<ProxyStage>>,
}

impl Stages {
    /// Adds `stage` after every stage whose rule applies before or with its own.
    pub(crate) fn add(&mut self, stage: Arc<dyn Admission>) {
        let reason = stage.reason();
        let at = self.list.partition_point(|other| other.reason() <= reason);
        self.list.insert(at, stage);
    }

    /// Adds the server's PROXY stage (see [`Pipeline::proxy_now`]).
    pub(crate) fn add_proxy(&mut self, stage: ProxyStage) {
        let stage = Arc::new(stage);
        self.proxy = Some(Arc::clone(&stage));
        self.add(stage);
    }

    /// The server's PROXY stage, if it has one.
    pub(crate) fn proxy(&self) -> Option<&ProxyStage> {
        self.proxy.as_deref()
    }

    /// The chain to run on each connection, or `None` when there is no stage (the fast path).
    pub(crate) fn pipeline(
        &self,
        refusals: &Refusals,
        dropped: &Refusals,
    ) -> Option<Arc<Pipeline>> {
        (!self.list.is_empty()).then(|| {
            // Our PROXY stage at the head and only peer-only stages after it: the whole
            // chain can be decided on the accept loop when the header is there at once.
            let proxy_now = self.proxy.clone().filter(|proxy| {
                let head = self.list[0].as_ref() as *const dyn Admission as *const ();
                std::ptr::eq(head, Arc::as_ptr(proxy).cast())
                    && self.list[1..].iter().all(|stage| stage.peer_only())
            });
            Arc::new(Pipeline {
                early: self
                    .list
                    .iter()
                    .take_while(|stage| stage.peer_only())
                    .count(),
                stages: self.list.clone().into_boxed_slice(),
                proxy_now,
                refusals: refusals.clone(),
                dropped: dropped.clone(),
            })
        })
    }
}

impl fmt::Debug for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|stage| stage.reason()))
            .finish()
    }
}

/// The admission stages in the order they run, and where their refusals are counted.
pub(crate) struct Pipeline {
    stages: Box<[Arc<dyn Admission>]>,
    /// How many stages at the head are [peer-only](Admission::peer_only): they run on the
    /// accept loop ([`Pipeline::check_early`]), the rest in the connection's task.
    early: usize,
    /// The PROXY stage, when it heads a chain of otherwise peer-only stages.
    proxy_now: Option<Arc<ProxyStage>>,
    refusals: Refusals,
    /// Datagrams dropped by the peer-only stages, by reason.
    dropped: Refusals,
}

impl Pipeline {
    /// Runs the peer-only stages at the head of the chain on `peer`, on the accept loop:
    /// what they keep, or `None` (counted and logged) when one refuses. `local` is asked
    /// only for a refusal's log line at `-v`.
    pub(crate) fn check_early(
        &self,
        peer: &Address,
        listener: &ListenerMeter,
        local: &dyn Fn() -> Option<Address>,
    ) -> Option<Held> {
        self.check_peer_only(&self.stages[..self.early], peer, listener, local)
    }

    /// The PROXY stage to try on the accept loop, when the stages after it are all
    /// peer-only (see [`Pipeline::check_after_proxy`]); `None` otherwise.
    pub(crate) fn proxy_now(&self) -> Option<&ProxyStage> {
        self.proxy_now.as_deref()
    }

    /// Once [`Pipeline::proxy_now`]'s stage has admitted a connection on the accept loop,
    /// runs every stage after it on `peer` (the header's client): what they keep, or
    /// `None` (counted and logged) when one refuses.
    pub(crate) fn check_after_proxy(
        &self,
        peer: &Address,
        listener: &ListenerMeter,
        local: &dyn Fn() -> Option<Address>,
    ) -> Option<Held> {
        self.check_peer_only(&self.stages[1..], peer, listener, local)
    }

    /// Counts and logs a refusal made on the accept loop.
    pub(crate) fn refused_early(
        &self,
        peer: &Address,
        refusal: &Refusal,
        listener: &ListenerMeter,
        local: &dyn Fn() -> Option<Address>,
    ) {
        listener.refused(refusal.reason);
        self.count(peer, refusal, Some(listener.name()), local);
    }

    fn check_peer_only(
        &self,
        stages: &[Arc<dyn Admission>],
        peer: &Address,
        listener: &ListenerMeter,
        local: &dyn Fn() -> Option<Address>,
    ) -> Option<Held> {
        let mut held = Held::new();
        for stage in stages {
            match stage.check_peer(peer) {
                Ok(Admitted(None)) => {}
                Ok(kept) => held.push(kept),
                Err(refusal) => {
                    self.refused_early(peer, &refusal, listener, local);
                    return None;
                }
            }
        }
        Some(held)
    }

    /// Whether a datagram from `peer` may reach the handler: every peer-only stage is
    /// asked (the others, such as PROXY headers and TLS, do not apply to datagrams), and
    /// what it keeps is let go at once (a datagram holds no place). A refused datagram is
    /// counted as dropped and logged.
    pub(crate) fn admits_datagram(&self, peer: &Address, listener: &ListenerMeter) -> bool {
        for stage in self.stages.iter().filter(|stage| stage.peer_only()) {
            if let Err(refusal) = stage.check_peer(peer) {
                self.dropped.count(refusal.reason);
                listener.dropped(refusal.reason);
                tracing::debug!(
                    peer = %peer.clone().to_canonical(),
                    listener = listener.name(),
                    reason = refusal.reason.as_str(),
                    "dropped a datagram: {}",
                    refusal.detail
                );
                return false;
            }
        }
        true
    }

    /// Whether any stage must run in the connection's task (one that reads from it, or
    /// comes after one that does).
    pub(crate) fn has_late(&self) -> bool {
        self.early < self.stages.len()
    }

    /// Runs the stages after the early ones on `conn` in order: what they keep for the
    /// connection's life, or `None` (counted and logged) at the first that refuses it.
    pub(crate) async fn admit(&self, conn: &mut Connection) -> Option<Held> {
        let mut held = Held::new();
        for stage in &self.stages[self.early..] {
            let verdict = match stage.deadline() {
                // The limit counts time the server ran: a client's handshake or header
                // that came while it was stopped is in time.
                Some(limit) => crate::net::within_running(limit, stage.admit(conn).as_mut())
                    .await
                    .unwrap_or_else(|| Err(late(stage.reason(), limit))),
                None => stage.admit(conn).await,
            };
            match verdict {
                Ok(Admitted(None)) => {}
                Ok(kept) => held.push(kept),
                Err(refusal) => {
                    self.refused(conn, &refusal);
                    return None;
                }
            }
        }
        conn.meter_mut().admitted();
        Some(held)
    }

    /// Counts and logs a refusal in the task; the connection is reset when it closes.
    fn refused(&self, conn: &mut Connection, refusal: &Refusal) {
        conn.reset_on_close();
        // During a TLS handshake the stream is the handshake's: the meter kept the address.
        let local = || {
            conn.local_addr()
                .ok()
                .or_else(|| conn.meter().local().cloned())
        };
        self.count(
            conn.peer_addr(),
            refusal,
            conn.meter().listener_name(),
            &local,
        );
        conn.meter_mut().refused(refusal.reason);
    }

    /// Counts and logs a refusal: the one place every refused connection passes. The log
    /// line has the fields of a connection's closing line that a refusal has.
    fn count(
        &self,
        peer: &Address,
        refusal: &Refusal,
        listener: Option<&str>,
        local: &dyn Fn() -> Option<Address>,
    ) {
        self.refusals.count(refusal.reason);
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let local = local();
        let detail = &refusal.detail;
        super::meter::log_refusal(peer, local.as_ref(), listener, refusal.reason, detail);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::RefusalReason;
    use crate::server::Admit;

    struct Rule(RefusalReason);

    impl Admission for Rule {
        fn reason(&self) -> RefusalReason {
            self.0
        }

        fn admit<'a>(&'a self, _conn: &'a mut Connection) -> Admit<'a> {
            Box::pin(std::future::ready(Ok(Admitted::new())))
        }
    }

    #[test]
    fn stages_run_in_the_spec_order_whatever_the_order_they_were_added_in() {
        let mut stages = Stages::default();
        for reason in [
            RefusalReason::Tls,
            RefusalReason::Rate,
            RefusalReason::Acl,
            RefusalReason::Proxy,
            RefusalReason::MaxPerSource,
            RefusalReason::Acl,
        ] {
            stages.add(Arc::new(Rule(reason)));
        }
        assert_eq!(
            format!("{stages:?}"),
            "[Proxy, Acl, Acl, MaxPerSource, Rate, Tls]"
        );
    }

    /// A peer-only rule that admits everyone.
    struct PeerRule(RefusalReason);

    impl Admission for PeerRule {
        fn reason(&self) -> RefusalReason {
            self.0
        }

        fn admit<'a>(&'a self, _conn: &'a mut Connection) -> Admit<'a> {
            Box::pin(std::future::ready(Ok(Admitted::new())))
        }

        fn peer_only(&self) -> bool {
            true
        }
    }

    #[test]
    fn the_proxy_stage_is_tried_on_the_accept_loop_only_ahead_of_peer_only_stages() {
        let proxy = || ProxyStage::new(crate::access::CidrSet::default(), Duration::from_secs(1));
        let tried = |stages: &Stages| {
            let pipeline = stages.pipeline(&Refusals::default(), &Refusals::default());
            pipeline.is_some_and(|p| p.proxy_now().is_some())
        };
        let mut stages = Stages::default();
        stages.add_proxy(proxy());
        assert!(tried(&stages), "PROXY alone");
        stages.add(Arc::new(PeerRule(RefusalReason::Acl)));
        stages.add(Arc::new(PeerRule(RefusalReason::Rate)));
        assert!(tried(&stages), "PROXY, then peer-only rules");
        let mut with_tls = stages.clone();
        with_tls.add(Arc::new(Rule(RefusalReason::Tls)));
        assert!(!tried(&with_tls), "a TLS handshake must run in a task");
        // A stage of the user's own with the PROXY reason, added first, heads the chain.
        let mut theirs = Stages::default();
        theirs.add(Arc::new(Rule(RefusalReason::Proxy)));
        theirs.add_proxy(proxy());
        assert!(!tried(&theirs));
    }

    #[test]
    fn no_stage_means_no_pipeline() {
        assert!(
            Stages::default()
                .pipeline(&Refusals::default(), &Refusals::default())
                .is_none()
        );
    }
}
