//! [`Connection`]: one accepted stream (TCP or Unix, plain or TLS) with its peer and local
//! address, read and written through tokio's `AsyncRead`/`AsyncWrite`, with the server's idle
//! timeout built in.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::idle_timer::IdleTimer;
use super::meter::{Meter, Tally};
use super::program::ProgramConnection;
use super::tls::{self, TlsStream};
use crate::net::Stream;
use crate::socket::Address;

/// What a connection reads and writes: the accepted stream, or a TLS session over it.
#[derive(Debug)]
enum Io {
    Plain(Stream),
    // Boxed: a session is about 1 KiB that plain connections should not carry.
    Tls(Box<TlsStream>),
    /// The stream is in the TLS stage's handshake; nothing else may use it meanwhile.
    Handshaking,
}

/// What every operation on a connection in its handshake answers.
fn in_handshake() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection is in its TLS handshake",
    )
}

/// An accepted connection, handed to a server's handler.
///
/// Read and write it with `tokio::io::{AsyncReadExt, AsyncWriteExt}`; [`Connection::split`]
/// gives separate read and write halves. On a `tls:` listener the bytes are the TLS
/// session's: shutting down sends close_notify before the half-close, and a client that
/// hangs up without close_notify is a read error ([`io::ErrorKind::UnexpectedEof`]), not an
/// end of stream. When the server has an idle
/// timeout, a read or write that waits longer than it with no bytes moving either way fails
/// with [`io::ErrorKind::TimedOut`].
#[derive(Debug)]
pub struct Connection {
    // The peer, and what the connection counts for the metrics and its closing log line.
    // Declared first, so dropped first: the connection is counted as closed before its
    // socket closes, and a client that has seen the close finds it counted.
    meter: Meter,
    io: Io,
    // Boxed: most servers set no idle timeout, and a None costs 8 bytes instead of 48 in
    // every connection's task.
    idle: Option<Box<IdleTimer>>,
    /// Whether the close needs no half-close first: the handler half-closed, a read or
    /// write failed, or the close is to be a reset (see `Drop`). Atomic only for
    /// `reset_on_close`, which takes `&self`.
    settled: AtomicBool,
}

impl Connection {
    pub(crate) fn new(stream: Stream, meter: Meter, idle_timeout: Option<Duration>) -> Connection {
        Connection {
            meter,
            io: Io::Plain(stream),
            idle: idle_timeout.map(|limit| Box::new(IdleTimer::new(limit))),
            settled: AtomicBool::new(false),
        }
    }

    /// The stream (under TLS, the one the session runs over), for socket options the
    /// handler sets on it; `None` during the TLS handshake.
    pub(crate) fn stream(&self) -> Option<&Stream> {
        match &self.io {
            Io::Plain(stream) => Some(stream),
            Io::Tls(tls) => Some(tls.get_ref().0),
            Io::Handshaking => None,
        }
    }

    /// Takes the plain stream for the TLS stage's handshake ([`Connection::set_tls`] puts
    /// the session in its place); `None` if it is not plain.
    pub(crate) fn take_plain(&mut self) -> Option<Stream> {
        match std::mem::replace(&mut self.io, Io::Handshaking) {
            Io::Plain(stream) => Some(stream),
            other => {
                self.io = other;
                None
            }
        }
    }

    /// The session the TLS stage made: from now on the connection's bytes are its.
    pub(crate) fn set_tls(&mut self, session: TlsStream) {
        self.io = Io::Tls(Box::new(session));
    }

    /// The stream, the idle limit and the meter, for a blocking handler's connection; a TLS
    /// connection comes back as it is, for its bytes are not the socket's.
    pub(crate) fn into_plain_parts(
        mut self,
    ) -> Result<(Stream, Option<Duration>, Meter), Connection> {
        let Some(stream) = self.take_plain() else {
            return Err(self);
        };
        let (meter, idle) = self.take_rest();
        Ok((stream, idle.map(|idle| idle.limit()), meter))
    }

    /// The meter and the idle timer, taken out of a connection whose stream is gone (so
    /// that dropping what is left closes nothing).
    fn take_rest(&mut self) -> (Meter, Option<Box<IdleTimer>>) {
        let meter = std::mem::replace(&mut self.meter, Meter::detached());
        (meter, self.idle.take())
    }

    /// The connection with its socket handed to a program as its stdin and stdout (the
    /// exec service; see [`ProgramConnection`]). It comes back as it is when its bytes
    /// are not the socket's (TLS), or when the server's idle timeout could not be kept
    /// without reading it (a Unix stream).
    pub(crate) fn into_program(mut self) -> Result<ProgramConnection, Connection> {
        let Some(stream) = self.take_plain() else {
            return Err(self);
        };
        let (meter, idle) = self.take_rest();
        let limit = idle.as_ref().map(|idle| idle.limit());
        ProgramConnection::new(stream, meter, limit).map_err(|(stream, meter)| Connection {
            meter,
            io: Io::Plain(stream),
            idle,
            settled: AtomicBool::new(false),
        })
    }

