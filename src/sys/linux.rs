//! The Linux-only calls: `splice(2)`, `pipe2(2)` and `F_SETPIPE_SZ`, `accept4(2)`,
//! `IP_BIND_ADDRESS_NO_PORT`, `TCP_DEFER_ACCEPT`, `SIOCOUTQ`, `TCP_INFO`, `POLLRDHUP`, the
//! reuseport group's classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`,
//! `SO_DETACH_REUSEPORT_BPF`); and, in `linux_pktinfo.rs`, `recvmsg(2)`/`sendmsg(2)` with
//! `IP_PKTINFO` and `IPV6_PKTINFO`, which let a UDP socket bound to a wildcard address
//! answer each datagram from the address it was sent to.
//! `fallback.rs` has the same functions for other systems.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::Pipe;

#[path = "linux_pktinfo.rs"]
mod pktinfo;

pub(crate) use pktinfo::{ask_destinations, recv_with_destination, send_from};

/// A non-blocking pipe, resized to `size` bytes if the kernel allows (it may refuse:
/// `/proc/sys/fs/pipe-max-size`, per-user pipe quotas; the default 64 KiB is used then).
pub(crate) fn pipe(size: usize) -> io::Result<Pipe> {
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

/// `accept4(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: a new connection's descriptor, ready for
/// either a direct write or registration with tokio, and the peer's address — in one call.
pub(crate) fn accept_nonblocking(listener: impl AsFd) -> io::Result<(OwnedFd, socket2::SockAddr)> {
    let listener = listener.as_fd().as_raw_fd();
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

/// The peer's address, by `SO_PEERNAME` when `getpeername` has none: Linux answers it even
/// once a reset has closed a TCP connection (`getpeername` then fails with `ENOTCONN`), so
/// an accept that gave no address (io_uring's multishot accept) can still name a peer that
/// reset at once, as a balancer's health check does. (`SO_PEERNAME` wants the address's own
/// length, not more: the local address's family gives it.)
pub(crate) fn peer_name(socket: BorrowedFd<'_>) -> io::Result<socket2::SockAddr> {
    let sock = socket2::SockRef::from(&socket);
    let unconnected = match sock.peer_addr() {
        Ok(peer) => return Ok(peer),
        Err(err) => err,
    };
    let len = match sock.local_addr()?.family() as libc::c_int {
        libc::AF_INET => size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => size_of::<libc::sockaddr_in6>(),
        _ => return Err(unconnected),
    };
    let fd = socket.as_raw_fd();
    // SAFETY: try_init hands a zeroed sockaddr_storage and its length; getsockopt writes at
    // most `len` bytes of it (less than the storage) and sets the length it wrote.
    let ((), peer) = unsafe {
        socket2::SockAddr::try_init(|storage, size| {
            *size = len as libc::socklen_t;
            match libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERNAME,
                storage.cast(),
                size,
            ) {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        })
    }?;
    Ok(peer)
}

/// `IP_BIND_ADDRESS_NO_PORT`: a `bind` to port 0 leaves the port to `connect`, which can
/// share it across destinations (Linux 4.2+; older kernels refuse, and binding still works).
pub(crate) fn set_bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    set_int_option(
        socket.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        1,
    )
}

/// `TCP_DEFER_ACCEPT`: the listener hands over a connection only once its first bytes have
/// arrived, waiting up to about `seconds` (the kernel counts it in SYN-ACK retransmissions:
/// 1 s is one, at 1 s); a client still silent then is handed over all the same.
pub(crate) fn set_defer_accept(listener: BorrowedFd<'_>, seconds: u32) -> io::Result<()> {
    let seconds = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
    set_int_option(
        listener.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        seconds,
    )
}

/// How many bytes written to the TCP socket `fd` the peer has not acknowledged yet
/// (`ioctl(SIOCOUTQ)`: sent or not, and counting a queued FIN as one), so 0 means the
/// peer's kernel holds every byte and the end of stream.
pub(crate) fn unacknowledged(fd: RawFd) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ on a socket) writes one int through the pointer, which
    // points at a live c_int.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel never reports a negative queue; a negative value would be its bug.
    usize::try_from(queued).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// How long a TCP connection has moved no data either way, from the kernel's own clocks
