//! A stream listener's accept loop: wait for a pending connection, take a connection slot,
//! accept, then answer it on the spot or hand it to a task (see `task.rs`) — through the
//! admission stages when the server has any.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::EXHAUSTION_BACKOFF;
use super::admission::{Held, Pipeline};
use super::listener::StreamListener;
use super::meter::{ListenerMeter, Meter};
use super::shutdown::{Phase, ShutdownHandle, Watcher};
use super::task::{Accepted, Holds, Spawner, finish_reply};
use crate::error::describe;
use crate::net::{RawStream, is_connection_error};

/// One stream listener's accept loop.
pub(crate) struct Acceptor {
    pub(crate) listener: Arc<StreamListener>,
    /// Shared by every accept loop of a server: out of descriptors, already logged.
    pub(crate) exhausted: Arc<AtomicBool>,
    pub(crate) spawner: Arc<dyn Spawner>,
    pub(crate) slots: Option<Arc<Semaphore>>,
    /// The admission stages; `None` when the server has none, which keeps the path below
    /// exactly as it is without them: no allocation, no dynamic call, no system call.
    pub(crate) pipeline: Option<Arc<Pipeline>>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) shutdown: ShutdownHandle,
    /// The listener's name and counters, shared by its loops and its connections.
    pub(crate) meter: Arc<ListenerMeter>,
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
                    self.meter.accepted();
                    if self.exhausted.swap(false, Ordering::Relaxed) {
                        tracing::info!("accepting again on {}", self.listener.local_endpoint());
                    }
                    self.serve(raw, permit);
                }
                // Only an accept that gave nothing (EAGAIN, EINTR) is not an error.
                Some(Err(err)) if is_connection_error(&err) => match err.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
                    _ => self.meter.accept_error(&err),
                },
                Some(Err(err)) => {
                    self.meter.accept_error(&err);
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
        let mut holds = Holds {
            permit,
            kept: Held::new(),
        };
        if let Some(pipeline) = &self.pipeline {
            let Some(kept) = pipeline.check_early(&raw.peer(), &self.meter) else {
                return raw.reset(); // refused: no byte of the service
            };
            holds.kept = kept;
            if pipeline.has_late() {
                return self.admit(raw, holds, pipeline);
            }
        }
        let reply = self.spawner.immediate_reply();
        let mut sent = 0;
        if let Some(reply) = &reply {
            let started = self.meter.clock();
            match raw.send_now(reply) {
                Ok(n) if n == reply.len() => {
                    if let Some(started) = started {
                        self.meter
                            .answered(|| raw.peer(), || raw.local(), n, started);
                    }
                    return; // dropping `raw` closes the connection
                }
                Ok(n) => sent = n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return tracing::debug!("answer failed: {}", describe(&err)),
            }
        }
        let Some(accepted) = self.register(raw, holds) else {
            return;
        };
        let watcher = self.shutdown.watcher();
        match reply {
            Some(reply) => finish_reply(accepted, reply[sent..].to_vec(), watcher),
            None => self.spawner.spawn(accepted, watcher),
        }
    }

    /// Hands the connection to a task that takes it through the admission stages first:
    /// nothing is sent before they pass, so not even an immediate reply is sent from here.
    fn admit(&self, raw: RawStream, holds: Holds, pipeline: &Arc<Pipeline>) {
        if let Some(accepted) = self.register(raw, holds) {
            let watcher = self.shutdown.watcher();
            self.spawner
                .spawn_admitting(accepted, watcher, Arc::clone(pipeline));
        }
    }

    /// Registers the connection with tokio, for a task to run it.
    fn register(&self, raw: RawStream, holds: Holds) -> Option<Accepted> {
        let (stream, peer) = match raw.into_stream() {
            Ok(parts) => parts,
            Err(err) => {
                tracing::debug!("cannot register a connection: {}", describe(&err));
                return None;
            }
        };
        tracing::debug!(%peer, "accepted");
        let meter = Meter::start(peer, &self.meter, || stream.local_addr().ok());
        Some(Accepted {
            stream,
            meter,
            idle_timeout: self.idle_timeout,
            holds,
        })
    }

    /// Waits for a free connection slot; with no limit there is always one.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        // The semaphore is never closed, so acquiring cannot fail.
        Arc::clone(slots).acquire_owned().await.ok()
    }
}
