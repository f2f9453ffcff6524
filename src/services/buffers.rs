//! Reading what streaming services receive (echo, discard) with per-thread spare read buffers:
//! a connection holds a buffer only while it has bytes to move, and gives it back when it goes quiet, so
//! ten thousand idle connections hold no buffer at all, and a busy one does not pay an
//! allocation per burst.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

use crate::server::Connection;

/// The size of each buffer.
pub(crate) const SIZE: usize = 16 * 1024;

/// Spare buffers kept per thread; more than this are freed.
const KEPT: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`SIZE`] bytes, from this thread's spares if there is one.
pub(crate) fn take() -> Box<[u8]> {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; SIZE].into_boxed_slice())
}

/// Gives a buffer back for reuse (to whichever thread runs the caller now).
pub(crate) fn give(buf: Box<[u8]>) {
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT {
            spare.push(buf);
        }
    });
}

/// What [`consume`] does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bytes {
    /// Write them back (echo); at end of stream, half-close after the last of them.
    Echo,
    /// Drop them (discard).
    Drop,
}

/// Reads everything the client sends until it closes: waits for bytes holding no buffer,
/// handles them with a buffer from this thread's spares until nothing more is there, gives
/// the buffer back, and waits again. Echoing writes each chunk before reading the next, so
/// a client that does not read its echoes is held back by TCP flow control.
pub(crate) fn consume(conn: Connection, bytes: Bytes) -> Consume {
    Consume {
        conn,
        bytes,
        buf: None,
        filled: 0,
        written: 0,
        closing: false,
    }
}

/// The future of [`consume`], written out: it lives in every idle connection's task, and
/// the compiler's version of the same loop was twice the size.
pub(crate) struct Consume {
    conn: Connection,
    bytes: Bytes,
    buf: Option<Box<[u8]>>,
    /// Echo: bytes of `buf` read and not yet all written back.
    filled: usize,
    written: usize,
    /// Echo: the client has finished; half-close after the last echo.
    closing: bool,
}

impl Future for Consume {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.written < this.filled {
                let Some(buf) = this.buf.as_deref() else {
                    return Poll::Ready(Err(io::ErrorKind::Other.into()));
                };
                let pending = &buf[this.written..this.filled];
                let n = ready!(Pin::new(&mut this.conn).poll_write(cx, pending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                this.written += n;
                continue;
            }
            if this.closing {
                return Pin::new(&mut this.conn).poll_shutdown(cx);
            }
            let buf = match &mut this.buf {
                Some(buf) => buf,
                None => {
                    ready!(this.conn.poll_readable(cx))?;
                    this.buf.insert(take())
                }
            };
            match this.conn.try_read(buf) {
                Ok(0) => {
                    if let Some(buf) = this.buf.take() {
                        give(buf);
                    }
                    match this.bytes {
                        Bytes::Echo => this.closing = true,
                        Bytes::Drop => return Poll::Ready(Ok(())),
                    }
                }
                Ok(n) if this.bytes == Bytes::Echo => (this.filled, this.written) = (n, 0),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(buf) = this.buf.take() {
                        give(buf);
                    }
                    this.filled = 0;
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let first = take();
        let address = first.as_ptr();
        give(first);
        let again = take();
        assert_eq!(
            again.as_ptr(),
            address,
            "a given-back buffer is the next one taken"
        );
        give(again);
        let many: Vec<_> = (0..KEPT + 10).map(|_| take()).collect();
        many.into_iter().for_each(give);
        SPARE.with(|spare| assert_eq!(spare.borrow().len(), KEPT));
    }
}
