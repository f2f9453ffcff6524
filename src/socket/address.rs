//! [`Address`]: where a socket is, for IPv4, IPv6 and Unix sockets alike (the ways a caller
//! may name one are [`ToAddress`](super::ToAddress)'s).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use socket2::SockAddr;

use super::Family;

/// A socket address: an IPv4 or IPv6 address with a port, or a Unix socket path.
///
/// It prints the way a user expects: `127.0.0.1:54321`, `[::1]:54321`, `/run/app.sock`; an
/// unnamed Unix socket (one end of a [`socketpair`](super::socketpair), an unbound client)
/// prints as `(unnamed)`.
///
/// # Examples
///
/// ```
/// use socketkit::socket::Address;
///
/// let v4: Address = "127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap().into();
/// assert_eq!(v4.to_string(), "127.0.0.1:8080");
/// let v6: Address = "[::1]:8080".parse::<std::net::SocketAddr>().unwrap().into();
/// assert_eq!(v6.to_string(), "[::1]:8080");
/// assert_eq!(Address::unix("/run/app.sock").to_string(), "/run/app.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 address and port (`AF_INET`).
    Inet(SocketAddrV4),
    /// An IPv6 address and port (`AF_INET6`).
    Inet6(SocketAddrV6),
    /// A Unix socket path (`AF_UNIX`); an empty path is an unnamed socket, and `@NAME` a
    /// name in Linux's abstract namespace (as `ss` and systemd write it; see
    /// [`abstract_name`]), which has no file: a file really named `@x` is `./@x`.
    Unix(PathBuf),
}

impl Address {
    /// A Unix socket address for `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Address, Family};
    /// let a = Address::unix("/run/app.sock");
    /// assert_eq!(a.family(), Family::Unix);
    /// ```
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address::Unix(path.into())
    }

    /// The address family this address belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Address, Family};
    /// let a: Address = "[::1]:80".parse::<std::net::SocketAddr>().unwrap().into();
    /// assert_eq!(a.family(), Family::Inet6);
    /// ```
    pub fn family(&self) -> Family {
        match self {
            Address::Inet(_) => Family::Inet,
            Address::Inet6(_) => Family::Inet6,
            Address::Unix(_) => Family::Unix,
        }
    }

    /// The IP address and port, or `None` for a Unix address.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::Address;
    /// let a: Address = "127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap().into();
    /// assert_eq!(a.as_socket_addr().map(|s| s.port()), Some(80));
    /// assert_eq!(Address::unix("/x").as_socket_addr(), None);
    /// ```
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(v4) => Some(SocketAddr::V4(*v4)),
            Address::Inet6(v6) => Some(SocketAddr::V6(*v6)),
            Address::Unix(_) => None,
        }
    }

    /// The path of a Unix address, or `None` for an IP address or an unnamed Unix socket.
    /// An abstract name comes back as its `@NAME` form, which names no file (see
    /// [`abstract_name`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::Address;
    /// assert_eq!(Address::unix("/x.sock").as_path(), Some(std::path::Path::new("/x.sock")));
    /// ```
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            Address::Unix(path) if !path.as_os_str().is_empty() => Some(path),
            _ => None,
        }
    }

    /// The IP address, or `None` for a Unix address.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::Address;
    /// let a: Address = "127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap().into();
    /// assert_eq!(a.ip(), Some("127.0.0.1".parse().unwrap()));
    /// ```
    pub fn ip(&self) -> Option<IpAddr> {
        self.as_socket_addr().map(|addr| addr.ip())
    }

    /// The port, or `None` for a Unix address.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::Address;
    /// let a: Address = "127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap().into();
    /// assert_eq!(a.port(), Some(80));
    /// ```
    pub fn port(&self) -> Option<u16> {
        self.as_socket_addr().map(|addr| addr.port())
    }

    /// The address as the kernel takes it: every path becomes a `sockaddr` here, for
    /// `bind`, `connect` and `sendto` alike.
    ///
    /// A path with a NUL byte in it is refused (`InvalidInput`), as std refuses it: the
    /// kernel would read the path only up to the NUL, and bind or reach another file than
    /// the one the caller checked. An abstract name (`@NAME`) is bytes, NULs allowed.
    pub(crate) fn to_sockaddr(&self) -> io::Result<SockAddr> {
        match self {
            Address::Inet(v4) => Ok(SockAddr::from(*v4)),
            Address::Inet6(v6) => Ok(SockAddr::from(*v6)),
            Address::Unix(path) => match abstract_name(path) {
                // socket2 reads a leading NUL as the abstract namespace.
                Some(name) => SockAddr::unix(OsStr::from_bytes(&[&[0u8], name].concat())),
                None if path.as_os_str().as_bytes().contains(&0) => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "socket path contains a NUL byte",
                )),
                None => SockAddr::unix(path),
            },
        }
    }

    /// The address of a Unix socket as the standard library (and tokio) give it: a path,
    /// `@NAME` in the abstract namespace, or unnamed (an empty path).
    pub(crate) fn from_unix(addr: &std::os::unix::net::SocketAddr) -> Address {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            if let Some(name) = addr.as_abstract_name() {
                return unix_named(Some(name), None);
            }
        }
        unix_named(None, addr.as_pathname())
    }

    pub(crate) fn from_sockaddr(addr: &SockAddr) -> Address {
        if let Some(v4) = addr.as_socket_ipv4() {
            return Address::Inet(v4);
        }
        if let Some(v6) = addr.as_socket_ipv6() {
            return Address::Inet6(v6);
        }
        unix_named(addr.as_abstract_namespace(), addr.as_pathname())
    }
}

