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

/// A buffer: a thin pointer, 8 bytes in the connection's future rather than 16.
pub(crate) type Buffer = Box<[u8; SIZE]>;

// `Consume` counts within a buffer in `u16`s.
const _: () = assert!(SIZE <= u16::MAX as usize);

/// Spare buffers kept per thread; more than this are freed.
const KEPT: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Buffer>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`SIZE`] bytes, from this thread's spares if there is one.
pub(crate) fn take() -> Buffer {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| {
            // Zeroed on the heap; a `Box::new([0; SIZE])` may build the array on the stack first.
            let zeroed: Box<[u8]> = vec![0u8; SIZE].into_boxed_slice();
            match zeroed.try_into() {
                Ok(buffer) => buffer,
                // The slice is SIZE long, so the conversion cannot fail.
                Err(_) => Box::new([0; SIZE]),
            }
        })
}

/// Gives a buffer back for reuse (to whichever thread runs the caller now).
pub(crate) fn give(buf: Buffer) {
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
/// Its counts are `u16`s and its buffer a thin pointer: an idle echo connection's task is
/// tokio's 256-byte size only while this is 128 bytes or less (see `server::task`).
pub(crate) struct Consume {
    conn: Connection,
    buf: Option<Buffer>,
    /// Echo: bytes of `buf` read and not yet all written back.
    filled: u16,
    written: u16,
    bytes: Bytes,
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
                let pending = &buf[usize::from(this.written)..usize::from(this.filled)];
                let n = ready!(Pin::new(&mut this.conn).poll_write(cx, pending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                // A write takes at most `pending`, so the count stays within the buffer's.
                this.written += n.min(pending.len()) as u16;
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
            match this.conn.try_read(&mut buf[..]) {
                Ok(0) => {
                    if let Some(buf) = this.buf.take() {
                        give(buf);
                    }
                    match this.bytes {
                        Bytes::Echo => this.closing = true,
                        Bytes::Drop => return Poll::Ready(Ok(())),
                    }
                }
                // A read fills at most the buffer, whose size fits a u16.
                Ok(n) if this.bytes == Bytes::Echo => {
                    (this.filled, this.written) = (n.min(SIZE) as u16, 0);
                }
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
