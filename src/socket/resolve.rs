//! Names to addresses: `gethostname(2)` and `getaddrinfo(3)`, the tutorial's
//! `socket.gethostname()` and `socket.getaddrinfo()`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use super::{Address, Family};
use crate::error::{Error, Op, Result};

/// The name of this host, as `gethostname(2)` reports it (Python: `socket.gethostname()`).
///
/// # Errors
///
/// [`Op::HostName`] if the system call fails.
///
/// # Examples
///
/// ```
/// let name = socketkit::socket::gethostname()?;
/// assert!(!name.is_empty());
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn gethostname() -> Result<String> {
    crate::sys::hostname().map_err(|err| Error::without_target(Op::HostName, err))
}

/// Every address of `host` for `port`, in the resolver's order (Python:
/// `socket.getaddrinfo(host, port)`, keeping the socket addresses).
///
/// `host` may be a name or a literal IPv4 or IPv6 address (without brackets).
///
/// # Errors
///
/// [`Op::Resolve`] (its kind `NotFound`) when the name does not resolve, in the resolver's words:
/// `cannot resolve no-such-host.invalid: name or service not known`; an empty host, which
/// names an address only to bind to (see
/// [`ToAddress::to_bind_addresses`](super::ToAddress::to_bind_addresses)), is refused in
/// words too.
///
/// # Examples
///
/// ```
/// let addrs = socketkit::socket::getaddrinfo("127.0.0.1", 80)?;
/// assert_eq!(addrs[0].to_string(), "127.0.0.1:80");
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn getaddrinfo(host: &str, port: u16) -> Result<Vec<Address>> {
    lookup(host, port, None)
}

