//! A stream listener's accept loop and the two ways a connection is run: as an async task,
//! or on the blocking pool.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::futures::OwnedNotified;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::blocking::{BlockingHandler, into_blocking};
use super::listener::StreamListener;
use super::shutdown::{Phase, ShutdownHandle, Watcher};
use super::{Connection, EXHAUSTION_BACKOFF, Handler};
use crate::error::describe;
use crate::net::{RawStream, Stream, is_connection_error};
use crate::socket::Address;

/// Starts one accepted connection; object-safe so one accept loop serves either kind.
pub(crate) trait Spawner: Send + Sync + 'static {
    fn spawn(&self, accepted: Accepted, watcher: Watcher);

    /// The handler's immediate reply, if it has one (see [`Handler::immediate_reply`]).
    fn immediate_reply(&self) -> Option<Cow<'_, [u8]>> {
        None
    }
}

/// What the accept loop hands to a [`Spawner`].
pub(crate) struct Accepted {
    pub(crate) stream: Stream,
    pub(crate) peer: Address,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

impl Accepted {
    /// The connection for an async handler, and the slot it holds.
    fn into_connection(self) -> (Connection, Option<OwnedSemaphorePermit>) {
        let conn = Connection::new(self.stream, self.peer, self.idle_timeout);
        (conn, self.permit)
    }
}

/// Runs an async [`Handler`] as a task per connection.
pub(crate) struct AsyncSpawner<H>(pub(crate) Arc<H>);

impl<H: Handler> Spawner for AsyncSpawner<H> {
    fn immediate_reply(&self) -> Option<Cow<'_, [u8]>> {
        self.0.immediate_reply()
    }

    fn spawn(&self, accepted: Accepted, watcher: Watcher) {
        let (conn, permit) = accepted.into_connection();
        // The handler's future is made here, so the task holds it once, not beside the
        // pieces it was made from.
        let work = self.0.call(conn);
        let forced = watcher.forced_owned();
        let task = ConnTask {
            work,
            forced,
            armed: false,
            watcher,
            permit,
        };
        tokio::spawn(task);
    }
}

