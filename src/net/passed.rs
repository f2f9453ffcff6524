//! Where inherited sockets come from: the environment a parent sets for this process.
//!
//! - **Socket activation** (systemd's `sd_listen_fds(3)`): `LISTEN_FDS` descriptors from 3
//!   on, for this process only when `LISTEN_PID` is our pid, named by `LISTEN_FDNAMES`.
//!   Read with the `sd-notify` crate, which checks the pid and sets close-on-exec.
//! - **Handover** (a socketkit restarting on `SIGUSR2`, `server::Handover`): the
//!   listening sockets of each listener, in the order of the listeners,
//!   as `SOCKETKIT_HANDOVER_FDS=3,4;5` (`;` between listeners, `,` between the
//!   `SO_REUSEPORT` sockets of one), the metrics endpoint's listening socket when it has
//!   one (`SOCKETKIT_HANDOVER_METRICS_FD`), a pipe to report readiness on
//!   (`SOCKETKIT_HANDOVER_READY_FD`), and the pid of the process handing over
//!   (`SOCKETKIT_HANDOVER_FROM`), which must be our parent: a program we run later sees
//!   none of it anyway, as every variable is removed once read.
//!
//! Both are read once, before any thread runs, and the variables removed, so that programs
//! the `exec` service runs inherit neither the variables nor (close-on-exec) the sockets.

use std::env;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Op, Result};

const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

/// The variable naming the handed-over listening sockets.
pub(crate) const HANDOVER_FDS: &str = "SOCKETKIT_HANDOVER_FDS";
/// The variable naming the metrics endpoint's listening socket, when it is handed over.
pub(crate) const HANDOVER_METRICS_FD: &str = "SOCKETKIT_HANDOVER_METRICS_FD";
/// The variable naming the pipe the new process reports readiness on.
pub(crate) const HANDOVER_READY_FD: &str = "SOCKETKIT_HANDOVER_READY_FD";
/// The variable naming the process that hands over.
pub(crate) const HANDOVER_FROM: &str = "SOCKETKIT_HANDOVER_FROM";

/// The sockets passed to this process.
#[derive(Debug, Default)]
pub(crate) struct Passed {
    /// Socket activation's descriptors with their names, in order (fd 3, 4, …).
    pub(crate) activated: Vec<(OwnedFd, String)>,
    /// What a socketkit handing over passed.
    pub(crate) handover: Option<HandedOver>,
}

/// The listening sockets of an older socketkit, one group per listener.
#[derive(Debug)]
pub(crate) struct HandedOver {
    /// Each listener's sockets (several with `SO_REUSEPORT`).
    pub(crate) groups: Vec<Vec<OwnedFd>>,
    /// The metrics endpoint's listening socket (`None` from a socketkit that handed over
    /// none: it had no `--metrics`, or it is older than the handing over of that socket).
    pub(crate) metrics: Option<OwnedFd>,
    /// Where to report readiness.
    pub(crate) ready: OwnedFd,
}

