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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

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

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Endpoint, EndpointError> {
        parse(input).map_err(|reason| EndpointError {
            input: input.to_owned(),
            reason,
        })
    }
}

/// An inherited listening socket as a listener names it (SPEC §3.4): `fd:N`, the
/// descriptor number, or `fd:NAME`, the name socket activation gave it (systemd's
/// `FileDescriptorName=`, passed in `LISTEN_FDNAMES`). It is not an [`Endpoint`]: where it
/// listens is known only once the socket is inherited.
///
/// # Examples
///
/// ```
/// use socketkit::endpoint::InheritedName;
/// assert_eq!(InheritedName::parse("fd:3"), Some(Ok(InheritedName::Number(3))));
/// assert_eq!(InheritedName::parse("fd:web").and_then(Result::ok).map(|n| n.to_string()),
///            Some("fd:web".to_owned()));
/// assert_eq!(InheritedName::parse("tcp:web:80"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InheritedName {
    /// `fd:N`: descriptor N.
    Number(i32),
    /// `fd:NAME`: the sockets named NAME.
    Name(String),
}

impl InheritedName {
    /// `Some` when `text` is an `fd:` endpoint (checked), `None` for any other text.
    ///
    /// # Errors
    ///
    /// An `fd:` endpoint with no number or name, or a name systemd would not give (longer
    /// than 255 bytes, or with `:` or a control character).
    pub fn parse(text: &str) -> Option<Result<InheritedName, EndpointError>> {
        let rest = text.strip_prefix("fd:")?;
        let error = |reason: String| EndpointError {
            input: text.to_owned(),
            reason,
        };
        Some(if rest.is_empty() {
            Err(error(
                "missing descriptor number or name after 'fd:'".into(),
            ))
        } else if rest.bytes().all(|b| b.is_ascii_digit()) {
            rest.parse()
                .map(InheritedName::Number)
                .map_err(|_| error(format!("descriptor number {rest} is too large")))
        } else if rest.len() > 255 {
            Err(error("a descriptor name is at most 255 bytes".into()))
        } else if let Some(bad) = rest.chars().find(|&c| c == ':' || c.is_control()) {
            Err(error(format!(
                "a descriptor name cannot contain '{}'",
                bad.escape_default()
            )))
        } else {
            Ok(InheritedName::Name(rest.to_owned()))
        })
    }
}

impl fmt::Display for InheritedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InheritedName::Number(fd) => write!(f, "fd:{fd}"),
            InheritedName::Name(name) => write!(f, "fd:{name}"),
        }
    }
}

const SCHEMES: [Transport; 5] = [
    Transport::Tcp,
    Transport::Tls,
    Transport::Udp,
    Transport::Unix,
    Transport::Unixgram,
];

fn parse(input: &str) -> Result<Endpoint, String> {
    if input.is_empty() {
        return Err(
            "empty endpoint (expected HOST:PORT, tls:HOST:PORT, udp:HOST:PORT or unix:PATH)".into(),
        );
    }
    let Some((prefix, rest)) = input.split_once(':') else {
        return Err("missing port (expected HOST:PORT)".into());
    };
    if let Some(transport) = SCHEMES.into_iter().find(|t| t.scheme() == prefix) {
        return parse_with_scheme(transport, rest);
    }
    if prefix == "fd" {
        return Err(
            "fd:N names an inherited listening socket, which only a listener (-l) takes".into(),
        );
    }
    // "name:port" has one colon after the name; a word followed by something that itself
    // holds a colon ("sctp:host:80", "http://host:80") can only be a scheme.
    let word = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphabetic());
    if word && rest.contains(':') {
        return Err(format!(
            "unknown scheme '{prefix}' (expected tcp, tls, udp, unix or unixgram)"
        ));
    }
    parse_host_port(input).map(Endpoint::Tcp)
}

fn parse_with_scheme(transport: Transport, rest: &str) -> Result<Endpoint, String> {
    match transport {
        Transport::Tcp => parse_host_port(rest).map(Endpoint::Tcp),
        Transport::Tls => parse_host_port(rest).map(Endpoint::Tls),
        Transport::Udp => parse_host_port(rest).map(Endpoint::Udp),
        Transport::Unix => parse_path(rest).map(Endpoint::Unix),
        Transport::Unixgram => parse_path(rest).map(Endpoint::Unixgram),
    }
}

fn parse_path(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("empty socket path".into());
    }
    if path.contains('\0') {
        return Err("socket path contains a NUL byte".into());
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(format!(
            "socket path is {} bytes, longer than the {MAX_UNIX_PATH} the system allows",
            path.len()
        ));
    }
    Ok(PathBuf::from(path))
}

fn parse_host_port(text: &str) -> Result<HostPort, String> {
    if text.is_empty() {
        return Err("missing HOST:PORT".into());
    }
    if let Some(bracketed) = text.strip_prefix('[') {
        return parse_bracketed(bracketed);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("missing port (expected HOST:PORT)".into());
    };
    if host.contains(':') {
        return Err(format!(
            "an IPv6 address must be in brackets, as [{host}]:{port}"
        ));
    }
    Ok(HostPort {
        host: parse_host(host)?,
        port: parse_port(port)?,
    })
}

