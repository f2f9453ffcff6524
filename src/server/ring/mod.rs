//! The io_uring engine: which listeners it serves, whether this kernel has what it needs
//! (probed once), and starting its workers (`worker.rs`) beside the tokio runtime, which
//! keeps everything else — signals, the metrics endpoint, the shutdown's clock.
//!
//! Each worker is a thread with its own ring. The server talks to it through one end of a
//! socket pair, on which the worker always has a receive posted: a byte asks it to stop
//! accepting (draining) or to close everything (the drain deadline passed).

mod buffers;
mod worker;

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use tokio::task::JoinHandle;

use super::engine::{IoEngine, Routine};
use super::listener::{StreamKind, StreamListener};
use super::meter::ListenerMeter;
use super::pipeline::Pipeline;
use super::shutdown::{Phase, ShutdownHandle};
use super::steering::Steering;
use super::task::Spawner;
use crate::endpoint::Endpoint;

/// What a ring worker runs on each connection.
#[derive(Clone)]
pub(crate) enum RingRoutine {
    /// The handler's immediate reply, asked per connection (daytime changes).
    Reply(Arc<dyn Spawner>),
    Echo,
    Discard,
}

impl RingRoutine {
    /// The routine for connections of `spawner`, if the ring can run it: `idle` is whether
    /// the server has an idle timeout, which the ring does not keep.
    pub(crate) fn of(spawner: &Arc<dyn Spawner>, idle: bool) -> Option<RingRoutine> {
        if spawner.replies_immediately() {
            return Some(RingRoutine::Reply(Arc::clone(spawner)));
        }
        match spawner.routine() {
            _ if idle => None,
            Some(Routine::Echo) => Some(RingRoutine::Echo),
            Some(Routine::Discard) => Some(RingRoutine::Discard),
            None => None,
        }
    }
}

impl RingRoutine {
    /// Whether the workers can run every stage of `pipeline` themselves: stages that decide
    /// on the client's address alone, behind the server's PROXY stage or not.
    pub(crate) fn admits(pipeline: &Pipeline) -> bool {
        pipeline.proxy_now().is_some() || !pipeline.has_late()
    }
}

/// A byte on a worker's wake-up socket.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(crate) enum Wake {
    Drain = b'd',
    Force = b'f',
}

impl Wake {
    fn from_byte(byte: u8) -> Option<Wake> {
        match byte {
            b'd' => Some(Wake::Drain),
            b'f' => Some(Wake::Force),
            _ => None,
        }
    }
}

/// Descriptors an io_uring worker takes besides its listener's own (its ring, its wake-up
/// pair, its share of the listener's duplicates): measured at 3 to 5.
const DESCRIPTORS_PER_WORKER: u64 = 5;

/// The most io_uring workers `auto` starts for one server.
const MAX_AUTO_WORKERS: usize = 512;

/// How many io_uring workers `engine` may start for one server. Each is a thread, a ring and
/// a few descriptors, for every listener: with many listeners (`-l` given 150 times) they
/// took every descriptor under a limit of 1024 and the server, ready, could hold one
/// connection. For `auto`, a quarter of the descriptor limit and [`MAX_AUTO_WORKERS`]
/// threads: the listeners past it are served on epoll, whose listeners share one reactor.
/// `io_uring` asked for by name has no such budget.
pub(crate) fn worker_budget(engine: IoEngine) -> usize {
    match engine {
        IoEngine::Auto => {
            let descriptors = crate::net::descriptor_limit().unwrap_or(1024);
            usize::try_from(descriptors / 4 / DESCRIPTORS_PER_WORKER)
                .unwrap_or(usize::MAX)
                .min(MAX_AUTO_WORKERS)
        }
        IoEngine::Epoll | IoEngine::IoUring => usize::MAX,
    }
}

/// Why the engine `engine` gives this process no ring, in words; `None` when it does.
pub(crate) fn declined(engine: IoEngine) -> Option<String> {
    match engine {
        IoEngine::Epoll => Some("the epoll engine was asked for".to_owned()),
        IoEngine::Auto | IoEngine::IoUring => probe().clone().err(),
    }
}

