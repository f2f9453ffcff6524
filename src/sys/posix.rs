//! The raw calls that every Unix has (POSIX) — `poll(2)` is in `readiness.rs` —: `fstat(2)`, `fcntl(F_GETFL)`,
//! `recv(2)` with `MSG_DONTWAIT`, `connect(2)` to `AF_UNSPEC`, `getsockopt(SO_ACCEPTCONN)`,
//! `gethostname(2)`, `getrlimit(2)`, `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`;
//! `fcntl(F_SETFD)` for the descriptors a process hands to the program it starts;
//! `sigaction(2)` with `raise(3)` for a process that caught a signal only to clean up
//! before dying by it; `sigprocmask(2)` and `sigaction(2)` to take back the signals a
//! parent blocked or ignored; and `kill(2)`, to pass a stop on to the process a restart started
//! and to end a program started for a connection with all it started in turn.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Runs `f` (a Unix socket's `bind`, which makes its file) with the process's file mode
/// creation mask set to `mask`, then puts the old mask back: the file is made with the mode
/// asked for, never with the umask's for a moment, and no `chmod` by path follows, which a
/// symlink swapped in after the bind would carry to another file (systemd's `SocketMode`
/// binds the same way). The mask is the process's: a file another thread made in those
/// microseconds would have it too; socketkit makes none while it binds.
pub(crate) fn with_umask<R>(mask: u32, f: impl FnOnce() -> R) -> R {
    // SAFETY: umask(2) only swaps the process's mask, and cannot fail.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let result = f();
    // SAFETY: as above, putting the old mask back.
    unsafe { libc::umask(old) };
    result
}

/// Sets the mode of the file at `path` itself, never of what a symlink there points to
/// (`fchmodat` with `AT_SYMLINK_NOFOLLOW`: a symlink fails, `EOPNOTSUPP`).
pub(crate) fn chmod_no_follow(path: &std::path::Path, mode: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: a NUL-terminated path that outlives the call.
    match unsafe { libc::fchmodat(libc::AT_FDCWD, path.as_ptr(), mode as libc::mode_t, flags) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// One `recv(2)` on the socket `fd` that never waits (`MSG_DONTWAIT`), whatever the
/// socket's own mode: `WouldBlock` when nothing has arrived. For a reader that waits with
/// `poll(2)` only when there is nothing to take, so that the wait can watch more than the
/// socket, while another thread sends on the same socket in blocking mode.
pub(crate) fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, which outlives the call; the kernel
    // writes at most `len` bytes into it.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// How many bytes wait in the receive queue of the stream socket `fd`, not read yet
/// (`ioctl(FIONREAD)`).
pub(crate) fn receive_queued(fd: RawFd) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at a live c_int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel never reports a negative queue; a negative value would be its bug.
    usize::try_from(queued).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Dissolves the connection of the socket `fd` (`connect(2)` to an `AF_UNSPEC` address, as
/// connect(2) documents): on a TCP socket the kernel sends a reset and fails every call
/// waiting in it. Unix streams refuse it.
pub(crate) fn disconnect(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zeroed sockaddr is a valid value of the type, and its family is AF_UNSPEC.
    let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `unspec`, which outlives the call.
    if unsafe { libc::connect(fd, &unspec, len) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kind of file `fd` is (the `S_IFMT` bits of its mode), or `None` when `fstat` fails.
fn file_kind(fd: RawFd) -> Option<libc::mode_t> {
    // SAFETY: fstat only writes into the zeroed struct we pass; a bad fd makes it fail.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut stat) == 0).then_some(stat.st_mode & libc::S_IFMT)
    }
}

/// Whether `fd` is a pipe or FIFO.
pub(crate) fn is_pipe(fd: RawFd) -> bool {
    file_kind(fd) == Some(libc::S_IFIFO)
}

/// Whether `fd` is a pipe, FIFO or socket: a descriptor that reports its reader leaving
/// (see [`wait_readable_watching`]).
pub(crate) fn is_pipe_or_socket(fd: RawFd) -> bool {
    matches!(file_kind(fd), Some(libc::S_IFIFO | libc::S_IFSOCK))
}

/// Whether `fd` is a pipe (or FIFO) in blocking mode: one a blocking `splice` may fill.
pub(crate) fn is_blocking_pipe(fd: RawFd) -> bool {
    // SAFETY: F_GETFL only reads the flags; a bad fd makes it fail, which reads as "no".
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    is_pipe(fd) && flags >= 0 && flags & libc::O_NONBLOCK == 0
}

/// Whether an error from `splice` means "not supported for these files" or "not allowed
/// here" (fall back to a copy) rather than a failure of the connection: `EPERM` and
/// `EACCES` are what seccomp profiles (Docker's, containerd's, systemd's
/// `SystemCallFilter=`) and security modules answer for a call they refuse; `ENOMEM`, a
/// pipe's pages that cannot be had (a copy needs none). A failure of
/// the socket itself (a reset) is none of these, and is the connection's: the splice took
/// the error, so a copy after it would read a clean end.
pub(crate) fn splice_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::EINVAL
                | libc::ENOSYS
                | libc::EOPNOTSUPP
                | libc::EPERM
                | libc::EACCES
                | libc::ENOMEM
        )
    )
}

/// Whether the socket `fd` is listening for connections (`SO_ACCEPTCONN`).
pub(crate) fn is_listening(fd: RawFd) -> io::Result<bool> {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the value is a c_int that lives across the call, with its size given; the
    // kernel writes at most `len` bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(on != 0)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The name of this host, as `gethostname(2)` reports it.
pub(crate) fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; the kernel
    // writes at most `len` bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // A name that fills the buffer has no NUL; the last byte is then cut off, as glibc does.
    let last = buf.len() - 1;
    buf[last] = 0;
    let name = CStr::from_bytes_until_nul(&buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "no terminating NUL"))?;
    Ok(name.to_string_lossy().into_owned())
}

