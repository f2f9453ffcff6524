//! Exec: run a program per connection with its standard input and output on the socket, as
//! inetd and `ncat --exec` do.
//!
//! - The program runs without a shell (argv as given) unless [`Exec::shell`] asks for
//!   `sh -c`.
//! - Its environment has `SOCKETKIT_PEER_ADDR`, `SOCKETKIT_PEER_PORT`,
//!   `SOCKETKIT_LOCAL_ADDR` and `SOCKETKIT_LOCAL_PORT` (a Unix socket gives paths and no ports);
//!   on a `tls:` listener also `SOCKETKIT_TLS_VERSION`, and `SOCKETKIT_TLS_SERVER_NAME`,
//!   `SOCKETKIT_TLS_ALPN`, `SOCKETKIT_TLS_CLIENT_SUBJECT` and
//!   `SOCKETKIT_TLS_CLIENT_FINGERPRINT` when the session has them (who the client is, under
//!   mutual TLS); behind `--proxy-protocol`, what a v2 header told of the client's TLS
//!   with the proxy (`SOCKETKIT_PROXY_SERVER_NAME`, `SOCKETKIT_PROXY_ALPN`,
//!   `SOCKETKIT_PROXY_TLS_VERSION`, `SOCKETKIT_PROXY_TLS_CLIENT_CN`); never inherited from
//!   the server's own environment. A server that dropped root to a user
//!   ([`crate::access::drop_to`]) gives the user's `HOME`, `USER`, `LOGNAME` and `SHELL`.
//! - Its stdin and stdout are the connection's socket itself, as inetd gives them: the
//!   program can ask `getpeername`, half-close with `shutdown`, or be an inetd-mode server
//!   (`socketkit serve echo --inetd`). The socket is in blocking mode, as a program expects
//!   of its stdio. The client's end of stream is the program's to read; the connection ends
//!   when the program has exited (and closed its copies: a child it left in the background
//!   with the socket keeps it open, as under inetd). A connection that fails first (a
//!   reset, an idle timeout, a forced shutdown) kills the program and every process of its
//!   process group, one of its own, so a shell's pipeline or a script's commands go with it.
//!   Every program is waited for: no zombie is left. A program that cannot be started
//!   (removed since the server started) resets its client, which must not take nothing
//!   for a whole answer.
//! - The bytes do not pass through socketkit then, so it does not count them: the `-v`
//!   closing line has no `bytes_in`/`bytes_out`, and the byte metrics leave them out.
//! - Where the socket cannot be handed over — a TLS session, whose bytes are not the
//!   socket's; a Unix connection under an idle timeout, whose idle time only socketkit can
//!   see — the program gets pipes, which socketkit copies to and from the connection: the
//!   client's end of stream closes its stdin, its closing stdout (normally, by exiting)
//!   half-closes the connection while the client's bytes go on to its stdin (until the
//!   client ends too, or the program exits), and the bytes are counted. As on a socket,
//!   the program keeps its connection's slot until it exits.
//! - Its stderr is the server's.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::Command;

mod environment;
mod pipes;
use environment::{PROXY_VARS, TLS_VARS, host_of, port_of, set_proxy_vars, set_tls_vars};
use pipes::bridge;

use crate::error::{Error, Op};
use crate::proxy_protocol::Tlvs;
use crate::server::{Connection, Handler, ProgramConnection, ProgramGroup};
use crate::socket::{Address, Family};

/// The exec service: a program and its arguments.
#[derive(Debug, Clone)]
pub struct Exec {
    spec: Arc<Spec>,
}

#[derive(Debug)]
struct Spec {
    /// The program as given: its `argv[0]`, and how errors name it.
    program: OsString,
    /// Where it was found when `PATH` is unset (`execvp`'s default path was searched):
    /// started from there, since the child's own search would not look in the same places.
    found: Option<PathBuf>,
    /// The file the program is, as the search found it at start.
    located: PathBuf,
    args: Vec<OsString>,
}

/// Where a program is looked for when `PATH` is unset: the default search path of
/// `execvp(3)` (musl's; glibc's `confstr(_CS_PATH)` is the last two), so that cron jobs,
/// `env -i` wrappers and supervisors that pass no environment find `cat` as a shell would.
const DEFAULT_PATH: &str = "/usr/local/bin:/bin:/usr/bin";

