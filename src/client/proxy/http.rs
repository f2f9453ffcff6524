//! HTTP's `CONNECT` (RFC 9110 §9.3.6): one request naming the target, and the proxy's answer
//! read up to its blank line and no further, for what follows is the target's.

use std::io;

use base64::Engine;

use super::{Credentials, closed_early, socks5::receive_into};
use crate::endpoint::HostPort;
use crate::error::Error;
use crate::socket::Socket;

/// The longest answer head taken from a proxy.
const MAX_HEAD: usize = 16 * 1024;

/// Asks the proxy on `socket` for a tunnel to `target`; `Ok` on a 2xx answer.
pub(super) fn handshake(
    socket: &Socket,
    target: &HostPort,
    credentials: Option<&Credentials>,
) -> io::Result<()> {
    // The authority form (`host:port`, an IPv6 address in brackets): the proxy resolves.
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = credentials {
        let pair = [&credentials.user[..], b":", &credentials.password].concat();
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    socket
        .sendall(request.as_bytes())
        .map_err(Error::into_io_error)?;
    let head = read_head(socket)?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut answer = httparse::Response::new(&mut headers);
    let parsed = answer.parse(&head);
    let (Ok(httparse::Status::Complete(_)), Some(code)) = (parsed, answer.code) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the proxy's answer is not HTTP",
        ));
    };
    if (200..300).contains(&code) {
        return Ok(());
    }
    let status = format!("HTTP {code} {}", answer.reason.unwrap_or("").trim());
    let status = status.trim_end();
    Err(match (code, credentials) {
        (407, None) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the proxy wants a user name and password (http://USER:PASSWORD@HOST): {status}"
            ),
        ),
        (407, Some(_)) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the proxy refused the user name and password: {status}"),
        ),
        (401 | 403 | 405, _) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the proxy refused: {status}"),
        ),
        (504, _) => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the proxy could not connect: {status}"),
        ),
        (500.., _) => io::Error::other(format!("the proxy could not connect: {status}")),
        _ => io::Error::other(format!("the proxy refused: {status}")),
    })
}

/// The answer's head, through its blank line: peeked first, so that only the head's bytes
/// are taken from the socket.
fn read_head(socket: &Socket) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut peeked = vec![0u8; MAX_HEAD];
    loop {
        let n = match socket.peek(&mut peeked[..MAX_HEAD - head.len()]) {
            Ok(0) => return Err(closed_early()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.into_io_error()),
        };
        // The blank line may begin in what was taken before.
        let from = head.len().saturating_sub(3);
        let seen = [&head[from..], &peeked[..n]].concat();
        let take = match seen.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => from + at + 4 - head.len(),
            None => n,
        };
        let start = head.len();
        head.resize(start + take, 0);
        receive_into(socket, &mut head[start..])?;
        if head.ends_with(b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the proxy's answer has no end within 16 KiB",
            ));
        }
    }
}
