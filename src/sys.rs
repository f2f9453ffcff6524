//! The few raw Linux calls socketkit makes beyond `socket2` and `std`: `splice(2)`, pipes,
//! and asking what kind of file a descriptor is. Callers detect failure (a kernel or sandbox
//! without splice answers `EINVAL` or `ENOSYS`) and fall back to copying; see
//! `docs/platform-notes.md`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pipe, closed on drop.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    /// How many bytes the pipe holds (after asking for `size`).
    pub(crate) capacity: usize,
}

impl Pipe {
    /// A non-blocking pipe, resized to `size` bytes if the kernel allows (it may refuse:
    /// `/proc/sys/fs/pipe-max-size`, per-user pipe quotas; the default 64 KiB is used then).
    pub(crate) fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let capacity = grow_pipe(write.as_raw_fd(), size).unwrap_or(64 * 1024);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }
}

/// Asks for the pipe (or FIFO) `fd` to hold at least `size` bytes (`F_SETPIPE_SZ`), never
/// shrinking it: the size it has then, or `None` when `fd` is no pipe or the kernel refuses
/// (`/proc/sys/fs/pipe-max-size`, per-user pipe quotas).
pub(crate) fn grow_pipe(fd: RawFd, size: usize) -> Option<usize> {
    // SAFETY: F_GETPIPE_SZ only reads the pipe's size; on a descriptor that is not a pipe it
    // fails (EBADF or EINVAL).
    let has = usize::try_from(unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) }).ok()?;
    if has >= size {
        return Some(has);
    }
    let asked = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int argument and only resizes the pipe's buffer.
    let got = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, asked) };
    usize::try_from(got).ok().or(Some(has))
}

/// Whether `fd` is a pipe or FIFO.
pub(crate) fn is_pipe(fd: RawFd) -> bool {
    // SAFETY: fstat only writes into the zeroed struct we pass; a bad fd makes it fail,
    // which reads as "no".
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFIFO
    }
}

/// One `splice(2)` call moving up to `len` bytes from `from` to `to` (one must be a pipe).
/// With `nonblocking`, the pipe side does not wait; a socket side waits or not by its own
/// `O_NONBLOCK`.
pub(crate) fn splice(from: RawFd, to: RawFd, len: usize, nonblocking: bool) -> io::Result<usize> {
    let mut flags = libc::SPLICE_F_MOVE;
    if nonblocking {
        flags |= libc::SPLICE_F_NONBLOCK;
    }
    // SAFETY: null offsets are allowed for pipes and sockets; the descriptors are borrowed
    // from live owners for the duration of the call.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Waits until `fd` has something to read (data, end of stream or an error) or `timeout`
/// passes (`None`: no limit), with `poll(2)`: true when readable, false on timeout.
///
/// A blocking `splice` from a socket into a pipe holds the pipe's lock while it waits for
/// the socket, so whoever reads the pipe cannot take the bytes already in it. Waiting here
/// first means the splice that follows finds data and never sleeps holding the pipe.
pub(crate) fn wait_readable(fd: RawFd, timeout: Option<std::time::Duration>) -> io::Result<bool> {
    let millis = timeout.map_or(-1, |t| {
        // Round up, so a short non-zero timeout does not become a busy poll.
        libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
    });
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, its count given; poll writes only its revents.
        let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
        match rc {
            0 => return Ok(false),
            1.. => return Ok(true),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Whether an error from `splice` means "not supported for these files" (fall back to a
/// copy) rather than a failure of the connection.
pub(crate) fn splice_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// Whether `fd` is a pipe (or FIFO) in blocking mode: one a blocking `splice` may fill.
pub(crate) fn is_blocking_pipe(fd: RawFd) -> bool {
    // SAFETY: F_GETFL only reads the flags; a bad fd makes it fail, which reads as "no".
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    is_pipe(fd) && flags >= 0 && flags & libc::O_NONBLOCK == 0
}

/// `accept4(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: a new connection's descriptor, ready for
/// either a direct write or registration with tokio, and the peer's address.
pub(crate) fn accept_nonblocking(listener: RawFd) -> io::Result<(OwnedFd, socket2::SockAddr)> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: try_init hands accept4 a zeroed sockaddr_storage and its length, which is the
    // contract accept4 needs; the returned descriptor is checked before it is owned.
    let (fd, peer) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(listener, storage.cast(), len, flags);
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })
    }?;
    // SAFETY: accept4 succeeded, so `fd` is a new open descriptor that nothing else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, peer))
}

/// `IP_BIND_ADDRESS_NO_PORT`: a `bind` to port 0 leaves the port to `connect`, which can
/// share it across destinations (Linux 4.2+; older kernels refuse, and binding still works).
pub(crate) fn set_bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value is a c_int that lives across the call, with its size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
