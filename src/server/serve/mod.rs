//! Serving, once the listeners are bound: [`Server::run`] checks that every listener has
//! its handler, serves an inetd-style connection, starts each listener's accept loops,
//! io_uring workers ([`ring_routine`] says when a listener gets them) or datagram loop, and
//! then drives the shutdown — the delay while `/health` answers 503, closing the listeners,
//! draining the connections.

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::acceptor::Acceptor;
use super::listener::Listener;
use super::meter::{ListenerMeter, Meter};
use super::pipeline::Pipeline;
#[cfg(target_os = "linux")]
use super::ring;
use super::shutdown::{self, Phase};
use super::steering::Steering;
use super::task::{self, Spawner};
use super::{DatagramHandler, IoEngine, Limits, Server, ShutdownHandle};
use crate::error::{Error, Op, Result};

impl Server {
    pub(super) async fn run(
        mut self,
        spawner: Option<Arc<dyn Spawner>>,
        datagram: Option<Arc<dyn DatagramHandler>>,
    ) -> Result<()> {
        let slots = self
            .limits
            .max_connections
            .map(|max| Arc::new(Semaphore::new(max)));
        // Every listener must have its handler before any accept loop starts: a loop
        // spawned before an error would go on serving after `run` had failed.
        for group in &self.groups {
            for listener in &group.listeners {
                let missing = match listener {
                    Listener::Stream(_) if spawner.is_none() => "stream",
                    Listener::Datagram(_) if datagram.is_none() => "datagram",
                    _ => continue,
                };
                let reason = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no {missing} handler was given"),
                );
                return Err(Error::new(Op::Listen, &group.endpoint, reason));
            }
        }
        // Dropped before it returns (a `select!` on Ctrl-C, a `timeout` around `serve`), the
        // future takes the server with it: the accept loops are tasks of their own, and would
        // otherwise serve on with nobody to stop them.
        let stop_when_dropped = StopWhenDropped(Some(self.shutdown.clone()));
        let mut ready = self.ready.take();
        let pipeline = self.stages.pipeline(&self.refusals, &self.dropped);
        let tls_pipeline = self
            .tls_stages
            .as_ref()
            .and_then(|stages| stages.pipeline(&self.refusals, &self.dropped));
        if let Some((stream, peer)) = self.connection {
            let Some(spawner) = &spawner else {
                let reason = io::Error::new(io::ErrorKind::InvalidInput, "no stream handler");
                return Err(Error::new(Op::Accept, peer, reason));
            };
            let listener = ListenerMeter::new("inetd".to_owned(), self.metrics.as_ref());
            listener.accepted();
            // The stages a listener's accept loop runs on the peer alone (access rules,
            // per-source limits) run here as there; the rest, in the connection's task.
            let kept = match &pipeline {
                Some(pipeline) => {
                    pipeline.check_early(&peer, &listener, &|| stream.local_addr().ok())
                }
                None => Some(Vec::new()),
            };
            let Some(kept) = kept else {
                // Refused (counted and logged): no byte of the service, and a reset once
                // the last descriptor of the socket (stdin, stdout) closes, at exit.
                stream.reset_on_close();
                return Ok(());
            };
            let meter = Meter::start(peer, &listener, || stream.local_addr().ok());
            let accepted = task::Accepted {
                stream,
                meter,
                idle_timeout: self.limits.idle_timeout,
                holds: task::Holds { permit: None, kept },
            };
            let late = pipeline.clone().filter(|pipeline| pipeline.has_late());
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            serve_accepted(accepted, spawner, late, self.shutdown.watcher());
            // Done when the connection is, unless a signal asks for a shutdown first.
            if self.shutdown.done_unless_asked().await {
                stop_when_dropped.disarm();
                return Ok(());
            }
        }
        if let Some(proxy) = self.stages.proxy() {
            // Balancers send the header at once: accept only once it is there.
            for group in &self.groups {
                for listener in &group.listeners {
                    if let Listener::Stream(listener) = listener {
                        listener.defer_accept(proxy.timeout());
                    }
                }
            }
        }
        let mut tasks = Vec::new();
        // Started once the server is ready, after whoever waits for that has said so (see
        // below): nothing of theirs, not a line of the log, comes before it.
        let mut loops_to_start: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
        let mut notes = Vec::new();
        // The same, at -vv.
        let mut fine_notes = Vec::new();
        #[cfg(target_os = "linux")]
        let mut rings: Vec<ring::Ready> = Vec::new();
        // The io_uring workers `auto` may still start (see `ring::worker_budget`).
        #[cfg(target_os = "linux")]
        let ring_workers_allowed = ring::worker_budget(self.limits.engine);
        #[cfg(target_os = "linux")]
        let mut ring_budget = ring_workers_allowed;
        let exhausted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The first listener that accepts connections, for the check before readiness.
        let mut accepting: Option<String> = None;
        for group in self.groups {
            let meter = ListenerMeter::new(group.endpoint.to_string(), self.metrics.as_ref());
            let streams = group
                .listeners
                .iter()
                .any(|listener| matches!(listener, Listener::Stream(_)));
            if accepting.is_none() && spawner.is_some() && streams {
                accepting = Some(group.endpoint.to_string());
            }
            // Listeners beyond one each get a loop; a single shared listener gets them all.
            let loops = group.loops / group.listeners.len().max(1);
            // A tls: listener's connections also go through the handshake.
            let pipeline = if group.is_tls() {
                &tls_pipeline
            } else {
                &pipeline
            };
            #[cfg(target_os = "linux")]
            let mut ring_routine = spawner.as_ref().filter(|_| streams).and_then(|spawner| {
                let routine = ring_routine(&self.limits, spawner, pipeline, group.is_tls())
                    .and_then(|routine| {
                        let wanted = loops.max(1) * group.listeners.len();
                        let left = ring_budget.checked_sub(wanted).ok_or_else(|| {
                            format!(
                                "the server's io_uring workers are at their limit, \
                                 {ring_workers_allowed}: a quarter of the descriptor limit, at \
                                 most 512"
                            )
                        })?;
                        ring_budget = left;
                        Ok(routine)
                    });
                // Which engine serves the listener, and why not the ring: `-v` tells an
                // operator (io_uring refused in a container, a limit that needs tokio).
                notes.push(match &routine {
                    Ok(_) => format!("{}: io_uring engine", group.endpoint),
                    Err(why) => format!("{}: epoll engine ({why})", group.endpoint),
                });
                routine.ok()
            });
            // An immediate reply's connections gather on the first listener while its worker
            // keeps up (see `Steering`): on either engine, for the accept loop (or the ring's
            // worker) does all of such a connection's work.
            let replies_at_once = !group.is_tls()
                && spawner
                    .as_ref()
                    .is_some_and(|spawner| spawner.replies_immediately());
            let steering = match group.listeners.first() {
                Some(first @ Listener::Stream(_)) if replies_at_once => {
                    match Steering::attach(first.handover_parts().0, group.listeners.len()) {
                        Ok(steering) => steering,
                        Err(err) => {
                            fine_notes.push(format!(
                                "{}: reuseport steering not attached: {}",
                                group.endpoint,
                                crate::error::describe(&err)
                            ));
                            None
                        }
                    }
                }
                _ => None,
            };
            if steering.is_some() {
                notes.push(format!(
                    "{}: new connections go to the first of its {} listeners until the server \
                     is busy",
                    group.endpoint,
                    group.listeners.len()
                ));
            }
            for listener in group.listeners {
                // A stream listener the ring serves goes to its workers; the rest to tokio.
                #[cfg(target_os = "linux")]
                let listener = match (listener, ring_routine.clone()) {
                    (Listener::Stream(listener), Some(routine)) if spawner.is_some() => {
                        let workers = ring::Workers {
                            loops,
                            routine,
                            admission: pipeline.clone(),
                            meter: &meter,
                            shutdown: &self.shutdown,
                            exhausted: &exhausted,
                            endpoint: &group.endpoint,
                            steering: steering.clone(),
                        };
                        match workers.start(ring::RingListener::take(listener)).await {
                            Ok(ready) => {
                                rings.push(ready);
                                continue;
                            }
                            // `auto` asked for whichever engine works: the rings' limits (a
                            // locked-memory limit, descriptors, threads) are not epoll's.
                            Err(ring::NotStarted {
                                err,
                                listener: Some(listener),
                            }) if self.limits.engine == IoEngine::Auto => {
                                notes.push(format!(
                                    "{}: epoll engine after all (io_uring's workers could not \
                                     start: {})",
                                    group.endpoint,
                                    crate::error::describe(&err)
                                ));
                                // The group's other listeners too, without trying again.
                                ring_routine = None;
                                match listener.give_back() {
                                    Ok(listener) => Listener::Stream(listener),
                                    Err(err) => {
                                        self.shutdown.force();
                                        return Err(Error::new(Op::Serve, &group.endpoint, err));
                                    }
                                }
                            }
                            Err(ring::NotStarted { err, .. }) => {
                                // What already runs must not go on serving after an error.
                                self.shutdown.force();
                                return Err(Error::new(Op::Serve, &group.endpoint, err));
                            }
                        }
                    }
                    (listener, _) => listener,
                };
                match (listener, &spawner, &datagram) {
                    (Listener::Stream(listener), Some(spawner), _) => {
                        let listener = Arc::new(listener);
                        for _ in 0..loops.max(1) {
                            let acceptor = Acceptor {
                                listener: Arc::clone(&listener),
                                exhausted: Arc::clone(&exhausted),
                                spawner: Arc::clone(spawner),
                                slots: slots.clone(),
                                pipeline: pipeline.clone(),
                                idle_timeout: self.limits.idle_timeout,
                                shutdown: self.shutdown.clone(),
                                counts: meter.loop_counts(),
                                meter: Arc::clone(&meter),
                                load: steering.as_ref().map(Steering::watch_process),
                            };
                            loops_to_start.push(Box::pin(acceptor.run(self.shutdown.watcher())));
                        }
                    }
                    (Listener::Datagram(listener), _, Some(handler)) => {
                        let watcher = self.shutdown.watcher();
                        let run = listener.run(
                            Arc::clone(handler),
                            pipeline.clone(),
                            Arc::clone(&meter),
                            watcher,
                        );
                        loops_to_start.push(Box::pin(run));
                    }
                    // Checked above: every listener has its handler.
                    _ => {}
                }
            }
        }
        if let Some(endpoint) = &accepting
            && let Err(err) =
                room_for_a_connection(spawner.as_ref().is_some_and(|s| s.opens_descriptors()))
        {
            self.shutdown.force();
            return Err(Error::new(Op::Serve, endpoint, err));
        }
        if let Some(ready) = ready {
            let _ = ready.send(());
            // A turn for the task that waits for it (the CLI's, which runs this future too)
            // to write its readiness lines before any other line or connection.
            tokio::task::yield_now().await;
        }
        for note in notes {
            tracing::debug!("{note}");
        }
        for note in fine_notes {
            tracing::trace!("{note}");
        }
        tasks.extend(loops_to_start.into_iter().map(tokio::spawn));
        #[cfg(target_os = "linux")]
        for ready in rings {
            tasks.extend(ready.go());
        }
        let mut watcher = self.shutdown.watcher();
        watcher.reached(Phase::Stopping).await;
        // From now on `/health` answers 503; the listeners go on accepting for the delay,
        // so that a load balancer polling it stops sending before they close. Not when a
        // successor serves the listeners: the service goes on (ShutdownHandle::hand_over).
        let handed_over = self.shutdown.is_handed_over();
        if let Some(metrics) = self.metrics.as_ref().filter(|_| !handed_over) {
            metrics.set_draining();
        }
        if !self.limits.shutdown_delay.is_zero() && !handed_over {
            tracing::info!(
                "accepting for {} more while /health answers 503",
                humantime::format_duration(self.limits.shutdown_delay)
            );
            tokio::select! {
                // Time the server was stopped (^Z, a paused VM) is given back: the
                // clients that connected meanwhile wait in the backlog, and closing the
                // listeners at once would reset them.
                () = crate::net::sleep_running(self.limits.shutdown_delay) => {}
                () = watcher.reached(Phase::Forced) => {}
            }
        }
        self.shutdown.close_listeners();
        if !handed_over {
            tracing::info!("shutting down: listeners closed, draining connections");
        }
        drop(watcher);
        for task in tasks {
            // The loops return as soon as draining starts, closing their listeners.
            let _ = task.await;
        }
        let forced = self.shutdown.drain(self.limits.drain_timeout).await;
        if forced > 0 {
            tracing::info!("closed {forced} connection(s) still open at the drain deadline");
        }
        stop_when_dropped.disarm();
        match self.shutdown.take_failure() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Forces the server's shutdown when dropped armed: what a `serve` future dropped before it
/// returned leaves behind stops at once — the listeners close as their loops end, and open
/// connections are reset, as at the drain deadline.
struct StopWhenDropped(Option<ShutdownHandle>);

impl StopWhenDropped {
    /// `serve` returned: nothing is left to stop.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopWhenDropped {
    fn drop(&mut self) {
        if let Some(shutdown) = self.0.take() {
            shutdown.force();
        }
    }
}

/// The io_uring routine for a stream listener, when the server's engine is io_uring (or
/// auto, on a kernel that has it) and the listener qualifies (see
/// [`IoEngine`](super::IoEngine)); else why not, in words.
#[cfg(target_os = "linux")]
fn ring_routine(
    limits: &Limits,
    spawner: &Arc<dyn Spawner>,
    pipeline: &Option<Arc<Pipeline>>,
    tls: bool,
) -> Result<ring::RingRoutine, String> {
    if tls {
        return Err("a tls: listener".to_owned());
    }
    // The handler first: a limit the server sets itself for a handler the ring never runs
    // (`serve_blocking`'s) is not the reason.
    let routine =
        ring::RingRoutine::of(spawner, limits.idle_timeout.is_some()).ok_or_else(|| {
            "a handler the ring does not run (it runs immediate replies, and echo and discard \
         without an idle timeout)"
                .to_owned()
        })?;
    if limits.max_connections.is_some() {
        return Err("a limit on connections at once".to_owned());
    }
    if pipeline
        .as_deref()
        .is_some_and(|pipeline| !ring::RingRoutine::admits(pipeline))
    {
        return Err("admission stages that run in a connection's task".to_owned());
    }
    if let Some(why) = ring::declined(limits.engine) {
        return Err(why);
    }
    Ok(routine)
}

/// Runs a connection accepted elsewhere: through the admission stages, as an immediate
/// reply sent from a task, or with the handler.
fn serve_accepted(
    accepted: task::Accepted,
    spawner: &Arc<dyn Spawner>,
    pipeline: Option<Arc<Pipeline>>,
    watcher: shutdown::Watcher,
) {
    match (pipeline, spawner.immediate_reply()) {
        (Some(pipeline), _) => spawner.spawn_admitting(accepted, watcher, pipeline),
        (None, Some(reply)) => task::finish_reply(accepted, reply.to_vec(), watcher),
        (None, None) => spawner.spawn(accepted, watcher),
    }
}

/// The descriptors a connection is given room for at readiness: one, its socket; for a
/// handler that opens descriptors of its own ([`Handler::opens_descriptors`](super::Handler::opens_descriptors)),
/// four (a relay's target socket and a splice pipe's two ends; a program's socket duplicate
/// and the spawn's pipe). A server whose set-up took the last ones would be ready and serve
/// no one (each accept failing with `EMFILE`, or each connection reset, with nothing to free
/// one), where the readiness gate promises a server that serves.
fn room_for_a_connection(opens_descriptors: bool) -> io::Result<()> {
    super::room_for_a_connection(if opens_descriptors { 4 } else { 1 })
}

#[cfg(test)]
mod tests;
