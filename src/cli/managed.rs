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

use socketkit::endpoint::{Endpoint, Host, InheritedName};
use socketkit::error::Op;
use socketkit::server::{Inherited, InheritedSocket, ManagerState, ReadyReport, Server};

use super::access::Access;
use super::args::ManagedArgs;
use super::exit::CliError;
use super::metrics::{self, MetricsSocket};
use super::pid_file::PidFile;
use super::resolve;
use super::signals::{Lifecycle, Restart, Signals, tell_manager, watch_signals};

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

/// What a server command knows about the process it runs in.
#[derive(Debug)]
pub(crate) struct Managed {
    inherited: Inherited,
    pid_file: Option<PathBuf>,
    inetd: bool,
    /// This program as started, to start again on SIGUSR2; or why it is not known (no
    /// restart then).
    program: Result<PathBuf, String>,
    args: Vec<OsString>,
}

/// This program's file, to start again on SIGUSR2: the path it was started by (`argv[0]`
/// with a slash, from the directory it was started in, or found on `PATH` as the shell
/// found it), so that an upgrade that repoints a symlink (`update-alternatives`, `current
/// -> releases/N`) runs the new target — but only when that path led to this very file at
/// start (`exec -a` can name anything); else the kernel's record of the file
/// (`/proc/self/exe`, the symlink's target at start). Without `/proc` (a sandbox that does
/// not mount it), the path alone; or why neither will do.
fn this_program() -> Result<PathBuf, String> {
    let started_by = started_by();
    let exe = std::env::current_exe();
    match (started_by, exe) {
        (Some(path), Ok(exe)) => {
            let same = |p: &Path| std::fs::canonicalize(p).ok();
            match same(&path).is_some_and(|file| Some(file) == same(&exe)) {
                true => Ok(path),
                false => Ok(exe),
            }
        }
        (None, Ok(exe)) => Ok(exe),
        (Some(path), Err(_)) => Ok(path),
        (None, Err(err)) => Err(format!(
            "this program's file is unknown (/proc/self/exe: {}; it was not started by a \
             path)",
            socketkit::error::describe(&err)
        )),
    }
}

