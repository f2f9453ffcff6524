//! The ways an accepted connection is run: as an async task ([`AsyncSpawner`]), on the
//! blocking pool ([`BlockingSpawner`]), or as the rest of an immediate reply ([`answer`]);
//! each either straight away or after the admission stages.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::admission::Held;
use super::blocking::{BlockingHandler, into_blocking};
use super::meter::Meter;
use super::pipeline::Pipeline;
use super::shutdown::{self, Enrolled, Watcher};
use super::{Connection, Handler, Routine};
use crate::error::describe;
use crate::net::Stream;

/// Starts one accepted connection; object-safe so one accept loop serves either kind.
pub(crate) trait Spawner: Send + Sync + 'static {
    /// Runs the connection in a task of its own.
    fn spawn(&self, accepted: Accepted, watcher: Watcher);

    /// Runs the connection in a task of its own that first takes it through `pipeline`.
    fn spawn_admitting(&self, accepted: Accepted, watcher: Watcher, pipeline: Arc<Pipeline>);

    /// The handler's immediate reply, if it has one (see [`Handler::immediate_reply`]).
    fn immediate_reply(&self) -> Option<Cow<'_, [u8]>> {
        None
    }

    /// Whether the handler has an immediate reply (see [`Handler::replies_immediately`]).
    fn replies_immediately(&self) -> bool {
        false
    }

    /// The handler's routine, if it declares one (see [`Handler::routine`]).
    fn routine(&self) -> Option<Routine> {
        None
    }

    /// Whether the handler opens a descriptor per connection (see
    /// [`Handler::opens_descriptors`]).
    fn opens_descriptors(&self) -> bool {
        false
    }
}

/// What the accept loop hands to a [`Spawner`].
pub(crate) struct Accepted {
    pub(crate) stream: Stream,
    /// The peer, and what the connection counts until it closes.
    pub(crate) meter: Meter,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) holds: Holds,
}

/// What a connection holds until it closes: its `max_connections` slot, and what the
/// admission stages kept for it (a per-source place). Both go when it is dropped.
#[derive(Default)]
pub(crate) struct Holds {
    // Held only to be dropped with the connection: frees the slot.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    pub(crate) kept: Held,
}

impl Holds {
    /// The holds in a box, or `None` when there are none.
    fn boxed(self) -> Option<Box<Holds>> {
        (self.permit.is_some() || !self.kept.is_empty()).then(|| Box::new(self))
    }
}

impl Accepted {
    /// The connection for an async handler, and what it holds.
    fn into_connection(self) -> (Connection, Holds) {
        let conn = Connection::new(self.stream, self.meter, self.idle_timeout);
        (conn, self.holds)
    }
}

/// Takes `conn` through `pipeline`, cut short by a forced shutdown (which makes the
/// connection's close a reset): what the stages keep for the connection's life, or `None`
/// when it is not to go on.
async fn admitted(pipeline: &Pipeline, conn: &mut Connection, watcher: &Watcher) -> Option<Held> {
    let (held, forced) = {
        let mut admit = std::pin::pin!(Some(pipeline.admit(conn)));
        let held = tokio::select! {
            biased;
            () = watcher.forced() => None,
            held = std::future::poll_fn(|cx| match admit.as_mut().as_pin_mut() {
                Some(admitting) => admitting.poll(cx),
                // Only emptied below, after the select.
                None => Poll::Pending,
            }) => held,
        };
        let forced = held.is_none() && watcher.is_forced();
        if forced {
            // Dropped inside `dropping_forced`: a stage that holds the socket itself (the
            // TLS handshake) resets it as it goes.
            shutdown::dropping_forced(|| admit.set(None));
        }
        (held, forced)
    };
    if forced {
        conn.reset_on_close();
    }
    held
}

/// Runs an async [`Handler`] as a task per connection.
pub(crate) struct AsyncSpawner<H>(pub(crate) Arc<H>);

impl<H: Handler> Spawner for AsyncSpawner<H> {
    fn immediate_reply(&self) -> Option<Cow<'_, [u8]>> {
        self.0.immediate_reply()
    }

    fn replies_immediately(&self) -> bool {
        self.0.replies_immediately()
    }

    fn routine(&self) -> Option<Routine> {
        self.0.routine()
    }

    fn opens_descriptors(&self) -> bool {
        self.0.opens_descriptors()
    }

    fn spawn(&self, accepted: Accepted, watcher: Watcher) {
        let (conn, holds) = accepted.into_connection();
        // The handler's future is made here, so the task holds it once, not beside the
        // pieces it was made from.
        if let Some(work) = call(|| self.0.call(conn)) {
            tokio::spawn(ConnTask::new(work, watcher, holds));
        }
    }

    fn spawn_admitting(&self, accepted: Accepted, watcher: Watcher, pipeline: Arc<Pipeline>) {
        let handler = Arc::clone(&self.0);
        tokio::spawn(async move {
            let (mut conn, mut holds) = accepted.into_connection();
            let Some(held) = admitted(&pipeline, &mut conn, &watcher).await else {
                return; // dropping `conn` closes the connection
            };
            holds.kept.extend(held);
            match handler.immediate_reply() {
                Some(reply) => answer(conn, &reply, watcher, holds).await,
                None => {
                    if let Some(work) = call(|| handler.call(conn)) {
                        ConnTask::new(work, watcher, holds).await;
                    }
                }
            }
        });
    }
}