/// Whether this kernel has what the workers use: a ring with the flags they ask for, a
/// ring of provided buffers (5.19, the same release as multishot accept) and the opcodes.
/// Asked once per process.
fn probe() -> &'static Result<(), String> {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED.get_or_init(|| {
        let ring = worker::ring()
            .map_err(|err| format!("io_uring is not available: {}", in_words(&err)))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|err| format!("io_uring cannot be probed: {}", in_words(&err)))?;
        for (code, name) in [
            (io_uring::opcode::AcceptMulti::CODE, "accept"),
            (io_uring::opcode::Send::CODE, "send"),
            (io_uring::opcode::Recv::CODE, "recv"),
            (io_uring::opcode::Close::CODE, "close"),
            (io_uring::opcode::AsyncCancel::CODE, "cancel"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("io_uring lacks the {name} operation"));
            }
        }
        if !ring.params().is_feature_skip_cqe_on_success() {
            return Err("io_uring cannot skip completions (Linux 5.17)".to_owned());
        }
        let buffers = buffers::BufferRing::new(&ring, 0, 1, 64).map_err(|err| {
            format!(
                "io_uring lacks provided-buffer rings (Linux 5.19): {}",
                in_words(&err)
            )
        })?;
        // The ring first, then the buffers: a tuple drops its fields in order, so the ring
        // (and with it the buffer group's registration) is closed before the entries the
        // kernel was given are freed, on every path out below.
        let (ring, _buffers) = &mut (ring, buffers);
        // Entered once: a filter that lets rings be made but refuses `io_uring_enter` (or a
        // kernel that fails it) would leave workers that stop as soon as they start, behind
        // listeners that are open and serve nobody.
        let nop = io_uring::opcode::Nop::new().build();
        // SAFETY: a NOP points at no buffer.
        unsafe { ring.submission().push(&nop) }
            .map_err(|_| "io_uring's submission queue is full at once".to_owned())?;
        ring.submit_and_wait(1)
            .map_err(|err| format!("io_uring cannot be entered: {}", in_words(&err)))?;
        Ok(())
    })
}

/// A listening socket taken from tokio for the workers, with the guard of its socket file.
pub(crate) struct RingListener {
    pub(super) fd: OwnedFd,
    pub(super) kind: StreamKind,
}

impl RingListener {
    /// Takes `listener` out of tokio's reactor (it must not be woken for every connection
    /// the ring accepts).
    pub(crate) fn take(listener: StreamListener) -> RingListener {
        let (fd, kind) = listener.into_parts();
        RingListener { fd, kind }
    }

    /// Hands the socket back to tokio's reactor.
    pub(crate) fn give_back(self) -> io::Result<StreamListener> {
        StreamListener::from_parts(self.fd, self.kind)
    }

    /// A connection this listener accepted: a TCP one that may have been queued before the
    /// listener had `TCP_NODELAY` gets it (see `listener::QueuedWithNagle`).
    pub(super) fn accepted(&self, conn: BorrowedFd<'_>) {
        if let StreamKind::Tcp(queued) = &self.kind {
            queued.accepted(conn);
        }
    }
}

/// Workers that could not start: why, and the listener, once no worker holds it any more.
pub(crate) struct NotStarted {
    pub(crate) err: io::Error,
    pub(crate) listener: Option<RingListener>,
}

/// What the workers of one listener share.
pub(crate) struct Workers<'a> {
    pub(crate) loops: usize,
    pub(crate) routine: RingRoutine,
    /// The server's admission stages, when the workers can run them all (see
    /// [`RingRoutine::admits`]).
    pub(crate) admission: Option<Arc<Pipeline>>,
    pub(crate) meter: &'a Arc<ListenerMeter>,
    pub(crate) shutdown: &'a ShutdownHandle,
    /// Shared by every accept loop of a server: out of descriptors, already logged.
    pub(crate) exhausted: &'a Arc<AtomicBool>,
    pub(crate) endpoint: &'a Endpoint,
    /// Where the endpoint's connections land, for an immediate reply on several listeners.
    pub(crate) steering: Option<Arc<Steering>>,
}

