//! The signals a server command takes, and when: SIGINT/SIGTERM drain (a second one closes
//! everything now), SIGUSR2 restarts without refusing a connection, SIGHUP reloads. They
//! are caught from before the bind, so that none kills a server half started (leaving its
//! socket file, its pid file or the pid file's temporary behind); the server's
//! [`Lifecycle`] orders what they do with its readiness: a restart or a reload waits until
//! the server has said it is ready (nothing comes before the readiness lines), and a stop
//! that comes first makes it never say so (no `listening on` and `READY=1` after
//! `STOPPING=1`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use socketkit::error::Op;
use socketkit::server::{Handover, ManagerState, ShutdownHandle, Successor, notify_manager};
use tokio::signal::unix::{Signal, SignalKind};
use tokio::sync::watch;

use super::exit::CliError;
use super::metrics::StopServing;

/// How long a new process started by SIGUSR2 may take to report ready before it is stopped
/// and the old one goes on serving.
const RESTART_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a tokio runtime with I/O can start: the first one in the process makes a socket
/// pair for every signal handler to come, and panics if it cannot (a seccomp filter that
/// refuses `socketpair`, a descriptor limit of a handful). A pair is made and closed here
/// first, once, so that such a process ends with an `error:` line instead.
pub(crate) fn runtime_can_start() -> std::io::Result<()> {
    // The OS error the pair failed with (0 for none, -1 for one that is not the OS's),
    // kept for every later call.
    static PAIR: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    // Four pairs at once: the runtime's own descriptors (its epoll instance, its waker)
    // come before the signals' pair, so room for one pair alone (a limit of 6) still ended
    // in tokio's panic.
    let failed = *PAIR.get_or_init(|| {
        let pairs: std::io::Result<Vec<_>> = (0..4)
            .map(|_| std::os::unix::net::UnixStream::pair())
            .collect();
        match pairs {
            Ok(_) => 0,
            Err(err) => err.raw_os_error().unwrap_or(-1),
        }
    });
    match failed {
        0 => Ok(()),
        -1 => Err(std::io::Error::other("cannot make a socket pair")),
        code => Err(std::io::Error::from_raw_os_error(code)),
    }
}

/// As PID 1 (a container's entrypoint), reaps the orphans the kernel hands over, on each
/// SIGCHLD and every second (a SIGCHLD can stand for several), on the current runtime;
/// said at `-v`. An init (`docker run --init`) does it otherwise.
pub(crate) fn reap_orphans_as_init() {
    tracing::debug!("PID 1: the orphans of exec's programs are reaped");
    let mut children = catch(SignalKind::child()).ok();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let child = async {
                match &mut children {
                    Some(children) => {
                        children.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = child => {}
                _ = tick.tick() => {}
            }
            if let Err(err) = socketkit::server::reap_orphans() {
                tracing::debug!("cannot reap orphans: {}", socketkit::error::describe(&err));
            }
        }
    });
}

/// Runs `work` on tokio's blocking pool, or here when no thread can be started for it (a
/// container at its `pids.max`: tokio panics then, and the task that asked, the SIGHUP
/// loop, died with it): a reload the operator asked for runs either way.
pub(crate) async fn off_runtime_or_here<F>(work: F)
where
    F: Fn() + Clone + Send + 'static,
{
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe({
        let work = work.clone();
        move || tokio::task::spawn_blocking(work)
    }));
    match spawned {
        Ok(job) => {
            if let Err(err) = job.await {
                tracing::warn!("SIGHUP: the reload failed: {err}");
            }
        }
        // Tokio keeps the work queued, to run once its pool has a thread: the reload may
        // run once more then, reading the same files.
        Err(_) => {
            tracing::debug!("no thread for the reload: it runs on the runtime's");
            work();
        }
    }
}

/// Catches `kind` from now on (on the current runtime), as `tokio::signal::unix::signal`
/// does, but with an error where tokio would panic (see [`runtime_can_start`]).
pub(crate) fn catch(kind: SignalKind) -> std::io::Result<Signal> {
    runtime_can_start()?;
    tokio::signal::unix::signal(kind)
}

