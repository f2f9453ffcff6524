//! [`ToAddress`]: the ways a caller may name a socket address (`("127.0.0.1", 80)`,
//! `"[::1]:80"`, a path for Unix), the way Python's `bind` and `connect` take them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::resolve::{lookup, lookup_to_bind};
use super::{Address, Family};
use crate::error::{Error, Op, Result};

/// Things that name a socket address, the way Python's `bind((host, port))` and
/// `bind("/path")` do.
///
/// A `(host, port)` pair is resolved with `getaddrinfo(3)`; a `&str` is a path when the socket
/// is a Unix one and `HOST:PORT` otherwise; a [`Path`] is always a Unix path. When a socket
/// of a known family asks, only addresses of that family are returned. An empty host
/// (`("", 8080)`, `":8080"`) is every interface to bind to, and no address to connect to.
///
/// # Examples
///
/// ```
/// use socketkit::socket::{Family, ToAddress};
/// let found = ("127.0.0.1", 80).to_addresses(Some(Family::Inet))?;
/// assert_eq!(found[0].to_string(), "127.0.0.1:80");
/// let path = "/run/app.sock".to_addresses(Some(Family::Unix))?;
/// assert_eq!(path[0].to_string(), "/run/app.sock");
/// # Ok::<(), socketkit::Error>(())
/// ```
pub trait ToAddress {
    /// Every address this names, in resolver order, keeping only `family` when it is given.
    ///
    /// # Errors
    ///
    /// [`Op::Resolve`] when a host name does not resolve or has no address of `family`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::ToAddress;
    /// let any = "[::1]:7".to_addresses(None)?;
    /// assert_eq!(any[0].port(), Some(7));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    fn to_addresses(&self, family: Option<Family>) -> Result<Vec<Address>>;

    /// The addresses to bind to: those of [`ToAddress::to_addresses`], except that an empty
    /// host is every interface (Python's `bind(("", port))`): `0.0.0.0` or `::` for a socket
    /// of that family, both (IPv4 first) when no family is given.
    ///
    /// The default returns [`ToAddress::to_addresses`], for forms that have no empty host.
    ///
    /// # Errors
    ///
    /// As [`ToAddress::to_addresses`].
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, ToAddress};
    /// let any = ("", 8080).to_bind_addresses(Some(Family::Inet6))?;
    /// assert_eq!(any[0].to_string(), "[::]:8080");
    /// assert!(("", 8080).to_addresses(Some(Family::Inet6)).is_err());
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    fn to_bind_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        self.to_addresses(family)
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        (**self).to_addresses(family)
    }

    fn to_bind_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        (**self).to_bind_addresses(family)
    }
}

impl ToAddress for Address {
    fn to_addresses(&self, _family: Option<Family>) -> Result<Vec<Address>> {
        Ok(vec![self.clone()])
    }
}

impl ToAddress for SocketAddr {
    fn to_addresses(&self, _family: Option<Family>) -> Result<Vec<Address>> {
        Ok(vec![Address::from(*self)])
    }
}

impl ToAddress for (&str, u16) {
    fn to_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        lookup(self.0, self.1, family)
    }

    fn to_bind_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        lookup_to_bind(self.0, self.1, family)
    }
}

impl ToAddress for (String, u16) {
    fn to_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        lookup(&self.0, self.1, family)
    }

    fn to_bind_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        lookup_to_bind(&self.0, self.1, family)
    }
}

impl ToAddress for (IpAddr, u16) {
    fn to_addresses(&self, _family: Option<Family>) -> Result<Vec<Address>> {
        Ok(vec![SocketAddr::from(*self).into()])
    }
}

impl ToAddress for (Ipv4Addr, u16) {
    fn to_addresses(&self, _family: Option<Family>) -> Result<Vec<Address>> {
        Ok(vec![SocketAddr::from(*self).into()])
    }
}

impl ToAddress for (Ipv6Addr, u16) {
    fn to_addresses(&self, _family: Option<Family>) -> Result<Vec<Address>> {
        Ok(vec![SocketAddr::from(*self).into()])
    }
}

impl ToAddress for Path {
    fn to_addresses(&self, _family: Option<Family>) -> Result<Vec<Address>> {
        Ok(vec![Address::unix(self)])
    }
}

impl ToAddress for PathBuf {
    fn to_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        self.as_path().to_addresses(family)
    }
}

impl ToAddress for str {
    fn to_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        text_addresses(self, family, lookup)
    }

    fn to_bind_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        text_addresses(self, family, lookup_to_bind)
    }
}

