//! A SOCKS5 proxy (RFC 1928) as a relay whose target each client names, as `ssh -D` and
//! microsocks serve one: `socketkit forward -l 127.0.0.1:1080 --socks`. A client greets,
//! asks to `CONNECT` to an address or a name (resolved here), and once the target has taken
//! the connection, the relay is [`super::Forward`]'s (spliced once a direction carries a
//! bulk stream, half-closes passed on, a failure on one side reset on the other). SOCKS4
//! and SOCKS4a clients are served too, as `ssh -D` serves them (`wire.rs`): their one
//! request, with no password (so a proxy with [`SocksForward::users`] refuses them), and a
//! reply of granted or rejected.
//!
//! Who may use the proxy is the server's access control (`--allow`, `--deny`,
//! `--max-per-source`), where it listens, and, with [`SocksForward::users`], a user name and
//! password (RFC 1929) from a list: then that is the only method offered, and a client that
//! does not offer it is told so and closed. Without a list only "no authentication" is
//! offered. With [`SocksForward::destinations`], a client may only reach the addresses the
//! rules admit (a name is resolved here and only its admitted addresses are tried); any
//! other request is answered "not allowed by the ruleset" (reply 2). `BIND` and
//! `UDP ASSOCIATE` are answered "command not supported" (reply 7). A client that has not
//! finished its request within the connect timeout is closed; a target that cannot be
//! reached is answered with the reply a direct connect's error maps to (refused 5, host
//! unreachable 4, network unreachable 3, anything else 1), and said at debug level.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

mod wire;

use arc_swap::ArcSwap;
use subtle::ConstantTimeEq;

use super::relay::{Upstream, out_of_resources, relay_to};
use crate::access::{AccessControl, AccessRules};
use crate::endpoint::{Endpoint, Host};
use crate::net::{self, Stream};
use crate::server::{Connection, Handler};
use wire::{NOT_ALLOWED, Request, answer};

/// How long a client has for its greeting and request, and the proxy for its connect to
/// the target, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A SOCKS5 proxy: each connection's target is the one its client asks for.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketkit::Result<()> {
/// use std::time::Duration;
/// use socketkit::forward::socks::SocksForward;
/// use socketkit::server::Server;
///
/// let mut builder = Server::builder();
/// builder.listen("127.0.0.1:1080".parse().unwrap());
/// let server = builder.bind().await?;
/// server.serve(SocksForward::new().timeout(Duration::from_secs(5))).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SocksForward {
    timeout: Duration,
    /// Shared by the proxy's clones, which a reload reaches through it.
    users: Option<Arc<ArcSwap<SocksUsers>>>,
    destinations: Option<Arc<AccessControl>>,
}

/// The user names and passwords a [`SocksForward`] takes (RFC 1929).
///
/// # Examples
///
/// ```
/// use socketkit::forward::socks::SocksUsers;
/// let users = SocksUsers::from_text("# who may use the proxy\nalice:s3cret:with:colons\n").unwrap();
/// assert!(users.admits(b"alice", b"s3cret:with:colons"));
/// assert!(!users.admits(b"alice", b"s3cret"));
/// assert!(SocksUsers::from_text("no-colon\n").is_err());
/// ```
#[derive(Clone)]
pub struct SocksUsers {
    /// Password by user name: a list of 100,000 users is read, and a user found, without
    /// going through all of it (a list took 15 s to read, and a login scanned it whole).
    users: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

impl std::fmt::Debug for SocksUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The passwords stay out of logs.
        f.debug_struct("SocksUsers")
            .field("users", &self.users.len())
            .finish()
    }
}

impl SocksUsers {
    /// Reads `USER:PASSWORD` lines (the password is the rest of the line, colons included);
    /// blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// `line N: …` for a line without a colon, an empty user name, a name or password longer
    /// than 255 bytes (what RFC 1929 can carry), or a user named twice; no user at all.
    pub fn from_text(text: &str) -> Result<SocksUsers, String> {
        let mut users = std::collections::HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let at = |why: &str| format!("line {}: {why}", index + 1);
            let Some((user, password)) = line.split_once(':') else {
                return Err(at("expected USER:PASSWORD"));
            };
            if user.is_empty() {
                return Err(at("empty user name"));
            }
            if user.len() > 255 || password.len() > 255 {
                return Err(at("a user name or password is longer than 255 bytes"));
            }
            let named_before = users
                .insert(user.as_bytes().to_vec(), password.as_bytes().to_vec())
                .is_some();
            if named_before {
                return Err(at(&format!("user '{user}' is named twice")));
            }
        }
        if users.is_empty() {
            return Err("no USER:PASSWORD line".into());
        }
        Ok(SocksUsers { users })
    }

    /// How many users are listed (at least one: an empty list is refused).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is listed, which [`SocksUsers::from_text`] never makes.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` is listed with `password`; the password is compared in constant time.
    pub fn admits(&self, user: &[u8], password: &[u8]) -> bool {
        self.users
            .get(user)
            .is_some_and(|secret| bool::from(secret.as_slice().ct_eq(password)))
    }
}

