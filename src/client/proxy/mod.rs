//! Connecting through a proxy, as `curl -x` and `ncat --proxy` do: SOCKS5 (RFC 1928, with
//! RFC 1929's user name and password), HTTP's `CONNECT` (RFC 9110 §9.3.6), and SOCKS4 and
//! SOCKS4a (IPv4 only, a user id and no password).
//!
//! A proxy is written as a URL: `socks5://HOST[:PORT]` resolves the target's name here and
//! hands the proxy an address; `socks5h://…` hands it the name, for names only the proxy
//! can resolve (Tor's, a private network's); `socks4://` and `socks4a://` likewise; `http://…`
//! asks for a `CONNECT` tunnel (the proxy resolves). Without a scheme it is HTTP, as curl and ncat take it; the port defaults
//! to 1080 for SOCKS and 3128 for HTTP (ncat's). A user name and password go before the
//! host (`socks5://user:pass@host`), percent-encoded where they hold `@`, `:` or `%`.
//!
//! Once the proxy has said yes, the socket is the target's. What follows the proxy's answer
//! is the target's first bytes and stays in the socket for the caller: the HTTP answer is
//! read up to its blank line and not a byte further, so a banner the target sends at once
//! (SMTP, SSH) is not lost.

mod drive;
mod http;
mod socks4;
mod socks5;

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;

use drive::{Handshake, Receive, Step};
use http::HttpConnect;
use socks4::Socks4;
use socks5::Socks5;

use super::{ConnectOptions, Connected};
use crate::endpoint::{Endpoint, Host, HostPort};
use crate::error::{Error, Op, Result, describe};
use crate::net;
use crate::socket::Socket;

/// How long a proxy may take to answer when no timeout was given (`-w` bounds it too): a
/// proxy that accepts and never answers must not hold a client for ever.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How far before the deadline a timed-out wait may end (the socket's timeout is kept in
/// the kernel's ticks): a timeout closer to it than this is our own.
const ANSWER_ROUNDING: Duration = Duration::from_millis(20);

/// The protocol a proxy speaks.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP `CONNECT` (`http://`): the proxy resolves the target's name.
    Http,
    /// SOCKS5 (`socks5://`) with the target's name resolved here.
    Socks5,
    /// SOCKS5 (`socks5h://`) with the target's name resolved by the proxy.
    Socks5Hostname,
    /// SOCKS4 (`socks4://`): the target's name resolved here, to an IPv4 address.
    Socks4,
    /// SOCKS4a (`socks4a://`): the target's name resolved by the proxy.
    Socks4a,
}

impl ProxyKind {
    /// The URL scheme that names this kind.
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5Hostname => "socks5h",
            ProxyKind::Socks4 => "socks4",
            ProxyKind::Socks4a => "socks4a",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            ProxyKind::Http => 3128,
            _ => 1080,
        }
    }

    /// Whether the target's name is resolved here, and each of its addresses tried in turn.
    fn resolves_here(self) -> bool {
        matches!(self, ProxyKind::Socks5 | ProxyKind::Socks4)
    }
}

/// A user name and password for the proxy, as bytes (SOCKS5 takes any; HTTP's Basic scheme
/// sends them base64-encoded).
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: Vec<u8>,
    password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password stays out of logs and panics.
        f.debug_struct("Credentials")
            .field("user", &String::from_utf8_lossy(&self.user))
            .finish_non_exhaustive()
    }
}

/// A proxy to connect through (see the module's notes for the URL).
///
/// # Examples
///
/// ```
/// use socketkit::client::proxy::{Proxy, ProxyKind};
/// let proxy: Proxy = "socks5h://user:secret@127.0.0.1:9050".parse().unwrap();
/// assert_eq!(proxy.kind(), ProxyKind::Socks5Hostname);
/// assert_eq!(proxy.to_string(), "socks5h://127.0.0.1:9050"); // the password is not shown
/// let http: Proxy = "proxy.example:8080".parse().unwrap();
/// assert_eq!(http.to_string(), "http://proxy.example:8080");
/// assert!("ftp://proxy.example".parse::<Proxy>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    server: HostPort,
    credentials: Option<Credentials>,
}

/// A proxy URL that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid proxy '{input}': {reason}")]
pub struct InvalidProxy {
    input: String,
    reason: String,
}

impl FromStr for Proxy {
    type Err = InvalidProxy;

    fn from_str(input: &str) -> std::result::Result<Proxy, InvalidProxy> {
        parse(input).map_err(|reason| InvalidProxy {
            input: input.to_owned(),
            reason,
        })
    }
}