/// Resolves `host:port` to bind to: as [`lookup`] does, except that the empty host is every
/// interface (Python's `bind(("", port))`), the wildcard address of `family`, or of both
/// families, IPv4 first, when none is given (as `getaddrinfo(3)` with `AI_PASSIVE` and no
/// host answers on Linux).
pub(crate) fn lookup_to_bind(
    host: &str,
    port: u16,
    family: Option<Family>,
) -> Result<Vec<Address>> {
    if !host.is_empty() || family == Some(Family::Unix) {
        return lookup(host, port, family);
    }
    let v4 = Address::from(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    let v6 = Address::from(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
    Ok(match family {
        Some(Family::Inet) => vec![v4],
        Some(Family::Inet6) => vec![v6],
        _ => vec![v4, v6],
    })
}

/// Resolves `host:port`, keeping only addresses of `family` when it is an IP family.
pub(crate) fn lookup(host: &str, port: u16, family: Option<Family>) -> Result<Vec<Address>> {
    if family == Some(Family::Unix) {
        let reason = io::Error::new(
            io::ErrorKind::InvalidInput,
            "a (host, port) address needs an Inet or Inet6 socket, not a Unix one",
        );
        return Err(Error::new(Op::Resolve, host, reason));
    }
    if host.is_empty() {
        // Python connects to 0.0.0.0 (which Linux takes for this host): a surprise, and
        // the resolver's own "name or service not known" would not say what is wrong.
        let reason = io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty host names no address to connect or send to \
             (to bind, it means every interface)",
        );
        return Err(Error::new(Op::Resolve, "''", reason));
    }
    if let Some(scoped) = scoped_ipv6(host, port) {
        let scoped = scoped.map_err(|err| Error::new(Op::Resolve, host, err))?;
        return Ok(vec![Address::from(std::net::SocketAddr::V6(scoped))]);
    }
    let found = (host, port)
        .to_socket_addrs()
        .map_err(|err| Error::new(Op::Resolve, host, resolver_words(err)))?;
    let wanted: Vec<Address> = found
        .map(Address::from)
        .filter(|addr| family.is_none_or(|family| addr.family() == family))
        .collect();
    if wanted.is_empty() {
        // A literal of the other family is no name to look up: say what it is.
        let literal = host.parse::<std::net::IpAddr>().is_ok();
        let what = match (family, literal) {
            (Some(Family::Inet6), true) => "it is an IPv4 address, and the socket is IPv6",
            (Some(_), true) => "it is an IPv6 address, and the socket is IPv4",
            (Some(Family::Inet6), false) => "the name has no IPv6 address",
            (Some(_), false) => "the name has no IPv4 address",
            (None, _) => "the name has no address",
        };
        let kind = match literal {
            true => io::ErrorKind::InvalidInput,
            false => io::ErrorKind::NotFound,
        };
        let reason = io::Error::new(kind, what);
        return Err(Error::new(Op::Resolve, host, reason));
    }
    Ok(wanted)
}

/// An IPv6 literal with a zone (`fe80::1%lo`, `fe80::1%2`): the zone is an interface name or
/// index. Done here rather than by getaddrinfo(3), which glibc refuses for addresses that are
/// not link-local (`::1%lo`). `None` if `host` is not such a literal.
fn scoped_ipv6(host: &str, port: u16) -> Option<io::Result<std::net::SocketAddrV6>> {
    let (address, zone) = host.split_once('%')?;
    let ip: std::net::Ipv6Addr = address.parse().ok()?;
    let scope = match zone.parse::<u32>() {
        Ok(index) => Ok(index),
        Err(_) => crate::sys::interface_index(zone),
    };
    Some(scope.map(|scope| std::net::SocketAddrV6::new(ip, port, 0, scope)))
}

/// A failed lookup of `host` made through another API (tokio's `lookup_host`), in the words
/// of this module's own: `cannot resolve HOST: name or service not known`, as `connect`
/// says it, not std's "failed to lookup address information: Name or service not known".
/// The kind is the resolver's words' (`NotFound` for a failed lookup, see
/// [`resolver_words`]).
pub(crate) fn unresolved(host: &str, err: io::Error) -> io::Error {
    let err = Error::new(Op::Resolve, host, resolver_words(err));
    io::Error::new(err.kind(), err.to_string())
}

/// std prefixes resolver failures with "failed to lookup address information: "; the
/// error sentence already says "cannot resolve", so keep only the resolver's own words.
fn resolver_words(err: io::Error) -> io::Error {
    let text = err.to_string();
    match text.strip_prefix("failed to lookup address information: ") {
        // `NotFound`: std's kind for it cannot be named on stable Rust, so a caller could
        // not match it (a SOCKS relay answers it "host unreachable").
        Some(words) => io::Error::new(io::ErrorKind::NotFound, words.to_owned()),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_made_elsewhere_fails_in_the_same_words() {
        let std_words =
            io::Error::other("failed to lookup address information: Name or service not known");
        let err = unresolved("nosuchhost", std_words);
        assert_eq!(
            err.to_string(),
            "cannot resolve nosuchhost: name or service not known"
        );
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn literal_addresses_resolve_without_dns() -> Result<()> {
        assert_eq!(getaddrinfo("::1", 7)?[0].to_string(), "[::1]:7");
        Ok(())
    }

    #[test]
    fn family_filter_reports_a_missing_family() {
        let err = lookup("127.0.0.1", 7, Some(Family::Inet6)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot resolve 127.0.0.1: it is an IPv4 address, and the socket is IPv6"
        );
        let err = lookup("::1", 7, Some(Family::Inet)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot resolve ::1: it is an IPv6 address, and the socket is IPv4"
        );
    }

    #[test]
    fn an_empty_host_is_every_interface_to_bind_and_nothing_to_connect_to() -> Result<()> {
        let all = |family| -> Result<Vec<String>> {
            let found = lookup_to_bind("", 7, family)?;
            Ok(found.iter().map(Address::to_string).collect())
        };
        assert_eq!(all(Some(Family::Inet))?, ["0.0.0.0:7"]);
        assert_eq!(all(Some(Family::Inet6))?, ["[::]:7"]);
        assert_eq!(all(None)?, ["0.0.0.0:7", "[::]:7"]);
        assert_eq!(
            lookup_to_bind("127.0.0.1", 7, None)?[0].to_string(),
            "127.0.0.1:7"
        );
        for family in [None, Some(Family::Inet), Some(Family::Inet6)] {
            let err = lookup("", 7, family).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                err.to_string(),
                "cannot resolve '': an empty host names no address to connect or send to \
                 (to bind, it means every interface)"
            );
        }
        Ok(())
    }

    #[test]
    fn unknown_names_say_so_in_words() {
        let err = getaddrinfo("no-such-host.invalid", 80).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot resolve no-such-host.invalid: "),
            "{text}"
        );
        assert!(!text.contains("os error"), "{text}");
    }
}