/// The file `argv[0]` names, as an absolute path (symlinks kept): with a slash, from the
/// directory this process started in; without, the first match on `PATH`, as `execvp`.
fn started_by() -> Option<PathBuf> {
    let started_as = PathBuf::from(std::env::args_os().next()?);
    if started_as.components().count() > 1 || started_as.is_absolute() {
        return std::path::absolute(started_as)
            .ok()
            .filter(|path| path.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(&started_as))
        .find(|candidate| candidate.is_file())
}

/// A listener as `-l` (or socket activation) gives it.
#[derive(Debug)]
pub(crate) enum Listen {
    /// An endpoint to bind.
    Bind(Endpoint),
    /// A socket this process inherited.
    Inherited(InheritedSocket),
}

/// Refuses `endpoint` when `listeners` bind its place already (the same path, or the same
/// host and port of the same kind, streams or datagrams; `tls:` is TCP): the second bind
/// failed as `address already in use` (exit 1), which sent the user looking for another
/// process. Port 0 is a new port each time.
fn refuse_given_twice(endpoint: &Endpoint, listeners: &[Listen]) -> Result<(), CliError> {
    // `:P` and `[::]:P` are one place (every address, IPv4's `0.0.0.0:P` within it);
    // `x.sock`, `/cwd/x.sock`, `sub/../x.sock` and one through a symlinked directory
    // another.
    let every = |host: &Host| match host {
        Host::Any => true,
        Host::Ip(ip) => ip.is_unspecified(),
        Host::Name(_) => false,
    };
    let absolute = |path: &std::path::Path| {
        let path = std::path::absolute(path).ok()?;
        match (path.parent().map(std::fs::canonicalize), path.file_name()) {
            (Some(Ok(dir)), Some(name)) => Some(dir.join(name)),
            _ => Some(path),
        }
    };
    let same_place = |other: &Endpoint| {
        other.transport().is_stream() == endpoint.transport().is_stream()
            && match (other.host_port(), endpoint.host_port()) {
                (Some(a), Some(b)) => {
                    b.port != 0
                        && a.port == b.port
                        && (a.host == b.host || (every(&a.host) && every(&b.host)))
                }
                _ => match (other.path(), endpoint.path()) {
                    (Some(a), Some(b)) => {
                        a == b || absolute(a).is_some_and(|a| Some(a) == absolute(b))
                    }
                    _ => false,
                },
            }
    };
    let earlier = listeners.iter().find_map(|listen| match listen {
        Listen::Bind(other) if same_place(other) => Some(other),
        _ => None,
    });
    match earlier {
        None => Ok(()),
        Some(other) if other == endpoint => Err(CliError::Usage(format!(
            "cannot listen on {endpoint}: it is given twice"
        ))),
        Some(other) => Err(CliError::Usage(format!(
            "cannot listen on {endpoint}: it is given twice (as {other})"
        ))),
    }
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
            program: match std::process::id() {
                // Its exit, once the new process serves, would end the PID namespace and
                // the new process with it (the kernel kills the rest): no restart at all.
                1 => Err("this process is PID 1 of its PID namespace (a container's \
                          entrypoint), whose exit would end the new process too: restart the \
                          container, or run socketkit under an init (docker run --init, tini)"
                    .to_owned()),
                _ => this_program(),
            },
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
                None => {
                    let endpoint = resolve::endpoint(text)?;
                    refuse_given_twice(&endpoint, &listeners)?;
                    listeners.push(Listen::Bind(endpoint));
                }
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
        // Caught before anything is bound or written: a signal that comes while the server
        // starts must not kill it by its default action, leaving its files behind.
        let signals = Signals::install()?;
        let lifecycle = Lifecycle::new();
        if self.inetd {
            let server = builder.bind_connection(stdin()?, "stdin").await?;
            access.drop_privileges()?;
            lifecycle.ready(|| {});
            // One connection on stdin: nothing to hand over.
            let nothing = Err("an --inetd server serves one connection".to_owned());
            let hangup = watch_signals(signals, server.shutdown_handle(), nothing, &lifecycle);
            access.reload_on_hangup(hangup, lifecycle.gate());
            after_ready();
            if let Some(warning) = access.shut_out_warning() {
                tracing::warn!("{warning}");
            }
            serve(server).await?;
            return Ok(());
        }
        let mut server = builder.bind().await?;
        let sockets = server.socket_files();
        let mut files = sockets.clone();
        files.extend(self.pid_file.clone());
        // Given first: in a sticky directory (`/tmp`) the user may remove a file it owns.
        let mut left_behind = access.give_socket_files(&sockets);
        left_behind.extend(access.files_left_behind(&files));
        left_behind.extend(access.shut_out_warning());
        // What a restart hands over: duplicates of the listeners and the metrics socket.
        let handover = match &self.program {
            Err(_) => None,
            Ok(_) => {
                let mut handover = server.handover()?;
                if let Some(metrics) = &metrics {
                    handover.add_metrics_socket(metrics.handover_socket()?);
                }
                Some(handover)
            }
        };
        // Without a restart the handle goes unused, and the metrics are served to the end.
        let (metrics, stop_metrics) = metrics.map(metrics::Bound::stoppable).unzip();
        let program = std::mem::replace(&mut self.program, Err(String::new()));
        let pid_descriptor = std::sync::Arc::new(std::sync::OnceLock::new());
        let restart = program.map(|program| Restart {
            handover,
            stop_metrics,
            program,
            args: std::mem::take(&mut self.args),
            pid_file: std::sync::Arc::clone(&pid_descriptor),
        });
        let hangup = watch_signals(signals, server.shutdown_handle(), restart, &lifecycle);
        access.reload_on_hangup(hangup, lifecycle.gate());
        // The pid file before the readiness lines (whoever waits for them finds it
        // written), once a signal sent to the pid in it is handled, and while still root: a
        // service's pid file is in a directory only root may write (`/run`). A restart's
        // new process writes it only once it serves (below): till then the file names the
        // process that does.
        let successor = self.inherited.is_handover();
        let mut pid_file = match &self.pid_file {
            Some(path) if !successor => Some(PidFile::write(path)?),
            _ => None,
        };
        let keep_descriptor = |written: &mut PidFile| {
            if let Some(fd) = written.take_descriptor() {
                let _ = pid_descriptor.set(fd);
            }
        };
        if let Some(written) = &mut pid_file {
            keep_descriptor(written);
        }
        let handed_pid_file = self.inherited.take_pid_file();
        // Bound (so ports below 1024 work as root), nothing accepted yet.
        access.drop_privileges()?;
        left_behind.extend(access.reload_warnings());
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
        let report = self.inherited.take_ready();
        let pid_path = self.pid_file.as_deref().filter(|_| successor);
        // Told only if no stop came first (`Lifecycle::ready`).
        let told = ready
            && lifecycle.ready(|| {
                // A restart's new process: the pid file names it before the process it
                // replaces hears that it serves, for that one removes the file at exit if
                // the file still names it (it took the new pid written a moment later).
                if let Some(path) = pid_path {
                    let handed = handed_pid_file.is_some();
                    match PidFile::write_or_through(path, handed_pid_file) {
                        Ok(mut written) => {
                            keep_descriptor(&mut written);
                            pid_file = Some(written);
                        }
                        // An older socketkit hands no pid file over: one in a directory only
                        // root may write keeps naming it, and it is about to exit.
                        Err(err) if !handed => tracing::warn!(
                            "{err}: the pid file still names the process this one replaced \
                             (it handed the file over to no one: an older version); signal \
                             process {} instead",
                            std::process::id()
                        ),
                        Err(err) => tracing::warn!("{err}"),
                    }
                }
                announce(&endpoints);
                if let Some(metrics) = metrics {
                    metrics.start();
                }
                // Before the report: the process replaced tells the manager the new main
                // pid once it has it, and the manager hears this one's READY=1 first.
                tell_manager(ManagerState::Ready);
                if let Some(report) = report {
                    // The readiness lines out before the other process's `restarted` line
                    // (they share the stream; ours go through the stderr thread).
                    super::stderr::flush(READY_LINES_FIRST);
                    report_ready(report);
                }
            });
        if told {
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

/// How long a restart's new process waits for its readiness lines to be written before it
/// reports ready (bounded: a stderr nobody reads must not hold the restart).
const READY_LINES_FIRST: Duration = Duration::from_millis(500);

/// Tells the process that handed over that this one serves now. It may have given up
/// waiting; then both serve until one is told to stop, which loses nothing either.
fn report_ready(ready: ReadyReport) {
    if let Err(err) = ready.report() {
        tracing::warn!("cannot tell the process that handed over that this one is ready: {err}");
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