impl ToAddress for String {
    fn to_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        self.as_str().to_addresses(family)
    }

    fn to_bind_addresses(&self, family: Option<Family>) -> Result<Vec<Address>> {
        self.as_str().to_bind_addresses(family)
    }
}

/// The addresses `text` names: a path for a Unix socket, else `HOST:PORT`, the host
/// resolved by `resolve` (for connecting or for binding).
fn text_addresses(
    text: &str,
    family: Option<Family>,
    resolve: fn(&str, u16, Option<Family>) -> Result<Vec<Address>>,
) -> Result<Vec<Address>> {
    // A host never begins with `/` or `@`: with no family asked for, such text is a Unix
    // socket's path (or abstract name), as a `Path` would be.
    let unix_path = family.is_none() && text.starts_with(['/', '@']);
    if family == Some(Family::Unix) || unix_path {
        return Ok(vec![Address::unix(text)]);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr.into()]);
    }
    let invalid = |why: &str| {
        let reason = io::Error::new(io::ErrorKind::InvalidInput, why.to_owned());
        Error::new(Op::Resolve, format!("'{text}'"), reason)
    };
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected HOST:PORT"))?;
    let port = port.parse::<u16>().map_err(|_| {
        // A number out of range is a port all the same: say what is wrong with it, in the
        // words of the endpoint parser.
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            invalid("port must be 0-65535")
        } else {
            invalid("expected HOST:PORT")
        }
    })?;
    // `[fe80::1%eth0]:80`: a zone by name, which `SocketAddr`'s parser (numbers only)
    // refused above, is the resolver's to read, without the brackets. An IPv6 address
    // without them (`::1:80`) is refused, as the endpoint grammar refuses it: its last
    // group could be the port or not.
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner,
        None if host.contains(':') => {
            return Err(invalid("an IPv6 address must be in brackets, as [::1]:80"));
        }
        None => host,
    };
    resolve(host, port, family)
}

/// The first of `addresses`; an implementation of [`ToAddress`] outside this crate could
/// return none, which reads as a name with no address.
pub(crate) fn first(addresses: Vec<Address>) -> Result<Address> {
    addresses.into_iter().next().ok_or_else(|| {
        let reason = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
        Error::without_target(Op::Resolve, reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_text_takes_brackets_and_a_zone_by_name() -> Result<()> {
        let scoped = "[fe80::1%lo]:80".to_addresses(None)?;
        match scoped.as_slice() {
            [Address::Inet6(v6)] => {
                assert_eq!(v6.port(), 80);
                assert_ne!(v6.scope_id(), 0, "the zone is lo's index");
            }
            other => panic!("{other:?}"),
        }
        let err = "::1:80".to_addresses(None).unwrap_err();
        assert!(err.to_string().contains("must be in brackets"), "{err}");
        let loopback = std::net::SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 0, 0);
        assert_eq!(
            "[::1]:80".to_addresses(None)?,
            vec![Address::Inet6(loopback)]
        );
        Ok(())
    }

    #[test]
    fn str_is_a_path_for_unix_sockets_and_host_port_otherwise() -> Result<()> {
        let unix = "/tmp/x.sock".to_addresses(Some(Family::Unix))?;
        assert_eq!(unix, vec![Address::unix("/tmp/x.sock")]);
        let inet = "127.0.0.1:80".to_addresses(Some(Family::Inet))?;
        assert_eq!(inet[0].to_string(), "127.0.0.1:80");
        Ok(())
    }

    #[test]
    fn str_without_port_is_an_error() {
        let err = "localhost".to_addresses(None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot resolve 'localhost': expected HOST:PORT"
        );
    }

    #[test]
    fn a_port_out_of_range_is_named_as_such() {
        let err = "127.0.0.1:99999".to_addresses(None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "cannot resolve '127.0.0.1:99999': port must be 0-65535"
        );
        let err = "localhost:http".to_addresses(None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot resolve 'localhost:http': expected HOST:PORT"
        );
    }

    #[test]
    fn an_empty_host_in_text_is_every_interface_to_bind_only() -> Result<()> {
        assert_eq!(
            ":8080".to_bind_addresses(Some(Family::Inet))?,
            vec![Address::from("0.0.0.0:8080".parse::<SocketAddr>().unwrap())]
        );
        assert_eq!(
            String::from(":8080").to_bind_addresses(Some(Family::Inet6))?,
            vec![Address::from("[::]:8080".parse::<SocketAddr>().unwrap())]
        );
        let err = ":8080".to_addresses(Some(Family::Inet)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        Ok(())
    }
}