impl Default for SocksForward {
    fn default() -> Self {
        SocksForward::new()
    }
}

impl SocksForward {
    /// A proxy with the [`DEFAULT_TIMEOUT`].
    pub fn new() -> SocksForward {
        SocksForward {
            timeout: DEFAULT_TIMEOUT,
            users: None,
            destinations: None,
        }
    }

    /// Asks every client for a user name and password from `users`.
    pub fn users(mut self, users: SocksUsers) -> SocksForward {
        self.users = Some(Arc::new(ArcSwap::from_pointee(users)));
        self
    }

    /// Puts `users` in force in place of the proxy's for the clients that come next (every
    /// clone of the proxy: they share them): SIGHUP's reload of `forward --socks-users`.
    /// Clients already relayed go on. A proxy made without [`SocksForward::users`] asks no
    /// one for a password, and a reload does not change that: `false`, nothing done.
    pub fn reload_users(&self, users: SocksUsers) -> bool {
        match &self.users {
            Some(current) => {
                current.store(Arc::new(users));
                true
            }
            None => false,
        }
    }

    /// Lets clients reach only the addresses `rules` admit (allow and deny networks, as the
    /// server's own access rules read a source): deny `127.0.0.0/8` and the private
    /// networks, or allow only those a proxy is for. A requested name is resolved here and
    /// only its admitted addresses are tried; a request with none is answered reply 2.
    pub fn destinations(mut self, rules: AccessRules) -> SocksForward {
        self.destinations = Some(Arc::new(AccessControl::fixed(rules)));
        self
    }

    /// As [`SocksForward::destinations`], with rules that can be read again while the
    /// proxy runs ([`AccessControl::reload`]: `forward --socks-allow-file` on SIGHUP); each
    /// request is checked against the rules in force when it comes.
    pub fn destination_control(mut self, control: Arc<AccessControl>) -> SocksForward {
        self.destinations = Some(control);
        self
    }

    /// Bounds a client's greeting and request, and then the connect to its target.
    pub fn timeout(mut self, timeout: Duration) -> SocksForward {
        self.timeout = timeout;
        self
    }
}

impl Handler for SocksForward {
    /// The target's socket, made after the accept.
    fn opens_descriptors(&self) -> bool {
        true
    }

    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let proxy = self.clone();
        async move {
            // The users in force when the client came, whatever a reload does meanwhile.
            let users = proxy.users.as_ref().map(|users| users.load_full());
            serve(
                conn,
                proxy.timeout,
                users.as_deref(),
                proxy.destinations.as_deref(),
            )
            .await
        }
    }
}

async fn serve(
    mut client: Connection,
    timeout: Duration,
    users: Option<&SocksUsers>,
    destinations: Option<&AccessControl>,
) -> io::Result<()> {
    // The limit counts time the relay ran: a request that came while it was stopped is
    // in time.
    let asked =
        crate::net::within_running(timeout, std::pin::pin!(wire::request(&mut client, users)))
            .await
            .ok_or(());
    let (version, request) = match asked {
        Ok(Ok(Some(asked))) => asked,
        // Not SOCKS, no method in common, or the client went: nothing to answer.
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(err)) => {
            tracing::debug!(peer = %client.peer_addr(), "socks: {}", crate::error::describe(&err));
            return Ok(());
        }
        Err(_) => {
            tracing::debug!(peer = %client.peer_addr(), "socks: no request within {timeout:?}");
            return Ok(());
        }
    };
    let target = match request {
        Request::Connect(target) => target,
        Request::Refuse(code) => return answer(&mut client, version, code, None).await,
    };
    let attempt = async {
        match destinations {
            None => net::connect_stream(&target, None).await.map(Some),
            Some(control) => connect_admitted(&target, &control.rules()).await,
        }
    };
    let connected = tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
    // The accept loop may be waiting for this client's descriptor before the next.
    crate::server::handler_opened();
    let upstream = match connected {
        Ok(Some(stream)) => stream,
        Ok(None) => {
            tracing::info!(
                peer = %client.peer_addr(),
                "socks: {target} is not an allowed destination"
            );
            return answer(&mut client, version, NOT_ALLOWED, None).await;
        }
        // The proxy, not the target, is out of descriptors: the next clients wait in the
        // backlog rather than each being told "general failure".
        Err(err) if net::is_resource_exhaustion(&err) => {
            out_of_resources(
                &client,
                format_args!("socks target {target}"),
                &err,
                "failing",
            );
            return answer(&mut client, version, refusal(&err), None).await;
        }
        Err(err) => {
            tracing::debug!(
                peer = %client.peer_addr(),
                "socks: cannot reach {target}: {}",
                crate::error::describe(&err)
            );
            return answer(&mut client, version, refusal(&err), None).await;
        }
    };
    let bound = match &upstream {
        Stream::Tcp(tcp) => tcp.local_addr().ok(),
        Stream::Unix(_) => None,
    };
    answer(&mut client, version, 0, bound).await?;
    tracing::debug!(peer = %client.peer_addr(), "socks: relaying to {target}");
    relay_to(client, Upstream::Plain(upstream), &[]).await
}

