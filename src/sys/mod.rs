//! The platform floor: every raw `libc` call socketkit makes beyond `socket2`, `std` and
//! tokio, in one place, so that the `unsafe` blocks and the systems they assume can be read
//! together. Everything above reaches it through `socket` and `net` (the `net` layer
//! re-exports what the client, relay and load generator need).
//!
//! - `posix.rs`: calls every Unix has (`fstat`, `fcntl`, `recv`, `getsockopt`, `umask`, `fchmodat`,
//!   `gethostname`, `getrlimit`, `clock_gettime`, `if_nametoindex`, `sigaction`, `sigprocmask` and
//!   `raise`); `ids.rs`: user and group ids (`getpwnam_r`, `getgrnam_r`, `setgroups`,
//!   `setgid`, `setuid`); `readiness.rs`: waits with `poll`.
//! - `linux.rs`: Linux's own (`splice`, `pipe2` and `F_SETPIPE_SZ`, `accept4`,
//!   `IP_BIND_ADDRESS_NO_PORT`, `TCP_DEFER_ACCEPT`, `SIOCOUTQ`, `TCP_INFO`, `SO_PEERNAME`, reuseport BPF,
//!   `recvmsg`/`sendmsg` with `IP_PKTINFO` for UDP answers from the address asked);
//!   `fallback.rs` has the same functions for other Unix systems, each with the fallback it
//!   documents (no splice: copy; `accept` and `fcntl` for `accept4`). `--cfg
//!   socketkit_sys_fallback` builds the fallback on Linux too, so that it is compiled and
//!   tested here (`.ci/run` does).
//!
//! Callers detect failure (a kernel or sandbox without splice answers `EINVAL` or `ENOSYS`)
//! and fall back; see `docs/platform-notes.md`.

#[cfg(not(unix))]
compile_error!("socketkit's platform layer (src/sys) needs a Unix-like system");

#[cfg_attr(
    all(target_os = "linux", not(socketkit_sys_fallback)),
    path = "linux.rs"
)]
#[cfg_attr(
    any(not(target_os = "linux"), socketkit_sys_fallback),
    path = "fallback.rs"
)]
mod platform;

mod descriptors;
mod ids;
mod orphans;
mod posix;
mod readiness;

use std::io;
use std::os::fd::OwnedFd;

pub(crate) use descriptors::{receive_descriptor, send_descriptor};
pub(crate) use ids::{
    UserAccount, current_ids, group_id, set_gid, set_groups, set_uid, user_account, user_ids,
};
pub(crate) use orphans::reap_orphans;
#[cfg(all(test, target_os = "linux", not(socketkit_sys_fallback)))]
pub(crate) use platform::reuseport_tests;
pub(crate) use platform::{
    accept_nonblocking, accept_queue_len, ask_destinations, grow_pipe, peer_has_closed, peer_name,
    recv_with_destination, send_from, set_bind_address_no_port, set_defer_accept, set_not_dumpable,
    splice, steer_reuseport_to_first, tcp_bytes_acked, tcp_bytes_received, tcp_idle_time,
    tcp_send_window, unacknowledged, unsteer_reuseport,
};
pub(crate) use posix::{
    ask_reload, ask_restart, chmod_no_follow, descriptor_limit, disconnect, hostname,
    inherit_on_exec, interface_index, is_blocking_pipe, is_listening, is_pipe_or_socket,
    kill_process_group, process_cpu_time, process_group_exists, raise_descriptor_limit,
    raise_with_default_action, receive_queued, recv_nowait, reset_inherited_signals,
    set_close_on_exec, splice_unsupported, terminate, thread_cpu_time, with_umask,
};
pub(crate) use readiness::{
    Readiness, connect_in_progress, reader_gone, wait_readable, wait_readable_watching,
    wait_writable, wait_writable_any,
};

/// The local address a UDP datagram was sent to, as `IP_PKTINFO` or `IPV6_PKTINFO` tell
/// it, and the interface it came in on: where the answer to it goes out from (a socket
/// bound to a wildcard address would otherwise answer from the address its route picks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Destination {
    /// The address; an IPv4 client of a dual-stack socket has an IPv4 one, not a mapped one.
    pub(crate) ip: std::net::IpAddr,
    /// The interface index (what a link-local IPv6 address needs to mean anything).
    pub(crate) interface: u32,
}

/// A non-blocking pipe, closed on drop.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    /// How many bytes the pipe holds (after asking for the size given to [`Pipe::new`]).
    pub(crate) capacity: usize,
}

impl Pipe {
    /// A non-blocking pipe, resized to `size` bytes where the system allows (Linux may
    /// refuse: `/proc/sys/fs/pipe-max-size`, per-user pipe quotas; the default is kept then).
    pub(crate) fn new(size: usize) -> io::Result<Pipe> {
        platform::pipe(size)
    }
}

#[cfg(test)]
mod tests {
    //! Run against whichever platform file is built: `cargo test` tests `linux.rs`, and
    //! `.ci/run` builds these again with `--cfg socketkit_sys_fallback`.

    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::Duration;

