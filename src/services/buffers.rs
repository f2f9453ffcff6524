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

/// The most a connection reads in one turn before it lets the other tasks of its thread run:
/// four buffers. tokio's budget counts the writes but not `try_read`, and allows 128 of
/// them, so a client that sends and reads as fast as it can (echo) or sends alone (discard)
/// held its thread for about 2 MiB at a time, and every other client's round trip took a
/// millisecond instead of tens of microseconds.
const SLICE: usize = 4 * SIZE;

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
        // Counted in the turn, not in the future: an idle connection's task stays as small.
        let mut read = 0;
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
            if read >= SLICE {
                // The rest of the bytes wait for the next turn; the buffer is kept for it.
                // tokio's yield defers the wake until its driver has looked for the other
                // connections' readiness: a wake now would put this task straight back on
                // the run queue, ahead of clients whose bytes the driver has not seen yet.
                let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
                return Poll::Pending;
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
                    read += n;
                }
                Ok(n) => read += n,
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

    /// A client that has sent far more than a slice: one turn reads a slice and asks to be
    /// polled again (its waker is woken once the runtime has had a turn), leaving the rest in
    /// the socket for the next turn, so the thread's other tasks run in between.
    #[test]
    fn one_turn_reads_at_most_a_slice() {
        use std::io::Write;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::task::Wake;

        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            // Buffers that hold all the client sends: it is all queued before the turn.
            let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            listener.set_recv_buffer_size(1 << 20).expect("SO_RCVBUF");
            let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
            listener.bind(&any.into()).expect("bind");
            listener.listen(1).expect("listen");
            let listener = std::net::TcpListener::from(listener);
            let mut client = std::net::TcpStream::connect(listener.local_addr().expect("address"))
                .expect("connect");
            socket2::SockRef::from(&client)
                .set_send_buffer_size(1 << 20)
                .expect("SO_SNDBUF");
            let (accepted, _) = listener.accept().expect("accept");
            let sent = 3 * SLICE;
            client
                .write_all(&vec![7u8; sent])
                .expect("the buffers hold it");
            accepted.set_nonblocking(true).expect("non-blocking");
            let fd = std::os::fd::AsRawFd::as_raw_fd(&accepted);
            let queued = || {
                let mut n: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int through a pointer to a live c_int.
                unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
                usize::try_from(n).unwrap_or(0)
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while queued() < sent && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let before = queued();
            assert_eq!(before, sent, "what the client sent is queued");
            let stream = tokio::net::TcpStream::from_std(accepted).expect("tokio");
            // The reactor's readiness, so that the turn finds the socket readable.
            stream.readable().await.expect("readable");
            let conn = Connection::new(
                crate::net::Stream::Tcp(stream),
                crate::server::Meter::detached(),
                None,
            );
            let mut consume = std::pin::pin!(consume(conn, Bytes::Drop));
            let flag = Arc::new(Flag(AtomicBool::new(false)));
            let waker = std::task::Waker::from(Arc::clone(&flag));
            let mut cx = Context::from_waker(&waker);
            assert!(consume.as_mut().poll(&mut cx).is_pending());
            let read = before.saturating_sub(queued());
            assert!(
                (SLICE..SLICE + SIZE).contains(&read),
                "one turn read {read} bytes (a slice is {SLICE})"
            );
            // The next turn is asked for once the runtime's driver has had its look.
            tokio::task::yield_now().await;
            assert!(flag.0.load(Ordering::SeqCst), "the turn asked for another");
        });
    }

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