/// (`TCP_INFO`'s `tcpi_last_data_recv` and `tcpi_last_data_sent`, in milliseconds): what
/// tells a connection's idle time when another process reads and writes it.
pub(crate) fn tcp_idle_time(socket: BorrowedFd<'_>) -> io::Result<std::time::Duration> {
    let (info, _) = tcp_info(socket)?;
    let idle_ms = info.tcpi_last_data_recv.min(info.tcpi_last_data_sent);
    Ok(std::time::Duration::from_millis(u64::from(idle_ms)))
}

/// How many bytes the kernel has taken in on the TCP connection `socket` since it opened,
/// read by the program or not (`TCP_INFO`'s `tcpi_bytes_received`, Linux 4.1 and later;
/// the peer's FIN counts as one): what the peer has sent by a given moment, whenever the
/// program gets to read it. `Unsupported` on older kernels.
pub(crate) fn tcp_bytes_received(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + size_of::<u64>();
    tcp_info_count(socket, end, |info| info.tcpi_bytes_received)
}

/// How many bytes written to the TCP connection `socket` the peer's kernel has acknowledged
/// since it opened (`TCP_INFO`'s `tcpi_bytes_acked`, Linux 4.2 and later): it grows while
/// the peer takes data, whether or not this program runs meanwhile (stopped, descheduled).
/// `Unsupported` on older kernels.
pub(crate) fn tcp_bytes_acked(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + size_of::<u64>();
    tcp_info_count(socket, end, |info| info.tcpi_bytes_acked)
}

/// The receive window the peer of the TCP connection `socket` last advertised, in bytes
/// (`TCP_INFO`'s `tcpi_snd_wnd`, Linux 5.4 and later): the room its kernel has for more,
/// near zero once its program stopped reading. `Unsupported` on older kernels.
pub(crate) fn tcp_send_window(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd) + size_of::<u32>();
    tcp_info_count(socket, end, |info| u64::from(info.tcpi_snd_wnd))
}

/// A count of `TCP_INFO` (`field`), whose bytes end at `end` in the struct: `Unsupported`
/// when the kernel filled less of it (an older kernel's struct is shorter).
fn tcp_info_count(
    socket: BorrowedFd<'_>,
    end: usize,
    field: impl Fn(&libc::tcp_info) -> u64,
) -> io::Result<u64> {
    let (info, len) = tcp_info(socket)?;
    if len < end {
        return Err(io::ErrorKind::Unsupported.into());
    }
    Ok(field(&info))
}

/// How many connections wait in the accept queue of the listening TCP socket `listener`
/// (`TCP_INFO`'s `tcpi_unacked`, which a listening socket fills with its queue's length,
/// as `ss` shows it in Recv-Q).
pub(crate) fn accept_queue_len(listener: BorrowedFd<'_>) -> io::Result<usize> {
    let (info, _) = tcp_info(listener)?;
    Ok(info.tcpi_unacked as usize)
}

/// The kernel's `TCP_INFO` of `socket`, with how many of its bytes the kernel filled.
fn tcp_info(socket: BorrowedFd<'_>) -> io::Result<(libc::tcp_info, usize)> {
    // SAFETY: tcp_info is plain integers, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the buffer is a tcp_info that lives across the call, with its size given; the
    // kernel writes at most `len` bytes of it.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((info, len as usize))
}

/// Attaches `ret #0` to the `SO_REUSEPORT` group of `listener`: the kernel hands every new
/// connection to the group's first socket.
pub(crate) fn steer_reuseport_to_first(listener: BorrowedFd<'_>) -> io::Result<()> {
    attach_reuseport_program(listener, 0)
}