/// The handler's future (`make` calls it), or `None` when making it panicked (in the handler's
/// synchronous part, before its `async` block: a poisoned lock's `unwrap`). That panic ran
/// on the accept loop, and took the loop and its listener with it: now it ends only its
/// connection, which its unwinding dropped (with a reset, `shutdown::is_cut_short`).
fn call<F>(make: impl FnOnce() -> F) -> Option<F> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)) {
        Ok(work) => Some(work),
        Err(panic) => {
            tracing::warn!("a handler panicked: {}", panic_message(&*panic));
            None
        }
    }
}

/// What a panic said, when it said it in words (`panic!` with a message, `unwrap`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

pin_project_lite::pin_project! {
    /// A connection's task: the handler's future, cut short by a forced shutdown (which
    /// drops it at once, so that its sockets close with a reset); its slot and its place
    /// in the drain go when it does. Written out rather than as `select!` in an async block,
    /// which held the handler's future twice: this is most of an idle connection's memory,
    /// and at 152 bytes or less (an echo connection's is 144) tokio's task takes 256 bytes
    /// instead of 384.
    struct ConnTask<F> {
        // `None` once dropped by a forced shutdown.
        #[pin]
        work: Option<F>,
        enrolled: Enrolled,
        // Boxed, and only when there is something to hold: most connections hold nothing.
        holds: Option<Box<Holds>>,
    }
}

impl<F> ConnTask<F> {
    fn new(work: F, watcher: Watcher, holds: Holds) -> ConnTask<F> {
        ConnTask {
            work: Some(work),
            enrolled: watcher.enrol(),
            holds: holds.boxed(),
        }
    }
}

impl<F: Future<Output = io::Result<()>>> Future for ConnTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // Before the handler's poll: the first call leaves the task's waker with the list,
        // so a force that comes later (during the handler's poll too) wakes the task, and
        // the next poll ends here; a task that starts after the force never runs its
        // handler.
        if this.enrolled.is_forced(cx.waker()) {
            // Its `closed` line (at -v) says so, with its fields.
            tracing::trace!("connection closed by shutdown");
            // Dropped here, not with the task: inside `dropping_forced`, its sockets reset.
            shutdown::dropping_forced(|| this.work.set(None));
            return Poll::Ready(());
        }
        let Some(work) = this.work.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        // Caught here rather than by tokio, so that the panic is said whatever the host's
        // panic hook does, and the future it leaves is dropped as a forced close drops one:
        // its answer was cut short, so its connection resets.
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.poll(cx)));
        match polled {
            Ok(Poll::Ready(result)) => {
                if let Err(err) = result {
                    // The connection's `closed` line, at `-v`, already says how its reads
                    // and writes failed, with its fields; this line has none of them.
                    tracing::trace!("connection ended: {}", describe(&err));
                }
                Poll::Ready(())
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                tracing::warn!("a handler panicked: {}", panic_message(&*panic));
                shutdown::dropping_forced(|| this.work.set(None));
                Poll::Ready(())
            }
        }
    }
}

/// Sends `reply` (the rest of an immediate reply, or all of it after the admission stages)
/// and half-closes, unless a forced shutdown comes first: then the close is a reset.
pub(crate) async fn answer(mut conn: Connection, reply: &[u8], watcher: Watcher, holds: Holds) {
    let forced = tokio::select! {
        biased;
        result = async {
            conn.write_all(reply).await?;
            conn.shutdown().await
        } => {
            if let Err(err) = result {
                // Said with the connection's fields by its `closed` line (see `ConnTask`).
                tracing::trace!("connection ended: {}", describe(&err));
            }
            false
        }
        () = watcher.forced() => true,
    };
    if forced {
        conn.reset_on_close();
    }
    drop(conn);
    drop(holds);
    drop(watcher);
}

