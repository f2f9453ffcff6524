//! Graceful shutdown as a small type with a contract: a [`ShutdownHandle`] asks the server to
//! stop; listeners close at once (or after the server's shutdown delay, during which they
//! go on accepting while `/health` tells load balancers to stop sending); connections get
//! until the drain deadline to finish; what is left is then closed. A second request (or
//! [`ShutdownHandle::force`]) closes them at once.
//!
//! Every connection task holds a [`Watcher`], or its place in the server's
//! [`ForcedWakers`], which holds one for all of them; the drain is over when all of them are
//! dropped (the shape of hyper-util's `GracefulShutdown`, on a `watch` channel).
//!
//! A connection closed by force was cut short: its peer must not read that as a complete
//! exchange. So what a forced close drops, it drops inside [`dropping_forced`], and the
//! sockets that see [`is_cut_short`] in their `Drop` (a [`Connection`], a
//! relay's target, an exec program's socket) set `SO_LINGER` 0 first: the close is a
//! reset, and the peer's next read or write fails with `ECONNRESET`. A connection that
//! ends on its own during the drain closes as it always does (a FIN).
//!
//! [`Connection`]: super::Connection

use std::cell::Cell;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, watch};

use super::forced_wakers::{self, ForcedWakers};

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Accepting and serving.
    Running,
    /// Asked to stop: still accepting for the shutdown delay, while the health endpoint
    /// says the server is going, so that a load balancer stops sending first.
    Stopping,
    /// Listeners closed; in-flight connections may finish.
    Draining,
    /// Every connection is being closed now.
    Forced,
}

/// Asks a running server to shut down. Cheap to clone; any clone can ask.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketkit::Result<()> {
/// use socketkit::server::Server;
///
/// let mut builder = Server::builder();
/// builder.listen("127.0.0.1:0".parse().unwrap());
/// let server = builder.bind().await?;
/// let handle = server.shutdown_handle();
/// handle.shutdown(); // before serving: serve returns at once
/// server.serve(|_conn| async { Ok(()) }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: watch::Sender<Phase>,
    // What waits for a forced close waits on this rather than on the watch channel: a
    // `Notified` future is a third the size of `wait_for`'s.
    forced: Arc<Notify>,
    // The connection tasks of async handlers, woken by a forced close.
    wakers: Arc<ForcedWakers<watch::Receiver<Phase>>>,
    // Rung on every request; lets the server wait for one without holding a receiver, whose
    // count is how it knows that every connection is gone.
    asked: Arc<Notify>,
    // Set by `hand_over`: another process serves the listeners now.
    handed_over: Arc<AtomicBool>,
    // Why serving failed after it began (a listener that fails for good): `serve` stops and
    // returns it rather than serving on without that listener.
    failure: Arc<std::sync::Mutex<Option<crate::Error>>>,
}

impl ShutdownHandle {
    pub(crate) fn new() -> ShutdownHandle {
        ShutdownHandle {
            tx: watch::channel(Phase::Running).0,
            forced: Arc::new(Notify::new()),
            wakers: Arc::default(),
            asked: Arc::new(Notify::new()),
            handed_over: Arc::new(AtomicBool::new(false)),
            failure: Arc::default(),
        }
    }

    /// A listener failed for good (its accept loop or io_uring worker cannot go on): the
    /// server stops as on [`ShutdownHandle::shutdown`], and `serve` returns `err` (the first
    /// such) once it has drained. Without this the listener closed with a warning while
    /// `serve` ran on, its clients refused, and returned `Ok(())`.
    pub(crate) fn fail(&self, err: crate::Error) {
        tracing::error!("{err}: the server stops");
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(err);
        if *self.tx.borrow() == Phase::Running {
            self.shutdown();
        }
    }

    /// Why serving failed, if it did (see [`ShutdownHandle::fail`]).
    pub(crate) fn take_failure(&self) -> Option<crate::Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Stops accepting (after the server's shutdown delay, if it has one), closes the
    /// listeners, and lets in-flight connections finish until the drain deadline. Asking
    /// again forces the close.
    pub fn shutdown(&self) {
        self.tx.send_modify(|phase| {
            *phase = match *phase {
                Phase::Running => Phase::Stopping,
                Phase::Stopping | Phase::Draining | Phase::Forced => Phase::Forced,
            }
        });
        if *self.tx.borrow() == Phase::Forced {
            self.forced.notify_waiters();
            self.wakers.force();
        }
        self.asked.notify_waiters();
    }

    /// Shuts down for a successor that serves the same listening sockets now (a restart's
    /// new process, see [`Handover`](super::Handover)): the listeners close at once, with no
    /// shutdown delay, and `/health` goes on answering 200, for the service at this address
    /// goes on. (A balancer that saw 503 from this process while the successor answered 200
    /// on the same port would take the instance out and back in during every restart. The
    /// socketkit CLI hands its metrics socket over as well and stops answering on it at
    /// this point.) Then the in-flight connections drain as after
    /// [`ShutdownHandle::shutdown`].
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
        self.shutdown();
    }