/// The signals a server takes, caught (their default actions no longer apply) and queued
/// until they are watched.
pub(crate) struct Signals {
    interrupt: Signal,
    terminate: Signal,
    user2: Signal,
    hangup: Signal,
    /// SIGHUP again (tokio tells every stream of a signal): for the restarts, which pass on
    /// a reload asked for while they start.
    hangup_in_restart: Signal,
}

impl Signals {
    /// Catches SIGINT, SIGTERM, SIGUSR2 and SIGHUP from now on (on the current runtime).
    pub(crate) fn install() -> Result<Signals, CliError> {
        let install =
            |kind| catch(kind).map_err(|err| CliError::runtime(Op::Create, "signal handler", err));
        Ok(Signals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            user2: install(SignalKind::user_defined2())?,
            hangup: install(SignalKind::hangup())?,
            hangup_in_restart: install(SignalKind::hangup())?,
        })
    }
}

/// Where a server is in its life, as its signals need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Bound, not yet said to be ready.
    Starting,
    /// Said to be ready (the readiness lines, `READY=1`).
    Ready,
    /// Told to stop.
    Stopping,
}

/// The server's phase, changed atomically by readiness and by a stop.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle(watch::Sender<Phase>);

impl Lifecycle {
    pub(crate) fn new() -> Lifecycle {
        Lifecycle(watch::Sender::new(Phase::Starting))
    }

    /// Runs `tell` (the readiness lines and reports) and marks the server ready, unless a
    /// stop came first: then nothing is told, and `false`.
    pub(crate) fn ready(&self, tell: impl FnOnce()) -> bool {
        let mut tell = Some(tell);
        self.0.send_if_modified(|phase| {
            if *phase != Phase::Starting {
                return false;
            }
            if let Some(tell) = tell.take() {
                tell();
            }
            *phase = Phase::Ready;
            true
        })
    }

    /// Marks the server stopping; returns whether it had said it was ready (so that the
    /// service manager hears `STOPPING=1` only after `READY=1`).
    fn stopping(&self) -> bool {
        let mut was_ready = false;
        self.0.send_if_modified(|phase| {
            was_ready = *phase == Phase::Ready;
            let changed = *phase != Phase::Stopping;
            *phase = Phase::Stopping;
            changed
        });
        was_ready
    }

    /// A handle that waits for readiness.
    pub(crate) fn gate(&self) -> Gate {
        Gate(self.0.subscribe())
    }
}

/// Waits until the server has said it is ready.
#[derive(Debug, Clone)]
pub(crate) struct Gate(watch::Receiver<Phase>);

impl Gate {
    /// Resolves once the server is ready (`true`) or stopping without having been
    /// (`false`).
    pub(crate) async fn opened(&mut self) -> bool {
        match self.0.wait_for(|phase| *phase != Phase::Starting).await {
            Ok(phase) => *phase == Phase::Ready,
            Err(_) => false,
        }
    }
}

/// What SIGUSR2 needs: this program and its arguments, the listening sockets to hand
/// over (dropped as soon as the server drains, so that no socket outlives its listeners),
/// and the metrics endpoint's serving, which stops once the new process serves its socket.
pub(crate) struct Restart {
    pub(crate) handover: Option<Handover>,
    pub(crate) stop_metrics: Option<StopServing>,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// The pid file, open for writing, once written: handed over with the listeners.
    pub(crate) pid_file: std::sync::Arc<std::sync::OnceLock<std::os::fd::OwnedFd>>,
}

impl Restart {
    /// Starts the new process and waits for it to report ready; if it fails, this one goes
    /// on serving everything. Dropped before the new process is ready, it kills it.
    async fn start(&mut self) -> Option<Successor> {
        let pid_file = self.pid_file.get().and_then(|fd| fd.try_clone().ok());
        let handover = self.handover.as_mut()?;
        if let Some(pid_file) = pid_file {
            handover.add_pid_file(pid_file);
        }
        tracing::info!("restarting: starting {}", self.program.display());
        match handover
            .start(&self.program, &self.args, RESTART_READY_TIMEOUT)
            .await
        {
            Ok(successor) => Some(successor),
            Err(err) => {
                tracing::warn!("restart failed, still serving: {err}");
                None
            }
        }
    }

