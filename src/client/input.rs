//! Standard input as a stream of chunks, read on a thread of its own and handed over a
//! bounded channel: constant memory, and one input can serve connection after connection
//! (`socketkit listen -k`) without a byte read for a finished connection going astray.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::waiting_file::WaitingFile;
use crate::error::{Error, Op};

/// How many chunks may wait between the reader and the socket; with [`CHUNK`]-sized chunks
/// this bounds the bytes in flight inside the process.
const QUEUED_CHUNKS: usize = 2;

/// The size of each read from a stream input (and of the receive buffer): large reads keep
/// the system calls per byte low; with two chunks queued the bridge holds about 1 MiB.
pub const CHUNK: usize = 256 * 1024;

/// What the input has for a consumer.
#[derive(Debug)]
pub enum Next {
    /// Bytes to send (never empty). Hand the buffer back with [`Input::recycle`].
    Data(Vec<u8>),
    /// Nothing arrived within the wait; ask again.
    Pending,
    /// The input has ended (EOF).
    End,
    /// Reading the input failed (`i/o error on stdin: is a directory`): it ends here, but
    /// not as an end of data, which the peer must not be told it is. Every later call
    /// answers [`Next::End`], and [`Input::failed`] says so.
    Failed(Error),
}

/// An input read by a background thread.
#[derive(Debug)]
pub struct Input {
    chunks: Mutex<Receiver<Item>>,
    /// The same channel, for [`Input::wake`]: the reader's end is reported by
    /// [`Item::End`], not by the channel closing, so that this sender may stay.
    wakes: SyncSender<Item>,
    /// A chunk handed back by [`Input::put_back`], given out before the channel's.
    held: Mutex<Option<Vec<u8>>>,
    /// Set once [`Item::End`] was taken: every later call answers [`Next::End`].
    ended: AtomicBool,
    /// Set once a read failed ([`Next::Failed`]).
    failed: AtomicBool,
    /// How errors name the input (see [`Input::named`]).
    name: &'static str,
    spare: SyncSender<Vec<u8>>,
    /// Set while the reader thread holds bytes it read and has not handed over yet.
    holding: Arc<AtomicBool>,
    /// The file read, to ask whether more waits in it (see [`Input::waiting`]).
    source: Option<Arc<std::fs::File>>,
}

/// What the reader thread (or a wake) puts in the channel.
#[derive(Debug)]
enum Item {
    Data(Vec<u8>),
    /// Someone wants the consumer to look up from its wait.
    Wake,
    /// The input has ended.
    End,
    /// A read failed; the input has ended.
    Failed(io::Error),
}