/// Detaches the program of `listener`'s `SO_REUSEPORT` group: the kernel's hash spreads
/// connections over the group again. Kernels before 5.3 cannot detach one: there a program
/// that answers an index past the group's end takes its place, for which the kernel falls
/// back to its hash just the same (since 4.6, where these programs came).
pub(crate) fn unsteer_reuseport(listener: BorrowedFd<'_>) -> io::Result<()> {
    let detached = set_int_option(
        listener.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_DETACH_REUSEPORT_BPF,
        0,
    );
    detached.or_else(|_| spread_reuseport(listener))
}

/// Attaches `ret #0xffffffff`, an index no group reaches: the kernel's hash picks.
fn spread_reuseport(listener: BorrowedFd<'_>) -> io::Result<()> {
    attach_reuseport_program(listener, u32::MAX)
}

/// Attaches a classic BPF program of one instruction, `ret #index`, to the `SO_REUSEPORT`
/// group of `listener`: the socket at `index` in the group takes each new connection.
fn attach_reuseport_program(listener: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    let mut instructions = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: index,
    }];
    let program = libc::sock_fprog {
        len: instructions.len() as u16,
        filter: instructions.as_mut_ptr(),
    };
    // The filter `program` points at lives across the call; the kernel copies it.
    set_option(
        listener.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        &program,
    )
}

pub(super) fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_option(fd, level, name, &value)
}

/// `setsockopt(2)` with `value` as the option's bytes.
fn set_option<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<T>()` bytes from `value`, a live reference.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the peer of the stream socket `fd` has ended its side (its FIN has come, or the
/// connection failed), asked without waiting: `poll(2)` with `POLLRDHUP`, which says so
/// even while bytes it sent before are still unread.
pub(crate) fn peer_has_closed(fd: RawFd) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its count given; poll writes only its revents.
    let rc = unsafe { libc::poll(&mut pollfd, 1, 0) };
    rc > 0 && pollfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Makes this process not dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core dump, and no
/// process of the same user may ptrace it, read its memory or take its descriptors
/// (`pidfd_getfd`). The kernel does so itself when a root process drops to a user; a process
/// started as that user (a SIGUSR2 restart's, exec'd by the dropped one) must ask.
pub(crate) fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Two listeners of one `SO_REUSEPORT` group, and where connections to them land: for the
/// tests of the group's programs here and of the steering that uses them.
#[cfg(test)]
pub(crate) mod reuseport_tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use super::*;

    fn reuseport_listener(addr: std::net::SocketAddr) -> TcpListener {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        socket.set_reuse_port(true).expect("SO_REUSEPORT");
        socket.bind(&addr.into()).expect("bind");
        socket.listen(128).expect("listen");
        socket.set_nonblocking(true).expect("non-blocking");
        TcpListener::from(socket)
    }

    /// Two non-blocking listeners on one port of 127.0.0.1, in one reuseport group.
    pub(crate) fn reuseport_pair() -> (TcpListener, TcpListener) {
        let first = reuseport_listener("127.0.0.1:0".parse().expect("an address"));
        let second = reuseport_listener(first.local_addr().expect("bound"));
        (first, second)
    }

    /// How many of `n` new connections each listener took.
    pub(crate) fn land(first: &TcpListener, second: &TcpListener, n: usize) -> (usize, usize) {
        let addr = first.local_addr().expect("bound");
        let clients: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let count = |l: &TcpListener| std::iter::from_fn(|| l.accept().ok()).count();
        let taken = (count(first), count(second));
        drop(clients);
        taken
    }

    #[test]
    fn an_index_past_the_group_spreads_by_the_kernels_hash() {
        let (first, second) = reuseport_pair();
        steer_reuseport_to_first(first.as_fd()).expect("the kernel takes the program");
        assert_eq!(land(&first, &second, 32), (32, 0));
        // What spreads on a kernel that cannot detach (before 5.3).
        spread_reuseport(second.as_fd()).expect("the kernel takes the program");
        let (a, b) = land(&first, &second, 64);
        assert_eq!(a + b, 64);
        assert!(a > 0 && b > 0, "spread over both: {a} and {b}");
    }
}
