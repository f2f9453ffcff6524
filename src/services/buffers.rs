//! Reading what streaming services receive (echo, discard) with per-thread spare read buffers:
//! a connection holds a buffer only while it has bytes to move, and gives it back when it goes quiet, so
//! ten thousand idle connections hold no buffer at all, and a busy one does not pay an
//! allocation per burst.

use std::cell::RefCell;
use std::io;

use tokio::io::AsyncWriteExt;

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
pub(crate) async fn consume(mut conn: Connection, bytes: Bytes) -> io::Result<()> {
    loop {
        conn.readable().await?;
        let mut buf = take();
        loop {
            match conn.try_read(&mut buf) {
                Ok(0) => {
                    give(buf);
                    return match bytes {
                        Bytes::Echo => conn.shutdown().await,
                        Bytes::Drop => Ok(()),
                    };
                }
                Ok(n) if bytes == Bytes::Echo => conn.write_all(&buf[..n]).await?,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        give(buf);
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
