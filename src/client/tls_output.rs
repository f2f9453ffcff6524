//! The TLS bridge's output, written on a thread of its own.
//!
//! The session runs on one thread, which both receives and sends. A write to an output
//! nobody reads for a while (a full pipe, a terminal held with ^S) blocks, and made on that
//! thread it would hold the sending too: a peer that waits for our input or our
//! close_notify before it reads on would wait for ever. The plain bridge receives on a
//! thread apart from its sender for the same reason. So the receiving side hands each
//! read's bytes over a channel of one chunk to a writer thread, which writes them at once,
//! and the session goes on while a write waits.

use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;

use tokio::sync::{mpsc, oneshot};

/// How large a buffer the receiving side reads into.
pub(super) const READ_SIZE: usize = 64 * 1024;

/// The receiving side's end: hands chunks to the writer thread, and learns how its writing
/// ended.
pub(super) struct OutputHandoff {
    chunks: mpsc::Sender<Vec<u8>>,
    /// Buffers the writer is done with, to read into again.
    spare: std_mpsc::Receiver<Vec<u8>>,
    /// How the writing ended; taken once asked.
    written: Option<oneshot::Receiver<io::Result<()>>>,
}

/// The writer thread's end: writes each chunk to the output, in order, until the handoff
/// is dropped (then flushes) or a write fails.
pub(super) struct OutputWriter<'a> {
    writer: Box<dyn Write + Send + 'a>,
    chunks: mpsc::Receiver<Vec<u8>>,
    spare: std_mpsc::Sender<Vec<u8>>,
    written: oneshot::Sender<io::Result<()>>,
}

/// The two ends of an output written on a thread of its own: run the writer on that
/// thread ([`OutputWriter::run`]).
pub(super) fn handoff(writer: Box<dyn Write + Send + '_>) -> (OutputHandoff, OutputWriter<'_>) {
    let (chunks_in, chunks_out) = mpsc::channel(1);
    let (spare_in, spare_out) = std_mpsc::channel();
    let (written_in, written_out) = oneshot::channel();
    let handoff = OutputHandoff {
        chunks: chunks_in,
        spare: spare_out,
        written: Some(written_out),
    };
    let writer = OutputWriter {
        writer,
        chunks: chunks_out,
        spare: spare_in,
        written: written_in,
    };
    (handoff, writer)
}

impl OutputHandoff {
    /// A buffer of [`READ_SIZE`] bytes to read into: one the writer is done with, or a new
    /// one (at most three are about: one read into, one queued, one being written).
    pub(super) fn buffer(&self) -> Vec<u8> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.resize(READ_SIZE, 0);
        buf
    }

    /// Queues the first `len` bytes of `buf` for the output, waiting while the writer still
    /// has a chunk queued. A writer that has stopped (a failed write) answers with its
    /// error.
    pub(super) async fn write(&mut self, mut buf: Vec<u8>, len: usize) -> io::Result<()> {
        buf.truncate(len);
        if self.chunks.send(buf).await.is_ok() {
            return Ok(());
        }
        // It stops only on a failed write, and says why first.
        match ended(self.written.take()).await {
            Ok(()) => Err(stopped()),
            failed => failed,
        }
    }

    /// Resolves once the writer has stopped on a failed write, with its error: to be
    /// watched while the session is quiet, so that a write that failed (a full disk) ends
    /// the run at once, as it does when written in line, and not at the peer's next bytes.
    pub(super) async fn failed(&mut self) -> io::Error {
        let Some(written) = self.written.as_mut() else {
            return std::future::pending().await;
        };
        let result = written.await;
        self.written = None;
        match result {
            Ok(Err(err)) => err,
            // It ends well only once the handoff is gone, which this borrows.
            Ok(Ok(())) | Err(_) => stopped(),
        }
    }

    /// Waits until everything queued is written and the output flushed.
    pub(super) async fn finish(self) -> io::Result<()> {
        let OutputHandoff {
            chunks, written, ..
        } = self;
        // The writer flushes and ends once its channel is closed.
        drop(chunks);
        ended(written).await
    }
}

/// How the writer's thread ended, once it has (`written`, unless already asked).
async fn ended(written: Option<oneshot::Receiver<io::Result<()>>>) -> io::Result<()> {
    match written {
        Some(written) => written.await.unwrap_or_else(|_| Err(stopped())),
        None => Err(stopped()),
    }
}

/// A writer's thread that ended without a word (it panicked).
fn stopped() -> io::Error {
    io::Error::other("the output's writer stopped")
}

impl OutputWriter<'_> {
    /// Writes chunks as they come; returns once the handoff is gone (after a flush) or a
    /// write failed, and says which over the handoff.
    pub(super) fn run(self) {
        let OutputWriter {
            mut writer,
            mut chunks,
            spare,
            written,
        } = self;
        let result = loop {
            match chunks.blocking_recv() {
                Some(chunk) => {
                    if let Err(err) = writer.write_all(&chunk) {
                        break Err(err);
                    }
                    let _ = spare.send(chunk);
                }
                None => break writer.flush(),
            }
        };
        // Closed before the answer goes, so that a handoff waiting to queue a chunk is
        // woken and reads it.
        drop(chunks);
        let _ = written.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps what it is given, shared with the test.
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime without I/O starts")
    }

    #[test]
    fn chunks_reach_the_output_in_order_and_finish_waits_for_them() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (mut handoff, writer) = handoff(Box::new(Kept(Arc::clone(&kept))));
        std::thread::scope(|scope| {
            scope.spawn(|| writer.run());
            runtime().block_on(async {
                for i in 0..100u8 {
                    let mut buf = handoff.buffer();
                    assert_eq!(buf.len(), READ_SIZE);
                    buf[0] = i;
                    buf[1] = i;
                    handoff.write(buf, 2).await.expect("written");
                }
                handoff.finish().await.expect("flushed");
            });
        });
        let want: Vec<u8> = (0..100u8).flat_map(|i| [i, i]).collect();
        assert_eq!(*kept.lock().expect("not poisoned"), want);
    }

    #[test]
    fn a_failed_write_is_the_next_write_s_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (mut handoff, writer) = handoff(Box::new(Broken));
        std::thread::scope(|scope| {
            scope.spawn(|| writer.run());
            runtime().block_on(async {
                // The first is queued before it fails; a later one sees the failure.
                let mut failed = None;
                for _ in 0..3 {
                    if let Err(err) = handoff.write(handoff.buffer(), 1).await {
                        failed = Some(err);
                        break;
                    }
                }
                let err = failed.expect("a write fails");
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            });
        });
    }
}
