//! The datagram relay's access rules and per-source limits (SPEC §3.2): a datagram from a
//! source the rules refuse is dropped and counted; a new client past its source's clients
//! at once or its rate of new ones is dropped and counted too, and an admitted client keeps
//! its place in its source's count while its upstream socket lives. A client stands for a
//! connection here, as it does in the metrics. A Unix client has no IP address: it is
//! outside every rule.

use std::sync::Arc;

use crate::access::{AccessControl, SourceLimits, SourceSlot};
use crate::metrics::ListenerMetrics;
use crate::server::RefusalReason;
use crate::socket::Address;

/// The rules and limits a relay applies, if any.
#[derive(Debug, Clone, Default)]
pub(super) struct Admission {
    pub(super) control: Option<Arc<AccessControl>>,
    pub(super) limits: Option<Arc<SourceLimits>>,
}

impl Admission {
    /// Whether a datagram from `from` may pass: asked of every datagram, so that rules
    /// reloaded on SIGHUP apply to clients already relayed as well.
    pub(super) fn admits(&self, from: &Address, metrics: Option<&ListenerMetrics>) -> bool {
        let (Some(control), Some(ip)) = (&self.control, from.ip()) else {
            return true;
        };
        if control.admits(ip) {
            return true;
        }
        dropped(
            from,
            RefusalReason::Acl,
            "the source is not allowed",
            metrics,
        );
        false
    }

    /// The new client `from`'s place in its source's count (`Some(None)`: no limit applies),
    /// or `None` when its source has no room (counted and logged).
    pub(super) fn place(
        &self,
        from: &Address,
        metrics: Option<&ListenerMetrics>,
    ) -> Option<Option<SourceSlot>> {
        let (Some(limits), Some(ip)) = (&self.limits, from.ip()) else {
            return Some(None);
        };
        match limits.admit(ip) {
            Ok(slot) => Some(Some(slot)),
            Err(refusal) => {
                dropped(from, refusal.into(), refusal.as_str(), metrics);
                None
            }
        }
    }
}

/// Counts and logs (at debug level) a datagram dropped for `reason`.
fn dropped(from: &Address, reason: RefusalReason, why: &str, metrics: Option<&ListenerMetrics>) {
    if let Some(metrics) = metrics {
        metrics.dropped(reason);
    }
    tracing::debug!(
        client = %from.clone().to_canonical(),
        reason = reason.as_str(),
        "dropped a datagram: {why}"
    );
}
