//! A listener's side of the counting: its name and metric handles, what its accept loops
//! count, and the line an immediate reply's connection leaves (see the parent module).

use std::sync::Arc;
use std::time::Instant;

use super::{Summary, as_u64};
use crate::metrics::{ListenerMetrics, LoopCounts, Metrics, RefusalReason};
use crate::socket::Address;

/// One listener's name and metric handles, shared by its accept loops and connections.
#[derive(Debug)]
pub(crate) struct ListenerMeter {
    pub(super) name: String,
    pub(super) metrics: Option<ListenerMetrics>,
    /// What connections' start times count from.
    pub(super) epoch: Instant,
}

impl ListenerMeter {
    /// The meter of the listener called `name`, with its handles taken from `metrics`.
    pub(crate) fn new(name: String, metrics: Option<&Arc<Metrics>>) -> Arc<ListenerMeter> {
        let metrics = metrics.map(|metrics| metrics.listener(&name));
        Arc::new(ListenerMeter {
            name,
            metrics,
            epoch: Instant::now(),
        })
    }

    /// Microseconds since the listener's epoch.
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Shards of the listener's counters for one accept loop (`None` without metrics).
    pub(crate) fn loop_counts(&self) -> Option<LoopCounts> {
        self.metrics.as_ref().map(ListenerMetrics::loop_counts)
    }

    /// Counts a connection taken off the listener, before any admission stage, in the
    /// accept loop's own shard.
    pub(crate) fn accepted_by(&self, counts: Option<&mut LoopCounts>) {
        if let Some(counts) = counts {
            counts.accepted.inc_by(1);
        }
    }

    /// Counts a connection taken off the listener, before any admission stage.
    pub(crate) fn accepted(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.accepted.inc();
        }
    }

    /// Counts a failed `accept(2)` by its errno.
    pub(crate) fn accept_error(&self, err: &std::io::Error) {
        if let Some(metrics) = &self.metrics {
            metrics.accept_error(err);
        }
    }

    /// The listener's name (its endpoint, as `listening on` prints it).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Counts a connection an admission stage refused.
    pub(crate) fn refused(&self, reason: RefusalReason) {
        if let Some(metrics) = &self.metrics {
            metrics.refused(reason);
        }
    }

    /// Counts a datagram dropped before the handler (the peer-only stages refused its
    /// source).
    pub(crate) fn dropped(&self, reason: RefusalReason) {
        if let Some(metrics) = &self.metrics {
            metrics.dropped(reason);
        }
    }

    /// Counts the bytes of a datagram received or of the replies sent to it.
    pub(crate) fn datagram(&self, received: usize, sent: usize) {
        if let Some(metrics) = &self.metrics {
            metrics.received.inc_by(as_u64(received));
            if sent > 0 {
                metrics.sent.inc_by(as_u64(sent));
            }
        }
    }

    /// The time a connection was accepted, when anything will want it (metrics on, or the
    /// debug log): the start of an immediate reply, for [`ListenerMeter::answered`].
    pub(crate) fn clock(&self) -> Option<Instant> {
        (self.metrics.is_some() || tracing::enabled!(tracing::Level::DEBUG)).then(Instant::now)
    }

    /// Records a connection answered on the accept loop and closed at once (an immediate
    /// reply): `(received, sent)` bytes (received: a PROXY header's), accepted at `started`,
    /// in the loop's own shards `counts`. `local` is asked only at `-v`. A reply that
    /// `failed` (the client reset first) is recorded the same, with its error in the line:
    /// every connection that reached the service is in the duration histogram.
    pub(crate) fn answered(
        &self,
        counts: Option<&mut LoopCounts>,
        peer: impl FnOnce() -> Address,
        local: impl FnOnce() -> Option<Address>,
        (received, sent): (usize, usize),
        started: Instant,
        failed: Option<&std::io::Error>,
    ) {
        // One clock read at the end serves the histogram and the log line.
        let lasted = started.elapsed();
        if let Some(counts) = counts {
            if received > 0 {
                counts.received.inc_by(as_u64(received));
            }
            counts.sent.inc_by(as_u64(sent));
            counts.duration.observe(lasted);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let local = local();
            let error = failed.map(crate::error::describe);
            let summary = Summary {
                peer: &peer(),
                local: local.as_ref(),
                bytes_in: Some(as_u64(received)),
                bytes_out: Some(as_u64(sent)),
                lasted: Some(lasted),
                error: error.as_deref(),
            };
            summary.log(
                self,
                if failed.is_some() {
                    "answer failed"
                } else {
                    "answered at once"
                },
            );
        }
    }
}
