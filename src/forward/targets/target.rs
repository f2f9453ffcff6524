//! One target of a relay and what is known of it: its failure mark, its open relays, its
//! run of health checks, its counters. The set ([`super::Targets`]) orders them; a target
//! both lists of a reload name is this same value.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use crate::endpoint::Endpoint;
use crate::metrics::{Metrics, TargetMetrics};

/// One target, and what is known of it.
#[derive(Debug)]
pub(crate) struct Target {
    pub(super) endpoint: Endpoint,
    /// Nanoseconds after `epoch` until which this target is tried last; 0 when it has not
    /// failed (or has since taken a connection).
    pub(super) down_until: AtomicU64,
    /// Relayed connections open now.
    pub(super) active: AtomicUsize,
    /// Health checks in a row that passed (above 0) or failed (below 0).
    streak: AtomicI64,
    pub(super) metrics: Option<TargetMetrics>,
}

/// What a health check's result did to its target ([`Target::check_passed`],
/// [`Target::check_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It was taken out, or back.
    Changed,
    /// It is on its way: this many in a row so far, short of the count that decides.
    Counting(u32),
    /// Nothing to say: it was where this result leaves it.
    Same,
}

impl Target {
    /// A target at `endpoint` that has not failed, counted into `metrics` if given.
    pub(super) fn new(endpoint: Endpoint, metrics: Option<&Metrics>) -> Target {
        let metrics = metrics.map(|metrics| metrics.forward_target(&endpoint.to_string()));
        Target {
            endpoint,
            down_until: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            streak: AtomicI64::new(0),
            metrics,
        }
    }

    /// A target of its own with this one's endpoint and mark (and `metrics`, if given, else
    /// the same counters), for a builder's copy of a list.
    pub(super) fn copy(&self, metrics: Option<&Metrics>) -> Target {
        Target {
            endpoint: self.endpoint.clone(),
            down_until: AtomicU64::new(self.down_until.load(Ordering::Relaxed)),
            active: AtomicUsize::new(0),
            streak: AtomicI64::new(self.streak.load(Ordering::Relaxed)),
            metrics: match metrics {
                Some(metrics) => Some(metrics.forward_target(&self.endpoint.to_string())),
                None => self.metrics.clone(),
            },
        }
    }

    /// Where this target is.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A health check of this target failed: at the `fall`th in a row it is tried last
    /// until a check or a client's connection succeeds.
    pub(crate) fn check_failed(&self, fall: u32) -> Verdict {
        // Only the checks' task writes the streak: a load and a store are enough.
        let failed = self.streak.load(Ordering::Relaxed).min(0) - 1;
        self.streak.store(failed, Ordering::Relaxed);
        let failed = u32::try_from(-failed).unwrap_or(u32::MAX);
        if self.down_until.load(Ordering::Relaxed) == u64::MAX {
            return Verdict::Same;
        }
        if failed < fall {
            return Verdict::Counting(failed);
        }
        if let Some(metrics) = &self.metrics {
            metrics.up.set(0);
        }
        // Marked by a client's failure before: down for longer now, and it was said then.
        if self.down_until.swap(u64::MAX, Ordering::Relaxed) == 0 {
            Verdict::Changed
        } else {
            Verdict::Same
        }
    }

    /// A health check of this target passed: at the `rise`th in a row its mark, if any, is
    /// cleared.
    pub(crate) fn check_passed(&self, rise: u32) -> Verdict {
        let passed = self.streak.load(Ordering::Relaxed).max(0) + 1;
        self.streak.store(passed, Ordering::Relaxed);
        let passed = u32::try_from(passed).unwrap_or(u32::MAX);
        if self.down_until.load(Ordering::Relaxed) == 0 {
            return Verdict::Same;
        }
        if passed < rise {
            return Verdict::Counting(passed);
        }
        if let Some(metrics) = &self.metrics {
            metrics.up.set(1);
        }
        if self.down_until.swap(0, Ordering::Relaxed) != 0 {
            Verdict::Changed
        } else {
            Verdict::Same
        }
    }

    /// Forgets this target's failure, if any.
    pub(crate) fn succeeded(&self) {
        // Read first: the common case writes nothing, so the word stays shared between
        // the workers' caches.
        if self.down_until.load(Ordering::Relaxed) != 0 {
            self.down_until.store(0, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.up.set(1);
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.connected.inc();
        }
    }

    /// Counts a relayed connection to this target as open until the guard drops.
    pub(crate) fn open(self: Arc<Target>) -> Open {
        self.active.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.active.inc();
        }
        Open { target: self }
    }
}

/// A relayed connection counted open on its target ([`Target::open`]).
pub(crate) struct Open {
    target: Arc<Target>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.target.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(metrics) = &self.target.metrics {
            metrics.active.dec();
        }
    }
}
