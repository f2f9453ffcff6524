//! Running a proxy handshake over a socket: blocking on a [`Socket`] for `connect`, on a
//! tokio stream for `forward`. The protocols ([`super::socks5`], [`super::http`]) only say
//! what to send and how much to receive ([`Step`]); both drivers read exactly that much — an
//! HTTP answer's head is peeked first and only its own bytes taken — so that what follows
//! stays in the socket for the caller: the target's first bytes.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{self, HttpConnect, MAX_HEAD};
use super::socks4::Socks4;
use super::socks5::Socks5;
use crate::error::Error;
use crate::socket::Socket;

/// What a handshake needs next.
#[derive(Debug)]
pub(super) enum Step {
    /// Send `send` (nothing when empty), then receive as `then` says, and hand what came to
    /// the handshake's next call.
    Exchange { send: Vec<u8>, then: Receive },
    /// The proxy said yes: the socket is the target's.
    Done,
}

/// How much a step receives.
#[derive(Debug)]
pub(super) enum Receive {
    /// Exactly this many bytes.
    Exactly(usize),
    /// An HTTP answer's head, through its blank line.
    HttpHead,
}

/// A handshake of either protocol.
pub(super) enum Handshake<'a> {
    Socks5(Socks5<'a>),
    Socks4(Socks4<'a>),
    Http(HttpConnect<'a>),
}

impl Handshake<'_> {
    fn next(&mut self, received: &[u8]) -> io::Result<Step> {
        match self {
            Handshake::Socks5(socks5) => socks5.next(received),
            Handshake::Socks4(socks4) => socks4.next(received),
            Handshake::Http(http) => http.next(received),
        }
    }
}

/// Runs `handshake` on a blocking socket, all of it by `deadline`: each send and receive
/// is bounded by the time left (a proxy that answers a byte at a time cannot hold it past
/// `-w`); past it only what has come already is taken, and the first wait for more fails
/// (`WouldBlock`, the socket's timeout).
pub(super) fn run_blocking(
    socket: &Socket,
    mut handshake: Handshake<'_>,
    deadline: Instant,
) -> io::Result<()> {
    let mut received = Vec::new();
    loop {
        let Step::Exchange { send, then } = handshake.next(&received)? else {
            return Ok(());
        };
        if !send.is_empty() {
            bound(socket, deadline)?;
            socket.sendall(&send).map_err(Error::into_io_error)?;
        }
        received = match then {
            Receive::Exactly(n) => {
                let mut buf = vec![0u8; n];
                receive_into(socket, &mut buf, deadline)?;
                buf
            }
            Receive::HttpHead => {
                let mut head = Vec::new();
                let mut peeked = vec![0u8; MAX_HEAD];
                loop {
                    bound(socket, deadline)?;
                    let n = match socket.peek(&mut peeked[..MAX_HEAD - head.len()]) {
                        Ok(0) => return Err(closed_early()),
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => return Err(err.into_io_error()),
                    };
                    let start = head.len();
                    head.resize(start + http::head_part(&head, &peeked[..n]), 0);
                    receive_into(socket, &mut head[start..], deadline)?;
                    if http::head_is_whole(&head)? {
                        break head;
                    }
                }
            }
        };
    }
}

/// How long each wait lasts once the deadline has passed: only what is there already is
/// taken.
const PAST_DEADLINE: Duration = Duration::from_millis(1);

/// Sets `socket`'s timeout to what is left until `deadline`; once none is, to a look at
/// what is there already, whose wait then fails with the timeout's error. A client stopped
/// past the deadline (^Z, a debugger, a paused VM) wakes with its blocked receive
/// interrupted and the proxy's answer, which came during the stop, unread (an outside
/// audit: 8 of 8 such runs ended `the proxy did not answer within 1s`). The looks end as
/// soon as one finds nothing, and the answer's size is bounded: they cannot go on.
fn bound(socket: &Socket, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    socket
        .set_timeout(Some(left.max(PAST_DEADLINE)))
        .map_err(Error::into_io_error)
}

/// Fills `buf` from the socket by `deadline`: the proxy's answers are short and may come in
/// pieces.
fn receive_into(socket: &Socket, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        bound(socket, deadline)?;
        match socket.recv_into(&mut buf[filled..]) {
            Ok(0) => return Err(closed_early()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into_io_error()),
        }
    }
    Ok(())
}

/// Runs `handshake` on a tokio stream (the caller bounds the whole in time).
pub(super) async fn run_async(
    stream: &mut TcpStream,
    mut handshake: Handshake<'_>,
) -> io::Result<()> {
    let mut received = Vec::new();
    loop {
        let Step::Exchange { send, then } = handshake.next(&received)? else {
            return Ok(());
        };
        if !send.is_empty() {
            stream.write_all(&send).await?;
        }
        received = match then {
            Receive::Exactly(n) => {
                let mut buf = vec![0u8; n];
                stream.read_exact(&mut buf).await.map_err(early_end)?;
                buf
            }
            Receive::HttpHead => {
                let mut head = Vec::new();
                let mut peeked = vec![0u8; MAX_HEAD];
                loop {
                    let n = stream.peek(&mut peeked[..MAX_HEAD - head.len()]).await?;
                    if n == 0 {
                        return Err(closed_early());
                    }
                    let start = head.len();
                    head.resize(start + http::head_part(&head, &peeked[..n]), 0);
                    stream
                        .read_exact(&mut head[start..])
                        .await
                        .map_err(early_end)?;
                    if http::head_is_whole(&head)? {
                        break head;
                    }
                }
            }
        };
    }
}

/// An end of stream in the middle of an answer, said as the proxy's.
fn early_end(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => closed_early(),
        _ => err,
    }
}

/// The proxy closed before it had answered in full.
fn closed_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the proxy closed the connection before it answered",
    )
}
