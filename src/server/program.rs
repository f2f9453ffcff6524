//! [`ProgramConnection`]: a connection whose socket is handed to another program as its
//! standard input and output (the exec service, as inetd does it), so that the program
//! has the socket itself — `getpeername`, `shutdown`, socket options, `--inetd` — and not
//! pipes.
//!
//! The bytes no longer pass through this process, so it cannot count them: the closing
//! log line leaves `bytes_in` and `bytes_out` out, and the metrics' byte totals count none
//! of them (a PROXY header read before the handover is counted). What the server still
//! does, without reading a byte: it notices a connection that fails (a reset: the kernel
//! reports it to every holder of the socket), and with an idle timeout it asks the kernel
//! when data last moved (`TCP_INFO`; a Unix stream has no such clock, so under an idle
//! timeout a Unix connection stays a [`Connection`](super::Connection), and its program
//! gets pipes). The connection's slot, its per-source place and its watcher are held by
//! its task as for every other connection; a forced shutdown drops the task, which kills
//! the program, and resets the connection at once (a disconnect, which ends it for every
//! process holding the socket, not only when the last copy closes).
//!
//! [`ProgramGroup`]: the program runs in a process group of its own, so that what it starts
//! in turn (a shell's pipeline, a script's commands), which holds the socket too, is ended
//! with it; otherwise they would go on talking to the client after the connection was
//! ended, and out of the server's limits.

use std::io;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::meter::Meter;
use crate::net::{self, Stream};
use crate::socket::{Address, Socket};

/// The shortest wait between two looks at the kernel's idle clock: it counts in ticks of a
/// few milliseconds, so a deadline a tick away is not chased with shorter and shorter
/// sleeps.
const IDLE_RECHECK: Duration = Duration::from_millis(5);

/// A connection handed to a program (see the [module docs](self)); dropping it closes this
/// process's descriptor of the socket, and the connection ends once the program's are
/// closed too.
#[derive(Debug)]
pub(crate) struct ProgramConnection {
    // First, so dropped first: counted as closed before the socket closes (as Connection).
    meter: Meter,
    stream: Stream,
    idle_timeout: Option<Duration>,
}

/// Cut short by a forced shutdown: the connection is reset now (see `shutdown.rs`), for
/// every process that holds the socket.
impl Drop for ProgramConnection {
    fn drop(&mut self) {
        if super::shutdown::is_cut_short() {
            self.stream.reset_now();
        }
    }
}

impl ProgramConnection {
    /// A plain connection's parts, when the server's limits can be kept without reading
    /// it: `None` when an idle timeout applies and the kernel keeps no idle clock for the
    /// stream (Unix streams; systems without `TCP_INFO`).
    pub(crate) fn new(
        stream: Stream,
        mut meter: Meter,
        idle_timeout: Option<Duration>,
    ) -> Result<ProgramConnection, (Stream, Meter)> {
        if idle_timeout.is_some() && stream.idle_time().is_err() {
            return Err((stream, meter));
        }
        meter.stop_counting_bytes();
        Ok(ProgramConnection {
            meter,
            stream,
            idle_timeout,
        })
    }

    /// Makes the close a reset: the connection ends in an error its client can tell from
    /// an answer that ended (a program that could not be started).
    pub(crate) fn reset_on_close(&self) {
        self.stream.reset_on_close();
    }

    /// The client's address (as the PROXY header gave it, if one did).
    pub(crate) fn peer_addr(&self) -> &Address {
        self.meter.peer()
    }

    /// What the PROXY header told of the client besides its address (see
    /// [`Connection::proxy_tlvs`](super::Connection::proxy_tlvs)).
    pub(crate) fn proxy_tlvs(&self) -> Option<&crate::proxy_protocol::Tlvs> {
        self.meter.told()
    }

    /// Drops what the client sent that the program left unread (see
    /// [`net::discard_unread`]), before this process lets its descriptor go.
    pub(crate) fn discard_unread(&self) {
        net::discard_unread(std::os::fd::AsFd::as_fd(&self.stream));
    }

    /// Ends the connection for `err` (its reset, the idle limit), for every process that
    /// still holds the socket: the closing line says why, and an idle limit that comes
    /// while the program's output still waits for a client that stopped reading resets it,
    /// as a served connection's does (a shutdown would leave that output to the kernel to
    /// send after the close, outside every limit); otherwise [`Self::shut_down`].
    pub(crate) fn cut(&mut self, err: &io::Error) {
        self.meter.failed(err);
        if net::is_idle_timeout(err) && net::holds_bytes(std::os::fd::AsFd::as_fd(&self.stream)) {
            self.stream.reset_now();
        } else {
            self.shut_down();
        }
    }

