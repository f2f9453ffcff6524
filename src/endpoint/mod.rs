//! [`Endpoint`]: the one syntax every `socketkit` command uses to name a socket (SPEC §2.1).
//!
//! | written | means |
//! |---|---|
//! | `HOST:PORT`, `tcp:HOST:PORT` | TCP; HOST is a name, an IPv4 address or `[IPv6]` |
//! | `:PORT` | TCP on every local address, IPv4 and IPv6 |
//! | `tls:HOST:PORT` | TCP carrying TLS ([`crate::tls`]); `tls::PORT` listens everywhere |
//! | `udp:HOST:PORT` | UDP |
//! | `unix:PATH` | a Unix stream socket (`unix:@NAME`: Linux's abstract namespace, no file) |
//! | `unixgram:PATH` | a Unix datagram socket (`unixgram:@NAME` too) |
//! | `[fe80::1%lo]:PORT` | an IPv6 address with its zone (interface name or number) |
//! | `fd:N`, `fd:NAME` | an inherited listening socket ([`InheritedName`]; listeners only) |
//!
//! Port `0` asks the system for a free port. An endpoint prints in the canonical form with
//! its scheme (`tcp:127.0.0.1:80`), and that form parses back to the same endpoint.
//!
//! # Examples
//!
//! ```
//! use socketkit::endpoint::{Endpoint, Host};
//!
//! let ep: Endpoint = "[::1]:8080".parse()?;
//! assert_eq!(ep.to_string(), "tcp:[::1]:8080");
//! assert_eq!(ep.host_port().map(|hp| &hp.host), Some(&Host::Ip("::1".parse().unwrap())));
//! let err = "localhost:99999".parse::<Endpoint>().unwrap_err();
//! assert_eq!(err.to_string(), "invalid endpoint 'localhost:99999': port must be 0-65535");
//! # Ok::<(), socketkit::endpoint::EndpointError>(())
//! ```

mod inherited;
mod parse;
mod socat;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use inherited::InheritedName;

/// The longest Unix socket path Linux accepts: `sun_path` is 108 bytes with the final NUL.
pub const MAX_UNIX_PATH: usize = 107;

/// Where a socket listens or connects: transport plus address.
///
/// # Examples
///
/// ```
/// use socketkit::endpoint::{Endpoint, Transport};
/// let ep: Endpoint = "udp:[::1]:53".parse().unwrap();
/// assert_eq!(ep.transport(), Transport::Udp);
/// assert_eq!(ep.to_string(), "udp:[::1]:53");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP host and port.
    Tcp(HostPort),
    /// A TCP host and port that speaks TLS on top (SPEC §3.1).
    Tls(HostPort),
    /// A UDP host and port.
    Udp(HostPort),
    /// A Unix stream socket path.
    Unix(PathBuf),
    /// A Unix datagram socket path.
    Unixgram(PathBuf),
}

/// The five transports an [`Endpoint`] can name.
///
/// # Examples
///
/// ```
/// use socketkit::endpoint::Transport;
/// assert_eq!(Transport::Unixgram.scheme(), "unixgram");
/// assert!(Transport::Tcp.is_stream());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP (`SOCK_STREAM` over IP).
    Tcp,
    /// TLS over TCP.
    Tls,
    /// UDP (`SOCK_DGRAM` over IP).
    Udp,
    /// Unix stream (`SOCK_STREAM` over `AF_UNIX`).
    Unix,
    /// Unix datagram (`SOCK_DGRAM` over `AF_UNIX`).
    Unixgram,
}

impl Transport {
    /// The scheme that names this transport in an endpoint (`tcp`, `tls`, `udp`, `unix`,
    /// `unixgram`).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::endpoint::Transport;
    /// assert_eq!(Transport::Tcp.scheme(), "tcp");
    /// ```
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Udp => "udp",
            Transport::Unix => "unix",
            Transport::Unixgram => "unixgram",
        }
    }

    /// Whether the transport carries a byte stream (TCP, TLS, Unix stream) rather than
    /// datagrams.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::endpoint::Transport;
    /// assert!(Transport::Unix.is_stream());
    /// assert!(!Transport::Udp.is_stream());
    /// ```
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls | Transport::Unix)
    }
}