/// Takes the sockets passed to this process and removes the variables that named them.
///
/// # Safety
///
/// Removes environment variables: no other thread may run (call it before starting a
/// runtime), as for [`std::env::remove_var`].
///
/// # Errors
///
/// Variables that are set for this process but malformed (`LISTEN_FDNAMES` not matching
/// `LISTEN_FDS`, a handover list that names no open descriptor).
pub(crate) unsafe fn take_passed() -> Result<Passed> {
    let fail = |what: &str, err: io::Error| Error::new(Op::Listen, what, err);
    let pid = env::var(LISTEN_PID).ok();
    let activated = if pid.and_then(|pid| pid.parse::<u32>().ok()) == Some(std::process::id()) {
        // SAFETY: the caller guarantees no other thread runs.
        unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
            .map_err(|err| fail("LISTEN_FDS", err))?
            // SAFETY: sd-notify checked that LISTEN_PID is ours and set close-on-exec on
            // each descriptor (which fails on one that is not open): they were passed to
            // this process, and nothing else in it owns them.
            .map(|(fd, name)| (unsafe { OwnedFd::from_raw_fd(fd) }, name))
            .collect()
    } else {
        // Not ours (sd-notify would take the names of another process's sockets for a
        // malformed LISTEN_FDNAMES, so the pid is checked here first).
        close_on_exec_unclaimed(env::var(LISTEN_FDS).ok().as_deref());
        // SAFETY: as above.
        unsafe {
            for name in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES] {
                env::remove_var(name);
            }
        }
        Vec::new()
    };
    let fds = env::var(HANDOVER_FDS).ok();
    let metrics = env::var(HANDOVER_METRICS_FD).ok();
    let ready = env::var(HANDOVER_READY_FD).ok();
    let from = env::var(HANDOVER_FROM).ok();
    // SAFETY: as above.
    unsafe {
        env::remove_var(HANDOVER_FDS);
        env::remove_var(HANDOVER_METRICS_FD);
        env::remove_var(HANDOVER_READY_FD);
        env::remove_var(HANDOVER_FROM);
    }
    let ours =
        from.and_then(|pid| pid.parse::<u32>().ok()) == Some(std::os::unix::process::parent_id());
    let handover = match (fds, ready) {
        (Some(fds), Some(ready)) if ours => Some(
            handed_over(&fds, metrics.as_deref(), &ready).map_err(|err| fail(HANDOVER_FDS, err))?,
        ),
        _ => None,
    };
    Ok(Passed {
        activated,
        handover,
    })
}

/// Descriptors `LISTEN_FDS` announced for another process (`LISTEN_PID` is not ours) are
/// not ours to serve, but they are open here: made close-on-exec, so that no program we run
/// inherits a listening socket either. At most a thousand, whatever the variable says.
fn close_on_exec_unclaimed(announced: Option<&str>) {
    let count: RawFd = announced.and_then(|n| n.parse().ok()).unwrap_or(0);
    for fd in 3..3 + count.clamp(0, 1000) {
        // A descriptor that is not open has nothing to leak.
        let _ = crate::sys::set_close_on_exec(fd);
    }
}

/// Parses and claims the handover's descriptors.
fn handed_over(fds: &str, metrics: Option<&str>, ready: &str) -> io::Result<HandedOver> {
    let groups = fds
        .split(';')
        .map(|group| group.split(',').map(claim).collect::<io::Result<Vec<_>>>())
        .collect::<io::Result<Vec<_>>>()?;
    Ok(HandedOver {
        groups,
        metrics: metrics.map(claim).transpose()?,
        ready: claim(ready)?,
    })
}

/// Takes ownership of the inherited descriptor `text` names, close-on-exec from now on.
fn claim(text: &str) -> io::Result<OwnedFd> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{text}' is not an inherited descriptor"),
        )
    };
    let fd: RawFd = text.parse().map_err(|_| invalid())?;
    if fd <= 2 {
        return Err(invalid());
    }
    crate::sys::set_close_on_exec(fd).map_err(|_| invalid())?;
    // SAFETY: the descriptor is open (fcntl succeeded), above the standard three, and was
    // passed to this process by its parent for it to own; it is claimed once, at start-up.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The variables that hand `groups` and the metrics endpoint's socket `metrics` over to a
/// child, with `ready` the pipe's write end.
pub(crate) fn handover_env(
    groups: &[Vec<RawFd>],
    metrics: Option<RawFd>,
    ready: RawFd,
) -> Vec<(&'static str, String)> {
    let fds = groups
        .iter()
        .map(|group| {
            group
                .iter()
                .map(RawFd::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";");
    let mut env = vec![
        (HANDOVER_FDS, fds),
        (HANDOVER_READY_FD, ready.to_string()),
        (HANDOVER_FROM, std::process::id().to_string()),
    ];
    if let Some(metrics) = metrics {
        env.push((HANDOVER_METRICS_FD, metrics.to_string()));
    }
    env
}