impl Input {
    /// Starts a thread reading `reader` in chunks of up to 64 KiB (or `max_chunk`, for
    /// datagram transports where each read becomes one datagram). The reader must block:
    /// a `WouldBlock` from it ends the input as any other error does (there is nothing
    /// generic to wait on) — a non-blocking file goes through [`Input::file`], which waits.
    pub fn spawn<R: Read + Send + 'static>(reader: R, max_chunk: usize) -> io::Result<Input> {
        let (chunk_tx, chunk_rx) = sync_channel(QUEUED_CHUNKS);
        let (spare_tx, spare_rx) = sync_channel(QUEUED_CHUNKS + 2);
        let wakes = chunk_tx.clone();
        let holding = Arc::new(AtomicBool::new(false));
        let held_by_reader = Arc::clone(&holding);
        thread::Builder::new()
            .name("socketkit-input".into())
            .spawn(move || read_loop(reader, max_chunk, (&chunk_tx, &held_by_reader), &spare_rx))?;
        Ok(Input {
            holding,
            source: None,
            chunks: Mutex::new(chunk_rx),
            wakes,
            held: Mutex::new(None),
            ended: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            name: "input",
            spare: spare_tx,
        })
    }

    /// The input as its errors name it (`stdin`; by default `input`).
    #[must_use]
    pub fn named(mut self, name: &'static str) -> Input {
        self.name = name;
        self
    }

    /// Whether the input ended by a failed read rather than at its end.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Starts a thread reading `file` in chunks of up to `max_chunk` bytes, as
    /// [`Input::spawn`]. A pipe is first asked to hold `max_chunk` bytes (up to [`CHUNK`]),
    /// so that a read can take a whole chunk rather than the 64 KiB a pipe holds by default:
    /// a quarter of the reads and hand-overs per byte. A file left non-blocking is read as
    /// [`WaitingFile`] reads it: its `EAGAIN` is waited out, never taken for an error.
    pub fn file(file: std::fs::File, max_chunk: usize) -> io::Result<Input> {
        // Anything but a pipe is left as it is (grow_pipe answers None).
        let _ = crate::net::grow_pipe(file.as_raw_fd(), max_chunk.min(CHUNK));
        let file = WaitingFile::new(file);
        // The same descriptor, shared with the reader: asking costs no descriptor (the
        // servers' readiness counts them), and it stays open while this lives.
        let source = file.shared();
        let mut input = Input::spawn(file, max_chunk)?;
        input.source = Some(source);
        Ok(input)
    }

    /// Whether input is on its way though none was handed over: the reader thread holds
    /// bytes it read, or the file has bytes (or its end) to read. A consumer that judges
    /// the input paused by the time since its last chunk asks this first: after a stop of
    /// the whole program (^Z, `SIGSTOP`, a paused VM), what was written meanwhile is in the
    /// file before the reader thread has run, and the time says "paused" (an outside audit:
    /// 14 of 20 transfers lost all but their first line). Without the file (an input made
    /// by [`Input::spawn`]), only what the reader holds is known.
    pub fn waiting(&self) -> bool {
        if self.holding.load(Ordering::Acquire) {
            return true;
        }
        self.source.as_ref().is_some_and(|fd| {
            crate::net::wait_readable(fd.as_raw_fd(), Some(Duration::ZERO)).unwrap_or(false)
        })
    }

    /// The next chunk, waiting at most `wait` (or until [`Input::wake`]).
    pub fn next(&self, wait: Duration) -> Next {
        if let Some(chunk) = lock(&self.held).take() {
            return Next::Data(chunk);
        }
        if self.ended.load(Ordering::Acquire) {
            return Next::End;
        }
        // A zero wait takes what is queued and waits for nothing.
        match lock(&self.chunks).recv_timeout(wait) {
            Ok(Item::Data(chunk)) => Next::Data(chunk),
            Ok(Item::Wake) | Err(RecvTimeoutError::Timeout) => Next::Pending,
            // Disconnected cannot happen while `wakes` lives; taken as the end all the same.
            Ok(Item::End) | Err(RecvTimeoutError::Disconnected) => {
                self.ended.store(true, Ordering::Release);
                Next::End
            }
            Ok(Item::Failed(err)) => {
                self.failed.store(true, Ordering::Release);
                self.ended.store(true, Ordering::Release);
                Next::Failed(Error::new(Op::Io, self.name, err))
            }
        }
    }

    /// Makes a [`Input::next`] that waits now (or the next one) answer [`Next::Pending`] at
    /// once: for a bridge that is over, so that its sender stops waiting for input that is
    /// no longer its to send. Harmless when nobody waits (a later call sees one `Pending`).
    pub fn wake(&self) {
        // A full channel has data for the waiter already: it wakes without this.
        let _ = self.wakes.try_send(Item::Wake);
    }

    /// Hands a chunk taken by [`Input::next`] back, to be given out first by the next call:
    /// input read for a connection that ended before it could be sent goes to the next one
    /// (`socketkit listen -k`) rather than astray.
    pub fn put_back(&self, chunk: Vec<u8>) {
        *lock(&self.held) = Some(chunk);
    }

    /// Returns a buffer for the reader to fill again, saving an allocation per chunk.
    pub fn recycle(&self, buf: Vec<u8>) {
        let _ = self.spare.try_send(buf);
    }
}

/// A poisoned lock means a consumer panicked while holding it; what it guards is still
/// sound, so it is used on.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn read_loop<R: Read>(
    mut reader: R,
    max_chunk: usize,
    (chunks, holding): (&SyncSender<Item>, &AtomicBool),
    spare: &Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.resize(max_chunk, 0);
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                // Held from the read until the channel has it (see `Input::waiting`).
                holding.store(true, Ordering::Release);
                let sent = chunks.send(Item::Data(buf));
                holding.store(false, Ordering::Release);
                if sent.is_err() {
                    return; // nobody consumes any more
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                let _ = chunks.send(Item::Failed(err));
                return;
            }
        }
    }
    let _ = chunks.send(Item::End);
}