    use super::*;

    /// A Unix socket bound under a mask is made with the mode asked for (no moment with a
    /// looser one), and the mask is put back; a chmod that must not follow symlinks leaves
    /// a symlink's target alone.
    #[test]
    fn a_socket_is_made_with_its_mode_and_a_symlink_is_not_followed() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.sock");
        let mode = |path: &std::path::Path| -> io::Result<u32> {
            Ok(std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
        };
        // Read, not swapped to be seen (umask(2) sets as it answers, for every thread of
        // the tests at once).
        let current = || {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
                    u32::from_str_radix(line.trim(), 8).ok()
                })
        };
        let before = current();
        let _socket = with_umask(!0o640 & 0o777, || {
            std::os::unix::net::UnixListener::bind(&path)
        })?;
        assert_eq!(mode(&path)?, 0o640);
        assert_eq!(current(), before, "the mask is put back");
        let target = dir.path().join("target");
        std::fs::write(&target, b"root's")?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link)?;
        assert!(chmod_no_follow(&link, 0o4666).is_err());
        assert_eq!(mode(&target)?, 0o600, "the target is untouched");
        chmod_no_follow(&path, 0o1640)?;
        assert_eq!(mode(&path)?, 0o1640);
        Ok(())
    }

    #[test]
    fn accepted_descriptors_are_non_blocking_and_close_on_exec() -> io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (fd, peer) = accept_nonblocking(&listener)?;
        assert_eq!(peer.as_socket(), Some(client.local_addr()?));
        let socket = socket2::SockRef::from(&fd);
        assert!(socket.nonblocking()?);
        // SAFETY: F_GETFD only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0);
        Ok(())
    }

    #[test]
    fn pipes_are_non_blocking_and_carry_bytes() -> io::Result<()> {
        let pipe = Pipe::new(128 * 1024)?;
        assert!(pipe.capacity > 0);
        assert!(!is_blocking_pipe(pipe.read.as_raw_fd()));
        let mut write = std::fs::File::from(pipe.write);
        let mut read = std::fs::File::from(pipe.read);
        assert!(!wait_readable(
            read.as_raw_fd(),
            Some(Duration::from_millis(1))
        )?);
        write.write_all(b"x")?;
        assert!(wait_readable(
            read.as_raw_fd(),
            Some(Duration::from_secs(5))
        )?);
        let mut got = [0u8; 1];
        read.read_exact(&mut got)?;
        assert_eq!(&got, b"x");
        Ok(())
    }

    #[test]
    fn a_reader_leaving_is_seen_while_waiting_for_a_socket() -> io::Result<()> {
        let (socket, mut peer) = std::os::unix::net::UnixStream::pair()?;
        let pipe = Pipe::new(64 * 1024)?;
        let watched = pipe.write.as_raw_fd();
        let short = Some(Duration::from_millis(1));
        assert!(!reader_gone(watched));
        assert_eq!(
            wait_readable_watching(socket.as_raw_fd(), Some(watched), short)?,
            Readiness::TimedOut
        );
        drop(pipe.read);
        assert!(reader_gone(watched));
        assert_eq!(
            wait_readable_watching(socket.as_raw_fd(), Some(watched), None)?,
            Readiness::ReaderGone
        );
        // A socket's reader: gone once its peer has closed.
        let (out, out_peer) = std::os::unix::net::UnixStream::pair()?;
        assert!(!reader_gone(out.as_raw_fd()));
        drop(out_peer);
        assert!(reader_gone(out.as_raw_fd()));
        // Nothing to take without waiting; then what arrived.
        let mut buf = [0u8; 8];
        let nothing = recv_nowait(socket.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        peer.write_all(b"x")?;
        assert_eq!(
            wait_readable_watching(socket.as_raw_fd(), None, Some(Duration::from_secs(5)))?,
            Readiness::Readable
        );
        assert_eq!(recv_nowait(socket.as_raw_fd(), &mut buf)?, 1);
        Ok(())
    }

    #[test]
    fn pipes_and_sockets_can_be_watched_files_cannot() -> io::Result<()> {
        let pipe = Pipe::new(64 * 1024)?;
        assert!(is_pipe_or_socket(pipe.write.as_raw_fd()));
        let (socket, _peer) = std::os::unix::net::UnixStream::pair()?;
        assert!(is_pipe_or_socket(socket.as_raw_fd()));
        let file = tempfile::tempfile()?;
        assert!(!is_pipe_or_socket(file.as_raw_fd()));
        Ok(())
    }

    #[test]
    fn a_full_non_blocking_pipe_is_waited_for_until_its_reader_takes_some() -> io::Result<()> {
        let pipe = Pipe::new(64 * 1024)?;
        let mut write = std::fs::File::from(pipe.write);
        while write.write(&[0u8; 4096]).is_ok() {}
        let mut read = std::fs::File::from(pipe.read);
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let mut buf = vec![0u8; 8192];
            read.read_exact(&mut buf).map(|()| read)
        });
        assert!(wait_writable(write.as_raw_fd(), None)?);
        assert!(write.write(&[1u8; 16])? > 0);
        let _read = reader.join().expect("the reader")?;
        Ok(())
    }

    #[test]
    fn splice_works_or_says_it_is_unsupported() -> io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        client.write_all(b"x")?;
        let pipe = Pipe::new(64 * 1024)?;
        match splice(server.as_raw_fd(), pipe.write.as_raw_fd(), 1, false) {
            Ok(moved) => assert_eq!(moved, 1),
            Err(err) => assert!(splice_unsupported(&err), "{err}"),
        }
        Ok(())
    }

    #[test]
    fn unacknowledged_bytes_are_counted_until_the_peer_takes_them() -> io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (mut server, _) = listener.accept()?;
        // The server reads nothing yet: once its window is full, what the client still
        // holds is unacknowledged.
        client.set_nonblocking(true)?;
        let mut written = 0usize;
        loop {
            match client.write(&[7u8; 65536]) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        match unacknowledged(client.as_raw_fd()) {
            Ok(n) => assert!(n > 0 && n <= written, "{n} of {written} unacknowledged"),
            Err(err) => {
                assert_eq!(err.kind(), io::ErrorKind::Unsupported);
                return Ok(());
            }
        }
        client.shutdown(std::net::Shutdown::Write)?;
        let mut taken = Vec::new();
        server.read_to_end(&mut taken)?;
        assert_eq!(taken.len(), written);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while unacknowledged(client.as_raw_fd())? != 0 {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    #[test]
    fn bytes_the_peer_sent_are_counted_before_they_are_read() -> io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (mut server, _) = listener.accept()?;
        server.write_all(b"banner")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while receive_queued(client.as_raw_fd())? < 6 {
            assert!(std::time::Instant::now() < deadline, "never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(receive_queued(client.as_raw_fd())?, 6);
        match tcp_bytes_received(client.as_fd()) {
            Ok(n) => assert_eq!(n, 6),
            Err(err) => assert_eq!(err.kind(), io::ErrorKind::Unsupported),
        }
        let mut buf = [0u8; 6];
        client.read_exact(&mut buf)?;
        assert_eq!(receive_queued(client.as_raw_fd())?, 0);
        if let Ok(n) = tcp_bytes_received(client.as_fd()) {
            assert_eq!(n, 6, "reading changes nothing the kernel took in");
        }
        Ok(())
    }

    /// A UDP socket bound to `bind`, asked for destinations, takes a datagram sent to `to`
    /// from a client connected there, answers it from where it came, and the client takes
    /// the answer. Where destinations cannot be asked (the fallback), nothing to check.
    fn answered_from_the_destination(bind: &str, to: &str) -> io::Result<()> {
        use std::net::{SocketAddr, UdpSocket};
        use std::os::fd::AsFd;
        let bind: SocketAddr = bind.parse().map_err(io::Error::other)?;
        let server = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            None,
        )?;
        if bind.is_ipv6() {
            server.set_only_v6(false)?;
        }
        server.bind(&bind.into())?;
        let server = UdpSocket::from(server);
        match ask_destinations(server.as_fd(), bind.is_ipv6()) {
            Err(err) if err.kind() == io::ErrorKind::Unsupported => return Ok(()),
            asked => asked?,
        }
        let to: std::net::IpAddr = to.parse().map_err(io::Error::other)?;
        let to = SocketAddr::new(to, server.local_addr()?.port());
        let client = UdpSocket::bind(SocketAddr::new(to.ip(), 0))?;
        client.connect(to)?;
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        client.send(b"ping")?;
        let mut buf = [0u8; 16];
        let (n, peer, destination) = recv_with_destination(server.as_fd(), &mut buf)?;
        assert_eq!(&buf[..n], b"ping");
        let destination = destination.expect("the kernel tells the destination");
        assert_eq!(destination.ip, to.ip());
        assert_eq!(send_from(server.as_fd(), b"pong", &peer, &destination)?, 4);
        assert_eq!(
            client.recv(&mut buf)?,
            4,
            "the connected client takes the answer"
        );
        assert_eq!(&buf[..4], b"pong");
        Ok(())
    }

    #[test]
    fn wildcard_udp_sockets_answer_from_the_address_a_datagram_came_to() -> io::Result<()> {
        answered_from_the_destination("0.0.0.0:0", "127.0.0.2")?;
        // A dual-stack socket: an IPv4 client (IPv4-mapped), and an IPv6 one.
        answered_from_the_destination("[::]:0", "127.0.0.2")?;
        answered_from_the_destination("[::]:0", "::1")
    }

    #[test]
    fn host_name_and_descriptor_limit() -> io::Result<()> {
        assert!(!hostname()?.is_empty());
        assert!(descriptor_limit().is_some_and(|n| n > 0));
        Ok(())
    }
}