/// The host part of an IP endpoint.
///
/// # Examples
///
/// ```
/// use socketkit::endpoint::{Endpoint, Host};
/// let ep: Endpoint = ":8080".parse().unwrap();
/// assert_eq!(ep.host_port().map(|hp| &hp.host), Some(&Host::Any));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// Empty host (`:PORT`): every local address, IPv4 and IPv6.
    Any,
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A name to resolve; also a scoped IPv6 literal (`fe80::1%lo`), whose zone the resolver
    /// turns into a scope id.
    Name(String),
}

/// A host and a port.
///
/// # Examples
///
/// ```
/// use socketkit::endpoint::{Host, HostPort};
/// let hp = HostPort { host: Host::Name("example.com".into()), port: 80 };
/// assert_eq!(hp.to_string(), "example.com:80");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port; `0` asks the system for a free one.
    pub port: u16,
}

impl Endpoint {
    /// The transport this endpoint names.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::endpoint::{Endpoint, Transport};
    /// let ep: Endpoint = "unix:/run/app.sock".parse().unwrap();
    /// assert_eq!(ep.transport(), Transport::Unix);
    /// ```
    pub fn transport(&self) -> Transport {
        match self {
            Endpoint::Tcp(_) => Transport::Tcp,
            Endpoint::Tls(_) => Transport::Tls,
            Endpoint::Udp(_) => Transport::Udp,
            Endpoint::Unix(_) => Transport::Unix,
            Endpoint::Unixgram(_) => Transport::Unixgram,
        }
    }

    /// The host and port of a TCP, TLS or UDP endpoint.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::endpoint::Endpoint;
    /// let ep: Endpoint = "127.0.0.1:80".parse().unwrap();
    /// assert_eq!(ep.host_port().map(|hp| hp.port), Some(80));
    /// ```
    pub fn host_port(&self) -> Option<&HostPort> {
        match self {
            Endpoint::Tcp(hp) | Endpoint::Tls(hp) | Endpoint::Udp(hp) => Some(hp),
            Endpoint::Unix(_) | Endpoint::Unixgram(_) => None,
        }
    }

    /// The path of a Unix endpoint.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::endpoint::Endpoint;
    /// let ep: Endpoint = "unixgram:/tmp/d.sock".parse().unwrap();
    /// assert_eq!(ep.path(), Some(std::path::Path::new("/tmp/d.sock")));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            Endpoint::Unix(path) | Endpoint::Unixgram(path) => Some(path),
            Endpoint::Tcp(_) | Endpoint::Tls(_) | Endpoint::Udp(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Any => Ok(()),
            Host::Ip(IpAddr::V4(v4)) => v4.fmt(f),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            // A scoped IPv6 literal (`fe80::1%lo`) is kept as a name, and written back in the
            // brackets it came in.
            Host::Name(name) if name.contains(':') => write!(f, "[{name}]"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.transport().scheme();
        match self {
            Endpoint::Tcp(hp) | Endpoint::Tls(hp) | Endpoint::Udp(hp) => {
                write!(f, "{scheme}:{hp}")
            }
            Endpoint::Unix(path) | Endpoint::Unixgram(path) => {
                write!(f, "{scheme}:{}", path.display())
            }
        }
    }
}

/// A string that is not an endpoint, with the reason in words.
///
/// # Examples
///
/// ```
/// let err = "localhost:http".parse::<socketkit::endpoint::Endpoint>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid endpoint 'localhost:http': port 'http' is not a number");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint '{input}': {reason}")]
pub struct EndpointError {
    input: String,
    reason: String,
}

impl EndpointError {
    /// What was wrong, without the input (`port must be 0-65535`).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = "tcp:".parse::<socketkit::endpoint::Endpoint>().unwrap_err();
    /// assert_eq!(err.reason(), "missing HOST:PORT");
    /// ```
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
