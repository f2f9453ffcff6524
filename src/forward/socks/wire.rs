//! The SOCKS wire: a client's greeting and request, read to their last byte, and the reply,
//! for SOCKS5 (RFC 1928, with RFC 1929's user name and password) and SOCKS4 and SOCKS4a
//! (what `ssh -D` also serves: a request with a user id and no password, IPv4 addresses,
//! and in 4a a name after the user id).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::SocksUsers;
use crate::endpoint::{Endpoint, Host, HostPort};
use crate::server::Connection;

// RFC 1928's numbers (the client side, `client::proxy`, has its own: a layer's private
// module is not another's to reach into).
const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CONNECT: u8 = 1;
const IPV4: u8 = 1;
const DOMAIN_NAME: u8 = 3;
const IPV6: u8 = 4;
/// Reply 2: "connection not allowed by ruleset".
pub(super) const NOT_ALLOWED: u8 = 2;
/// SOCKS4's version byte, and its two replies: granted, and rejected or failed (one code
/// for every refusal).
const VERSION4: u8 = 4;
const GRANTED4: u8 = 0x5A;
const REJECTED4: u8 = 0x5B;
/// The longest user id or name a SOCKS4 request may carry (each ends at a NUL byte).
const MAX_FIELD4: usize = 255;

/// What a request came to: the target, or the reply that refuses it (a SOCKS5 code; a
/// SOCKS4 client is told "rejected" whatever it is).
pub(super) enum Request {
    Connect(Endpoint),
    Refuse(u8),
}

/// The protocol a client spoke, for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    Socks4,
    Socks5,
}

/// Reads a request to its last byte, as the client's first byte says: a SOCKS5 greeting
/// (answered), the user name and password when `users` are asked for, and the request; or a
/// SOCKS4 request. `None` when the client speaks neither, offers no method we take, or is
/// not admitted (told so first).
pub(super) async fn request(
    client: &mut Connection,
    users: Option<&SocksUsers>,
) -> io::Result<Option<(Version, Request)>> {
    let [version] = read::<1>(client).await?;
    match version {
        VERSION => Ok(request5(client, users)
            .await?
            .map(|request| (Version::Socks5, request))),
        VERSION4 => Ok(Some((Version::Socks4, request4(client, users).await?))),
        _ => Ok(None),
    }
}

/// A SOCKS4 request after its version byte: command, port, address, user id (and, for
/// SOCKS4a, whose address is 0.0.0.x, the name after it). SOCKS4 has no password, so a
/// proxy that asks for users refuses it.
async fn request4(client: &mut Connection, users: Option<&SocksUsers>) -> io::Result<Request> {
    let [command, port_high, port_low, a, b, c, d] = read::<7>(client).await?;
    let _user = read_nul_ended(client).await?;
    let port = u16::from_be_bytes([port_high, port_low]);
    let host = if [a, b, c] == [0, 0, 0] && d != 0 {
        match host_named(&read_nul_ended(client).await?) {
            Some(host) => host,
            None => return Ok(Request::Refuse(4)),
        }
    } else {
        Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    };
    if users.is_some() {
        tracing::debug!(
            peer = %client.peer_addr(),
            "socks: a SOCKS4 client has no password to give"
        );
        return Ok(Request::Refuse(NOT_ALLOWED));
    }
    if command != CONNECT {
        return Ok(Request::Refuse(7));
    }
    Ok(Request::Connect(Endpoint::Tcp(HostPort { host, port })))
}

