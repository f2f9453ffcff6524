//! [`Backoff`]: what an accept loop (tokio's or an io_uring worker's) says when `accept`
//! runs out of a resource (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): one warning per burst
//! for the whole server, and one "accepting again" from a loop that had backed off — not
//! from another loop that took the last descriptor while the first was running out.

use std::fmt::Display;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::describe;

/// One accept loop's side of the server's exhaustion log.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// Shared by every accept loop of the server: out of a resource, and already said so.
    burst: Arc<AtomicBool>,
    /// This loop failed for want of a resource and has not accepted since.
    backing_off: bool,
}

impl Backoff {
    /// A loop's side of `burst`, the server's shared flag.
    pub(crate) fn new(burst: &Arc<AtomicBool>) -> Backoff {
        Backoff {
            burst: Arc::clone(burst),
            backing_off: false,
        }
    }

    /// An accept on `endpoint` failed for want of a resource: this loop backs off, and the
    /// first loop of the server to do so in a burst says so.
    pub(crate) fn failed<E: Display>(&mut self, endpoint: impl FnOnce() -> E, err: &io::Error) {
        self.backing_off = true;
        if !self.burst.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "accept on {} failed: {}; backing off until it succeeds",
                endpoint(),
                describe(err)
            );
        }
    }

    /// An accept on `endpoint` succeeded: a loop that was backing off ends the burst.
    pub(crate) fn succeeded<E: Display>(&mut self, endpoint: impl FnOnce() -> E) {
        if std::mem::take(&mut self.backing_off) && self.burst.swap(false, Ordering::Relaxed) {
            tracing::info!("accepting again on {}", endpoint());
        }
    }

    /// Whether this loop is backing off (it waits before accepting again).
    pub(crate) fn is_backing_off(&self) -> bool {
        self.backing_off
    }
}
