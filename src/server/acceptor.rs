//! A stream listener's accept loop: wait for a pending connection, take a connection slot,
//! accept, then answer it on the spot or hand it to a task (see `task.rs`) — through the
//! admission stages when the server has any.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::EXHAUSTION_BACKOFF;
use super::admission::Held;
use super::exhaustion::{self, Backoff};
use super::listener::StreamListener;
use super::meter::{ListenerMeter, Meter};
use super::pipeline::Pipeline;
use super::proxy::Now;
use super::shutdown::{Phase, ShutdownHandle, Watcher};
use super::steering::LoadWatch;
use super::task::{Accepted, Holds, Spawner, finish_reply};
use crate::error::describe;
use crate::metrics::LoopCounts;
use crate::net::{RawStream, is_connection_error};
use crate::socket::Address;

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
    /// This loop's own shards of the listener's counters (with metrics on).
    pub(crate) counts: Option<LoopCounts>,
    /// The server's load, for the steering of an immediate reply's listeners.
    pub(crate) load: Option<LoadWatch>,
}

impl Acceptor {
    pub(crate) async fn run(mut self, mut watcher: Watcher) {
        // Its own handle, so that a pending accept (which borrows the listener) and serving
        // (which counts into `self`) do not overlap as borrows of `self`.
        let listener = Arc::clone(&self.listener);
        let mut backoff = Backoff::new(&self.exhausted);
        // Connection errors in a row (see `CONNECTION_ERRORS_IN_A_ROW`).
        let mut failed_in_a_row = 0u32;
        // A handler that opens a descriptor after the accept (a relay's target socket) is
        // let in carefully near the limit (see `exhaustion`); others never wait for one.
        let opens_descriptors = self.spawner.opens_descriptors();
        // Asked once, as the handler's doc says: whether each connection gets an immediate
        // reply (made only for a connection admitted: qotd's turn moves on with each).
        let replies_at_once = self.spawner.replies_immediately();
        // The drain is waited for only where the loop has to wait: a wait set up and torn
        // down for every connection (a locked `Notify` registration each way) was 2–3 % of
        // a greeting server's samples, more than the loop's own code; `has_reached` is one
        // atomic load.
        while !watcher.has_reached(Phase::Draining) {
            let pending = tokio::select! {
                biased;
                pending = listener.pending() => pending,
                () = watcher.reached(Phase::Draining) => return,
            };
            let mut pending = match pending {
                Ok(pending) => pending,
                Err(err) => {
                    let endpoint = self.meter.name();
                    self.shutdown
                        .fail(crate::Error::new(crate::error::Op::Serve, endpoint, err));
                    return;
                }
            };
            // A slot only once a client waits: past max_connections clients stay in the
            // kernel's backlog rather than being accepted and dropped, and a loop idling on
            // a quiet listener holds no slot another listener's client could use.
            let permit = tokio::select! {
                biased;
                permit = self.slot() => permit,
                () = watcher.reached(Phase::Draining) => return,
            };
            // Near the limit, for a handler that opens a descriptor after the accept (a
            // relay's target): a descriptor is held back across the accept, so a client is
            // taken only when one is left for the handler, and the others wait in the
            // backlog meanwhile, as they do when `accept` itself fails.
            let turn = if opens_descriptors && exhaustion::keeps_a_reserve() {
                tokio::select! {
                    biased;
                    turn = exhaustion::reserved_turn() => Some(turn),
                    () = watcher.reached(Phase::Draining) => return,
                }
            } else {
                None
            };
            let reserve = if turn.is_some() {
                match listener.as_fd().try_clone_to_owned() {
                    Ok(reserve) => Some(reserve),
                    Err(err) => {
                        drop((permit, turn));
                        if self.back_off(&mut backoff, &err, &mut watcher).await {
                            return;
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            match pending.accept() {
                None => {} // another loop took it
                Some(Ok(raw)) => {
                    failed_in_a_row = 0;
                    let reserved = reserve.is_some();
                    // Closed before the handler runs: the descriptor it keeps for it.
                    drop(reserve);
                    self.meter.accepted_by(self.counts.as_mut());
                    backoff.succeeded(|| self.meter.name());
                    self.serve(raw, permit, replies_at_once);
                    if let Some(load) = &mut self.load {
                        load.turn(listener.as_fd());
                    }
                    if let (true, Some((_turn, since))) = (reserved, &turn) {
                        exhaustion::reserve_was_free();
                        // The connection's task opens its descriptor before the next
                        // accept (of any loop) could take it: clients that piled up while
                        // descriptors were short are let in one at a time.
                        tokio::select! {
                            () = watcher.reached(Phase::Draining) => return,
                            () = exhaustion::handler_has_opened(*since) => {}
                        }
                    }
                }
                // Only an accept that gave nothing (EAGAIN, EINTR) is not an error.
                Some(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
                // One connection that died in the queue: the next is taken at once. But a
                // filter that fails every accept with such an error (the connection left
                // in the queue, the listener readable) would spin the loop for ever, past
                // a shutdown: after many in a row, it backs off as for exhaustion.
                Some(Err(err)) if is_connection_error(&err) => {
                    if err.kind() != io::ErrorKind::Interrupted {
                        self.meter.accept_error(&err);
                    }
                    failed_in_a_row += 1;
                    if failed_in_a_row >= CONNECTION_ERRORS_IN_A_ROW {
                        failed_in_a_row = 0;
                        if self.back_off(&mut backoff, &err, &mut watcher).await {
                            return;
                        }
                    }
                }
                Some(Err(err)) => {
                    drop((permit, reserve, turn));
                    if opens_descriptors {
                        // Once descriptors free, the clients waiting now come in at once:
                        // let them in one at a time, each with its handler's descriptor.
                        exhaustion::near_the_limit();
                    }
                    if self.back_off(&mut backoff, &err, &mut watcher).await {
                        return;
                    }
                }
            }
        }
    }

    /// Out of a resource (`err`) to accept with: counts it, says so once per burst, and
    /// waits [`EXHAUSTION_BACKOFF`] before the next try (a full descriptor table fails every
    /// accept until something closes). True when the server began to drain meanwhile.
    async fn back_off(
        &self,
        backoff: &mut Backoff,
        err: &io::Error,
        watcher: &mut Watcher,
    ) -> bool {
        self.meter.accept_error(err);
        // The listener's name as `listening on` gave it: `tls:` for a TLS one, whose
        // socket alone would say `tcp:`.
        backoff.failed(|| self.meter.name(), err);
        tokio::select! {
            () = watcher.reached(Phase::Draining) => true,
            () = tokio::time::sleep(EXHAUSTION_BACKOFF) => false,
        }
    }

    /// Serves one accepted connection: answered on the spot when the handler has an
    /// immediate reply that fits the socket buffer (no task, no registration, no
    /// allocation), otherwise handed to tokio and a task.
    fn serve(
        &mut self,
        raw: RawStream,
        permit: Option<OwnedSemaphorePermit>,
        replies_at_once: bool,
    ) {
        let mut holds = Holds {
            permit,
            kept: Held::new(),
        };
        // The client a PROXY header read here named, and the header's length.
        let mut proxied = Proxied::default();
        if let Some(pipeline) = &self.pipeline {
            match self.admit_now(&raw, pipeline, replies_at_once) {
                Early::Admitted { kept, proxied: p } => {
                    holds.kept = kept;
                    proxied = p;
                }
                Early::Refused => return raw.reset(), // no byte of the service
                Early::Later { kept } => {
                    // What the peer-only stages took (a per-source slot) is held for the
                    // connection's life, as when nothing follows them.
                    holds.kept = kept;
                    return self.admit(raw, holds, pipeline);
                }
            }
        }
        // Made once the connection is admitted: a refused one takes no quote.
        let reply = match replies_at_once {
            true => self.spawner.immediate_reply(),
            false => None,
        };
        let mut sent = 0;
        if let Some(reply) = &reply {
            let started = self.meter.clock();
            // The whole reply went (dropping `raw` closes the connection), or the client is
            // gone (it reset first): either is the connection's end, and recorded.
            let record = |this: &mut Self, out: usize, failed: Option<&io::Error>| {
                if let Some(started) = started {
                    let peer = || proxied.peer.clone().unwrap_or_else(|| raw.peer());
                    let bytes = (proxied.header_len, out);
                    let counts = this.counts.as_mut();
                    this.meter
                        .answered(counts, peer, || raw.local(), bytes, started, failed);
                }
            };
            match raw.send_now_and_finish(reply) {
                Ok(n) if n == reply.len() => return record(self, n, None),
                Ok(n) => sent = n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return record(self, 0, Some(&err)),
            }
        }
        let Some(mut accepted) = self.register(raw, holds, proxied.peer) else {
            return;
        };
        if proxied.header_len > 0 {
            accepted.meter.received(proxied.header_len);
        }
        // The start of a reply the socket took here; the task counts the rest it sends.
        if sent > 0 {
            accepted.meter.sent(sent);
        }
        let watcher = self.shutdown.watcher();
        match reply {
            Some(reply) => finish_reply(accepted, reply[sent..].to_vec(), watcher),
            None => self.spawner.spawn(accepted, watcher),
        }
    }

    /// The admission stages that can run here, on the accept loop: the peer-only ones at
    /// the head of the chain; or, for a handler with an immediate reply, a PROXY header
    /// that has fully arrived and the peer-only stages after it. `Later` when the rest
    /// must run in the connection's task (nothing was taken off the socket then).
    fn admit_now(&self, raw: &RawStream, pipeline: &Pipeline, replies_at_once: bool) -> Early {
        let proxy = pipeline.proxy_now().filter(|_| replies_at_once);
        let Some(proxy) = proxy else {
            let Some(kept) = pipeline.check_early(&raw.peer(), &self.meter, &|| raw.local()) else {
                return Early::Refused;
            };
            if pipeline.has_late() {
                return Early::Later { kept };
            }
            return Early::Admitted {
                kept,
                proxied: Proxied::default(),
            };
        };
        let (peer, header_len) = match proxy.try_now(raw) {
            Now::Header { peer, len } => (peer, len),
            Now::Refused(refusal) => {
                pipeline.refused_early(&raw.peer(), &refusal, &self.meter, &|| raw.local());
                return Early::Refused;
            }
            Now::Later => return Early::Later { kept: Held::new() },
        };
        let checked = match &peer {
            Some(peer) => pipeline.check_after_proxy(peer, &self.meter, &|| raw.local()),
            None => pipeline.check_after_proxy(&raw.peer(), &self.meter, &|| raw.local()),
        };
        match checked {
            Some(kept) => Early::Admitted {
                kept,
                proxied: Proxied { peer, header_len },
            },
            None => Early::Refused,
        }
    }

    /// Hands the connection to a task that takes it through the admission stages first:
    /// nothing is sent before they pass, so not even an immediate reply is sent from here.
    fn admit(&self, raw: RawStream, holds: Holds, pipeline: &Arc<Pipeline>) {
        if let Some(accepted) = self.register(raw, holds, None) {
            let watcher = self.shutdown.watcher();
            self.spawner
                .spawn_admitting(accepted, watcher, Arc::clone(pipeline));
        }
    }

    /// Registers the connection with tokio, for a task to run it; `proxied` is its peer
    /// when a PROXY header named one.
    fn register(&self, raw: RawStream, holds: Holds, proxied: Option<Address>) -> Option<Accepted> {
        let (stream, own) = match raw.into_stream() {
            Ok(parts) => parts,
            Err(err) => {
                tracing::debug!("cannot register a connection: {}", describe(&err));
                return None;
            }
        };
        let peer = proxied.unwrap_or(own);
        // At -vv only: -v promises one line per connection, the closing one with its bytes.
        tracing::trace!(%peer, "accepted");
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

/// Accept errors of single connections (a reset in the queue, `EINTR`) in a row after which
/// the loop backs off as for exhaustion: a thousand clients that reset in the queue are a
/// burst; a thousand failures with no connection taken between them are a filter that
/// fails every `accept4`.
const CONNECTION_ERRORS_IN_A_ROW: u32 = 1000;

/// What the admission stages decided on the accept loop.
enum Early {
    /// Admitted: what the stages keep, and the PROXY header read, if one was.
    Admitted { kept: Held, proxied: Proxied },
    /// Refused (counted and logged): reset it.
    Refused,
    /// The rest is for the connection's task, which holds what the stages that ran here
    /// keep (a per-source slot) with what the rest keep.
    Later { kept: Held },
}

/// A PROXY header read on the accept loop: the client it named (`None`: none, or `LOCAL`)
/// and its length, counted as bytes received.
#[derive(Default)]
struct Proxied {
    peer: Option<Address>,
    header_len: usize,
}