pin_project_lite::pin_project! {
    /// A connection's task: the handler's future, cut short by a forced shutdown; its
    /// slot and watcher go when it does. Written out rather than as `select!` in an async
    /// block, which held the handler's future twice: this is most of an idle connection's
    /// memory.
    struct ConnTask<F> {
        #[pin]
        work: F,
        #[pin]
        forced: OwnedNotified,
        armed: bool,
        watcher: Watcher,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<F: Future<Output = io::Result<()>>> Future for ConnTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if !*this.armed {
            // Registered before the phase is read, so a force in between is not missed.
            this.forced.as_mut().enable();
            *this.armed = true;
            if this.watcher.is_forced() {
                return Poll::Ready(());
            }
        }
        if let Poll::Ready(result) = this.work.poll(cx) {
            if let Err(err) = result {
                tracing::debug!("connection ended: {}", describe(&err));
            }
            return Poll::Ready(());
        }
        if this.forced.poll(cx).is_ready() {
            tracing::debug!("connection closed by shutdown");
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Runs a [`BlockingHandler`] on the blocking pool, at most `pool` at once.
pub(crate) struct BlockingSpawner<B> {
    pub(crate) handler: Arc<B>,
    pub(crate) pool: Arc<Semaphore>,
}

impl<B: BlockingHandler> Spawner for BlockingSpawner<B> {
    fn spawn(&self, accepted: Accepted, mut watcher: Watcher) {
        let handler = Arc::clone(&self.handler);
        let pool = Arc::clone(&self.pool);
        tokio::spawn(async move {
            let Accepted {
                stream,
                peer,
                idle_timeout,
                permit,
            } = accepted;
            let (conn, closer) = match into_blocking(stream, peer, idle_timeout) {
                Ok(pair) => pair,
                Err(err) => return tracing::debug!("cannot hand over: {}", describe(&err)),
            };
            let thread = tokio::select! {
                // The pool is never closed, so acquiring cannot fail.
                thread = pool.acquire_owned() => thread.ok(),
                () = watcher.reached(Phase::Draining) => None,
            };
            let Some(thread) = thread else { return };
            let mut job = tokio::task::spawn_blocking(move || {
                let result = handler.call(conn);
                drop(thread);
                result
            });
            tokio::select! {
                result = &mut job => match result {
                    Ok(Err(err)) => tracing::debug!("connection ended: {}", describe(&err)),
                    Err(err) => tracing::warn!("a blocking handler panicked: {err}"),
                    Ok(Ok(())) => {}
                },
                () = watcher.forced() => closer.close(),
            }
            drop(permit);
            drop(watcher);
        });
    }
}

/// One stream listener's accept loop.
pub(crate) struct Acceptor {
    pub(crate) listener: Arc<StreamListener>,
    /// Shared by every accept loop of a server: out of descriptors, already logged.
    pub(crate) exhausted: Arc<AtomicBool>,
    pub(crate) spawner: Arc<dyn Spawner>,
    pub(crate) slots: Option<Arc<Semaphore>>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) shutdown: ShutdownHandle,
}

impl Acceptor {
    pub(crate) async fn run(self, mut watcher: Watcher) {
        loop {
            let pending = tokio::select! {
                biased;
                () = watcher.reached(Phase::Draining) => return,
                pending = self.listener.pending() => pending,
            };
            let mut pending = match pending {
                Ok(pending) => pending,
                Err(err) => {
                    tracing::warn!("listener failed: {}", describe(&err));
                    return;
                }
            };
            // A slot only once a client waits: past max_connections clients stay in the
            // kernel's backlog rather than being accepted and dropped, and a loop idling on
            // a quiet listener holds no slot another listener's client could use.
            let permit = tokio::select! {
                biased;
                () = watcher.reached(Phase::Draining) => return,
                permit = self.slot() => permit,
            };
            match pending.accept() {
                None => {} // another loop took it
                Some(Ok(raw)) => {
                    if self.exhausted.swap(false, Ordering::Relaxed) {
                        tracing::info!("accepting again on {}", self.listener.local_endpoint());
                    }
                    self.serve(raw, permit);
                }
                Some(Err(err)) if is_connection_error(&err) => {}
                Some(Err(err)) => {
                    drop(permit);
                    // Log once per burst, for the whole server: a full descriptor table
                    // fails every accept until something closes.
                    if !self.exhausted.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "accept on {} failed: {}; backing off until it succeeds",
                            self.listener.local_endpoint(),
                            describe(&err)
                        );
                    }
                    tokio::select! {
                        () = watcher.reached(Phase::Draining) => return,
                        () = tokio::time::sleep(EXHAUSTION_BACKOFF) => {}
                    }
                }
            }
        }
    }

    /// Serves one accepted connection: answered on the spot when the handler has an
    /// immediate reply that fits the socket buffer (no task, no registration, no
    /// allocation), otherwise handed to tokio and a task.
    fn serve(&self, raw: RawStream, permit: Option<OwnedSemaphorePermit>) {
        let reply = self.spawner.immediate_reply();
        let mut sent = 0;
        if let Some(reply) = &reply {
            match raw.send_now(reply) {
                Ok(n) if n == reply.len() => {
                    tracing::debug!(peer = %raw.peer(), "answered at once");
                    return; // dropping `raw` closes the connection
                }
                Ok(n) => sent = n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return tracing::debug!("answer failed: {}", describe(&err)),
            }
        }
        let (stream, peer) = match raw.into_stream() {
            Ok(parts) => parts,
            Err(err) => return tracing::debug!("cannot register a connection: {}", describe(&err)),
        };
        tracing::debug!(%peer, "accepted");
        let accepted = Accepted {
            stream,
            peer,
            idle_timeout: self.idle_timeout,
            permit,
        };
        let watcher = self.shutdown.watcher();
        match reply {
            Some(reply) => finish_reply(accepted, reply[sent..].to_vec(), watcher),
            None => self.spawner.spawn(accepted, watcher),
        }
    }

    /// Waits for a free connection slot; with no limit there is always one.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        // The semaphore is never closed, so acquiring cannot fail.
        Arc::clone(slots).acquire_owned().await.ok()
    }
}

/// The rest of an immediate reply that did not fit the socket buffer, sent from a task.
fn finish_reply(accepted: Accepted, rest: Vec<u8>, watcher: Watcher) {
    tokio::spawn(async move {
        let (mut conn, permit) = accepted.into_connection();
        tokio::select! {
            biased;
            result = async {
                conn.write_all(&rest).await?;
                conn.shutdown().await
            } => {
                if let Err(err) = result {
                    tracing::debug!("connection ended: {}", describe(&err));
                }
            }
            () = watcher.forced() => {}
        }
        drop(permit);
        drop(watcher);
    });
}