/// A connection to the first of `target`'s addresses (a name resolved here) that `rules`
/// admit and that takes it; `None` when the rules admit none of them.
async fn connect_admitted(target: &Endpoint, rules: &AccessRules) -> io::Result<Option<Stream>> {
    let Some(hp) = target.host_port() else {
        return Ok(None);
    };
    let addresses: Vec<SocketAddr> = match &hp.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, hp.port)],
        Host::Name(name) => net::lookup(name, hp.port).await?,
        Host::Any => Vec::new(),
    };
    let admitted: Vec<SocketAddr> = addresses
        .into_iter()
        .map(|address| SocketAddr::new(host_reached(address.ip()), address.port()))
        .filter(|address| rules.admits(address.ip()))
        .collect();
    if admitted.is_empty() {
        return Ok(None);
    }
    // Raced (Happy Eyeballs), as a connect without rules is.
    let stream = net::race_tcp(admitted).await?;
    stream.set_nodelay(true)?;
    Ok(Some(Stream::Tcp(stream)))
}

/// The host a connect to `ip` reaches: Linux takes an unspecified destination (`0.0.0.0`,
/// `::`, `::ffff:0.0.0.0`) for the machine itself, so the rules must see it as loopback, or
/// `--socks-deny 127.0.0.0/8` would let `0.0.0.0:PORT` through to a loopback-only service.
fn host_reached(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified()) => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The reply a failed connect maps to.
fn refusal(err: &io::Error) -> u8 {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => 5,
        io::ErrorKind::NetworkUnreachable => 3,
        // A name that does not resolve, or a host that does not answer in time.
        io::ErrorKind::HostUnreachable | io::ErrorKind::TimedOut | io::ErrorKind::NotFound => 4,
        _ if err.raw_os_error().is_none() => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_destination_is_the_machine_itself() {
        let reached = |text: &str| host_reached(text.parse().expect("an address")).to_string();
        assert_eq!(reached("0.0.0.0"), "127.0.0.1");
        assert_eq!(reached("::ffff:0.0.0.0"), "127.0.0.1");
        assert_eq!(reached("::"), "::1");
        assert_eq!(reached("10.1.2.3"), "10.1.2.3");
        assert_eq!(reached("::ffff:10.1.2.3"), "::ffff:10.1.2.3");
    }

    #[test]
    fn user_lists_say_which_line_is_wrong() {
        let users = SocksUsers::from_text("\r\n# c\r\na:1\r\nb:\r\n").expect("two users");
        assert!(users.admits(b"a", b"1") && users.admits(b"b", b""));
        assert!(!users.admits(b"a", b"") && !users.admits(b"c", b"1"));
        assert!(!format!("{users:?}").contains('1'), "{users:?}");
        let refused = |text: &str| SocksUsers::from_text(text).expect_err(text);
        assert_eq!(refused("a:1\nx"), "line 2: expected USER:PASSWORD");
        assert_eq!(refused(":pw"), "line 1: empty user name");
        assert_eq!(refused("a:1\na:2"), "line 2: user 'a' is named twice");
        assert!(refused(&format!("a:{}", "p".repeat(256))).contains("255 bytes"));
        assert_eq!(refused("# nobody\n"), "no USER:PASSWORD line");
    }
}
