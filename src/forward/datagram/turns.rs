//! Where the datagram relay sends each new client ([`Turns`]), and what it says when it
//! cannot open a new client's upstream socket ([`Shortage`]): a flood of new source ports
//! near the descriptor limit fails every one of them, and the log must not grow with the
//! flood (SPEC §1.2: back off, log once, keep serving).

use std::io;
use std::sync::Arc;

use super::source_slot;
use crate::endpoint::Endpoint;
use crate::error::describe;
use crate::metrics::TargetMetrics;
use crate::socket::Address;

/// One target of the relay: as it was given (the name the log uses, as the readiness line
/// does), resolved, with its counters and its current shortage of upstream sockets.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) endpoint: Endpoint,
    pub(super) address: Arc<Address>,
    pub(super) metrics: Option<TargetMetrics>,
    pub(super) shortage: Shortage,
}

impl Target {
    /// `endpoint`, resolved to `address`, counted in `metrics`.
    pub(super) fn new(
        endpoint: Endpoint,
        address: Address,
        metrics: Option<TargetMetrics>,
    ) -> Target {
        Target {
            endpoint,
            address: Arc::new(address),
            metrics,
            shortage: Shortage::default(),
        }
    }
}

/// The resolved targets and whose turn is next.
#[derive(Debug)]
pub(super) struct Turns {
    /// At least one (a relay has a target, and a reload takes no empty list).
    pub(super) targets: Vec<Target>,
    pub(super) by_source: bool,
    pub(super) next: usize,
}

impl Turns {
    /// The target of a new client from `from`.
    pub(super) fn next(&mut self, from: &Address) -> &mut Target {
        let count = self.targets.len();
        let index = match from.ip() {
            Some(source) if self.by_source => source_slot(source, count),
            _ => {
                let index = self.next % count;
                self.next = self.next.wrapping_add(1);
                index
            }
        };
        &mut self.targets[index]
    }
}

/// The new clients' datagrams dropped because no upstream socket could be opened for them
/// (out of descriptors, most often), since one last could: the first failure is a warning,
/// the rest are counted (and said at debug level), and the next socket opened says how many
/// were dropped. Clients already relayed are not touched.
#[derive(Debug, Default)]
pub(super) struct Shortage {
    /// 0: no shortage.
    dropped: u64,
}

impl Shortage {
    /// No upstream socket to `target` for the new client `from` (`err`): its datagram is
    /// dropped.
    pub(super) fn failed(&mut self, from: &Address, target: &Endpoint, err: &io::Error) {
        let reason = describe(err);
        if self.dropped == 0 {
            tracing::warn!(
                client = %from.clone().to_canonical(),
                "cannot open a socket to relay to {target}: {reason}; new clients' datagrams \
                 are dropped until one can be opened"
            );
        } else {
            tracing::debug!(client = %from.clone().to_canonical(), "cannot open a socket to relay to {target}: {reason}");
        }
        self.dropped = self.dropped.saturating_add(1);
    }

    /// An upstream socket to `target` was opened: a shortage, if there was one, is over.
    pub(super) fn opened(&mut self, target: &Endpoint) {
        let dropped = std::mem::take(&mut self.dropped);
        if dropped > 0 {
            tracing::info!(
                "relaying new clients to {target} again; {dropped} datagram(s) of new clients \
                 dropped meanwhile"
            );
        }
    }
}
