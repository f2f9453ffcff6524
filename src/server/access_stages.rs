//! The access-control and per-source stages of the pipeline (SPEC §3.2), on
//! [`socketkit::access`](crate::access). Both decide from the peer's address alone
//! ([`PeerRule`]), so at the head of the chain they run on the accept loop; after a PROXY
//! stage they run in the connection's task on the address the header gave. A peer with no
//! IP address (a Unix socket's) is outside every rule: it is admitted.

use std::sync::Arc;

use super::Connection;
use super::RefusalReason;
use super::admission::{Admission, Admit, Admitted, Refusal};
use crate::access::{AccessControl, SourceLimits, SourceRefusal};
use crate::socket::Address;

/// A rule decided from the peer's address alone; [`PeerStage`] makes it a stage.
pub(crate) trait PeerRule: Send + Sync + 'static {
    /// Where the rule stands in the chain.
    const REASON: RefusalReason;

    /// The verdict on `peer`.
    fn check(&self, peer: &Address) -> Result<Admitted, Refusal>;
}

/// A [`PeerRule`] as an admission stage: peer-only, so it can run on the accept loop.
pub(crate) struct PeerStage<R>(pub(crate) R);

impl<R: PeerRule> Admission for PeerStage<R> {
    fn reason(&self) -> RefusalReason {
        R::REASON
    }

    fn admit<'a>(&'a self, conn: &'a mut Connection) -> Admit<'a> {
        let verdict = self.0.check(conn.peer_addr());
        Box::pin(async move { verdict })
    }

    fn peer_only(&self) -> bool {
        true
    }

    fn check_peer(&self, peer: &Address) -> Result<Admitted, Refusal> {
        self.0.check(peer)
    }
}

/// Refuses sources the allow/deny rules do not admit.
pub(crate) struct AccessRule(pub(crate) Arc<AccessControl>);

impl PeerRule for AccessRule {
    const REASON: RefusalReason = RefusalReason::Acl;

    fn check(&self, peer: &Address) -> Result<Admitted, Refusal> {
        match peer.ip() {
            Some(ip) if !self.0.admits(ip) => Err(Refusal::not_allowed()),
            _ => Ok(Admitted::new()),
        }
    }
}

/// Refuses a source past its connections at once or its rate of new ones; an admitted
/// connection keeps its place in the source's count until it closes.
pub(crate) struct SourceRule(pub(crate) Arc<SourceLimits>);

impl PeerRule for SourceRule {
    const REASON: RefusalReason = RefusalReason::MaxPerSource;

    fn check(&self, peer: &Address) -> Result<Admitted, Refusal> {
        let Some(ip) = peer.ip() else {
            return Ok(Admitted::new());
        };
        match self.0.admit(ip) {
            Ok(slot) => Ok(Admitted::holding(slot)),
            Err(refusal) => Err(refusal.into()),
        }
    }
}

/// The metrics' reason for a per-source refusal.
impl From<SourceRefusal> for RefusalReason {
    fn from(refusal: SourceRefusal) -> RefusalReason {
        match refusal {
            SourceRefusal::MaxPerSource => RefusalReason::MaxPerSource,
            SourceRefusal::Rate => RefusalReason::Rate,
        }
    }
}
