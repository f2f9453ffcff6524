//! Telling a service manager how the server is doing: systemd's `sd_notify(3)` protocol
//! (a datagram to the socket `NOTIFY_SOCKET` names), sent with the `sd-notify` crate. With
//! no `NOTIFY_SOCKET` nothing is sent, so calling these costs nothing elsewhere. And what
//! a manager (or any parent) may leave the process with: signals blocked or ignored, a soft
//! limit on open descriptors far below the hard one, and as PID 1 the orphans to reap.

use std::io;

use sd_notify::NotifyState;

/// A state change for the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerState {
    /// `READY=1`: the listeners are bound and the server accepts connections.
    Ready,
    /// `STOPPING=1`: the server drains and will exit.
    Stopping,
    /// `MAINPID=PID`: the process `PID` serves from now on (after a restart's handover).
    MainPid(u32),
}

/// Sends `state` to the service manager, if one asked for notifications (`NOTIFY_SOCKET`).
///
/// # Errors
///
/// The notification socket is set but cannot be reached.
pub fn notify_manager(state: ManagerState) -> io::Result<()> {
    let state = match state {
        ManagerState::Ready => NotifyState::Ready,
        ManagerState::Stopping => NotifyState::Stopping,
        ManagerState::MainPid(pid) => NotifyState::MainPid(pid),
    };
    sd_notify::notify(&[state])
}

/// Takes back the signals a parent may have blocked or ignored before starting this
/// process: a blocked `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGUSR2` or `SIGCHLD` is unblocked, so
/// that a graceful stop, a reload and a restart are heard (tokio's signal handlers never
/// run for a blocked signal, which then stays pending for ever); an ignored `SIGCHLD` is set
/// back to its default, without which the kernel reaps every child at once and waiting for
/// a program's status fails with `no child processes`.
///
/// Call it first thing in `main`, before any thread starts (a tokio runtime's included):
/// threads inherit the mask of the thread that starts them.
///
/// # Errors
///
/// The system refused to change the mask or the action (it does not for these signals).
pub fn reset_inherited_signals() -> io::Result<()> {
    crate::net::reset_inherited_signals()
}

/// The soft limit on open descriptors before and after [`use_the_hard_descriptor_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit the process started with.
    pub was: u64,
    /// The soft limit now: the hard limit, unless the system refused.
    pub now: u64,
}

/// Raises the soft limit on open descriptors (`RLIMIT_NOFILE`) to the hard limit, as systemd
/// advises a service that needs many descriptors to do (it starts services with 1024 soft
/// and 524288 hard), and as Go programs do at start-up: every connection holds one, a relay
/// two, and at the soft limit a server stops accepting. Programs the process starts
/// afterwards inherit the raised limit.
///
/// On a system that refuses (a hard limit it does not allow as a soft one), the limit is
/// left as it was: `now == was`.
pub fn use_the_hard_descriptor_limit() -> DescriptorLimit {
    let was = crate::net::descriptor_limit().unwrap_or(1024);
    let now = crate::net::raise_descriptor_limit(u64::MAX);
    DescriptorLimit { was, now }
}

/// Whether `descriptors` more can be opened now: made (sockets) and closed again. A server
/// asks before it says it is ready (`serve` does, with room for one connection of its
/// handler), so that a set-up that took the last descriptors under a tight limit fails with
/// why instead of announcing a server that can serve no one.
///
/// # Errors
///
/// `too many open files` (or another shortage) in words that say so: `no room for a
/// connection once the server is set up (4 descriptors wanted, 3 left): too many open files
/// (raise the limit: ulimit -n)`. Any other failure to make a socket is no answer, and `Ok`.
///
/// # Examples
///
/// ```
/// socketkit::server::room_for_a_connection(4)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn room_for_a_connection(descriptors: usize) -> io::Result<()> {
    let mut made = Vec::with_capacity(descriptors);
    while made.len() < descriptors {
        match std::os::unix::net::UnixDatagram::unbound() {
            Ok(probe) => made.push(probe),
            Err(err) if crate::net::is_resource_exhaustion(&err) => {
                return Err(io::Error::new(
                    err.kind(),
                    format!(
                        "no room for a connection once the server is set up ({descriptors} \
                         descriptors wanted, {} left): {} (raise the limit: ulimit -n)",
                        made.len(),
                        crate::error::describe(&err)
                    ),
                ));
            }
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Reaps the zombie children of this process that the `exec` service did not start:
/// orphans of its programs' children (a background job, a `setsid` daemon) that the kernel
/// gives to PID 1 — a container's entrypoint — to wait for. Call it on `SIGCHLD` in a PID 1
/// whose every other child is the `exec` service's: a child started otherwise would be
/// waited for here, and its owner's wait would fail. Where there is no `/proc`, nothing is
/// found. How many were reaped.
///
/// # Errors
///
/// `/proc/self/task` cannot be read.
pub fn reap_orphans() -> io::Result<usize> {
    super::program::reap_orphans()
}