/// The shell of [`Exec::shell`], by its path, as `system(3)` runs it: `PATH` may be unset
/// or name another `sh`.
const SHELL: &str = "/bin/sh";

/// Why a program cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No program was given.
    #[error("exec needs a program: socketkit serve exec -- PROGRAM [ARGS...]")]
    Missing,
    /// The program is not a file, or not on `PATH`.
    #[error("program '{0}' not found")]
    NotFound(String),
    /// The program is a file this process may not execute (no `x` bit for us, or a
    /// directory).
    #[error("program '{0}' is not an executable file (chmod +x?)")]
    NotExecutable(String),
}

impl Exec {
    /// Runs `argv[0]` with the rest as its arguments, found on `PATH` unless it has a `/`.
    ///
    /// # Errors
    ///
    /// An empty `argv`, a program that is not there, or one that may not be executed.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::services::exec::Exec;
    /// assert!(Exec::new(["cat"]).is_ok());
    /// assert!(Exec::new(["no-such-program-here"]).is_err());
    /// ```
    pub fn new<I, S>(argv: I) -> Result<Exec, ExecError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv = argv.into_iter().map(Into::into);
        let program = argv.next().ok_or(ExecError::Missing)?;
        let name = || program.to_string_lossy().into_owned();
        let (located, found) = match find_program(Path::new(&program)) {
            Found::Executable(at, by_default) => (at.clone(), by_default.then_some(at)),
            Found::NotExecutable => return Err(ExecError::NotExecutable(name())),
            Found::Nothing => return Err(ExecError::NotFound(name())),
        };
        Ok(Exec {
            spec: Arc::new(Spec {
                program,
                found,
                located,
                args: argv.collect(),
            }),
        })
    }

    /// The file the program is, as found at start (`/bin/sh` for [`Exec::shell`]): for a
    /// server that drops root to ask whether the user it becomes may run it
    /// ([`crate::access::may_execute`]).
    pub fn program_path(&self) -> &Path {
        &self.spec.located
    }

    /// Runs `command` (its words joined by spaces) with `/bin/sh -c`, for pipes and
    /// redirections.
    ///
    /// # Errors
    ///
    /// An empty `command`.
    pub fn shell<I, S>(command: I) -> Result<Exec, ExecError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let words: Vec<OsString> = command.into_iter().map(Into::into).collect();
        if words.is_empty() {
            return Err(ExecError::Missing);
        }
        let line = words.join(&OsString::from(" "));
        Exec::new([OsString::from(SHELL), OsString::from("-c"), line])
    }

    /// The program's command line and environment, stdio not yet set: the addresses, and
    /// what a PROXY header `told` of the client's TLS with the proxy.
    fn std_command(
        &self,
        peer: &Address,
        local: &Address,
        told: Option<&Tlvs>,
    ) -> std::process::Command {
        let mut cmd = match &self.spec.found {
            Some(found) => {
                let mut cmd = std::process::Command::new(found);
                std::os::unix::process::CommandExt::arg0(&mut cmd, &self.spec.program);
                cmd
            }
            None => std::process::Command::new(&self.spec.program),
        };
        cmd.args(&self.spec.args)
            .env("SOCKETKIT_PEER_ADDR", host_of(peer))
            .env("SOCKETKIT_PEER_PORT", port_of(peer))
            .env("SOCKETKIT_LOCAL_ADDR", host_of(local))
            .env("SOCKETKIT_LOCAL_PORT", port_of(local));
        // Never inherited: a program must not take the server's own environment for what
        // a client's handshake proved.
        for name in TLS_VARS.iter().chain(&PROXY_VARS) {
            cmd.env_remove(name);
        }
        // The service manager's, for the server alone: a program that wrote to it could say
        // READY=1 or STOPPING=1 for the service (systemd takes it from any process of the
        // unit when `NotifyAccess=all`), and its watchdog is the server's.
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            cmd.env_remove(name);
        }
        if let Some(told) = told {
            set_proxy_vars(&mut cmd, told);
        }
        // A server that dropped root to `--user` was started with root's `HOME` and
        // `USER`: a program that wrote to `~` would try root's home.
        cmd.envs(crate::access::account_environment());
        cmd
    }

    fn command(&self, conn: &Connection) -> Command {
        let local = conn.local_addr().unwrap_or_else(|_| Address::unix(""));
        let mut cmd = self.std_command(conn.peer_addr(), &local, conn.proxy_tlvs());
        if let Some(tls) = conn.tls_session() {
            set_tls_vars(&mut cmd, &tls);
        }
        let mut cmd = Command::from(cmd);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        cmd
    }

    /// Starts the program with `socket` itself as its standard input and output (`nc -e`),
    /// in the environment the service gives it, `peer` as `SOCKETKIT_PEER_ADDR`/`_PORT` (the
    /// socket's own peer, or the client a PROXY header named). The socket closes for good
    /// when both this process and the program have closed it.
    ///
    /// # Errors
    ///
    /// `cannot spawn PROGRAM: REASON`, or the socket's descriptor could not be duplicated.
    pub fn spawn_on(
        &self,
        socket: &crate::socket::Socket,
        peer: &Address,
    ) -> crate::Result<std::process::Child> {
        self.on_socket(socket, peer, None)?
            .spawn()
            .map_err(|err| self.spawn_error(err))
    }

    /// Replaces this process with the program, `socket` as its standard input and output, as
    /// `nc -e` does: the program's exit status is the process's, and a signal to the process
    /// reaches the program.
    ///
    /// `peer` is the program's `SOCKETKIT_PEER_ADDR`/`_PORT`, as for [`Exec::spawn_on`].
    ///
    /// # Errors
    ///
    /// Only when the program could not be started (the process is gone otherwise).
    pub fn exec_on(&self, socket: &crate::socket::Socket, peer: &Address) -> Error {
        use std::os::unix::process::CommandExt;
        match self.on_socket(socket, peer, None) {
            Ok(mut command) => self.spawn_error(command.exec()),
            Err(err) => err,
        }
    }

    fn spawn_error(&self, err: io::Error) -> Error {
        Error::new(Op::Spawn, self.spec.program.to_string_lossy(), err)
    }

    /// The command with `socket` as its stdin and stdout, and the addresses in its
    /// environment. The socket is put in blocking mode, which a program expects of its
    /// stdio (the mode belongs to the open socket, which this process's copies share: they
    /// must not be read or written here any more). The duplicates made here are
    /// close-on-exec; only the program's own, on descriptors 0 and 1, are inherited.
    fn on_socket(
        &self,
        socket: &crate::socket::Socket,
        peer: &Address,
        told: Option<&Tlvs>,
    ) -> crate::Result<std::process::Command> {
        use std::os::fd::AsFd;
        socket.set_blocking(true)?;
        if matches!(socket.family(), Family::Inet | Family::Inet6) {
            // A program answers in pieces (a line, then a prompt): with Nagle's algorithm,
            // each piece after the first waits for the peer's delayed acknowledgement
            // (~40 ms a round). Only latency rides on it, so a refusal is no error.
            let _ = socket.set_nodelay(true);
        }
        let local = socket.local_addr().unwrap_or_else(|_| Address::unix(""));
        let stdin = socket
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| self.spawn_error(e))?;
        let stdout = socket
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| self.spawn_error(e))?;
        let mut command = self.std_command(peer, &local, told);
        command
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout));
        Ok(command)
    }
}

