//! Running under a service manager (SPEC §3.4): the sockets this process inherited (`fd:N`,
//! `fd:NAME`, all of `LISTEN_FDS` when no `-l` is given, or the listeners of the socketkit
//! it replaces), `--inetd`, `--pid-file`, systemd's `READY=1`/`STOPPING=1`, and the signals:
//! SIGINT/SIGTERM drain, SIGUSR2 restarts without refusing a connection — nor a scrape of
//! the metrics endpoint, whose socket is handed over with the listeners.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socketkit::endpoint::{Endpoint, InheritedName};
use socketkit::error::Op;
use socketkit::server::{
    Handover, Inherited, InheritedSocket, ManagerState, ReadyReport, Server, ShutdownHandle,
    Successor, notify_manager,
};
use tokio::signal::unix::{SignalKind, signal};

use super::access::Access;
use super::args::ManagedArgs;
use super::exit::CliError;
use super::metrics::{self, MetricsSocket, StopServing};
use super::resolve;

/// The inherited sockets `text` names, taken from `inherited`: `fd:N`, `fd:NAME` (every
/// socket of that name), or `tls:` before either (an inherited TCP socket that speaks TLS);
/// `None` when `text` is no `fd:` endpoint (but one to bind). `serve -l`, `forward -l` and
/// `listen` all read them here, so they take the same forms with the same errors.
///
/// # Errors
///
/// A usage error for a malformed `fd:` endpoint, or one that names no inherited socket of
/// the right kind (`cannot listen on fd:9: …`).
pub(crate) fn take_inherited(
    inherited: &mut Inherited,
    text: &str,
) -> Result<Option<Vec<InheritedSocket>>, CliError> {
    let usage = |err: socketkit::Error| CliError::Usage(err.to_string());
    let (tls, name) = match text.strip_prefix("tls:") {
        Some(rest) if rest.starts_with("fd:") => (true, rest),
        _ => (false, text),
    };
    refuse_transport_before_fd(name)?;
    let sockets = match InheritedName::parse(name) {
        None => return Ok(None),
        Some(Err(err)) => return Err(CliError::Usage(err.to_string())),
        Some(Ok(InheritedName::Number(fd))) => vec![inherited.take_number(fd).map_err(usage)?],
        Some(Ok(InheritedName::Name(name))) => inherited.take_name(&name).map_err(usage)?,
    };
    if !tls {
        return Ok(Some(sockets));
    }
    sockets
        .into_iter()
        .map(|socket| socket.speaking_tls().map_err(usage))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A usage error for `tcp:fd:N` and `udp:fd:N`, which would otherwise be host `fd`, port N,
/// and fail as "cannot resolve fd": an inherited socket's kind is the socket's own, so its
/// name has no transport.
pub(crate) fn refuse_transport_before_fd(text: &str) -> Result<(), CliError> {
    let inherited = ["tcp:", "udp:"]
        .into_iter()
        .find_map(|kind| text.strip_prefix(kind))
        .filter(|rest| InheritedName::parse(rest).is_some());
    match inherited {
        Some(rest) => Err(CliError::Usage(format!(
            "invalid endpoint '{text}': an inherited socket is written {rest} whatever its \
             kind (tls:{rest} for TLS)"
        ))),
        None => Ok(()),
    }
}

/// How long a new process started by SIGUSR2 may take to report ready before it is stopped
/// and the old one goes on serving.
const RESTART_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a server command knows about the process it runs in.
#[derive(Debug)]
pub(crate) struct Managed {
    inherited: Inherited,
    pid_file: Option<PathBuf>,
    inetd: bool,
    /// This program as started, to start again on SIGUSR2 (`None`: unknown, no restart).
    program: Option<PathBuf>,
    args: Vec<OsString>,
}

/// A listener as `-l` (or socket activation) gives it.
#[derive(Debug)]
pub(crate) enum Listen {
    /// An endpoint to bind.
    Bind(Endpoint),
    /// A socket this process inherited.
    Inherited(InheritedSocket),
}

impl Listen {
    /// The endpoint it serves: as written, or the inherited socket's real one.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        match self {
            Listen::Bind(endpoint) => endpoint,
            Listen::Inherited(socket) => socket.endpoint(),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Bind(endpoint) => endpoint.fmt(f),
            Listen::Inherited(socket) => write!(f, "{} ({})", socket.name(), socket.endpoint()),
        }
    }
}