/// A Unix address from what the system reports: a name in the abstract namespace (written
/// `@NAME`), else a path, else unnamed (an empty path).
fn unix_named(abstract_name: Option<&[u8]>, path: Option<&Path>) -> Address {
    match (abstract_name, path) {
        (Some(name), _) => Address::Unix(PathBuf::from(OsStr::from_bytes(&[b"@", name].concat()))),
        (None, path) => Address::Unix(path.map(Path::to_path_buf).unwrap_or_default()),
    }
}

/// The name of a Unix socket in Linux's abstract namespace, written `@NAME` (as `ss` and
/// systemd write it): no file is created for it, and none removed. `None` for a path (a file
/// really named `@x` is `./@x`).
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use socketkit::socket::abstract_name;
/// assert_eq!(abstract_name(Path::new("@app")), Some(&b"app"[..]));
/// assert_eq!(abstract_name(Path::new("./@app")), None);
/// ```
pub fn abstract_name(path: &Path) -> Option<&[u8]> {
    path.as_os_str().as_bytes().strip_prefix(b"@")
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(v4) => v4.fmt(f),
            Address::Inet6(v6) => v6.fmt(f),
            Address::Unix(path) if path.as_os_str().is_empty() => f.write_str("(unnamed)"),
            Address::Unix(path) => path.display().fmt(f),
        }
    }
}

impl Address {
    /// The address with an IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]:80`) as the IPv4
    /// one it stands for (`127.0.0.1:80`), as [`std::net::IpAddr::to_canonical`] does: an
    /// IPv4 client of a dual-stack socket, named the way its user knows it. Other addresses
    /// are returned as they are.
    ///
    /// ```
    /// use socketkit::socket::Address;
    /// let mapped = Address::from("[::ffff:127.0.0.1]:80".parse::<std::net::SocketAddr>()?);
    /// assert_eq!(mapped.to_canonical().to_string(), "127.0.0.1:80");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn to_canonical(self) -> Address {
        match self {
            Address::Inet6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => Address::Inet(SocketAddrV4::new(v4, v6.port())),
                None => Address::Inet6(v6),
            },
            other => other,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        match addr {
            SocketAddr::V4(v4) => Address::Inet(v4),
            SocketAddr::V6(v6) => Address::Inet6(v6),
        }
    }
}

impl From<SocketAddrV4> for Address {
    fn from(addr: SocketAddrV4) -> Address {
        Address::Inet(addr)
    }
}

impl From<SocketAddrV6> for Address {
    fn from(addr: SocketAddrV6) -> Address {
        Address::Inet6(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_unix_prints_as_unnamed() {
        assert_eq!(Address::unix("").to_string(), "(unnamed)");
        assert_eq!(Address::unix("").as_path(), None);
    }

    #[test]
    fn a_path_with_a_nul_byte_is_refused_and_an_abstract_name_is_not() -> io::Result<()> {
        let err = Address::unix("/tmp/nul\0x.sock").to_sockaddr().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), "socket path contains a NUL byte");
        let name = Address::unix("@app\0with-nul");
        assert_eq!(Address::from_sockaddr(&name.to_sockaddr()?), name);
        Ok(())
    }

    #[test]
    fn sockaddr_round_trip() -> io::Result<()> {
        for addr in [
            Address::from("127.0.0.1:1".parse::<SocketAddr>().unwrap()),
            Address::from("[::1]:2".parse::<SocketAddr>().unwrap()),
            Address::unix("/tmp/a.sock"),
        ] {
            assert_eq!(Address::from_sockaddr(&addr.to_sockaddr()?), addr);
        }
        Ok(())
    }
}