/// What looking for a program found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A file with an execute bit, where; and whether the search was `execvp(3)`'s default
    /// path (`PATH` unset), which the child's own search would not take: then the program
    /// is started from there, else by its name, found again by the same search.
    Executable(PathBuf, bool),
    /// Only files it may not execute (or directories).
    NotExecutable,
    /// Nothing by that name.
    Nothing,
}

/// Looks for `program` as `execvp(3)` does: itself if it has a `/`, else each directory of
/// `PATH` in turn (or of [`DEFAULT_PATH`] when `PATH` is unset), skipping what has no
/// execute bit.
fn find_program(program: &Path) -> Found {
    let path = std::env::var_os("PATH");
    let by_default = path.is_none();
    let searched = program.components().count() == 1 && !program.is_absolute();
    let candidates: Vec<PathBuf> = if searched {
        let path = path.unwrap_or_else(|| OsString::from(DEFAULT_PATH));
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .collect()
    } else {
        vec![program.to_path_buf()]
    };
    let mut found = Found::Nothing;
    for candidate in candidates {
        if candidate.is_file() && executable(&candidate) {
            return Found::Executable(candidate, searched && by_default);
        }
        if candidate.exists() {
            found = Found::NotExecutable;
        }
    }
    found
}

/// Whether `path` has an execute bit. (Not `access(2)`, which would also know our user and
/// groups: raw calls live in `sys`, out of the services' reach. A file executable by others
/// only passes here and fails at spawn, which is logged.)
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.permissions().mode() & 0o111 != 0)
}

