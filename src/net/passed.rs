//! Where inherited sockets come from: the environment a parent sets for this process.
//!
//! - **Socket activation** (systemd's `sd_listen_fds(3)`): `LISTEN_FDS` descriptors from 3
//!   on, for this process only when `LISTEN_PID` is our pid, named by `LISTEN_FDNAMES`.
//!   Read with the `sd-notify` crate, which checks the pid and sets close-on-exec.
//! - **Handover** (a socketkit restarting on `SIGUSR2`, `server::Handover`): the
//!   listening sockets of each listener, in the order of the listeners,
//!   as `SOCKETKIT_HANDOVER_FDS=3,4;5` (`;` between listeners, `,` between the
//!   `SO_REUSEPORT` sockets of one), the metrics endpoint's listening socket when it has
//!   one (`SOCKETKIT_HANDOVER_METRICS_FD`), which listeners speak TLS (their sockets are
//!   TCP's; `SOCKETKIT_HANDOVER_TLS`, positions from 0) and whose Unix socket files pass
//!   to the new process (`SOCKETKIT_HANDOVER_FILES`: those the old one made or was handed,
//!   not a service manager's), a pipe to report readiness on
//!   (`SOCKETKIT_HANDOVER_READY_FD`), and the pid of the process handing over
//!   (`SOCKETKIT_HANDOVER_FROM`), which must be our parent: a program we run later sees
//!   none of it anyway, as every variable is removed once read.
//!
//! Both are read once, before any thread runs, and the variables removed, so that programs
//! the `exec` service runs inherit neither the variables nor (close-on-exec) the sockets.

use std::env;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Op, Result};

const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

/// The variable naming the handed-over listening sockets.
pub(crate) const HANDOVER_FDS: &str = "SOCKETKIT_HANDOVER_FDS";
/// The variable naming the metrics endpoint's listening socket, when it is handed over.
pub(crate) const HANDOVER_METRICS_FD: &str = "SOCKETKIT_HANDOVER_METRICS_FD";
/// The variable naming the pid file, open for writing, when a socketkit of 2026-12-07
/// handed it over so (a server that dropped root may not replace it in its directory);
/// read, no longer set: the pid file goes over the readiness socket now.
pub(crate) const HANDOVER_PID_FILE_FD: &str = "SOCKETKIT_HANDOVER_PID_FILE_FD";
/// The variable listing the handed-over listeners (positions from 0) that speak TLS.
pub(crate) const HANDOVER_TLS: &str = "SOCKETKIT_HANDOVER_TLS";
/// The variable listing the handed-over listeners (positions from 0) whose Unix socket
/// file the new process removes when it is done with it. Without it (an older socketkit
/// handing over), every handed-over socket file is.
pub(crate) const HANDOVER_FILES: &str = "SOCKETKIT_HANDOVER_FILES";
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
    /// Each listener's sockets (several with `SO_REUSEPORT`), with what it is.
    pub(crate) groups: Vec<(Vec<OwnedFd>, ListenerKind)>,
    /// The metrics endpoint's listening socket (`None` from a socketkit that handed over
    /// none: it had no `--metrics`, or it is older than the handing over of that socket).
    pub(crate) metrics: Option<OwnedFd>,
    /// The pid file, open for writing, when one was handed over.
    pub(crate) pid_file: Option<OwnedFd>,
    /// Where to report readiness.
    pub(crate) ready: OwnedFd,
}

/// What a handed-over listener is, beside its sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ListenerKind {
    /// It speaks TLS (a `tls:` listener), which its TCP sockets cannot tell.
    pub(crate) tls: bool,
    /// Its Unix socket file is the handing-over process's own (it bound it, or was handed
    /// it), and so the new process's to remove once it serves it; not a service manager's.
    pub(crate) owns_file: bool,
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
    let [fds, metrics, pid_file, tls, files, ready, from] = [
        HANDOVER_FDS,
        HANDOVER_METRICS_FD,
        HANDOVER_PID_FILE_FD,
        HANDOVER_TLS,
        HANDOVER_FILES,
        HANDOVER_READY_FD,
        HANDOVER_FROM,
    ]
    .map(|name| {
        let value = env::var(name).ok();
        // SAFETY: as above.
        unsafe { env::remove_var(name) };
        value
    });
    let ours =
        from.and_then(|pid| pid.parse::<u32>().ok()) == Some(std::os::unix::process::parent_id());
    let handover = match (fds, ready) {
        (Some(fds), Some(ready)) if ours => {
            let kinds = Kinds {
                tls: tls.as_deref(),
                files: files.as_deref(),
            };
            let extra = Extra {
                metrics: metrics.as_deref(),
                pid_file: pid_file.as_deref(),
            };
            Some(handed_over(&fds, kinds, extra, &ready).map_err(|err| fail(HANDOVER_FDS, err))?)
        }
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

/// The handover's lists of positions, as the variables give them.
#[derive(Debug, Clone, Copy)]
struct Kinds<'a> {
    tls: Option<&'a str>,
    files: Option<&'a str>,
}