impl Managed {
    /// Takes the sockets this process inherited, first thing: the variables that named
    /// them are removed, which is safe only while no other thread runs (the runtime starts
    /// later), and no program `exec` runs sees them.
    pub(crate) fn start(args: &ManagedArgs) -> Result<Managed, CliError> {
        // SAFETY: called by the server commands before the runtime (or any thread) starts.
        let inherited =
            unsafe { Inherited::from_env() }.map_err(|err| CliError::Usage(err.to_string()))?;
        Ok(Managed {
            inherited,
            pid_file: args.pid_file.clone(),
            inetd: args.inetd,
            program: std::env::current_exe().ok(),
            args: std::env::args_os().skip(1).collect(),
        })
    }

    /// Where the metrics endpoint's socket comes from: the one the older socketkit handed
    /// over (a SIGUSR2 restart), or — from an older socketkit that handed none over — a
    /// socket bound beside its own, or else a new bind.
    pub(crate) fn metrics_socket(&mut self) -> MetricsSocket {
        match self.inherited.take_metrics() {
            Some(fd) => MetricsSocket::HandedOver(fd),
            None if self.inherited.is_handover() => MetricsSocket::BesidePredecessor,
            None => MetricsSocket::Bind,
        }
    }

    /// Whether the connection is on stdin (`--inetd`): there is nothing to listen on.
    pub(crate) fn inetd(&self) -> bool {
        self.inetd
    }

    /// The listeners: those an older socketkit handed over (a restart keeps its sockets,
    /// whatever `-l` says, so `-l :0` keeps its port), else each `-l` (an endpoint or an
    /// inherited socket), else every socket of socket activation, else `default`. An `fd:`
    /// that names no inherited listening socket is a usage error.
    pub(crate) fn listeners(
        &mut self,
        listen: &[String],
        default: Option<&str>,
    ) -> Result<Vec<Listen>, CliError> {
        let usage = |err: socketkit::Error| CliError::Usage(err.to_string());
        let inherited = |sockets: Vec<InheritedSocket>| {
            sockets
                .into_iter()
                .map(Listen::Inherited)
                .collect::<Vec<_>>()
        };
        if self.inetd {
            return Ok(Vec::new());
        }
        if self.inherited.is_handover() {
            return Ok(inherited(self.inherited.take_all().map_err(usage)?));
        }
        if listen.is_empty() {
            if self.inherited.has_activated() {
                return Ok(inherited(self.inherited.take_all().map_err(usage)?));
            }
            return Ok(default
                .map(resolve::endpoint)
                .transpose()?
                .map(Listen::Bind)
                .into_iter()
                .collect());
        }
        let mut listeners = Vec::new();
        for text in listen {
            match take_inherited(&mut self.inherited, text)? {
                None => listeners.push(Listen::Bind(resolve::endpoint(text)?)),
                Some(sockets) => listeners.extend(inherited(sockets)),
            }
        }
        Ok(listeners)
    }

