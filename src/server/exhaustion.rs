//! [`Backoff`]: what an accept loop (tokio's or an io_uring worker's) says when `accept`
//! runs out of a resource (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): one warning per burst
//! for the whole server, and one "accepting again" from a loop that had backed off — not
//! from another loop that took the last descriptor while the first was running out.
//!
//! A handler that opens a descriptor of its own for each connection (`forward`'s target
//! socket, [`super::Handler::opens_descriptors`]) can run out after the accept took the
//! last one: it says so with [`handler_out_of_resources`] (and `accept`'s own `EMFILE`
//! counts the same, [`near_the_limit`]), and for a while the accept loops hold one back
//! ([`keeps_a_reserve`]) and accept one client at a time, so that the clients behind wait
//! in the kernel's backlog as they would for `accept`'s own `EMFILE`, instead of each being
//! accepted and closed in turn.

use std::fmt::Display;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::describe;

/// How many accepts after a handler ran short are made with a descriptor in reserve, and
/// one at a time (each waits for the handler before it, see [`handler_has_opened`]):
/// enough for the clients that pile up in the backlog meanwhile to be taken in once
/// descriptors free, without each accept outrunning the handler that needs a descriptor
/// after it; a shortage again starts the count afresh.
const RESERVED_ACCEPTS: u32 = 256;

/// The longest an accept loop waits, after each accept made with a reserve, for a handler
/// to open its own descriptor ([`handler_opened`]) before it accepts the next client.
const OPENING_WAIT: Duration = Duration::from_millis(10);

/// Held by the accept loop (of any server of the process) that is making an accept with a
/// reserve, until the handler has opened its descriptor: with two loops at once, each
/// would count the same free descriptor as its reserve.
static RESERVED_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Counts the descriptors handlers opened (or failed to) while accepts keep a reserve,
/// and wakes the accept loop waiting for it.
static OPENED: AtomicU64 = AtomicU64::new(0);
static OPENED_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The accepts still to be made with a reserve (see [`RESERVED_ACCEPTS`]); 0: none, the
/// handlers have had their descriptors. Process-wide, as the descriptor table is: every
/// server of the process accepts into the same one.
static RESERVED_LEFT: AtomicU32 = AtomicU32::new(0);

/// A handler has said it ran short in this shortage (its warning is written): apart from
/// [`RESERVED_LEFT`], which `accept`'s own `EMFILE` starts too, so that the client a handler
/// had to reset is named at the default level even when the accept loop's warning came
/// first.
static HANDLER_SHORT: AtomicBool = AtomicBool::new(false);

/// Tells the accept loops that a handler could not open what its connection needs (a
/// relay's target socket failed with `EMFILE`, `ENFILE`, `ENOBUFS` or `ENOMEM`, see
/// [`crate::net::is_resource_exhaustion`]) because the accept before it took the last
/// descriptor: for the next [`RESERVED_ACCEPTS`] accepts they hold one back (a client is
/// taken only with a descriptor left for its handler, and the rest wait in the backlog)
/// and take clients one at a time. Returns whether this is the first handler to run short
/// in this shortage, so that the handler warns once per burst rather than once per client.
pub(crate) fn handler_out_of_resources() -> bool {
    RESERVED_LEFT.store(RESERVED_ACCEPTS, Ordering::Relaxed);
    !HANDLER_SHORT.swap(true, Ordering::Relaxed)
}

/// `accept` itself ran out of descriptors, for a handler that opens one of its own after
/// it: the accepts after the shortage are made as after [`handler_out_of_resources`]
/// (the accept loop has said so already).
pub(crate) fn near_the_limit() {
    RESERVED_LEFT.store(RESERVED_ACCEPTS, Ordering::Relaxed);
}

/// Whether an accept loop must hold a descriptor in reserve while it accepts (see
/// [`handler_out_of_resources`]): one atomic load on the accept path.
pub(crate) fn keeps_a_reserve() -> bool {
    RESERVED_LEFT.load(Ordering::Relaxed) > 0
}

/// A handler has opened its descriptor, or failed to: while accepts keep a reserve, the
/// accept loop waiting for that takes the next client (one atomic load otherwise).
pub(crate) fn handler_opened() {
    if keeps_a_reserve() {
        OPENED.fetch_add(1, Ordering::Relaxed);
        OPENED_NOTIFY.notify_waiters();
    }
}

/// The turn to accept with a reserve (see [`RESERVED_TURN`]), and the count of opened
/// descriptors to wait past once the client is handed to its handler.
pub(crate) async fn reserved_turn() -> (tokio::sync::MutexGuard<'static, ()>, u64) {
    let turn = RESERVED_TURN.lock().await;
    (turn, OPENED.load(Ordering::Relaxed))
}

/// Waits until a handler has opened a descriptor since `since` was read, or
/// [`OPENING_WAIT`] has passed (a handler that opens none, or is slow to).
pub(crate) async fn handler_has_opened(since: u64) {
    let opened = async {
        loop {
            let notified = OPENED_NOTIFY.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a wake-up in between is not lost.
            notified.as_mut().enable();
            if OPENED.load(Ordering::Relaxed) != since {
                return;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout(OPENING_WAIT, opened).await;
}

/// An accept succeeded with a descriptor in reserve: one fewer to make so.
pub(crate) fn reserve_was_free() {
    // An Err only says the count was 0 already (another loop took the last one).
    let left = RESERVED_LEFT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
        left.checked_sub(1)
    });
    if left == Ok(1) {
        // The shortage is over: the next one is warned of again.
        HANDLER_SHORT.store(false, Ordering::Relaxed);
    }
}

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
