//! Restart without a refused connection (SPEC §3.4): a running server hands its listening
//! sockets to a new process — the same sockets, inherited as descriptors, so connections
//! already queued on them are accepted by the new process rather than reset, as a second
//! `SO_REUSEPORT` bind would do to those queued on the old socket — waits until the new
//! process reports that it serves, and only then stops accepting and drains. The metrics
//! endpoint's socket goes along ([`Handover::add_metrics_socket`]), for the same reason.
//!
//! The new process finds the sockets with [`Inherited::from_env`](super::Inherited::from_env)
//! and reports with [`ReadyReport`](super::ReadyReport); the variables between the two are
//! `net`'s (`passed.rs`).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Server;
use crate::error::{Error, Op, Result};
use crate::net::{self, ListenerKind};

/// How long a stopped new process gets to be reaped before it is killed.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// Duplicates of a server's listening sockets, ready to hand to a new process
/// ([`Server::handover`]). Holding it keeps the sockets open: drop it (or
/// [`Handover::complete`] it) before shutting the server down, or clients keep being
/// queued on sockets nobody accepts on any more.
#[derive(Debug)]
pub struct Handover {
    /// Each listener's sockets, and what the new process must know of it that its sockets
    /// do not say.
    groups: Vec<(Vec<OwnedFd>, ListenerKind)>,
    /// The metrics endpoint's listening socket, handed over beside the listeners.
    metrics: Option<OwnedFd>,
    /// The pid file, open for writing.
    pid_file: Option<OwnedFd>,
    keepers: Vec<Arc<AtomicBool>>,
}

/// A new process that reported it serves the handed-over sockets.
#[derive(Debug)]
pub struct Successor {
    pid: u32,
}

impl Successor {
    /// The process id the new process reported.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the new process to stop (SIGTERM: it drains as this one does): for a stop
    /// that came while it was starting, meant for the service, not for this process only.
    ///
    /// # Errors
    ///
    /// The process is gone, or is not ours to signal.
    pub fn stop(&self) -> io::Result<()> {
        net::terminate(self.pid)
    }

    /// Asks the new process to restart in turn (SIGUSR2): for a restart asked for while
    /// this one was starting it, which must not be lost (a binary installed meanwhile).
    ///
    /// # Errors
    ///
    /// The process is gone, or is not ours to signal.
    pub fn restart(&self) -> io::Result<()> {
        net::ask_restart(self.pid)
    }

    /// Asks the new process to read its files again (SIGHUP): for a reload asked for while
    /// it was starting, after it may have read them (a rotated certificate, a new rule).
    ///
    /// # Errors
    ///
    /// The process is gone, or is not ours to signal.
    pub fn reload(&self) -> io::Result<()> {
        net::ask_reload(self.pid)
    }
}

impl Server {
    /// Duplicates of every listening socket, grouped by listener in order, to hand to a new
    /// process on restart (see [`Handover::start`]). Take it before calling a `serve`
    /// method.
    ///
    /// # Errors
    ///
    /// The system is out of descriptors.
    pub fn handover(&self) -> Result<Handover> {
        let mut groups = Vec::with_capacity(self.groups.len());
        let mut keepers = Vec::new();
        for group in &self.groups {
            let mut fds = Vec::with_capacity(group.listeners.len());
            let mut kind = ListenerKind {
                tls: group.is_tls(),
                owns_file: false,
            };
            for listener in &group.listeners {
                let (fd, keeper) = listener.handover_parts();
                // The duplicate is close-on-exec: only the new process gets it, and only
                // because `start` clears the flag in that child alone.
                let dup = fd
                    .try_clone_to_owned()
                    .map_err(|err| Error::new(Op::Listen, &group.endpoint, err))?;
                fds.push(dup);
                // A socket file this process owns passes to the new one; one a service
                // manager made (no keeper) stays the manager's.
                kind.owns_file |= keeper.is_some();
                keepers.extend(keeper);
            }
            groups.push((fds, kind));
        }
        Ok(Handover {
            groups,
            metrics: None,
            pid_file: None,
            keepers,
        })
    }
}

impl Handover {
    /// Hands the metrics endpoint's listening socket over too (a duplicate of it, such as
    /// [`HttpListener::handover_socket`](crate::metrics::HttpListener::handover_socket)
    /// gives): the new process finds it with
    /// [`Inherited::take_metrics`](super::Inherited::take_metrics) and serves the same
    /// socket, so a scrape queued on it when this process stops serving it is the new
    /// process's to answer, not reset as a second `SO_REUSEPORT` socket's queue would be.
    pub fn add_metrics_socket(&mut self, socket: OwnedFd) {
        self.metrics = Some(socket);
    }

    /// Hands the pid file over too, open for writing (a duplicate of a descriptor opened
    /// before the privileges were dropped): the new process finds it with
    /// [`Inherited::take_pid_file`](super::Inherited::take_pid_file) and writes its pid
    /// through it where, running as a user, it may not replace the file in its directory
    /// (`/run`). Without it, the pid file named the old process after a restart under
    /// `--user`, and a `kill $(cat …)` went to a pid that was gone.
    pub fn add_pid_file(&mut self, file: OwnedFd) {
        self.pid_file = Some(file);
    }