    /// Binds and serves: `serve` runs until a signal drains the server (or, `--inetd`,
    /// until the connection ends). Once the server is ready (bound, and every listener set
    /// up to serve) it announces, then the `metrics` endpoint (bound already, served from
    /// then on), reports to the process it replaces, tells the service manager `READY=1`,
    /// and calls `after_ready` (the lines that come after the readiness lines). The pid
    /// file is written before all that.
    pub(crate) async fn serve<Fut>(
        mut self,
        builder: socketkit::server::Builder,
        access: &Access,
        metrics: Option<metrics::Bound>,
        announce: impl FnOnce(&[Endpoint]),
        after_ready: impl FnOnce(),
        serve: impl FnOnce(Server) -> Fut,
    ) -> Result<(), CliError>
    where
        Fut: std::future::Future<Output = socketkit::Result<()>>,
    {
        if self.inetd {
            let server = builder.bind_connection(stdin()?, "stdin").await?;
            access.drop_privileges()?;
            watch_signals(server.shutdown_handle(), None)?;
            access.reload_on_hangup()?;
            after_ready();
            serve(server).await?;
            return Ok(());
        }
        let mut server = builder.bind().await?;
        // The pid file before the readiness lines (whoever waits for them finds it
        // written), and while still root: a service's pid file is in a directory only root
        // may write (`/run`).
        let pid_file = self.pid_file.as_deref().map(PidFile::write).transpose()?;
        let mut files = server.socket_files();
        files.extend(self.pid_file.clone());
        let left_behind = access.files_left_behind(&files);
        // Bound (so ports below 1024 work as root), nothing accepted yet.
        access.drop_privileges()?;
        // What a restart hands over: duplicates of the listeners and the metrics socket.
        let handover = match &self.program {
            None => None,
            Some(_) => {
                let mut handover = server.handover()?;
                if let Some(metrics) = &metrics {
                    handover.add_metrics_socket(metrics.handover_socket()?);
                }
                Some(handover)
            }
        };
        // Without a restart the handle goes unused, and the metrics are served to the end.
        let (metrics, stop_metrics) = metrics.map(metrics::Bound::stoppable).unzip();
        let restart = self.program.take().map(|program| Restart {
            handover,
            stop_metrics,
            program,
            args: std::mem::take(&mut self.args),
        });
        // Signals are caught before the readiness lines, so a SIGTERM sent as soon as
        // a script reads them is a graceful shutdown, never the default death.
        watch_signals(server.shutdown_handle(), restart)?;
        access.reload_on_hangup()?;
        let endpoints = server.local_endpoints();
        // Ready once serving has set up every listener (an io_uring worker's ring or
        // thread can still fail for want of descriptors or threads): only then the lines
        // and reports that tell others so, which nothing may come before.
        let ready = server.ready();
        let serving = serve(server);
        tokio::pin!(serving);
        let ready = tokio::select! {
            biased;
            ready = ready => ready,
            served = &mut serving => {
                drop(pid_file);
                return Ok(served?);
            }
        };
        if ready {
            announce(&endpoints);
            if let Some(metrics) = metrics {
                metrics.start();
            }
            if let Some(ready) = self.inherited.take_ready() {
                report_ready(ready);
            }
            tell_manager(ManagerState::Ready);
            after_ready();
            for warning in left_behind {
                tracing::warn!("{warning}");
            }
        }
        let served = serving.await;
        drop(pid_file);
        Ok(served?)
    }
}

/// Tells the process that handed over that this one serves now. It may have given up
/// waiting; then both serve until one is told to stop, which loses nothing either.
fn report_ready(ready: ReadyReport) {
    if let Err(err) = ready.report() {
        tracing::warn!("cannot tell the process that handed over that this one is ready: {err}");
    }
}

/// Sends `state` to the service manager, if there is one; failing to is worth a warning,
/// never a stop.
fn tell_manager(state: ManagerState) {
    if let Err(err) = notify_manager(state) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {err}");
    }
}

/// The connection inetd or systemd put on stdin, duplicated (stdin and stdout stay open
/// on it, and are closed at exit).
fn stdin() -> Result<OwnedFd, CliError> {
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|err| CliError::runtime(Op::Accept, "stdin", err))
}