    /// Whether the shutdown is a [`ShutdownHandle::hand_over`].
    pub(crate) fn is_handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// Closes every connection now, without waiting for the drain deadline: each was cut
    /// short, so it closes with a reset (`SO_LINGER` 0) and its client's next read or
    /// write fails with `ECONNRESET` (a Unix stream has no reset: its client reads end of
    /// stream).
    pub fn force(&self) {
        self.tx.send_replace(Phase::Forced);
        self.forced.notify_waiters();
        self.wakers.force();
    }

    /// Whether a shutdown has been asked for.
    pub fn is_shutting_down(&self) -> bool {
        *self.tx.borrow() != Phase::Running
    }

    /// Waits until every watcher is gone (true) or a shutdown is asked for (false),
    /// whichever comes first; the caller must hold no watcher.
    pub(crate) async fn done_unless_asked(&self) -> bool {
        let asked = self.asked.notified();
        tokio::pin!(asked);
        // Registered before the phase is read, so a request in between is not missed.
        asked.as_mut().enable();
        if self.is_shutting_down() {
            return false;
        }
        tokio::select! {
            () = self.tx.closed() => true,
            () = asked => false,
        }
    }

    /// Ends the shutdown delay: the listeners close and the drain begins (unless the close
    /// was forced meanwhile).
    pub(crate) fn close_listeners(&self) {
        self.tx.send_if_modified(|phase| {
            let stopping = *phase == Phase::Stopping;
            if stopping {
                *phase = Phase::Draining;
            }
            stopping
        });
    }

    pub(crate) fn watcher(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
            forced: Arc::clone(&self.forced),
            wakers: Arc::clone(&self.wakers),
        }
    }

    /// Resolves once every connection is to be closed now, without holding a watcher (for
    /// the io_uring engine's relay, which must not hold up the drain).
    pub(crate) async fn forced(&self) {
        until_forced(&self.forced, || *self.tx.borrow() == Phase::Forced).await;
    }

    /// Waits until every watcher is dropped, or `deadline` passes; then forces the rest and
    /// waits for them. Returns how many connections had to be forced closed.
    ///
    /// The deadline counts time the server ran: a server stopped during the drain (^Z, a
    /// debugger, a paused VM) wakes with its timer run before its sockets are looked at,
    /// and the clients that ended their connections during the stop, unserved, would be
    /// cut (an outside audit: 6 of 16 reset, and the closing line counted connections that
    /// had ended). So a deadline seen passed gives back the time it overslept, at least
    /// [`OVERSLEPT`](crate::net::OVERSLEPT) (a stop that ended just past it: the connections
    /// still need the runtime to run), up to the deadline once more.
    pub(crate) async fn drain(&self, deadline: Duration) -> usize {
        let started = std::time::Instant::now();
        let mut closed = std::pin::pin!(self.tx.closed());
        if tokio::time::timeout(deadline, closed.as_mut())
            .await
            .is_ok()
        {
            return 0;
        }
        let more =
            crate::net::given_back(started, deadline).max(crate::net::OVERSLEPT.min(deadline));
        if tokio::time::timeout(more, closed.as_mut()).await.is_ok() {
            return 0;
        }
        // The enrolled tasks count once among the receivers (see `ForcedWakers`).
        let enrolled = self.wakers.len();
        let left = (self.tx.receiver_count() + enrolled).saturating_sub(usize::from(enrolled > 0));
        self.force();
        self.tx.closed().await;
        left
    }
}

/// Held by each connection task: tells it when to stop, and its drop tells the server that
/// the connection is gone.
#[derive(Debug, Clone)]
pub(crate) struct Watcher {
    rx: watch::Receiver<Phase>,
    forced: Arc<Notify>,
    wakers: Arc<ForcedWakers<watch::Receiver<Phase>>>,
}

impl Watcher {
    /// Resolves once every connection is to be closed now (the small future connection
    /// tasks hold).
    pub(crate) async fn forced(&self) {
        until_forced(&self.forced, || *self.rx.borrow() == Phase::Forced).await;
    }

    /// Keeps only what holds the drain up (16 bytes, for the io_uring engine's connection
    /// slots, which its worker wakes itself).
    pub(crate) fn in_flight(self) -> InFlight {
        InFlight(self.rx)
    }