    /// The new process serves: this one stops serving the metrics endpoint, keeps its
    /// socket files for it, tells the service manager the new main pid, drains, and returns
    /// the new process.
    async fn take_over(&mut self, successor: Successor, handle: &ShutdownHandle) -> Successor {
        // Every scrape and health check is the new process's from now on: it accepts on the
        // same socket, and takes those queued on it. Stopped before the line below, so that
        // a scrape sent once it is out cannot reach this process.
        if let Some(metrics) = self.stop_metrics.take() {
            metrics.stop().await;
        }
        tracing::info!(
            "restarted: process {} serves now; draining connections",
            successor.pid()
        );
        if let Some(handover) = self.handover.take() {
            handover.complete();
        }
        tell_manager(ManagerState::MainPid(successor.pid()));
        handle.hand_over();
        successor
    }
}

/// Sends `state` to the service manager, if there is one; failing to is worth a warning,
/// never a stop.
pub(crate) fn tell_manager(state: ManagerState) {
    if let Err(err) = notify_manager(state) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {err}");
    }
}

/// The stop signals' and SIGUSR2's watch: SIGINT/SIGTERM (a first stop drains, a second
/// closes everything now; a restart's hand-over is a drain, not a stop, so the old
/// process's first stop after it still lets its connections finish), and SIGUSR2 (see
/// [`Restart`]), one at a time, once the server is ready; a SIGUSR2 that comes meanwhile
/// waits until it is over, which takes at most the readiness timeout. A SIGUSR2 that comes
/// during a restart (a second reload, a binary installed meanwhile) is not lost: it is passed
/// on to the new process once that serves, or starts another restart if this one failed.
/// A stop that comes during a restart is for the service, whichever process serves it by then: once the new
/// process serves, it is told to stop too (this one drains already); if it failed, this
/// one stops. A second stop before the new process is ready kills it and closes everything
/// now.
///
/// `restart` is what a SIGUSR2 starts, or why nothing can be (said when one comes).
///
/// Returns SIGHUP, for the reloads (`Access::reload_on_hangup`).
pub(crate) fn watch_signals(
    signals: Signals,
    handle: ShutdownHandle,
    restart: Result<Restart, String>,
    lifecycle: &Lifecycle,
) -> Signal {
    let (mut restart, cannot) = match restart {
        Ok(restart) => (Some(restart), None),
        Err(why) => (None, Some(why)),
    };
    let Signals {
        mut interrupt,
        mut terminate,
        mut user2,
        hangup,
        mut hangup_in_restart,
    } = signals;
    let lifecycle = lifecycle.clone();
    let mut gate = lifecycle.gate();
    let mut stops_taken = 0u32;
    tokio::spawn(async move {
        // A SIGUSR2 that came during a failed restart: the next turn restarts again.
        let mut asked_again = false;
        'signals: loop {
            let restart_asked = tokio::select! {
                _ = interrupt.recv() => false,
                _ = terminate.recv() => false,
                () = async {}, if asked_again => {
                    asked_again = false;
                    true
                }
                _ = user2.recv() => true,
            };
            if !restart_asked {
                stop(&handle, &mut restart, &lifecycle, &mut stops_taken);
                continue 'signals;
            }
            // Not before the readiness lines: a restart of a server that has not
            // said it is ready waits until it has (or is stopped first).
            let ready = tokio::select! {
                ready = gate.opened() => ready,
                _ = interrupt.recv() => { stop(&handle, &mut restart, &lifecycle, &mut stops_taken); continue 'signals; }
                _ = terminate.recv() => { stop(&handle, &mut restart, &lifecycle, &mut stops_taken); continue 'signals; }
            };
            let Some(restarting) = restart
                .as_mut()
                .filter(|_| ready && !handle.is_shutting_down())
            else {
                match &cannot {
                    Some(why) => tracing::warn!("SIGUSR2: cannot restart: {why}"),
                    None => tracing::info!("SIGUSR2: nothing to restart"),
                }
                continue 'signals;
            };
            let mut stops = 0;
            let mut again = false;
            // A SIGHUP of before this restart is this process's own reload: forgotten here
            // (tokio keeps one, whenever it came).
            tokio::select! {
                biased;
                _ = hangup_in_restart.recv() => {}
                () = std::future::ready(()) => {}
            }
            let mut reload_after = false;
            let started = {
                let start = restarting.start();
                tokio::pin!(start);
                loop {
                    tokio::select! {
                        started = &mut start => break started,
                        _ = interrupt.recv() => stops += 1,
                        _ = terminate.recv() => stops += 1,
                        // A second reload (a binary installed meanwhile) is not lost:
                        // it follows this restart.
                        _ = user2.recv(), if !again => {
                            again = true;
                            tracing::info!("SIGUSR2 during a restart: another follows once this one is over");
                        }
                        // The new process may have read its files before they changed:
                        // it reloads too, once it serves.
                        _ = hangup_in_restart.recv(), if !reload_after => reload_after = true,
                    }
                    // A second stop closes everything now: the new process, not
                    // ready yet, is not waited for (dropped, the start kills it).
                    if stops >= 2 {
                        tracing::info!(
                            "second stop during the restart: the new process is \
                                 stopped before it was ready"
                        );
                        break None;
                    }
                }
            };
            let successor = match started {
                Some(successor) => Some(restarting.take_over(successor, &handle).await),
                None => None,
            };
            if let (Some(successor), true) = (&successor, reload_after) {
                tracing::info!(
                    "SIGHUP that came during the restart: passed on to process {}",
                    successor.pid()
                );
                if let Err(err) = successor.reload() {
                    tracing::warn!(
                        "cannot pass SIGHUP on to process {}: {err}",
                        successor.pid()
                    );
                }
            }
            match (&successor, again && stops == 0) {
                // The new process serves, and restarts itself in turn.
                (Some(successor), true) => {
                    tracing::info!(
                        "SIGUSR2 that came during the restart: passed on to process {}",
                        successor.pid()
                    );
                    if let Err(err) = successor.restart() {
                        tracing::warn!(
                            "cannot pass SIGUSR2 on to process {}: {err}",
                            successor.pid()
                        );
                    }
                }
                // This process still serves: it tries again.
                (None, true) => asked_again = true,
                (_, false) => {}
            }
            let stops = match (stops, successor) {
                (0, _) => continue 'signals,
                (_, Some(successor)) => {
                    tracing::info!(
                        "stop asked for during the restart: telling process {} to stop",
                        successor.pid()
                    );
                    if let Err(err) = successor.stop() {
                        tracing::warn!("cannot tell process {} to stop: {err}", successor.pid());
                    }
                    // Taken: this process drains already; a second stop closes it
                    // now.
                    stops_taken += 1;
                    stops - 1
                }
                (_, None) => stops,
            };
            for _ in 0..stops.min(2) {
                stop(&handle, &mut restart, &lifecycle, &mut stops_taken);
            }
        }
    });
    hangup
}

/// One SIGINT/SIGTERM (`taken` counts them): the first drains, the next closes every
/// connection now. A server that a restart's hand-over already drains takes its first stop
/// as said and done.
fn stop(
    handle: &ShutdownHandle,
    restart: &mut Option<Restart>,
    lifecycle: &Lifecycle,
    taken: &mut u32,
) {
    *taken += 1;
    // The duplicates kept for a restart go first: a listener that closes must not stay
    // open through them, or new clients would wait instead of being refused.
    if let Some(restart) = restart {
        restart.handover = None;
    }
    if *taken >= 2 {
        tracing::info!("second signal: closing every connection now");
        handle.force();
        return;
    }
    if handle.is_shutting_down() {
        // Handed over: draining already, and the service manager's main process is the
        // new one.
        tracing::info!("stop: draining already (a restart handed the listeners over)");
        return;
    }
    // The first signal's line is the server's, written when its listeners do close (after
    // `--shutdown-delay`, if there is one).
    if lifecycle.stopping() {
        tell_manager(ManagerState::Stopping);
    }
    handle.shutdown();
}
