//! The convenience constructors of Python's `socket` module: `create_connection`,
//! `create_server` and `socketpair`.

use std::time::Duration;

use super::to_address::first;
use super::{Address, Family, Socket, ToAddress, Type};
use crate::error::{Error, Op, Result};

/// Connects a TCP socket to `address`, trying every resolved address in order until one
/// answers (Python: `socket.create_connection((host, port), timeout)`).
///
/// `timeout` bounds each attempt and stays set on the returned socket. A Unix path (a
/// `Path`, or text that begins with `/`; `@NAME` for Linux's abstract namespace) connects a
/// Unix stream socket.
///
/// # Errors
///
/// The last attempt's error (`cannot connect to 127.0.0.1:9: connection refused`), or a
/// resolution error; a zero `timeout` is refused (`InvalidInput`), as
/// [`Socket::set_timeout`] refuses it.
///
/// # Examples
///
/// ```
/// use socketkit::socket::{create_connection, create_server};
/// let server = create_server(("127.0.0.1", 0), 5, false)?;
/// let client = create_connection(&server.local_addr()?, None)?;
/// assert_eq!(client.peer_addr()?, server.local_addr()?);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn create_connection(address: impl ToAddress, timeout: Option<Duration>) -> Result<Socket> {
    let mut last = None;
    for candidate in address.to_addresses(None)? {
        match connect_to(&candidate, timeout) {
            Ok(socket) => return Ok(socket),
            Err(err) => last = Some(err),
        }
    }
    Err(last
        .unwrap_or_else(|| Error::without_target(Op::Connect, std::io::ErrorKind::NotFound.into())))
}

fn connect_to(address: &Address, timeout: Option<Duration>) -> Result<Socket> {
    let socket = Socket::new(address.family(), Type::Stream)?;
    if timeout.is_some() {
        socket.set_timeout(timeout)?;
    }
    socket.connect(address)?;
    Ok(socket)
}

/// A listening TCP socket bound to `address` with `SO_REUSEADDR` set (Python:
/// `socket.create_server(address, backlog=backlog, dualstack_ipv6=dualstack)`).
///
/// The first address `address` names is bound; with `dualstack`, the first IPv6 one, and
/// `IPV6_V6ONLY` is cleared so the one socket also accepts IPv4 clients (as IPv4-mapped
/// addresses); an address with no IPv6 one is refused (`InvalidInput`), as Python's
/// `ValueError`. An empty host is every interface, as in Python: `("", 8080)` binds
/// `0.0.0.0:8080`, or `[::]:8080` with `dualstack`. A Unix path (a `Path`, or text that
/// begins with `/`; `@NAME` for Linux's abstract namespace) gives a Unix stream listener.
///
/// # Examples
///
/// ```
/// use socketkit::socket::{create_connection, create_server};
/// let server = create_server(("::", 0), 5, true)?;
/// let port = server.local_addr()?.port().unwrap();
/// create_connection(("127.0.0.1", port), None)?; // IPv4 reaches the IPv6 socket
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn create_server(address: impl ToAddress, backlog: i32, dualstack: bool) -> Result<Socket> {
    let mut addresses = address.to_bind_addresses(None)?;
    if dualstack {
        // Python raises ValueError here too: an IPv4 or Unix socket cannot take both.
        let Some(v6) = addresses.iter().position(|a| a.family() == Family::Inet6) else {
            let named = addresses
                .first()
                .map_or_else(String::new, ToString::to_string);
            let reason = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a dual-stack server needs an IPv6 address (\"::\", or \"\" for every interface)",
            );
            return Err(Error::new(Op::Bind, named, reason));
        };
        addresses.swap(0, v6);
    }
    let address = first(addresses)?;
    let socket = Socket::new(address.family(), Type::Stream)?;
    if address.family() != Family::Unix {
        socket.set_reuse_address(true)?;
    }
    if address.family() == Family::Inet6 {
        socket.set_only_v6(!dualstack)?;
    }
    socket.bind(&address)?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// A pair of connected Unix stream sockets (Python: `socket.socketpair()`).
///
/// # Examples
///
/// ```
/// let (a, b) = socketkit::socket::socketpair()?;
/// a.sendall(b"over the pair")?;
/// assert_eq!(b.recv(64)?, b"over the pair");
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn socketpair() -> Result<(Socket, Socket)> {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .map_err(|err| Error::without_target(Op::Create, err))?;
    Ok((
        Socket::from_parts(a, Family::Unix),
        Socket::from_parts(b, Family::Unix),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_host_serves_every_interface() -> Result<()> {
        let v4 = create_server(("", 0), 5, false)?;
        assert_eq!(v4.local_addr()?.ip(), Some("0.0.0.0".parse().unwrap()));
        let both = create_server(":0", 5, true)?;
        assert_eq!(both.local_addr()?.ip(), Some("::".parse().unwrap()));
        assert!(!both.only_v6()?);
        let port = both.local_addr()?.port().unwrap_or_default();
        create_connection(("127.0.0.1", port), Some(Duration::from_secs(5)))?;
        Ok(())
    }

    #[test]
    fn a_dual_stack_server_on_an_ipv4_address_or_a_path_is_refused() {
        for address in ["127.0.0.1:0", "/tmp/socketkit-never-bound.sock"] {
            let err = create_server(address, 5, true).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{address}");
            assert!(
                err.to_string()
                    .ends_with("a dual-stack server needs an IPv6 address (\"::\", or \"\" for every interface)"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_zero_timeout_is_refused_without_naming_an_unbound_address() {
        let err = create_connection(("127.0.0.1", 9), Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            err.to_string().starts_with("cannot set a timeout: "),
            "{err}"
        );
    }
}
