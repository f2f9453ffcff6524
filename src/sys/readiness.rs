//! Waiting on descriptors with `poll(2)` (every Unix has it): for something to read, for
//! room to write, for a reader to leave, and for connects under way to end.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Waits until `fd` has something to read (data, end of stream or an error) or `timeout`
/// passes (`None`: no limit), with `poll(2)`: true when readable, false on timeout.
///
/// A blocking `splice` from a socket into a pipe holds the pipe's lock while it waits for
/// the socket, so whoever reads the pipe cannot take the bytes already in it. Waiting here
/// first means the splice that follows finds data and never sleeps holding the pipe.
pub(crate) fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    Ok(wait_readable_watching(fd, None, timeout)? == Readiness::Readable)
}

/// What [`wait_readable_watching`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// The descriptor waited on has something to read (data, end of stream or an error).
    Readable,
    /// The timeout passed first.
    TimedOut,
    /// The watched descriptor's reader has gone.
    ReaderGone,
}

/// As [`wait_readable`], also ending when `watched` — a pipe or socket this process writes
/// to — has lost its reader: a pipe's write end reports `POLLERR` once no process holds
/// the read end, a socket `POLLHUP` once its peer has closed both ways. `poll(2)` reports
/// both without being asked (`events` is 0), so the wait costs no more than one on `fd`
/// alone. A regular file or a terminal never reports either: watching one waits for `fd`
/// only. When both are ready at once, the reader's leaving is the answer.
pub(crate) fn wait_readable_watching(
    fd: RawFd,
    watched: Option<RawFd>,
    timeout: Option<Duration>,
) -> io::Result<Readiness> {
    let millis = poll_millis(timeout);
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: watched.unwrap_or(-1),
            events: 0,
            revents: 0,
        },
    ];
    let count: libc::nfds_t = if watched.is_some() { 2 } else { 1 };
    loop {
        // SAFETY: `count` valid pollfds (at most the array's two); poll writes only their
        // revents.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), count, millis) };
        if rc > 0 {
            let gone = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
            if watched.is_some() && fds[1].revents & gone != 0 {
                return Ok(Readiness::ReaderGone);
            }
            return Ok(Readiness::Readable);
        }
        if rc == 0 {
            return Ok(Readiness::TimedOut);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether the pipe or socket `fd`, which this process writes to, has lost its reader (see
/// [`wait_readable_watching`]); asked without waiting.
pub(crate) fn reader_gone(fd: RawFd) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its count given; poll writes only its revents.
    let rc = unsafe { libc::poll(&mut pollfd, 1, 0) };
    rc > 0 && pollfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

/// Waits until `fd` can take bytes (or has failed, which the write that follows reports)
/// or `timeout` passes (`None`: no limit), with `poll(2)`: true when writable, false on
/// timeout. For a write that a non-blocking descriptor refused with `EAGAIN`.
pub(crate) fn wait_writable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    let millis = poll_millis(timeout);
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, its count given; poll writes only its revents.
        let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Waits until at least one of `fds` can take bytes or has failed — how a non-blocking
/// `connect(2)` under way reports that it ended, either way — or `timeout` passes (`None`:
/// no limit), with one `poll(2)`: the indexes (into `fds`) of those that did, none on
/// timeout.
pub(crate) fn wait_writable_any(
    fds: &[RawFd],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    let millis = poll_millis(timeout);
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect();
    let count = libc::nfds_t::try_from(pollfds.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: `count` valid pollfds, the vector's own length; poll writes only their
        // revents.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), count, millis) };
        if rc >= 0 {
            return Ok(pollfds
                .iter()
                .enumerate()
                .filter(|(_, p)| p.revents != 0)
                .map(|(i, _)| i)
                .collect());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether `err`, from a non-blocking `connect(2)`, says only that the connect is under way
/// (`EINPROGRESS`): its end is seen as the socket becoming writable.
pub(crate) fn connect_in_progress(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EINPROGRESS)
}

/// `timeout` as `poll(2)` takes it: milliseconds, rounded up so that a short non-zero
/// timeout does not become a busy poll; -1 for none.
fn poll_millis(timeout: Option<Duration>) -> libc::c_int {
    timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
    })
}