impl Workers<'_> {
    /// Makes `loops` workers for `listener`, each with its ring; they accept once told to
    /// ([`Ready::go`]), and run on until their last connection ends, each holding a watcher
    /// of `shutdown`.
    ///
    /// # Errors
    ///
    /// A worker could not make its ring (or its thread or wake-up socket): none is left
    /// running, and the listener comes back with the error.
    pub(crate) async fn start(self, listener: RingListener) -> Result<Ready, NotStarted> {
        let Workers {
            loops,
            routine,
            admission,
            meter,
            shutdown,
            exhausted,
            endpoint,
            steering,
        } = self;
        let listener = Arc::new(listener);
        let mut wakers = Vec::with_capacity(loops);
        let mut handles = Vec::with_capacity(loops);
        let mut ready = Vec::with_capacity(loops);
        let mut finished = Vec::with_capacity(loops);
        let mut go = Vec::with_capacity(loops);
        let mut failed = None;
        for index in 0..loops.max(1) {
            let (ours, theirs) = match UnixStream::pair() {
                Ok(pair) => pair,
                Err(err) => {
                    failed = Some(naming("wake-up socket", err));
                    break;
                }
            };
            let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            // Dropped when the thread ends, which is all the server's relay waits for.
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            // See `Ready`.
            let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
            let routine = routine.clone();
            let shared = worker::Shared {
                meter: Arc::clone(meter),
                exhausted: Arc::clone(exhausted),
                endpoint: endpoint.to_string(),
                admission: admission.clone(),
                steering: steering.clone(),
                server: shutdown.clone(),
            };
            let watcher = shutdown.watcher();
            let listener = Arc::clone(&listener);
            let spawned = std::thread::Builder::new()
                .name(format!("socketkit-uring-{index}"))
                .spawn(move || {
                    let _done = done_tx;
                    let made = worker::ring().and_then(|ring| {
                        worker::Worker::new(
                            ring, listener, routine, theirs, shared, watcher, stopped_tx,
                        )
                    });
                    match made {
                        Ok(worker) => {
                            let _ = ready_tx.send(Ok(()));
                            // A dropped sender says no as well.
                            if go_rx.recv() == Ok(true) {
                                worker.run();
                            }
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(naming("ring", err)));
                        }
                    }
                });
            if let Err(err) = spawned {
                failed = Some(naming("thread", err));
                break;
            }
            wakers.push(ours);
            finished.push(done_rx);
            go.push(go_tx);
            ready.push(ready_rx);
            handles.push(tokio::spawn(async move {
                let _ = stopped_rx.await;
            }));
        }
        if failed.is_none() {
            for ready in ready {
                let made = ready
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("an io_uring worker died")));
                if let Err(err) = made {
                    failed = Some(err);
                    break;
                }
            }
        }
        if let Some(err) = failed {
            // The workers made end without accepting (their `go` senders drop); once every
            // thread has ended, none holds the listener.
            drop(go);
            for done in finished {
                let _ = done.await;
            }
            drop(handles);
            let listener = Arc::try_unwrap(listener).ok();
            return Err(NotStarted { err, listener });
        }
        tokio::spawn(relay_shutdown(wakers, finished, shutdown.clone()));
        Ok(Ready { handles, go })
    }
}

/// `err`, met making an io_uring worker's `part`, in words that say so (the error line
/// names the listener: "cannot serve on tcp:…: an io_uring worker's ring: too many open
/// files").
fn naming(part: &str, err: io::Error) -> io::Error {
    let words = in_words(&err);
    io::Error::new(err.kind(), format!("an io_uring worker's {part}: {words}"))
}

/// `err` in words, with the likely cause of a ring's `ENOMEM`: its memory is locked, and for
/// a user without `CAP_IPC_LOCK` counts against `RLIMIT_MEMLOCK`.
fn in_words(err: &io::Error) -> String {
    let words = crate::error::describe(err);
    match err.raw_os_error() {
        Some(libc::ENOMEM) => format!("{words} (its locked memory: see ulimit -l)"),
        _ => words,
    }
}

/// Workers with their rings, waiting to accept: every ring of a server is made before any
/// worker accepts, for one that accepted at once could take the last descriptor another
/// needs for its ring. Dropped without [`Ready::go`], the workers end.
pub(crate) struct Ready {
    handles: Vec<JoinHandle<()>>,
    go: Vec<std::sync::mpsc::Sender<bool>>,
}

impl Ready {
    /// Lets the workers accept; the handles end once they have stopped.
    pub(crate) fn go(self) -> Vec<JoinHandle<()>> {
        for go in self.go {
            let _ = go.send(true);
        }
        self.handles
    }
}

/// Tells the workers when the server drains and when it closes everything; ends with the
/// last worker.
async fn relay_shutdown(
    mut wakers: Vec<UnixStream>,
    finished: Vec<tokio::sync::oneshot::Receiver<()>>,
    shutdown: ShutdownHandle,
) {
    let all_finished = async {
        for done in finished {
            let _ = done.await;
        }
    };
    tokio::pin!(all_finished);
    let mut watcher = shutdown.watcher();
    tokio::select! {
        () = watcher.reached(Phase::Draining) => {}
        () = &mut all_finished => return,
    }
    // Not held while the connections drain: the server waits for every watcher.
    drop(watcher);
    for waker in &mut wakers {
        worker::wake(waker, Wake::Drain);
    }
    tokio::select! {
        () = shutdown.forced() => {}
        () = &mut all_finished => return,
    }
    for waker in &mut wakers {
        worker::wake(waker, Wake::Force);
    }
}