    /// Trades the watcher for a place in the server's [`ForcedWakers`]: 16 bytes where the
    /// watcher and a `Notified` future to wait with are 96, in every connection's task.
    pub(crate) fn enrol(self) -> Enrolled {
        self.wakers.enrol(self.rx)
    }

    /// Whether every connection is to be closed now.
    pub(crate) fn is_forced(&self) -> bool {
        *self.rx.borrow() == Phase::Forced
    }

    /// Whether the phase has reached `phase`, without waiting: one atomic load while the
    /// phase has not moved since this watcher last looked, so that an accept loop can ask
    /// for every connection it takes. A new watcher has looked at the phase it was made
    /// in, which is fine for the accept loops that ask: they are made before `Draining`.
    pub(crate) fn has_reached(&mut self, phase: Phase) -> bool {
        match self.rx.has_changed() {
            Ok(false) => false,
            Ok(true) => *self.rx.borrow_and_update() >= phase,
            // Every handle was dropped: the server is gone.
            Err(_) => true,
        }
    }

    /// Resolves once the phase reaches `phase` (or the handle is gone).
    pub(crate) async fn reached(&mut self, phase: Phase) {
        // An error means every handle was dropped, which can only mean the server is gone.
        let _ = self.rx.wait_for(|now| *now >= phase).await;
    }
}

/// A connection task's place among the tasks a forced shutdown wakes ([`Watcher::enrol`]).
pub(crate) type Enrolled = forced_wakers::Enrolled<watch::Receiver<Phase>>;

/// A connection the drain waits for, from [`Watcher::in_flight`].
#[derive(Debug)]
pub(crate) struct InFlight(
    #[expect(dead_code, reason = "held only to be dropped with the connection")]
    watch::Receiver<Phase>,
);

thread_local! {
    /// Set while [`dropping_forced`] runs on this thread.
    static DROPPING_FORCED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `drop` (which drops what a forced close cuts short: a handler's future, a
/// connection) so that every socket dropped meanwhile on this thread closes with a reset
/// (see the [module docs](self)). A thread-local rather than a flag in every connection:
/// the drop is synchronous, and an idle connection should not carry a byte more for it.
pub(crate) fn dropping_forced<R>(drop: impl FnOnce() -> R) -> R {
    /// Restores the flag even if a `Drop` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DROPPING_FORCED.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(DROPPING_FORCED.with(|flag| flag.replace(true)));
    drop()
}

/// Whether what this thread drops now was cut short, so that a socket's `Drop` resets: inside
/// [`dropping_forced`], or while the thread unwinds from a panic (a handler that panicked
/// left its answer unfinished, and its peer must not read the close as a complete one).
pub(crate) fn is_cut_short() -> bool {
    DROPPING_FORCED.with(Cell::get) || std::thread::panicking()
}

/// Resolves once `forced` rings, or at once if `is_forced` already says so.
async fn until_forced(forced: &Notify, is_forced: impl Fn() -> bool) {
    let notified = forced.notified();
    tokio::pin!(notified);
    // Registered before the phase is read, so a force in between is not missed.
    notified.as_mut().enable();
    if !is_forced() {
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_watchers_then_forces() {
        let handle = ShutdownHandle::new();
        let finishes = handle.watcher();
        let mut stubborn = handle.watcher();
        let stubborn_task = tokio::spawn(async move {
            stubborn.reached(Phase::Forced).await;
        });
        handle.shutdown();
        handle.close_listeners();
        drop(finishes);
        let forced = handle.drain(Duration::from_secs(10)).await;
        assert_eq!(forced, 1);
        assert!(stubborn_task.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn listeners_close_only_when_the_delay_ends_unless_forced() {
        let handle = ShutdownHandle::new();
        let mut listener = handle.watcher();
        handle.shutdown();
        assert!(handle.is_shutting_down());
        assert!(
            tokio::time::timeout(Duration::from_millis(1), listener.reached(Phase::Draining))
                .await
                .is_err(),
            "still accepting during the delay"
        );
        handle.close_listeners();
        listener.reached(Phase::Draining).await;
        handle.force();
        handle.close_listeners();
        assert!(listener.is_forced(), "a forced close stays forced");
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_request_forces() {
        let handle = ShutdownHandle::new();
        let mut watcher = handle.watcher();
        handle.shutdown();
        handle.shutdown();
        tokio::time::timeout(Duration::from_millis(1), watcher.reached(Phase::Forced))
            .await
            .expect("the second shutdown forces");
    }
}