    /// Starts `program` with `args` and the listening sockets, and waits up to `timeout`
    /// for it to report that it serves them. Its stdin is `/dev/null`; stdout and stderr
    /// are this process's, so its `listening on` lines go where ours went.
    ///
    /// # Errors
    ///
    /// `cannot start PROGRAM: REASON` — it cannot be run, it exited before it was ready
    /// (its own `error:` line is on the shared stderr), or it did not report in time (it
    /// is then killed). This server is untouched and goes on serving either way.
    pub async fn start(
        &self,
        program: &Path,
        args: &[OsString],
        timeout: Duration,
    ) -> Result<Successor> {
        let fail = |err: io::Error| Error::new(Op::Spawn, program.display(), err);
        // The new process reports on a socket (a pipe before; an older socketkit writes to
        // either alike), which also carries the pid file: sent now, it waits there until a
        // process that knows of it takes it, and one that does not never holds it, nor
        // can the programs it starts inherit it (an inherited descriptor named by a
        // variable was left open in an older socketkit, a downgrade's).
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(fail)?;
        if let Some(pid_file) = &self.pid_file {
            net::send_descriptor(ours.as_fd(), pid_file.as_fd()).map_err(fail)?;
        }
        let raw: Vec<(Vec<RawFd>, ListenerKind)> = self
            .groups
            .iter()
            .map(|(fds, kind)| (fds.iter().map(AsRawFd::as_raw_fd).collect(), *kind))
            .collect();
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        let metrics = self.metrics.as_ref().map(AsRawFd::as_raw_fd);
        cmd.envs(net::handover_env(&raw, metrics, theirs.as_raw_fd()));
        let mut inherit: Vec<RawFd> = raw.into_iter().flat_map(|(fds, _)| fds).collect();
        inherit.extend(metrics);
        inherit.push(theirs.as_raw_fd());
        net::inherit_on_exec(&mut cmd, inherit);
        // A std child, not tokio's: tokio reaps a child whose handle is dropped, and the
        // new process is not ours to reap — whoever adopts it when we exit waits for it.
        let mut starting = Starting {
            child: cmd.spawn().map_err(fail)?,
            ready: false,
        };
        let child = &mut starting.child;
        // Our copy of its end goes, so the socket ends when the child's does.
        drop(theirs);
        let report = ours
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(ours))
            .map_err(fail)?;
        // The limit counts time this process ran: a successor that reported while it was
        // stopped is ready.
        let reported = crate::net::within_running(timeout, std::pin::pin!(read_line(report)))
            .await
            .ok_or(());
        let failure = match reported {
            Ok(Ok(line)) => match line.trim().parse::<u32>() {
                Ok(pid) => {
                    starting.ready = true;
                    return Ok(Successor { pid });
                }
                Err(_) if line.is_empty() => match reap(child).await {
                    Some(status) => format!("it exited ({status}) before it was ready"),
                    None => "it closed its readiness pipe without reporting; stopped it".into(),
                },
                Err(_) => format!("it reported '{}' instead of its pid", line.trim()),
            },
            Ok(Err(err)) => format!("reading its readiness report: {err}"),
            Err(_) => format!(
                "it did not report ready within {}; stopped it",
                humantime::format_duration(timeout)
            ),
        };
        // A child that failed is stopped and reaped here, so none is left behind.
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = reap(child).await;
        }
        Err(fail(io::Error::other(failure)))
    }

    /// The new process serves now: closes the duplicates and keeps the Unix socket files
    /// when this server's listeners close (the new process listens on them).
    pub fn complete(self) {
        for keeper in &self.keepers {
            keeper.store(true, Ordering::Release);
        }
    }
}

/// A new process until it reports ready. Given up before (the wait for it dropped: a
/// second stop signal came meanwhile), it is killed and reaped, so that none is left to
/// serve the sockets unasked.
struct Starting {
    child: std::process::Child,
    ready: bool,
}

impl Drop for Starting {
    fn drop(&mut self) {
        if !self.ready && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            // Killed, it is gone at once: the wait does not block for long.
            let _ = self.child.wait();
        }
    }
}

/// Reads up to the first newline or the end of the stream.
async fn read_line(mut pipe: tokio::net::UnixStream) -> io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    while !line.contains(&b'\n') {
        let n = match pipe.read(&mut buf).await {
            // A process that ended with the pid file still waiting on its end of the
            // socket (one that failed at start, or an older socketkit) resets it: its end.
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => 0,
            read => read?,
        };
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The child's exit status once it has exited (within a grace period), or `None` if it is
/// still running.
async fn reap(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let step = Duration::from_millis(10);
    for _ in 0..REAP_GRACE.as_millis() / step.as_millis() {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(step).await;
    }
    None
}