fn parse(input: &str) -> std::result::Result<Proxy, String> {
    let (kind, rest) = match input.split_once("://") {
        None => (ProxyKind::Http, input),
        Some((scheme, rest)) => (kind_of(scheme)?, rest),
    };
    // curl takes "http://proxy:3128/"; anything after the slash would be ignored, so say so.
    let rest = match rest.split_once('/') {
        Some((authority, "")) => authority,
        Some(_) => return Err("a proxy URL has no path (expected SCHEME://HOST:PORT)".into()),
        None => rest,
    };
    // The last '@' ends the credentials, as browsers read an unencoded '@' in a password.
    let (credentials, authority) = match rest.rsplit_once('@') {
        Some((userinfo, authority)) => (Some(credentials(userinfo)?), authority),
        None => (None, rest),
    };
    let has_port = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.contains("]:"),
        None => authority.contains(':'),
    };
    let text = if has_port {
        format!("tcp:{authority}")
    } else {
        format!("tcp:{authority}:{}", kind.default_port())
    };
    let server = match text.parse::<Endpoint>() {
        Ok(Endpoint::Tcp(server)) => server,
        Ok(_) => return Err("expected HOST:PORT".into()),
        Err(err) => return Err(err.reason().to_owned()),
    };
    if matches!(server.host, Host::Any) {
        return Err("missing the proxy's host".into());
    }
    if server.port == 0 {
        return Err("port 0 is no proxy's port".into());
    }
    let socks4 = matches!(kind, ProxyKind::Socks4 | ProxyKind::Socks4a);
    if socks4 && credentials.as_ref().is_some_and(|c| !c.password.is_empty()) {
        return Err("SOCKS4 takes a user id and no password (socks4://USER@HOST)".into());
    }
    Ok(Proxy {
        kind,
        server,
        credentials,
    })
}

fn kind_of(scheme: &str) -> std::result::Result<ProxyKind, String> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Ok(ProxyKind::Http),
        "socks5" => Ok(ProxyKind::Socks5),
        "socks5h" => Ok(ProxyKind::Socks5Hostname),
        "socks4" => Ok(ProxyKind::Socks4),
        "socks4a" => Ok(ProxyKind::Socks4a),
        "https" => Err(format!(
            "{scheme}:// proxies are not supported (expected http://, socks5://, socks5h://, \
             socks4:// or socks4a://)"
        )),
        _ => Err(format!(
            "unknown proxy kind '{scheme}' (expected http://, socks5://, socks5h://, socks4:// \
             or socks4a://)"
        )),
    }
}

fn credentials(userinfo: &str) -> std::result::Result<Credentials, String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |text: &str| percent_encoding::percent_decode_str(text).collect::<Vec<u8>>();
    let (user, password) = (decode(user), decode(password));
    if user.is_empty() {
        return Err("empty user name before '@'".into());
    }
    // SOCKS5's user name and password each take one length byte (RFC 1929).
    if user.len() > 255 || password.len() > 255 {
        return Err("a user name or password is longer than 255 bytes".into());
    }
    Ok(Credentials { user, password })
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.kind.scheme(), self.server)
    }
}

impl Proxy {
    /// The protocol the proxy speaks.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host and port.
    pub fn server(&self) -> &HostPort {
        &self.server
    }

    /// Opens a tunnel through the proxy to `target` (a `tcp:` or `tls:` endpoint; for
    /// `tls:` the caller then does the handshake in the tunnel). `options`' timeout bounds
    /// the connection to the proxy and each of its answers (else
    /// [`DEFAULT_ANSWER_TIMEOUT`]); `-s`/`-p` apply to the connection to the proxy, `-4`/`-6`
    /// to the target's addresses where they are resolved here (`socks5://`).
    ///
    /// # Errors
    ///
    /// `cannot connect to proxy URL: REASON` when the proxy cannot be reached, and `cannot
    /// connect to ENDPOINT through URL: REASON` when it answers otherwise than yes: the
    /// reason names what the proxy said (`the proxy could not connect: connection refused
    /// (SOCKS5 reply 5)`, `the proxy refused: HTTP 403 Forbidden`), with an
    /// [`io::ErrorKind`] to match on.
    pub fn connect(&self, target: &Endpoint, options: ConnectOptions) -> Result<Connected> {
        let hp = tunnelled(target).map_err(|err| Error::new(Op::Connect, target, err))?;
        let through =
            |err: io::Error| Error::new(Op::Connect, format!("{target} through {self}"), err);
        let failed = |failure: Failure| match failure {
            // Said of the proxy, so that its refusal is not read as the target's.
            Failure::Unreachable(err) => Error::new(Op::Connect, format!("proxy {self}"), err),
            Failure::Answered(err) => through(err),
        };
        if !self.kind.resolves_here() {
            return self.tunnel(hp, options).map_err(failed);
        }
        // Each address of the target in turn, through a connection of its own, as a direct
        // connect tries each; the last refusal is the one reported.
        let mut last = io::Error::from(io::ErrorKind::NotFound);
        for address in net::candidates(target, options.family)? {
            let Some(addr) = address.as_socket_addr() else {
                continue;
            };
            match self.tunnel(&at(addr), options) {
                Ok(connected) => return Ok(connected),
                Err(Failure::Answered(err)) if socks5::another_address_may_do(&err) => last = err,
                Err(failure) => return Err(failed(failure)),
            }
        }
        Err(through(last))
    }