fn parse_bracketed(text: &str) -> Result<HostPort, String> {
    let Some((inside, after)) = text.split_once(']') else {
        return Err("unclosed '[' (expected [IPv6]:PORT)".into());
    };
    if inside.is_empty() {
        return Err("empty IPv6 address in brackets".into());
    }
    let (address, scope) = match inside.split_once('%') {
        Some((address, scope)) => (address, Some(scope)),
        None => (inside, None),
    };
    let ip: Ipv6Addr = address
        .parse()
        .map_err(|_| format!("invalid IPv6 address '{address}'"))?;
    let host = match scope {
        // A zone (`fe80::1%eth0`, `%2`) is the resolver's to turn into a scope id, so the
        // scoped literal stays a name: getaddrinfo(3) knows interface names and numbers.
        Some(scope) => {
            let valid = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
            if scope.is_empty() || !scope.bytes().all(valid) {
                return Err(format!(
                    "invalid IPv6 zone '{scope}' (expected an interface, as %lo)"
                ));
            }
            Host::Name(inside.to_owned())
        }
        None => Host::Ip(IpAddr::V6(ip)),
    };
    let port = match after.strip_prefix(':') {
        Some(port) => parse_port(port)?,
        None if after.is_empty() => return Err("missing port after ']'".into()),
        None => return Err(format!("expected ':' after ']', found '{after}'")),
    };
    Ok(HostPort { host, port })
}