impl Kinds<'_> {
    /// What the listener at `position` is.
    fn of(&self, position: usize) -> io::Result<ListenerKind> {
        Ok(ListenerKind {
            tls: self.tls.map_or(Ok(false), |list| listed(list, position))?,
            owns_file: self.files.map_or(Ok(true), |list| listed(list, position))?,
        })
    }
}

/// Whether `list` (positions separated by commas, perhaps none) has `position`.
fn listed(list: &str, position: usize) -> io::Result<bool> {
    for item in list.split(',').filter(|item| !item.is_empty()) {
        let at: usize = item.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{item}' is not a listener's position"),
            )
        })?;
        if at == position {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The handover's descriptors besides its listeners', as their variables give them.
struct Extra<'a> {
    metrics: Option<&'a str>,
    pid_file: Option<&'a str>,
}

/// Parses and claims the handover's descriptors.
fn handed_over(
    fds: &str,
    kinds: Kinds<'_>,
    extra: Extra<'_>,
    ready: &str,
) -> io::Result<HandedOver> {
    let groups = fds
        .split(';')
        .enumerate()
        .map(|(position, group)| {
            let fds = group
                .split(',')
                .map(claim)
                .collect::<io::Result<Vec<_>>>()?;
            Ok((fds, kinds.of(position)?))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let ready = claim(ready)?;
    // On the readiness socket, or (from a socketkit of 2026-12-07) inherited and named by
    // a variable. A pipe (an older socketkit's) carries none; failing to take it leaves
    // the new process to open the file itself.
    let pid_file = match extra.pid_file.map(claim).transpose()? {
        Some(fd) => Some(fd),
        None => crate::sys::receive_descriptor(ready.as_fd()).ok().flatten(),
    };
    Ok(HandedOver {
        groups,
        metrics: extra.metrics.map(claim).transpose()?,
        pid_file,
        ready,
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

/// The variables that hand `groups` (each listener's sockets and what it is), the metrics
/// endpoint's socket `metrics` over to a child, with `ready` its end of the socket it
/// reports on (which carries the pid file, see `server::Handover::start`).
pub(crate) fn handover_env(
    groups: &[(Vec<RawFd>, ListenerKind)],
    metrics: Option<RawFd>,
    ready: RawFd,
) -> Vec<(&'static str, String)> {
    let fds = groups
        .iter()
        .map(|(fds, _)| {
            fds.iter()
                .map(RawFd::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";");
    let positions = |has: fn(&ListenerKind) -> bool| {
        groups
            .iter()
            .enumerate()
            .filter(|(_, (_, kind))| has(kind))
            .map(|(position, _)| position.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut env = vec![
        (HANDOVER_FDS, fds),
        (HANDOVER_TLS, positions(|kind| kind.tls)),
        (HANDOVER_FILES, positions(|kind| kind.owns_file)),
        (HANDOVER_READY_FD, ready.to_string()),
        (HANDOVER_FROM, std::process::id().to_string()),
    ];
    if let Some(metrics) = metrics {
        env.push((HANDOVER_METRICS_FD, metrics.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_of_listeners_go_over_by_position() {
        let tls = ListenerKind {
            tls: true,
            owns_file: false,
        };
        let file = ListenerKind {
            tls: false,
            owns_file: true,
        };
        let groups = [
            (vec![5, 6], tls),
            (vec![7], file),
            (vec![8], ListenerKind::default()),
        ];
        let env: std::collections::HashMap<_, _> =
            handover_env(&groups, None, 9).into_iter().collect();
        assert_eq!(env[HANDOVER_FDS], "5,6;7;8");
        let kinds = Kinds {
            tls: Some(&env[HANDOVER_TLS]),
            files: Some(&env[HANDOVER_FILES]),
        };
        let read: Vec<ListenerKind> = (0..3).map(|at| kinds.of(at).expect("kind")).collect();
        assert_eq!(read, [tls, file, ListenerKind::default()]);
    }

    #[test]
    fn an_older_socketkit_hands_every_file_over_and_no_tls() {
        let kinds = Kinds {
            tls: None,
            files: None,
        };
        let kind = kinds.of(3).expect("kind");
        assert!(kind.owns_file && !kind.tls);
        let empty = Kinds {
            tls: Some(""),
            files: Some(""),
        };
        assert_eq!(empty.of(0).expect("kind"), ListenerKind::default());
        let bad = Kinds {
            tls: Some("0,x"),
            files: None,
        };
        assert!(bad.of(1).is_err());
    }
}