impl Handler for Exec {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let exec = self.clone();
        async move { exec.run(conn).await }
    }

    /// A program's start takes descriptors of its own (the socket's duplicate, the spawn's
    /// pipe, on pipes the program's stdio).
    fn opens_descriptors(&self) -> bool {
        true
    }
}

impl Exec {
    async fn run(&self, conn: Connection) -> io::Result<()> {
        match conn.into_program() {
            Ok(conn) => self.run_on_socket(conn).await,
            Err(conn) => self.run_on_pipes(conn).await,
        }
    }

    /// Runs the program with the connection's socket as its stdin and stdout, until it
    /// exits, or kills it when the connection fails first.
    async fn run_on_socket(&self, mut conn: ProgramConnection) -> io::Result<()> {
        let mut program = {
            // Dropped with this block once spawned: the duplicates of the socket it holds
            // would keep the connection open after the program exits.
            // A failure before the start (no descriptor for the socket's duplicate) is said
            // and reset as a failed start is, not in silence.
            let refused = |err| self.refuse(err, || conn.reset_on_close());
            let socket = conn
                .socket()
                .map_err(|err| refused(self.spawn_error(err)))?;
            let told = conn.proxy_tlvs();
            let command = (self.on_socket(&socket, conn.peer_addr(), told)).map_err(refused)?;
            self.start(Command::from(command), || conn.reset_on_close())?
        };
        let group = program.child().id();
        tokio::select! {
            status = program.child().wait() => {
                let status = status?;
                tracing::debug!(peer = %conn.peer_addr(), "the program exited: {status}");
                // What it left unread is dropped, so that the close is an end of stream and
                // not a reset under its answer (a responder that answers without reading the
                // request) — only when it succeeded (a failed one's reset tells its client
                // that the request was not taken) and left no process of its group that
                // could still read them (a child it forked to serve the connection).
                if status.success() && group.is_some_and(|group| !crate::net::process_group_exists(group)) {
                    conn.discard_unread();
                }
                Ok(())
            }
            err = conn.ended() => {
                // Its client is gone, or idle past the limit: the program has nobody left to
                // talk to, and neither has a process it started outside its group.
                let status = program.kill().await;
                conn.cut(&err);
                killed(conn.peer_addr(), status);
                Err(err)
            }
        }
    }

    /// Starts the program in a process group of its own. A failed start is logged at the
    /// default level — the program was checked at start-up, so this is new (the file was
    /// removed or changed) and every client is being turned away, which the operator must
    /// hear of — and the client reset (`reset`): it must not take nothing for an answer.
    fn start(&self, command: Command, reset: impl FnOnce()) -> io::Result<ProgramGroup> {
        ProgramGroup::spawn(command).map_err(|err| self.refuse(self.spawn_error(err), reset))
    }

    /// A program that could not be started for a connection (`err`): said at the default
    /// level, the client reset (`reset`).
    fn refuse(&self, err: Error, reset: impl FnOnce()) -> io::Error {
        reset();
        tracing::warn!("{err}; resetting the connection");
        io::Error::other(err)
    }

    /// Runs the program on pipes that this process copies to and from the connection (a
    /// TLS session, or a connection whose idle time only this process can see).
    async fn run_on_pipes(&self, conn: Connection) -> io::Result<()> {
        // The connection has Nagle off from its listener (`server::listener`): the program's
        // pieces go out as it writes them, as on a socket (see `on_socket`).
        let peer = conn.peer_addr().clone();
        let mut program = self.start(self.command(&conn), || conn.reset_on_close())?;
        match bridge(program.child(), conn).await {
            // Both ways ended: as on a socket, the program runs on until it exits.
            Ok(()) => {
                let status = program.child().wait().await?;
                tracing::debug!(%peer, "the program exited: {status}");
                Ok(())
            }
            Err(err) => {
                // The connection is gone: the program has nobody left to talk to.
                killed(&peer, program.kill().await);
                Err(err)
            }
        }
    }
}

/// Logs how a program killed for its connection ended, as one that exits by itself is.
fn killed(peer: &Address, status: Option<std::process::ExitStatus>) {
    if let Some(status) = status {
        tracing::debug!(%peer, "the program was killed: {status}");
    }
}