/// `--pid-file`: holds this process's pid while it serves; removed at exit unless it names
/// another process by then (the one a restart handed over to).
#[derive(Debug)]
struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes the pid atomically (a temporary file renamed over the path), so a reader never
    /// sees half a pid, nor an empty file between two restarts.
    fn write(path: &Path) -> Result<PidFile, CliError> {
        let pid = std::process::id();
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{pid}.tmp"));
        let fail = |err| CliError::Runtime(socketkit::Error::new(Op::Io, path.display(), err));
        // A file half written (a full disk) goes as one that cannot be renamed does: a
        // supervisor that restarts on failure must not fill the directory with them.
        std::fs::write(&temporary, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|err| {
                let _ = std::fs::remove_file(&temporary);
                fail(err)
            })?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What SIGUSR2 needs: this program and its arguments, the listening sockets to hand
/// over (dropped as soon as the server drains, so that no socket outlives its listeners),
/// and the metrics endpoint's serving, which stops once the new process serves its socket.
struct Restart {
    handover: Option<Handover>,
    stop_metrics: Option<StopServing>,
    program: PathBuf,
    args: Vec<OsString>,
}

impl Restart {
    /// Starts the new process and waits for it to report ready; if it fails, this one goes
    /// on serving everything. Dropped before the new process is ready, it kills it.
    async fn start(&self) -> Option<Successor> {
        let handover = self.handover.as_ref()?;
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

/// First SIGINT/SIGTERM: graceful shutdown (`STOPPING=1`). A second one: close everything
/// now. SIGUSR2: restart (see [`Restart`]), one at a time; a SIGUSR2 that comes meanwhile
/// waits until it is over, which takes at most the readiness timeout. A stop that comes
/// meanwhile is for the service, whichever process serves it by then: once the new process
/// serves, it is told to stop too (this one drains already); if it failed, this one stops.
/// A second stop before the new process is ready kills it and closes everything now.
fn watch_signals(handle: ShutdownHandle, mut restart: Option<Restart>) -> Result<(), CliError> {
    let install =
        |kind| signal(kind).map_err(|err| CliError::runtime(Op::Create, "signal handler", err));
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    let mut user2 = install(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        loop {
            let stops = tokio::select! {
                _ = interrupt.recv() => 1,
                _ = terminate.recv() => 1,
                _ = user2.recv() => {
                    let Some(restarting) = restart.as_mut().filter(|_| !handle.is_shutting_down())
                    else {
                        tracing::info!("SIGUSR2: nothing to restart");
                        continue;
                    };
                    let mut stops = 0;
                    let started = {
                        let start = restarting.start();
                        tokio::pin!(start);
                        loop {
                            tokio::select! {
                                started = &mut start => break started,
                                _ = interrupt.recv() => stops += 1,
                                _ = terminate.recv() => stops += 1,
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
                    match (stops, successor) {
                        (0, _) => continue,
                        (_, Some(successor)) => {
                            tracing::info!(
                                "stop asked for during the restart: telling process {} to stop",
                                successor.pid()
                            );
                            if let Err(err) = successor.stop() {
                                tracing::warn!("cannot tell process {} to stop: {err}", successor.pid());
                            }
                            // This process drains already; a second stop closes it now.
                            stops - 1
                        }
                        (_, None) => stops,
                    }
                }
            };
            for _ in 0..stops.min(2) {
                stop(&handle, &mut restart);
            }
        }
    });
    Ok(())
}

/// One SIGINT/SIGTERM: the first drains, the next closes every connection now.
fn stop(handle: &ShutdownHandle, restart: &mut Option<Restart>) {
    // The first signal's line is the server's, written when its listeners do close (after
    // `--shutdown-delay`, if there is one).
    if handle.is_shutting_down() {
        tracing::info!("second signal: closing every connection now");
    } else {
        tell_manager(ManagerState::Stopping);
    }
    // The duplicates kept for a restart go first: a listener that closes must not stay
    // open through them, or new clients would wait instead of being refused.
    if let Some(restart) = restart {
        restart.handover = None;
    }
    handle.shutdown();
}