    /// One connection to the proxy, and its handshake for `target`.
    fn tunnel(
        &self,
        target: &HostPort,
        options: ConnectOptions,
    ) -> std::result::Result<Connected, Failure> {
        let server = Endpoint::Tcp(self.server.clone());
        let direct = ConnectOptions {
            family: None,
            ..options
        };
        let unreachable = |err: Error| Failure::Unreachable(err.into_io_error());
        // The proxy's name first: `-w` bounds the connect to the proxy and its answer
        // together, as one connect, and (as a direct connect's) not the name lookup, which
        // would otherwise use up the wait and leave none for the proxy's answer.
        let candidates = super::resolve(&server, direct).map_err(unreachable)?;
        let wait = options.timeout.unwrap_or(DEFAULT_ANSWER_TIMEOUT);
        let deadline = crate::socket::deadline_in(wait);
        let connected = super::connect_to(&server, candidates, direct).map_err(unreachable)?;
        let socket = &connected.socket;
        drive::run_blocking(socket, self.handshake(target), deadline)
            .and_then(|()| set_timeout(socket, None))
            .map_err(|err| match err.kind() {
                // Our own wait ran out; not an answer that says the proxy timed out (HTTP
                // 504, SOCKS5 reply 6), which may come at once and names what happened. (The
                // socket's timeout ends the wait at the deadline, give or take its rounding.)
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    if std::time::Instant::now() + ANSWER_ROUNDING >= deadline =>
                {
                    silent(wait)
                }
                _ => err,
            })
            .map_err(Failure::Answered)?;
        Ok(connected)
    }

    /// As [`Proxy::connect`], on the runtime, for a relay (`forward --proxy`): the tunnel as a
    /// stream, or why not in words that name the proxy's part (`cannot connect to the proxy:
    /// …`, `the proxy could not connect: …`). The caller bounds it in time; each answer is
    /// waited for at most [`DEFAULT_ANSWER_TIMEOUT`].
    pub(crate) async fn open(&self, target: &Endpoint) -> io::Result<net::Stream> {
        let hp = tunnelled(target)?;
        if !self.kind.resolves_here() {
            return self.open_one(hp).await.map_err(Failure::into_io_error);
        }
        let addresses: Vec<std::net::SocketAddr> = match &hp.host {
            Host::Ip(ip) => vec![std::net::SocketAddr::new(*ip, hp.port)],
            Host::Name(name) => net::lookup(name, hp.port).await?,
            Host::Any => return Err(io::ErrorKind::InvalidInput.into()),
        };
        let mut last = io::Error::from(io::ErrorKind::NotFound);
        for addr in addresses {
            match self.open_one(&at(addr)).await {
                Ok(stream) => return Ok(stream),
                Err(Failure::Answered(err)) if socks5::another_address_may_do(&err) => last = err,
                Err(failure) => return Err(failure.into_io_error()),
            }
        }
        Err(last)
    }

    async fn open_one(&self, target: &HostPort) -> std::result::Result<net::Stream, Failure> {
        let server = Endpoint::Tcp(self.server.clone());
        let stream = net::connect_stream(&server, None)
            .await
            .map_err(Failure::Unreachable)?;
        let net::Stream::Tcp(mut tcp) = stream else {
            // A tcp: endpoint's stream is TCP.
            return Err(Failure::Unreachable(io::ErrorKind::InvalidInput.into()));
        };
        let handshake = drive::run_async(&mut tcp, self.handshake(target));
        tokio::time::timeout(DEFAULT_ANSWER_TIMEOUT, handshake)
            .await
            .unwrap_or_else(|_| Err(silent(DEFAULT_ANSWER_TIMEOUT)))
            .map_err(Failure::Answered)?;
        Ok(net::Stream::Tcp(tcp))
    }

