//! A SOCKS5 proxy (RFC 1928) as a relay whose target each client names, as `ssh -D` and
//! microsocks serve one: `socketkit forward -l 127.0.0.1:1080 --socks`. A client greets,
//! asks to `CONNECT` to an address or a name (resolved here), and once the target has taken
//! the connection, the relay is [`super::Forward`]'s (splice, half-closes passed on, a
//! failure on one side reset on the other).
//!
//! No authentication method but "none" is offered: who may use the proxy is the server's
//! access control (`--allow`, `--deny`, `--max-per-source`) and where it listens. `BIND` and
//! `UDP ASSOCIATE` are answered "command not supported" (reply 7). A client that has not
//! finished its request within the connect timeout is closed; a target that cannot be
//! reached is answered with the reply a direct connect's error maps to (refused 5, host
//! unreachable 4, network unreachable 3, anything else 1), and said at debug level.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Upstream, relay_to};
use crate::endpoint::{Endpoint, Host, HostPort};
use crate::net::{self, Stream};
use crate::server::{Connection, Handler};

// RFC 1928's numbers (the client side, `client::proxy`, has its own: a layer's private
// module is not another's to reach into).
const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CONNECT: u8 = 1;
const IPV4: u8 = 1;
const DOMAIN_NAME: u8 = 3;
const IPV6: u8 = 4;

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
        }
    }

    /// Bounds a client's greeting and request, and then the connect to its target.
    pub fn timeout(mut self, timeout: Duration) -> SocksForward {
        self.timeout = timeout;
        self
    }
}

impl Handler for SocksForward {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let timeout = self.timeout;
        async move { serve(conn, timeout).await }
    }
}

/// What a request came to: the target, or the reply that refuses it.
enum Request {
    Connect(Endpoint),
    Refuse(u8),
}

async fn serve(mut client: Connection, timeout: Duration) -> io::Result<()> {
    let request = match tokio::time::timeout(timeout, request(&mut client)).await {
        Ok(Ok(Some(request))) => request,
        // Not SOCKS5, no method in common, or the client went: nothing to answer.
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
        Request::Refuse(code) => return answer(&mut client, code, None).await,
    };
    let connected = tokio::time::timeout(timeout, net::connect_stream(&target, None))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
    let upstream = match connected {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!(
                peer = %client.peer_addr(),
                "socks: cannot reach {target}: {}",
                crate::error::describe(&err)
            );
            return answer(&mut client, refusal(&err), None).await;
        }
    };
    let bound = match &upstream {
        Stream::Tcp(tcp) => tcp.local_addr().ok(),
        Stream::Unix(_) => None,
    };
    answer(&mut client, 0, bound).await?;
    tracing::debug!(peer = %client.peer_addr(), "socks: relaying to {target}");
    relay_to(client, Upstream::Plain(upstream)).await
}

/// Reads the greeting (answering it) and the request, to its last byte: `None` when the
/// client is no SOCKS5 client or offers no method we take (told so first).
async fn request(client: &mut Connection) -> io::Result<Option<Request>> {
    let [version, count] = read::<2>(client).await?;
    if version != VERSION {
        return Ok(None);
    }
    let mut methods = vec![0u8; usize::from(count)];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTHENTICATION) {
        client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Ok(None);
    }
    client.write_all(&[VERSION, NO_AUTHENTICATION]).await?;
    let [version, command, _reserved, kind] = read::<4>(client).await?;
    if version != VERSION {
        return Ok(None);
    }
    let host = match kind {
        IPV4 => Host::Ip(IpAddr::V4(Ipv4Addr::from(read::<4>(client).await?))),
        IPV6 => Host::Ip(IpAddr::V6(Ipv6Addr::from(read::<16>(client).await?))),
        DOMAIN_NAME => {
            let [len] = read::<1>(client).await?;
            let mut name = vec![0u8; usize::from(len)];
            client.read_exact(&mut name).await?;
            // A name the endpoint grammar takes, or none at all (it is never resolved).
            let name = String::from_utf8(name).ok().filter(|name| {
                format!("tcp:{name}:1").parse::<Endpoint>().is_ok_and(|e| {
                    matches!(
                        e.host_port(),
                        Some(HostPort {
                            host: Host::Name(_),
                            ..
                        })
                    )
                })
            });
            match name {
                Some(name) => Host::Name(name),
                None => {
                    read::<2>(client).await?;
                    return Ok(Some(Request::Refuse(4)));
                }
            }
        }
        // Address type not supported.
        _ => return Ok(Some(Request::Refuse(8))),
    };
    let port = u16::from_be_bytes(read::<2>(client).await?);
    if command != CONNECT {
        // BIND and UDP ASSOCIATE: command not supported.
        return Ok(Some(Request::Refuse(7)));
    }
    Ok(Some(Request::Connect(Endpoint::Tcp(HostPort {
        host,
        port,
    }))))
}

/// The reply: `code`, and the address the proxy connected from (zeros when there is none).
async fn answer(client: &mut Connection, code: u8, bound: Option<SocketAddr>) -> io::Result<()> {
    let bound = bound.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut reply = vec![VERSION, code, 0];
    match bound.ip() {
        IpAddr::V4(v4) => {
            reply.push(IPV4);
            reply.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            reply.push(IPV6);
            reply.extend_from_slice(&v6.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&reply).await?;
    client.flush().await
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

async fn read<const N: usize>(client: &mut Connection) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    client.read_exact(&mut buf).await?;
    Ok(buf)
}
