//! Blocking handlers: code written the way the tutorial writes it, over `std::io::Read +
//! Write`, run on a bounded pool of threads so that a slow handler never stalls the server.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::meter::Meter;
use crate::net::{self, Stream};
use crate::socket::Address;

/// Handles one connection on a thread of the server's blocking pool. Any
/// `Fn(BlockingConnection) -> io::Result<()>` closure is one.
pub trait BlockingHandler: Send + Sync + 'static {
    /// Serves `conn` until done; the connection closes when this returns, half-closed first
    /// unless the handler did or a read or write failed (see [`super::Handler::call`]).
    fn call(&self, conn: BlockingConnection) -> io::Result<()>;
}

impl<F> BlockingHandler for F
where
    F: Fn(BlockingConnection) -> io::Result<()> + Send + Sync + 'static,
{
    fn call(&self, conn: BlockingConnection) -> io::Result<()> {
        self(conn)
    }
}

/// An accepted connection in blocking mode: `std::io::Read + Write`, like a socket in the
/// tutorial. With an idle timeout on the server, a read or write that waits longer fails
/// with [`io::ErrorKind::TimedOut`] ("idle for 30s"), as an async handler's does.
#[derive(Debug)]
pub struct BlockingConnection {
    // The peer, and what the connection counts until it closes; dropped before the
    // stream, so counted as closed before the client sees the close.
    meter: Meter,
    stream: BlockingStream,
    local: Address,
    idle: Option<Duration>,
    /// Whether the close needs no half-close first: the handler half-closed, or a read or
    /// write failed (see `Drop`). Atomic for `shutdown`, which takes `&self`.
    settled: AtomicBool,
}

#[derive(Debug)]
enum BlockingStream {
    Tcp(std::net::TcpStream),
    Unix(UnixStream),
}

impl BlockingConnection {
    /// The address of the client.
    pub fn peer_addr(&self) -> &Address {
        self.meter.peer()
    }

    /// The address the client connected to.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// The error a failed read or write returns, noted for the connection's `closed` line
    /// (and its close needs no half-close first). The kernel ends a blocking call that
    /// waited out `SO_RCVTIMEO`/`SO_SNDTIMEO` with `EAGAIN`; the socket is blocking, so that
    /// can only be the idle limit, which the error then says in words.
    fn failed(&mut self, err: io::Error) -> io::Error {
        let err = match self.idle {
            Some(limit) if err.kind() == io::ErrorKind::WouldBlock => net::idle_error(limit),
            _ => err,
        };
        self.meter.failed(&err);
        *self.settled.get_mut() = true;
        if net::is_idle_timeout(&err) {
            match &self.stream {
                BlockingStream::Tcp(s) => net::reset_if_cut_short(s.as_fd()),
                BlockingStream::Unix(s) => net::reset_if_cut_short(s.as_fd()),
            }
        }
        err
    }

    /// Shuts down one or both directions (`Shutdown::Write` is a half-close).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            self.settled.store(true, Ordering::Relaxed);
        }
        match &self.stream {
            BlockingStream::Tcp(s) => s.shutdown(how),
            BlockingStream::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for BlockingConnection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.stream {
            BlockingStream::Tcp(s) => s.read(buf),
            BlockingStream::Unix(s) => s.read(buf),
        }
        .map_err(|err| self.failed(err))?;
        self.meter.received(n);
        Ok(n)
    }
}

impl Write for BlockingConnection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.stream {
            BlockingStream::Tcp(s) => s.write(buf),
            BlockingStream::Unix(s) => s.write(buf),
        }
        .map_err(|err| self.failed(err))?;
        self.meter.sent(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection its handler let go of without half-closing it is half-closed before it
/// closes, as Python's `socketserver` does (see the async `Connection`'s `Drop`): bytes of
/// the client's left unread would make the close a reset, which reaches the client as an
/// error after the answer.
impl Drop for BlockingConnection {
    fn drop(&mut self) {
        // A handler that panics drops it as the panic unwinds: its answer was cut short,
        // and the server resets the connection (`Closer`), which a FIN must not come
        // before.
        if !*self.settled.get_mut() && !std::thread::panicking() {
            // Failing (the client is gone, or a forced shutdown reset it), there is
            // nothing to end.
            let _ = self.shutdown(Shutdown::Write);
        }
    }
}

/// Converts an accepted async stream for a blocking handler, and returns a second handle that
/// the server keeps to shut the connection down if a forced shutdown comes.
pub(crate) fn into_blocking(
    stream: Stream,
    meter: Meter,
    idle: Option<Duration>,
) -> io::Result<(BlockingConnection, Closer)> {
    let local = stream.local_addr()?;
    let (stream, closer) = match stream {
        Stream::Tcp(s) => {
            let s = s.into_std()?;
            s.set_nonblocking(false)?;
            s.set_read_timeout(idle)?;
            s.set_write_timeout(idle)?;
            let closer = Closer::Tcp(s.try_clone()?);
            (BlockingStream::Tcp(s), closer)
        }
        Stream::Unix(s) => {
            let s = s.into_std()?;
            s.set_nonblocking(false)?;
            s.set_read_timeout(idle)?;
            s.set_write_timeout(idle)?;
            let closer = Closer::Unix(s.try_clone()?);
            (BlockingStream::Unix(s), closer)
        }
    };
    Ok((
        BlockingConnection {
            stream,
            meter,
            local,
            idle,
            settled: AtomicBool::new(false),
        },
        closer,
    ))
}

/// Resets a blocking connection from outside its thread (a forced shutdown), which makes
/// its pending read or write fail at once.
#[derive(Debug)]
pub(crate) enum Closer {
    Tcp(std::net::TcpStream),
    Unix(UnixStream),
}

impl Closer {
    /// Resets the connection now (see [`net::reset_now`]; a Unix stream, which has no
    /// reset, is shut down both ways).
    pub(crate) fn reset(&self) {
        match self {
            Closer::Tcp(s) => net::reset_now(s.as_fd()),
            Closer::Unix(s) => net::reset_now(s.as_fd()),
        }
    }
}

/// The pool's bound: at most this many handlers run at once; the rest wait their turn.
pub(crate) fn pool(threads: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(threads.max(1)))
}