/// The rest of an immediate reply that did not fit the socket buffer, sent from a task.
pub(crate) fn finish_reply(accepted: Accepted, rest: Vec<u8>, watcher: Watcher) {
    tokio::spawn(async move {
        let (conn, holds) = accepted.into_connection();
        answer(conn, &rest, watcher, holds).await;
    });
}

/// Runs a [`BlockingHandler`] on the blocking pool, at most `pool` at once.
pub(crate) struct BlockingSpawner<B> {
    pub(crate) handler: Arc<B>,
    pub(crate) pool: Arc<Semaphore>,
}

impl<B: BlockingHandler> Spawner for BlockingSpawner<B> {
    fn spawn(&self, accepted: Accepted, watcher: Watcher) {
        let handler = Arc::clone(&self.handler);
        let pool = Arc::clone(&self.pool);
        tokio::spawn(run_blocking(handler, pool, accepted, watcher));
    }

    fn spawn_admitting(&self, accepted: Accepted, watcher: Watcher, pipeline: Arc<Pipeline>) {
        let handler = Arc::clone(&self.handler);
        let pool = Arc::clone(&self.pool);
        tokio::spawn(async move {
            let (mut conn, mut holds) = accepted.into_connection();
            let Some(held) = admitted(&pipeline, &mut conn, &watcher).await else {
                return;
            };
            holds.kept.extend(held);
            let Ok((stream, idle_timeout, meter)) = conn.into_plain_parts() else {
                // Server::serve_blocking refuses tls: listeners before serving.
                return tracing::debug!("a blocking handler cannot serve a TLS session");
            };
            let accepted = Accepted {
                stream,
                meter,
                idle_timeout,
                holds,
            };
            run_blocking(handler, pool, accepted, watcher).await;
        });
    }
}

/// Waits for a thread of the pool, then runs `handler` on it; a forced shutdown resets the
/// connection under the handler, which makes its pending read or write fail.
///
/// A connection still waiting for a thread when the server starts draining is in flight
/// like any other (its client may have sent its request): it keeps waiting, and only the
/// drain deadline ends the wait.
async fn run_blocking<B: BlockingHandler>(
    handler: Arc<B>,
    pool: Arc<Semaphore>,
    accepted: Accepted,
    watcher: Watcher,
) {
    let Accepted {
        stream,
        meter,
        idle_timeout,
        holds,
    } = accepted;
    // For the line that says how the handler failed: its connection's `closed` line, which
    // says how a read or write failed, is written when the handler drops it.
    let peer = meter.peer().clone();
    let thread = tokio::select! {
        // The pool is never closed, so acquiring cannot fail.
        thread = pool.acquire_owned() => thread.ok(),
        () = watcher.forced() => None,
    };
    let Some(thread) = thread else {
        // Forced while waiting for a thread: cut short like the rest.
        return crate::net::reset_now(std::os::fd::AsFd::as_fd(&stream));
    };
    // Handed over once it has a thread: a connection that waits holds one descriptor, not
    // the two (the handler's, and the closer's) of one being served.
    let (conn, closer) = match into_blocking(stream, meter, idle_timeout) {
        Ok(pair) => pair,
        Err(err) => return tracing::debug!("cannot hand over: {}", describe(&err)),
    };
    let job = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::spawn_blocking(move || {
            let result = handler.call(conn);
            drop(thread);
            result
        })
    }));
    // No thread could be started for it (tokio panics then, and keeps the work queued: it
    // runs once the pool has a thread).
    let Ok(mut job) = job else {
        tracing::warn!(%peer, "a blocking handler waits for a thread: {}", describe(&crate::net::no_thread()));
        return;
    };
    tokio::select! {
        result = &mut job => match result {
            Ok(Err(err)) => tracing::debug!(%peer, "handler failed: {}", describe(&err)),
            Err(err) => {
                tracing::warn!("a blocking handler panicked: {err}");
                // Its answer was cut short: the peer must not read a clean close (the
                // handler's own descriptor is gone; this one still holds the connection).
                closer.reset();
            }
            Ok(Ok(())) => {}
        },
        () = watcher.forced() => closer.reset(),
    }
    drop(holds);
    drop(watcher);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tokio allocates a task's header, future and trailer in one block aligned to 128
    /// bytes: a future of up to 152 bytes (tokio 1.54, 64-bit) takes 256, one more byte 384.
    /// `bench/compare.sh`'s idle row measures what this is for.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_idle_echo_connection_task_fits_the_smaller_allocation() {
        // Debug builds carry mio's selector id in every stream: 8 bytes more.
        let limit = if cfg!(debug_assertions) { 160 } else { 152 };
        let size = std::mem::size_of::<ConnTask<crate::services::buffers::Consume>>();
        assert!(size <= limit, "{size} bytes");
    }
}
