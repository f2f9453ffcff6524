//! [`Connection`]: one accepted stream (TCP or Unix) with its peer and local address, read and
//! written through tokio's `AsyncRead`/`AsyncWrite`, with the server's idle timeout built in.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::net::Stream;
use crate::socket::Address;

/// An accepted connection, handed to a server's handler.
///
/// Read and write it with `tokio::io::{AsyncReadExt, AsyncWriteExt}`; [`Connection::split`]
/// gives separate read and write halves. When the server has an idle
/// timeout, a read or write that waits longer than it with no bytes moving either way fails
/// with [`io::ErrorKind::TimedOut`].
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    peer: Address,
    // Boxed: most servers set no idle timeout, and a None costs 8 bytes instead of 48 in
    // every connection's task.
    idle: Option<Box<IdleTimer>>,
}

/// The idle deadline, re-armed lazily: progress only records the time, and the sleep is
/// moved to the new deadline when it fires, so a busy connection never touches the timer.
#[derive(Debug)]
struct IdleTimer {
    limit: Duration,
    last_progress: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    fn new(limit: Duration) -> IdleTimer {
        let now = Instant::now();
        IdleTimer {
            limit,
            last_progress: now,
            sleep: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    /// Called when an operation is pending: `Ready(Err)` once the connection has been idle
    /// for the whole limit.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let deadline = self.last_progress + self.limit;
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {}", humantime::format_duration(self.limit)),
                ));
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

impl Connection {
    pub(crate) fn new(stream: Stream, peer: Address, idle_timeout: Option<Duration>) -> Connection {
        Connection {
            stream,
            peer,
            idle: idle_timeout.map(|limit| Box::new(IdleTimer::new(limit))),
        }
    }

    /// The stream, for socket options the handler sets on it.
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The stream and the idle limit, for code that drives the socket itself (the splice
    /// relay of `forward`).
    /// Makes the close a reset, for a connection refused by an admission stage.
    pub(crate) fn reset_on_close(&self) {
        self.stream.reset_on_close();
    }

    pub(crate) fn into_parts(self) -> (Stream, Option<Duration>) {
        (self.stream, self.idle.map(|idle| idle.limit))
    }

    /// The address of the client.
    pub fn peer_addr(&self) -> &Address {
        &self.peer
    }

    /// Replaces the client's address with the one an admission stage learned (the PROXY
    /// protocol's header names the real client behind a load balancer): the stages after
    /// it, the handler and the logs see this one.
    pub fn set_peer_addr(&mut self, peer: Address) {
        self.peer = peer;
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
        self.stream.local_addr()
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
        let poll = self.stream.poll_read_ready(cx);
        self.account(cx, poll)
    }

    /// Reads what has arrived without waiting: `Ok(0)` is end of stream, `WouldBlock`
    /// means nothing is there yet (wait with [`Connection::readable`]). A read shorter than
    /// `buf` is taken to have emptied the socket, so the next call answers `WouldBlock`
    /// without a system call until the kernel reports more.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.try_read(buf)?;
        self.progress();
        Ok(n)
    }

    fn progress(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.last_progress = Instant::now();
        }
    }

    /// Maps a poll result: progress re-arms the idle timer, pending checks it.
    fn account<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
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
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
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
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.account(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Half-closes the connection (`shutdown(SHUT_WR)`): the client reads end of stream and
    /// may go on sending.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
