//! The SOCKS5 handshake (RFC 1928), with RFC 1929's user name and password: a greeting that
//! offers what we can do, the chosen method's exchange, then `CONNECT` and the proxy's
//! reply, read to its last byte so that the target's first bytes stay in the socket.

use std::io;
use std::net::IpAddr;

use super::{Credentials, closed_early};
use crate::endpoint::{Host, HostPort};
use crate::error::Error;
use crate::socket::Socket;

const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CONNECT: u8 = 1;
const IPV4: u8 = 1;
const DOMAIN_NAME: u8 = 3;
const IPV6: u8 = 4;

/// Asks the proxy on `socket` for a connection to `target`; `Ok` once it has one.
pub(super) fn handshake(
    socket: &Socket,
    target: &HostPort,
    credentials: Option<&Credentials>,
) -> io::Result<()> {
    let offered: &[u8] = match credentials {
        Some(_) => &[NO_AUTHENTICATION, USER_PASSWORD],
        None => &[NO_AUTHENTICATION],
    };
    let mut greeting = vec![VERSION, offered.len() as u8];
    greeting.extend_from_slice(offered);
    send(socket, &greeting)?;
    let [version, method] = receive::<2>(socket)?;
    if version != VERSION {
        return Err(not_socks5());
    }
    match (method, credentials) {
        (NO_AUTHENTICATION, _) => {}
        (USER_PASSWORD, Some(credentials)) => authenticate(socket, credentials)?,
        (NO_ACCEPTABLE_METHOD, None) => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the proxy wants a user name and password (socks5://USER:PASSWORD@HOST)",
            ));
        }
        (NO_ACCEPTABLE_METHOD, Some(_)) => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the proxy takes none of the ways to authenticate offered to it",
            ));
        }
        (other, _) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the proxy chose method {other}, which was not offered"),
            ));
        }
    }
    let mut request = vec![VERSION, CONNECT, 0];
    request.extend(address(target)?);
    request.extend_from_slice(&target.port.to_be_bytes());
    send(socket, &request)?;
    let [version, reply, _reserved, kind] = receive::<4>(socket)?;
    if version != VERSION {
        return Err(not_socks5());
    }
    // The address the proxy connected from: read, so the target's bytes come next.
    let bound = match kind {
        IPV4 => 4,
        IPV6 => 16,
        DOMAIN_NAME => usize::from(receive::<1>(socket)?[0]),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the proxy's reply has an unknown address type {other}"),
            ));
        }
    };
    receive_into(socket, &mut vec![0; bound + 2])?;
    match reply {
        0 => Ok(()),
        code => Err(refusal(code)),
    }
}

/// RFC 1929: the user name and password, and the proxy's verdict.
fn authenticate(socket: &Socket, credentials: &Credentials) -> io::Result<()> {
    // Lengths of at most 255 are checked where the URL is read.
    let mut message = vec![1, credentials.user.len() as u8];
    message.extend_from_slice(&credentials.user);
    message.push(credentials.password.len() as u8);
    message.extend_from_slice(&credentials.password);
    send(socket, &message)?;
    match receive::<2>(socket)? {
        [_, 0] => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the proxy refused the user name and password",
        )),
    }
}

/// The target as SOCKS5 writes it: its kind, then the address or the name.
fn address(target: &HostPort) -> io::Result<Vec<u8>> {
    Ok(match &target.host {
        Host::Ip(IpAddr::V4(v4)) => [&[IPV4][..], &v4.octets()].concat(),
        Host::Ip(IpAddr::V6(v6)) => [&[IPV6][..], &v6.octets()].concat(),
        Host::Name(name) => {
            // Host names are at most 253 bytes (the endpoint's parser says so).
            let len = u8::try_from(name.len()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "the host name is too long")
            })?;
            [&[DOMAIN_NAME, len][..], name.as_bytes()].concat()
        }
        Host::Any => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a host is needed to connect (as in 127.0.0.1:PORT)",
            ));
        }
    })
}

/// A reply other than success, in words, with the kind of error a direct connect would
/// have met.
fn refusal(code: u8) -> io::Error {
    let (kind, words) = match code {
        1 => (io::ErrorKind::Other, "general failure"),
        2 => (io::ErrorKind::PermissionDenied, "not allowed by its rules"),
        3 => (io::ErrorKind::NetworkUnreachable, "network unreachable"),
        4 => (io::ErrorKind::HostUnreachable, "host unreachable"),
        5 => (io::ErrorKind::ConnectionRefused, "connection refused"),
        6 => (io::ErrorKind::TimedOut, "timed out"),
        7 => (io::ErrorKind::Unsupported, "CONNECT not supported"),
        8 => (io::ErrorKind::Unsupported, "address type not supported"),
        _ => (io::ErrorKind::Other, "unknown reply"),
    };
    io::Error::new(
        kind,
        format!("the proxy could not connect: {words} (SOCKS5 reply {code})"),
    )
}

/// Whether the target's next address might succeed where this reply refused one: an
/// unreachable or refusing address, or one of a family the proxy does not take.
pub(super) fn another_address_may_do(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Unsupported
    )
}

fn not_socks5() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the proxy does not speak SOCKS5",
    )
}

fn send(socket: &Socket, bytes: &[u8]) -> io::Result<()> {
    socket.sendall(bytes).map_err(Error::into_io_error)
}

fn receive<const N: usize>(socket: &Socket) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    receive_into(socket, &mut buf)?;
    Ok(buf)
}

/// Fills `buf` from the socket: the proxy's answers are short and may come in pieces.
pub(super) fn receive_into(socket: &Socket, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match socket.recv_into(&mut buf[filled..]) {
            Ok(0) => return Err(closed_early()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into_io_error()),
        }
    }
    Ok(())
}
