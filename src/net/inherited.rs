//! Inherited descriptors (`fd:N`, SPEC §3.4): a socket that a parent process — systemd's
//! socket activation, or an older socketkit handing over on restart — passed down, adopted
//! only after checking that it is one a server can serve.
//!
//! Where the descriptors come from (the environment's `LISTEN_FDS` or a handover) is
//! `passed.rs`; this file checks one and makes it a [`Bound`] listener.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{Bound, ListenerKind, Stream, UnixFile};
use crate::endpoint::{Endpoint, Transport};
use crate::error::{Error, Op, Result};
use crate::socket::{Address, Family, Socket, Type};

/// Adopts `fd` as a listener if it is one: a listening TCP or Unix stream socket, or a
/// bound UDP or Unix datagram socket. `name` (`fd:3`, `fd:web`) is what errors call it.
/// The socket file of an inherited Unix socket is not ours, so it is never removed.
///
/// # Errors
///
/// `cannot listen on NAME: REASON`, where the reason says what the descriptor is instead:
/// not a socket, a stream socket that is not listening, a socket bound to no address.
pub(crate) fn adopt(fd: OwnedFd, name: &str) -> Result<Bound> {
    let fail = |err: io::Error| Error::new(Op::Listen, name, err);
    let invalid = |what: &str| fail(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()));
    let (socket, ty) = Socket::from_inherited(fd).map_err(fail)?;
    if ty == Type::Stream && !crate::sys::is_listening(socket.as_raw_fd()).map_err(fail)? {
        return Err(invalid(match socket.peer_addr() {
            // What systemd's `Accept=yes` passes without `StandardInput=socket`.
            Ok(_) => {
                "a connection, not a listening socket (systemd's Accept=yes passes one: \
                 serve it with --inetd and StandardInput=socket)"
            }
            Err(_) => "a stream socket that is not listening",
        }));
    }
    let local = socket.local_addr()?;
    let bound = local.port().is_some_and(|port| port != 0)
        || local
            .as_path()
            .is_some_and(|path| !path.as_os_str().is_empty());
    if !bound {
        return Err(invalid("a socket bound to no address"));
    }
    let transport = match (socket.family(), ty) {
        (Family::Unix, Type::Stream) => Transport::Unix,
        (Family::Unix, Type::Datagram) => Transport::Unixgram,
        (_, Type::Stream) => Transport::Tcp,
        (_, Type::Datagram) => Transport::Udp,
    };
    Ok(Bound {
        endpoint: super::endpoint_at(transport, &local),
        socket,
        file: None,
    })
}

/// Adopts `fd` as a connection already accepted — inetd's `nowait`, systemd's `Accept=yes`
/// put it on standard input — non-blocking and registered with tokio (so it must run
/// inside a runtime). Returns it with its peer's address.
///
/// # Errors
///
/// `cannot accept on NAME: REASON`, where the reason says what the descriptor is instead:
/// not a socket, a datagram or listening socket, a socket that is not connected.
pub(crate) fn adopt_connection(fd: OwnedFd, name: &str) -> Result<(Stream, Address)> {
    let fail = |err: io::Error| Error::new(Op::Accept, name, err);
    let invalid = |what: &str| fail(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()));
    let (socket, ty) = Socket::from_inherited(fd).map_err(fail)?;
    if ty != Type::Stream {
        return Err(invalid("a datagram socket, not a connection"));
    }
    if crate::sys::is_listening(socket.as_raw_fd()).map_err(fail)? {
        return Err(invalid("a listening socket, not a connection"));
    }
    let peer = socket
        .peer_addr()
        .map_err(|_| invalid("a socket that is not connected"))?;
    socket.set_blocking(false)?;
    let unix = socket.family() == Family::Unix;
    if !unix {
        // As on a listener's connections (`server::listener`): replies written in pieces
        // are not held for the client's delayed ACK. Only latency rides on it.
        let _ = socket.set_nodelay(true);
    }
    let fd = OwnedFd::from(socket);
    let stream = if unix {
        Stream::Unix(tokio::net::UnixStream::from_std(fd.into()).map_err(fail)?)
    } else {
        Stream::Tcp(tokio::net::TcpStream::from_std(fd.into()).map_err(fail)?)
    };
    Ok((stream, peer))
}