fn parse_host(host: &str) -> Result<Host, String> {
    if host.is_empty() {
        return Ok(Host::Any);
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(v4)));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("invalid IPv4 address '{host}'"));
    }
    if host.len() > 253 {
        return Err("host name is longer than 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() && host != "." {
            return Err(format!("empty label in host name '{host}'"));
        }
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if let Some(bad) = label.bytes().find(|&b| !valid(b)) {
            return Err(format!(
                "host name '{host}' contains '{}'",
                (bad as char).escape_default()
            ));
        }
    }
    Ok(Host::Name(host.to_owned()))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("missing port (expected HOST:PORT)".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{port}' is not a number"));
    }
    port.parse::<u16>()
        .map_err(|_| "port must be 0-65535".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_ipv6_literals_parse_and_print_back() {
        let ep = ok("[fe80::1%lo]:80");
        assert_eq!(ep.to_string(), "tcp:[fe80::1%lo]:80");
        assert_eq!(ok(&ep.to_string()), ep);
        assert!(ok("udp:[fe80::1%2]:53").host_port().is_some());
        assert!("[fe80::1%]:80".parse::<Endpoint>().is_err());
        assert!("[fe80::1%a b]:80".parse::<Endpoint>().is_err());
        assert!("[zz%lo]:80".parse::<Endpoint>().is_err());
    }

    #[test]
    fn abstract_unix_names_round_trip() {
        let ep = ok("unix:@socketkit-test");
        assert_eq!(ep.to_string(), "unix:@socketkit-test");
        assert_eq!(ep.path().map(|p| p.to_str()), Some(Some("@socketkit-test")));
    }

    fn ok(input: &str) -> Endpoint {
        input.parse().unwrap_or_else(|err| panic!("{input}: {err}"))
    }

    fn reason(input: &str) -> String {
        match input.parse::<Endpoint>() {
            Ok(ep) => panic!("{input} parsed as {ep}"),
            Err(err) => err.reason().to_owned(),
        }
    }

    #[test]
    fn the_grammar_and_its_canonical_form() {
        let cases = [
            ("127.0.0.1:80", "tcp:127.0.0.1:80"),
            ("tcp:127.0.0.1:80", "tcp:127.0.0.1:80"),
            ("localhost:0", "tcp:localhost:0"),
            (":12345", "tcp::12345"),
            ("tcp::12345", "tcp::12345"),
            ("[::1]:65535", "tcp:[::1]:65535"),
            ("udp:[::]:53", "udp:[::]:53"),
            ("udp:example.com:7", "udp:example.com:7"),
            ("udp::7", "udp::7"),
            ("unix:/run/app.sock", "unix:/run/app.sock"),
            ("unix:relative.sock", "unix:relative.sock"),
            ("unixgram:/tmp/d.sock", "unixgram:/tmp/d.sock"),
            ("tls:example.com:443", "tls:example.com:443"),
            ("tls:[::1]:0", "tls:[::1]:0"),
            ("tls::8443", "tls::8443"),
            ("unix:/path:with:colons", "unix:/path:with:colons"),
            ("my-host_1.lan:22", "tcp:my-host_1.lan:22"),
        ];
        for (input, canonical) in cases {
            let ep = ok(input);
            assert_eq!(ep.to_string(), canonical, "{input}");
            assert_eq!(ok(canonical), ep, "{canonical} must parse back");
        }
    }

    #[test]
    fn parts_are_reachable() {
        let ep = ok(":0");
        assert_eq!(ep.transport(), Transport::Tcp);
        assert_eq!(ep.host_port().map(|hp| &hp.host), Some(&Host::Any));
        assert_eq!(ok("unixgram:/x").path(), Some(Path::new("/x")));
        assert!(!Transport::Unixgram.is_stream());
        assert!(Transport::Tls.is_stream());
        assert_eq!(ok("tls:127.0.0.1:443").transport(), Transport::Tls);
        assert_eq!(ok("tls:h:443").host_port().map(|hp| hp.port), Some(443));
    }

    #[test]
    fn bad_ports() {
        assert_eq!(reason("localhost:99999"), "port must be 0-65535");
        assert_eq!(reason("localhost:65536"), "port must be 0-65535");
        assert_eq!(
            reason("udp:h:123456789012345678901"),
            "port must be 0-65535"
        );
        assert_eq!(reason("localhost:http"), "port 'http' is not a number");
        assert_eq!(reason("localhost:-1"), "port '-1' is not a number");
        assert_eq!(reason("localhost:+80"), "port '+80' is not a number");
        assert_eq!(reason("localhost:"), "missing port (expected HOST:PORT)");
        assert_eq!(reason("localhost"), "missing port (expected HOST:PORT)");
        assert_eq!(reason("[::1]"), "missing port after ']'");
        assert_eq!(reason("[::1]80"), "expected ':' after ']', found '80'");
    }

    #[test]
    fn bad_hosts() {
        assert_eq!(reason("[::1:80"), "unclosed '[' (expected [IPv6]:PORT)");
        assert_eq!(reason("[]:80"), "empty IPv6 address in brackets");
        assert_eq!(reason("[zz]:80"), "invalid IPv6 address 'zz'");
        assert_eq!(reason("[127.0.0.1]:80"), "invalid IPv6 address '127.0.0.1'");
        assert_eq!(
            reason("::1:80"),
            "an IPv6 address must be in brackets, as [::1]:80"
        );
        assert_eq!(reason("1.2.3.256:80"), "invalid IPv4 address '1.2.3.256'");
        assert_eq!(reason("a..b:80"), "empty label in host name 'a..b'");
        assert_eq!(reason(".a:80"), "empty label in host name '.a'");
        assert_eq!(reason("a b:80"), "host name 'a b' contains ' '");
        assert_eq!(reason("tcp:"), "missing HOST:PORT");
        assert_eq!(reason("udp:"), "missing HOST:PORT");
        assert_eq!(reason("tls:"), "missing HOST:PORT");
        assert_eq!(reason("tls:host"), "missing port (expected HOST:PORT)");
        assert_eq!(reason("tls:h:99999"), "port must be 0-65535");
    }

    #[test]
    fn bad_schemes_and_paths() {
        assert_eq!(
            reason("sctp:host:80"),
            "unknown scheme 'sctp' (expected tcp, tls, udp, unix or unixgram)"
        );
        assert_eq!(
            reason("http://host:80"),
            "unknown scheme 'http' (expected tcp, tls, udp, unix or unixgram)"
        );
        assert!(reason("").starts_with("empty endpoint"));
        assert_eq!(reason("unix:"), "empty socket path");
        assert_eq!(reason("unixgram:"), "empty socket path");
        let long = format!("unix:/{}", "x".repeat(107));
        assert_eq!(
            reason(&long),
            "socket path is 108 bytes, longer than the 107 the system allows"
        );
        assert_eq!(reason("unix:/a\0b"), "socket path contains a NUL byte");
    }

    #[test]
    fn inherited_sockets_are_named_apart_from_endpoints() {
        let parse =
            |text: &str| InheritedName::parse(text).map(|r| r.map_err(|e| e.reason().to_owned()));
        assert_eq!(parse("fd:0"), Some(Ok(InheritedName::Number(0))));
        assert_eq!(
            parse("fd:admin"),
            Some(Ok(InheritedName::Name("admin".into())))
        );
        assert_eq!(
            parse("fd:"),
            Some(Err("missing descriptor number or name after 'fd:'".into()))
        );
        assert_eq!(
            parse("fd:99999999999"),
            Some(Err("descriptor number 99999999999 is too large".into()))
        );
        assert_eq!(
            parse("fd:a:b"),
            Some(Err("a descriptor name cannot contain ':'".into()))
        );
        assert_eq!(
            parse(&format!("fd:{}", "x".repeat(256))),
            Some(Err("a descriptor name is at most 255 bytes".into()))
        );
        assert_eq!(parse("127.0.0.1:3"), None);
        assert_eq!(InheritedName::Name("web".into()).to_string(), "fd:web");
        assert!(reason("fd:3").starts_with("fd:N names an inherited listening socket"));
        assert_eq!(ok("tcp:fd:3").to_string(), "tcp:fd:3");
    }

    #[test]
    fn error_names_the_input() {
        let err = "tcp:[::1".parse::<Endpoint>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid endpoint 'tcp:[::1': unclosed '[' (expected [IPv6]:PORT)"
        );
    }
}