    /// The stream, the idle limit and the byte counters (received, sent), for code that
    /// moves the bytes itself (the splice relay of `forward`); `None` for a TLS connection,
    /// whose bytes are not the socket's.
    pub(crate) fn plain_parts(
        &mut self,
    ) -> Option<(&Stream, Option<Duration>, (Tally<'_>, Tally<'_>))> {
        let idle = self.idle.as_ref().map(|idle| idle.limit());
        match &self.io {
            Io::Plain(stream) => Some((stream, idle, self.meter.tallies())),
            Io::Tls(_) | Io::Handshaking => None,
        }
    }

    /// The server's idle timeout for this connection, if there is one.
    pub(crate) fn idle_limit(&self) -> Option<Duration> {
        self.idle.as_ref().map(|idle| idle.limit())
    }

    /// The meter, for an admission stage's refusal.
    pub(crate) fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The connection's counts, to change.
    pub(crate) fn meter_mut(&mut self) -> &mut Meter {
        &mut self.meter
    }

    /// Makes the close a reset, for a connection refused by an admission stage.
    pub(crate) fn reset_on_close(&self) {
        self.settled.store(true, Ordering::Relaxed);
        if let Some(stream) = self.stream() {
            stream.reset_on_close();
        }
    }

    /// Notes that both directions have ended by code that moved the bytes itself (the
    /// splice relay): the close needs no half-close first.
    pub(crate) fn set_ended(&mut self) {
        *self.settled.get_mut() = true;
    }

    /// Whether the connection speaks TLS (it came in on a `tls:` listener).
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// The application protocol (ALPN) the client and server agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.io {
            Io::Tls(tls) => tls.get_ref().1.alpn_protocol(),
            Io::Plain(_) | Io::Handshaking => None,
        }
    }

    /// The server name the client asked for in its TLS handshake (SNI), on a `tls:`
    /// listener.
    pub fn server_name(&self) -> Option<&str> {
        match &self.io {
            Io::Tls(tls) => tls.get_ref().1.server_name(),
            Io::Plain(_) | Io::Handshaking => None,
        }
    }

    /// What the connection's TLS session is (its version, SNI, ALPN, the client's
    /// certificate), on a `tls:` listener.
    pub fn tls_session(&self) -> Option<crate::tls::TlsSession> {
        match &self.io {
            Io::Tls(tls) => Some(crate::tls::TlsSession::of(tls.get_ref().1)),
            Io::Plain(_) | Io::Handshaking => None,
        }
    }

    /// What the load balancer's PROXY v2 header told of the client besides its address
    /// (the server name it asked for, its protocol, its TLS version and certificate), with
    /// `--proxy-protocol` behind a proxy that terminated TLS; `None` when it told nothing.
    pub fn proxy_tlvs(&self) -> Option<&crate::proxy_protocol::Tlvs> {
        self.meter.told()
    }

    /// The address of the client; an IPv4 client of a dual-stack listener as its IPv4
    /// address ([`Address::to_canonical`]), not the IPv4-mapped IPv6 one.
    pub fn peer_addr(&self) -> &Address {
        self.meter.peer()
    }

    /// Replaces the client's address with the one an admission stage learned (the PROXY
    /// protocol's header names the real client behind a load balancer): the stages after
    /// it, the handler, the logs and the metrics see this one.
    pub fn set_peer_addr(&mut self, peer: Address) {
        self.meter.set_peer(peer);
    }

    /// The address the client connected to.
    ///
    /// Asked of the socket (`getsockname(2)`) when called, rather than stored for every
    /// connection: most handlers never need it.
    ///
    /// # Errors
    ///
    /// The socket is no longer connected.
    pub fn local_addr(&self) -> io::Result<Address> {
        self.stream().ok_or_else(in_handshake)?.local_addr()
    }

    /// The address the client connected to as a PROXY header told it (`--proxy-protocol`:
    /// the load balancer's), if one did.
    pub(crate) fn proxied_destination(&self) -> Option<std::net::SocketAddr> {
        self.meter.destination()
    }

    /// Splits the connection into a read half and a write half, to read and write from two
    /// tasks or two futures at once (a thin wrapper over [`tokio::io::split`]).
    ///
    /// # Caveats
    ///
    /// With an idle timeout, the timer wakes only the half that polled it last; keep both
    /// halves in one task (for example in a `join!`) for the timeout to reach both.
    pub fn split(
        self,
    ) -> (
        tokio::io::ReadHalf<Connection>,
        tokio::io::WriteHalf<Connection>,
    ) {
        tokio::io::split(self)
    }

    /// Waits until the client has sent something (or closed), without reading it: a handler
    /// can then allocate its buffer only for connections that have data, so an idle
    /// connection costs no buffer.
    pub async fn readable(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// [`Connection::readable`] as a poll function, for hand-written futures.
    pub(crate) fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = match &mut self.io {
            Io::Plain(stream) => stream.poll_read_ready(cx),
            Io::Tls(session) => tls::poll_readable(session, cx),
            Io::Handshaking => Poll::Ready(Err(in_handshake())),
        };
        self.account(cx, poll)
    }

    /// Reads what has arrived without waiting: `Ok(0)` is end of stream, `WouldBlock`
    /// means nothing is there yet (wait with [`Connection::readable`]). A read shorter than
    /// `buf` is taken to have emptied the socket, so the next call answers `WouldBlock`
    /// without a system call until the kernel reports more.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = match &mut self.io {
            Io::Plain(stream) => stream.try_read(buf),
            Io::Tls(session) => tls::try_read(session, buf),
            Io::Handshaking => Err(in_handshake()),
        };
        let n = match read {
            Ok(n) => n,
            Err(err) => {
                if err.kind() != io::ErrorKind::WouldBlock {
                    self.failed(&err);
                }
                return Err(err);
            }
        };
        self.progress();
        self.meter.received(n);
        Ok(n)
    }

    /// Waits until the client has sent something (or closed), then copies what has
    /// arrived into `buf` without taking it off the socket (`MSG_PEEK`): the next read or
    /// peek sees the same bytes. `Ok(0)` is end of stream. For the stages before TLS (the
    /// PROXY header): on a TLS session it is an error.
    pub(crate) async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Io::Plain(stream) = &self.io else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "peeking is for the plain stream before TLS",
            ));
        };
        let n = stream.peek(buf).await?;
        self.progress();
        Ok(n)
    }

    /// Takes `buf.len()` bytes that [`Connection::peek`] has shown are there, without
    /// counting them: the stage that reads them (the PROXY header) counts what it took
    /// once it admits the connection, for a refused one received no byte of the service.
    pub(crate) async fn take_peeked(&mut self, buf: &mut [u8]) -> io::Result<()> {
        use tokio::io::AsyncReadExt;
        let Io::Plain(stream) = &mut self.io else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "peeking is for the plain stream before TLS",
            ));
        };
        stream.read_exact(buf).await?;
        self.progress();
        Ok(())
    }

    fn progress(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.progressed();
        }
    }

    /// Maps a poll result: progress re-arms the idle timer, pending checks it.
    fn account<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let poll = match poll {
            Poll::Ready(result) => {
                if result.is_ok() {
                    self.progress();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match &mut self.idle {
                Some(idle) => idle.poll_expired(cx).map(Err),
                None => Poll::Pending,
            },
        };
        self.note_failure(poll)
    }

    /// Notes a failed read, write or shutdown in the meter, for the closing line.
    fn note_failure<T>(&mut self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(err)) = &poll {
            self.failed(err);
        }
        poll
    }

    /// A read, write or shutdown failed with `err`: the closing line says so, and the close
    /// needs no half-close first.
    pub(crate) fn failed(&mut self, err: &io::Error) {
        self.meter.failed(err);
        *self.settled.get_mut() = true;
        if crate::net::is_idle_timeout(err)
            && let Some(stream) = self.stream()
        {
            crate::net::reset_if_cut_short(std::os::fd::AsFd::as_fd(stream));
        }
    }
}