/// The index of the network interface `name` (`if_nametoindex(3)`), for IPv6 zones.
pub(crate) fn interface_index(name: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in an interface name"))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call, which only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no network interface by that name",
        ));
    }
    Ok(index)
}

/// The limits on open descriptors (`RLIMIT_NOFILE`): soft and hard, if the system says.
fn descriptor_limits() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    known.then_some(limit)
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), if the system says.
pub(crate) fn descriptor_limit() -> Option<u64> {
    #[allow(clippy::unnecessary_cast, reason = "rlim_t is not u64 on every system")]
    descriptor_limits().map(|limit| limit.rlim_cur as u64)
}

/// Raises the soft limit on open descriptors towards `wanted`, as far as the hard limit
/// allows (an unprivileged process may, as Go programs do at start-up); returns the soft
/// limit then (1024, the usual default, if the system does not say).
#[allow(clippy::unnecessary_cast, reason = "rlim_t is not u64 on every system")]
pub(crate) fn raise_descriptor_limit(wanted: u64) -> u64 {
    let Some(limit) = descriptor_limits() else {
        return 1024;
    };
    let (soft, hard) = (limit.rlim_cur as u64, limit.rlim_max as u64);
    if soft >= wanted {
        return soft;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted.min(hard) as libc::rlim_t,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        raised.rlim_cur as u64
    } else {
        soft
    }
}

/// Sets `FD_CLOEXEC` on `fd`, so that programs this process runs do not inherit it.
///
/// # Errors
///
/// `EBADF` when `fd` is not an open descriptor.
pub(crate) fn set_close_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD and F_SETFD only read and write the descriptor's flags; a descriptor
    // that is not open makes them fail with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes the program `cmd` runs inherit `fds`, which stay close-on-exec in this process:
/// the flag is cleared in the child only, between `fork` and `exec`, so no other program
/// this process starts meanwhile gets them.
pub(crate) fn inherit_on_exec(cmd: &mut std::process::Command, fds: Vec<RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec and calls only fcntl, which is
    // async-signal-safe; it allocates nothing (`fds` was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Restores the default action of `signal`, unblocks it in the calling thread and raises it
/// there: for a terminating signal the process dies by it before this returns. It returns
/// only when that did not happen (a signal whose default is to be ignored, or a failed call).
pub(crate) fn raise_with_default_action(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a zeroed sigaction with SIG_DFL and an empty mask is a valid action for any
    // signal; sigemptyset, sigaddset, pthread_sigmask and raise only read and write the
    // sets passed, which live across the calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        if libc::raise(signal) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Takes back what a parent may leave a process with and a server cannot work under
/// (`sigprocmask(2)`, `sigaction(2)`): the signals socketkit handles (`SIGINT`, `SIGTERM`,
/// `SIGHUP`, `SIGUSR2`, and `SIGCHLD`, by which tokio learns that a child exited), blocked in
/// the inherited mask, are unblocked, so that their handlers run (nginx and postgres do the
/// same); and `SIGCHLD` set to be
/// ignored is set back to its default, under which the kernel keeps a child's status for
/// `waitpid` (ignored, children are reaped at once and every wait fails with `ECHILD`).
/// Called before any thread starts, so that every thread inherits the mask.
pub(crate) fn reset_inherited_signals() -> io::Result<()> {
    let handled = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGUSR2,
        libc::SIGCHLD,
    ];
    // SAFETY: sigemptyset, sigaddset and sigprocmask only read and write the set, which
    // lives across the calls; sigaction with a null new action only reads the current one
    // into `current`, a zeroed sigaction being a valid value of the type; a zeroed action
    // with SIG_DFL and an empty mask is a valid action for SIGCHLD.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in handled {
            libc::sigaddset(&mut set, signal);
        }
        if libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current) != 0 {
            return Err(io::Error::last_os_error());
        }
        if current.sa_sigaction == libc::SIG_IGN {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Sends SIGTERM to process `pid` (`kill(2)`).
pub(crate) fn terminate(pid: u32) -> io::Result<()> {
    send_signal(pid, libc::SIGTERM, 1)
}

/// Sends SIGUSR2 to process `pid`: a restart asked of a process this one started.
pub(crate) fn ask_restart(pid: u32) -> io::Result<()> {
    send_signal(pid, libc::SIGUSR2, 1)
}

/// Sends SIGHUP to process `pid`: a socketkit server reads its files again.
pub(crate) fn ask_reload(pid: u32) -> io::Result<()> {
    send_signal(pid, libc::SIGHUP, 1)
}

/// Sends SIGKILL to every process of process group `group` (`kill(2)` of the negated id,
/// as `killpg(3)` does).
pub(crate) fn kill_process_group(group: u32) -> io::Result<()> {
    send_signal(group, libc::SIGKILL, -1)
}

/// Whether the process group `group` has a process in it (`kill(-group, 0)`; one this
/// process may not signal exists too).
pub(crate) fn process_group_exists(group: u32) -> bool {
    match send_signal(group, 0, -1) {
        Ok(()) => true,
        Err(err) => err.raw_os_error() == Some(libc::EPERM),
    }
}

/// `kill(sign * id, signal)`: a process (`sign` 1) or a process group (-1).
fn send_signal(id: u32, signal: libc::c_int, sign: libc::pid_t) -> io::Result<()> {
    let id = libc::pid_t::try_from(id)
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such process"))?;
    // SAFETY: kill only reads its two integers.
    if unsafe { libc::kill(sign * id, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPU time the calling thread has used (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`);
/// zero if the clock cannot be read.
pub(crate) fn thread_cpu_time() -> Duration {
    cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The CPU time every thread of this process has used (`CLOCK_PROCESS_CPUTIME_ID`); zero
/// if the clock cannot be read.
pub(crate) fn process_cpu_time() -> Duration {
    cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a timespec that lives across the call, for the kernel to fill; on an
    // error it stays zero.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    let seconds = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999);
    Duration::new(seconds, nanos)
}