    fn handshake<'a>(&'a self, target: &'a HostPort) -> Handshake<'a> {
        let credentials = self.credentials.as_ref();
        match self.kind {
            ProxyKind::Http => Handshake::Http(HttpConnect::new(target, credentials)),
            ProxyKind::Socks5 | ProxyKind::Socks5Hostname => {
                Handshake::Socks5(Socks5::new(target, credentials))
            }
            ProxyKind::Socks4 | ProxyKind::Socks4a => Handshake::Socks4(Socks4::new(
                target,
                credentials,
                self.kind == ProxyKind::Socks4a,
            )),
        }
    }
}

/// The host and port a proxy is asked to connect to: `target`'s, if it is `tcp:` or `tls:`.
fn tunnelled(target: &Endpoint) -> io::Result<&HostPort> {
    match target {
        Endpoint::Tcp(hp) | Endpoint::Tls(hp) => Ok(hp),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a proxy carries tcp: and tls: connections only",
        )),
    }
}

/// An address the proxy is asked for (`socks5://`, resolved here).
fn at(addr: std::net::SocketAddr) -> HostPort {
    HostPort {
        host: Host::Ip(addr.ip()),
        port: addr.port(),
    }
}

/// How a tunnel failed: on the way to the proxy, or in what the proxy answered.
enum Failure {
    Unreachable(io::Error),
    Answered(io::Error),
}

impl Failure {
    /// In words that say which part failed, for a caller that names the proxy itself.
    fn into_io_error(self) -> io::Error {
        match self {
            Failure::Unreachable(err) => io::Error::new(
                err.kind(),
                format!("cannot connect to the proxy: {}", describe(&err)),
            ),
            Failure::Answered(err) => err,
        }
    }
}

fn set_timeout(socket: &Socket, timeout: Option<Duration>) -> io::Result<()> {
    socket.set_timeout(timeout).map_err(Error::into_io_error)
}

/// The proxy said nothing for `wait`.
fn silent(wait: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the proxy did not answer within {}",
            humantime::format_duration(wait)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(text: &str) -> Proxy {
        text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    fn refused(text: &str) -> String {
        text.parse::<Proxy>().expect_err(text).to_string()
    }

    #[test]
    fn urls_name_the_kind_and_the_port_defaults_to_its_protocol() {
        assert_eq!(
            proxy("socks5://127.0.0.1").to_string(),
            "socks5://127.0.0.1:1080"
        );
        assert_eq!(proxy("SOCKS5H://h:9050").kind(), ProxyKind::Socks5Hostname);
        assert_eq!(proxy("http://[::1]").to_string(), "http://[::1]:3128");
        assert_eq!(proxy("[::1]:8080").to_string(), "http://[::1]:8080");
        assert_eq!(proxy("http://proxy.example:8080/").server().port, 8080);
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_shown() {
        let p = proxy("socks5://us%40er:p%3Aa@ss@host:1");
        let creds = p.credentials.as_ref().expect("credentials");
        assert_eq!(creds.user, b"us@er");
        assert_eq!(creds.password, b"p:a@ss");
        assert_eq!(p.server().to_string(), "host:1");
        assert!(!format!("{p:?}").contains("p:a@ss"), "{p:?}");
        assert!(!p.to_string().contains("us"));
        let no_password = proxy("http://user@host:1");
        assert_eq!(no_password.credentials.expect("credentials").password, b"");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(refused("socks4://u:pw@h:1").contains("no password"));
        assert_eq!(proxy("socks4a://u@h").kind(), ProxyKind::Socks4a);
        assert_eq!(proxy("socks4://h").server().port, 1080);
        assert!(refused("https://h:1").contains("not supported"));
        assert!(refused("gopher://h:1").contains("unknown proxy kind 'gopher'"));
        assert!(refused("http://h:1/path").contains("no path"));
        assert!(refused("http://:1").contains("missing the proxy's host"));
        assert!(refused("http://h:0").contains("port 0"));
        assert!(refused("http://h:99999").contains("port must be 0-65535"));
        assert!(refused("http://@h:1").contains("empty user name"));
        let long = "u".repeat(256);
        assert!(refused(&format!("socks5://{long}:p@h")).contains("255 bytes"));
    }
}