/// Adopts a listener that an older socketkit handed over ([`adopt`]'s checks) as what it
/// was there: a `tls:` listener's endpoint says TLS again, and a socket file the older
/// process owned is ours now, to remove when the last process serving it is done — but
/// kept while `keep` is set, which it is until this process reports that it serves: a new
/// process that fails before then must not remove the file the older one still serves.
///
/// # Errors
///
/// As [`adopt`], and [`speaking_tls`]'s.
pub(crate) fn adopt_handed_over(
    fd: OwnedFd,
    name: &str,
    kind: ListenerKind,
    keep: &Arc<AtomicBool>,
) -> Result<Bound> {
    let mut bound = adopt(fd, name)?;
    if kind.tls {
        bound = speaking_tls(bound, name)?;
    }
    if kind.owns_file
        && let Some(path) = bound.endpoint.path()
    {
        bound.file = Some(UnixFile::handed_over(path, Arc::clone(keep)));
    }
    Ok(bound)
}

/// `bound`, a TCP listener, as a `tls:` one (`tls:fd:3`, or a handed-over `tls:` listener).
///
/// # Errors
///
/// `cannot listen on NAME: REASON` for a socket that is not TCP.
pub(crate) fn speaking_tls(mut bound: Bound, name: &str) -> Result<Bound> {
    bound.endpoint = match bound.endpoint {
        Endpoint::Tcp(at) | Endpoint::Tls(at) => Endpoint::Tls(at),
        other => {
            let reason = format!(
                "a {} socket cannot speak TLS: only a TCP one can",
                other.transport().scheme()
            );
            let reason = io::Error::new(io::ErrorKind::InvalidInput, reason);
            return Err(Error::new(Op::Listen, name, reason));
        }
    };
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adopted(socket: &impl std::os::fd::AsFd) -> Result<Bound> {
        let fd = socket.as_fd().try_clone_to_owned().map_err(fail_io)?;
        adopt(fd, "fd:3")
    }

    fn fail_io(err: io::Error) -> Error {
        Error::without_target(Op::Listen, err)
    }

    #[test]
    fn listening_and_bound_sockets_are_adopted_with_their_endpoint() -> Result<()> {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail_io)?;
        let port = tcp.local_addr().map_err(fail_io)?.port();
        let bound = adopted(&tcp)?;
        assert_eq!(bound.endpoint.to_string(), format!("tcp:127.0.0.1:{port}"));
        assert!(bound.file.is_none());

        let udp = std::net::UdpSocket::bind("[::1]:0").map_err(fail_io)?;
        let port = udp.local_addr().map_err(fail_io)?.port();
        assert_eq!(
            adopted(&udp)?.endpoint.to_string(),
            format!("udp:[::1]:{port}")
        );

        let dir = tempfile::tempdir().map_err(fail_io)?;
        let path = dir.path().join("s.sock");
        let unix = std::os::unix::net::UnixListener::bind(&path).map_err(fail_io)?;
        let bound = adopted(&unix)?;
        assert_eq!(
            bound.endpoint.to_string(),
            format!("unix:{}", path.display())
        );
        drop(bound);
        assert!(
            path.exists(),
            "an inherited socket's file is not ours to remove"
        );
        Ok(())
    }

    #[test]
    fn anything_else_is_refused_naming_what_it_is() -> Result<()> {
        let expect = |result: Result<Bound>, reason: &str| match result {
            Ok(bound) => panic!("adopted {}", bound.endpoint),
            Err(err) => assert_eq!(err.to_string(), format!("cannot listen on fd:3: {reason}")),
        };
        let file = tempfile::tempfile().map_err(fail_io)?;
        expect(adopted(&file), "not a socket");

        let unlistened = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(fail_io)?;
        unlistened
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .map_err(fail_io)?;
        expect(
            adopted(&unlistened),
            "a stream socket that is not listening",
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail_io)?;
        let connection = std::net::TcpStream::connect(listener.local_addr().map_err(fail_io)?)
            .map_err(fail_io)?;
        expect(
            adopted(&connection),
            "a connection, not a listening socket (systemd's Accept=yes passes one: serve it \
             with --inetd and StandardInput=socket)",
        );

        let unbound = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .map_err(fail_io)?;
        expect(adopted(&unbound), "a socket bound to no address");
        Ok(())
    }
}