    /// Ends the connection for every process that still holds the socket (`shutdown(2)`
    /// both ways: the client reads end of stream, their reads and writes end): one that
    /// left the program's group (`setsid`) would go on talking to the client after the
    /// program was killed.
    pub(crate) fn shut_down(&self) {
        self.stream.shut_down();
    }

    /// A second descriptor of the socket (close-on-exec), for the program's stdin and
    /// stdout.
    ///
    /// # Errors
    ///
    /// `dup(2)` failed (the descriptor table is full).
    pub(crate) fn socket(&self) -> io::Result<Socket> {
        self.stream.duplicate()
    }

    /// Waits until the connection fails (a reset) or, with an idle timeout, until no data
    /// has moved either way for that long, and answers why. A client's end of stream is
    /// neither: the program reads it and decides.
    pub(crate) async fn ended(&self) -> io::Error {
        let idle = async {
            let Some(limit) = self.idle_timeout else {
                return std::future::pending().await;
            };
            let mut wait = limit;
            loop {
                tokio::time::sleep(wait.max(IDLE_RECHECK)).await;
                match self.stream.idle_time() {
                    Ok(idle) if idle >= limit => return crate::net::idle_error(limit),
                    Ok(idle) => wait = limit - idle,
                    Err(err) => return err,
                }
            }
        };
        tokio::select! {
            err = self.stream.failure() => err,
            err = idle => err,
        }
    }
}

/// A program started for a connection, leading a process group of its own: killed with
/// the whole group when it is killed here or dropped before it was waited for. One that
/// exits by itself leaves the group alone, as inetd does: a child it left in the background
/// goes on (the connection then lasts as long as the child holds the socket).
#[derive(Debug)]
pub(crate) struct ProgramGroup {
    child: Child,
    /// Its pid, in [`OWN_CHILDREN`] while this handle lives (as PID 1 only).
    pid: Option<u32>,
}

/// The programs started here whose handle lives (tokio waits for them, and for the rest
/// once their handle is dropped): a PID 1's orphan reaper must leave these to it. Locked
/// across a spawn, so that no scan sees a program before it is listed; kept only as PID 1,
/// the one process the reaper runs in (elsewhere every spawn would queue on the lock for
/// nothing).
static OWN_CHILDREN: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether this process is PID 1 of its PID namespace (asked once).
fn is_init() -> bool {
    static INIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INIT.get_or_init(|| std::process::id() == 1)
}

/// The own-children list, locked (a panic while it was held leaves a plain set).
fn own_children() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u32>> {
    OWN_CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reaps the zombie children this process did not start itself (see
/// `server::reap_orphans`), with the programs' list held, so that none started meanwhile
/// is taken for an orphan.
pub(crate) fn reap_orphans() -> io::Result<usize> {
    let own = own_children();
    net::reap_orphans(|pid| u32::try_from(pid).is_ok_and(|pid| own.contains(&pid)))
}

impl ProgramGroup {
    /// Starts `command` as the leader of a new process group.
    ///
    /// # Errors
    ///
    /// The program could not be started.
    pub(crate) fn spawn(mut command: Command) -> io::Result<ProgramGroup> {
        command.process_group(0).kill_on_drop(true);
        if !is_init() {
            let child = command.spawn()?;
            return Ok(ProgramGroup { child, pid: None });
        }
        let mut own = own_children();
        let child = command.spawn()?;
        let pid = child.id();
        own.extend(pid);
        Ok(ProgramGroup { child, pid })
    }

    /// The program itself: its pipes, and waiting for it.
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kills the program and every process of its group, and waits for the program: how it
    /// ended (`None` if it could not be waited for), for the log.
    pub(crate) async fn kill(&mut self) -> Option<std::process::ExitStatus> {
        self.kill_group();
        let _ = self.child.kill().await;
        self.child.try_wait().ok().flatten()
    }

    fn kill_group(&self) {
        // Only while the leader is not reaped: its pid, the group's id, cannot be reused by
        // another process until then, so the signal cannot reach a stranger.
        if let Some(leader) = self.child.id() {
            let _ = net::kill_process_group(leader);
        }
    }
}

impl Drop for ProgramGroup {
    fn drop(&mut self) {
        self.kill_group();
        if let Some(pid) = self.pid {
            own_children().remove(&pid);
        }
    }
}