/// Bytes up to a NUL (not included), at most [`MAX_FIELD4`] of them. On a plain socket
/// what has arrived is peeked first, so that the field is taken with one read up to its
/// NUL instead of a read per byte (and no byte after it: the name of SOCKS4a, or anything
/// else, stays for whoever reads next); a TLS session's bytes are taken one at a time from
/// its buffer.
async fn read_nul_ended(client: &mut Connection) -> io::Result<Vec<u8>> {
    let mut field = Vec::new();
    let mut peeked = [0u8; MAX_FIELD4 + 1];
    loop {
        let take = match client.peek(&mut peeked).await {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(seen) => peeked[..seen]
                .iter()
                .position(|&byte| byte == 0)
                .map_or(seen, |nul| nul + 1),
            Err(err) if err.kind() == io::ErrorKind::Unsupported => 1,
            Err(err) => return Err(err),
        };
        let start = field.len();
        field.resize(start + take, 0);
        client.read_exact(&mut field[start..]).await?;
        if field.last() == Some(&0) {
            field.pop();
            return Ok(field);
        }
        if field.len() > MAX_FIELD4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a SOCKS4 field longer than 255 bytes",
            ));
        }
    }
}

/// The host a request names as text: a host name the endpoint grammar takes (a name is
/// never resolved otherwise), or an address written out (curl's SOCKS4a sends one so).
fn host_named(name: &[u8]) -> Option<Host> {
    let name = std::str::from_utf8(name).ok()?;
    let endpoint = format!("tcp:{name}:1").parse::<Endpoint>().ok()?;
    match endpoint.host_port()?.host.clone() {
        Host::Any => None,
        host => Some(host),
    }
}

/// A SOCKS5 greeting after its version byte, and what follows it.
async fn request5(
    client: &mut Connection,
    users: Option<&SocksUsers>,
) -> io::Result<Option<Request>> {
    let [count] = read::<1>(client).await?;
    let mut methods = vec![0u8; usize::from(count)];
    client.read_exact(&mut methods).await?;
    let wanted = match users {
        Some(_) => USER_PASSWORD,
        None => NO_AUTHENTICATION,
    };
    if !methods.contains(&wanted) {
        client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Ok(None);
    }
    client.write_all(&[VERSION, wanted]).await?;
    if let Some(users) = users {
        // RFC 1929: a version byte, then the user name and the password, each after its length.
        let [auth_version, len] = read::<2>(client).await?;
        if auth_version != 1 {
            // Not RFC 1929's sub-negotiation (its version is 1): failure, and the close.
            tracing::debug!(
                peer = %client.peer_addr(),
                "socks: refused a password sub-negotiation of version {auth_version}"
            );
            client.write_all(&[1, 1]).await?;
            return Ok(None);
        }
        let mut user = vec![0u8; usize::from(len)];
        client.read_exact(&mut user).await?;
        let [len] = read::<1>(client).await?;
        let mut password = vec![0u8; usize::from(len)];
        client.read_exact(&mut password).await?;
        if !users.admits(&user, &password) {
            tracing::debug!(
                peer = %client.peer_addr(),
                "socks: refused user {}",
                crate::error::log_word(&String::from_utf8_lossy(&user))
            );
            client.write_all(&[1, 1]).await?;
            return Ok(None);
        }
        client.write_all(&[1, 0]).await?;
    }
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
            match host_named(&name) {
                Some(host) => host,
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

/// The reply: `code` (a SOCKS5 one: 0 is success), and the address the proxy connected
/// from (zeros when there is none); to a SOCKS4 client, granted or rejected.
pub(super) async fn answer(
    client: &mut Connection,
    version: Version,
    code: u8,
    bound: Option<SocketAddr>,
) -> io::Result<()> {
    let bound = bound.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let reply = match version {
        Version::Socks4 => {
            let verdict = if code == 0 { GRANTED4 } else { REJECTED4 };
            let address = match bound.ip() {
                IpAddr::V4(v4) => v4.octets(),
                IpAddr::V6(_) => [0; 4],
            };
            let mut reply = vec![0, verdict];
            reply.extend_from_slice(&bound.port().to_be_bytes());
            reply.extend_from_slice(&address);
            reply
        }
        Version::Socks5 => {
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
            reply
        }
    };
    client.write_all(&reply).await?;
    client.flush().await
}

async fn read<const N: usize>(client: &mut Connection) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    client.read_exact(&mut buf).await?;
    Ok(buf)
}