/// A connection dropped by a forced shutdown was cut short: it closes with a reset (see
/// `shutdown.rs`), so that its client does not take the close for the end of a complete
/// exchange. One a handler let go of without half-closing it is half-closed first, as
/// Python's `socketserver` does: a close with bytes of the client's still unread (a request
/// the handler answered without reading all of it) is a reset, which would reach the
/// client as an error after the answer, while a FIN sent before it reads as the end.
impl Drop for Connection {
    fn drop(&mut self) {
        if super::shutdown::is_cut_short() {
            self.reset_on_close();
        } else if !*self.settled.get_mut()
            && let Some(stream) = self.stream()
        {
            // Failing (the client is gone), there is nothing to end.
            let _ = stream.shutdown_write();
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(session) => match tls::push_pending(session, cx) {
                Ok(()) => Pin::new(&mut **session)
                    .poll_read(cx, buf)
                    .map_err(tls::read_error),
                Err(err) => Poll::Ready(Err(err)),
            },
            Io::Handshaking => Poll::Ready(Err(in_handshake())),
        };
        if let Poll::Ready(Ok(())) = poll {
            this.meter.received(buf.filled().len() - before);
        }
        this.account(cx, poll)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            // Written bytes go out as far as the socket takes them now, as on a plain
            // socket; what it cannot take yet goes with the next read, write or flush.
            Io::Tls(session) => Pin::new(&mut **session)
                .poll_write(cx, buf)
                .map(|written| Ok((written?, tls::push_pending(session, cx)?).0)),
            Io::Handshaking => Poll::Ready(Err(in_handshake())),
        };
        if let Poll::Ready(Ok(n)) = poll {
            this.meter.sent(n);
        }
        this.account(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(session) => Pin::new(&mut **session).poll_flush(cx),
            Io::Handshaking => Poll::Ready(Err(in_handshake())),
        };
        this.note_failure(poll)
    }

    /// Half-closes the connection (`shutdown(SHUT_WR)`, after a TLS close_notify): the
    /// client reads end of stream and may go on sending.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(session) => Pin::new(&mut **session).poll_shutdown(cx),
            Io::Handshaking => Poll::Ready(Err(in_handshake())),
        };
        if let Poll::Ready(Ok(())) = poll {
            *this.settled.get_mut() = true;
        }
        this.note_failure(poll)
    }
}
