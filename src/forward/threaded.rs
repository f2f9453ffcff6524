//! The relay on dedicated threads: each direction of a connection gets a thread that waits
//! in a blocking `splice(2)` (or `recv`/`send` where splicing is off), instead of a task that
//! the runtime's poller wakes.
//!
//! Why: moving a chunk through a task costs an `epoll_wait` wake-up, a poll of the task, the
//! system call, and an `EAGAIN` before it waits again; a blocked thread is woken by the
//! kernel straight into its `splice`, and the two directions run on two cores at once.
//! `bench/client_bench.py` measures the difference (docs/benchmarks.md). Threads cost a
//! stack and scheduler work each, so a [`Forward`](super::Forward) gives them to a bounded
//! number of relays at a time ([`RelayThreads`]) and runs the rest as tasks.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use socket2::Socket;
use tokio::sync::oneshot;

use super::splice::{self, PIPE_SIZE};
use crate::activity::Activity;
use crate::server::stream::Stream;
use crate::sys::{self, Pipe};

/// The stack of a relay thread: a loop of system calls and the odd log line need little.
const STACK: usize = 128 * 1024;

/// The most one splice or copy takes in before passing it on. A blocking `splice` from a
/// socket keeps taking what arrives while it runs, so without a bound a fast sender's bytes
/// would wait for a large chunk to fill; 64 KiB keeps them moving (in the echo benchmark of
/// docs/benchmarks.md, 256 KiB chunks gave 0.7× the throughput). The pipe stays larger
/// than the chunk because a socket's bytes arrive in pieces smaller than a page, each
/// taking one of the pipe's slots.
const CHUNK: usize = 64 * 1024;

/// How many relays may hold threads at once, and how many do.
#[derive(Debug)]
pub(crate) struct RelayThreads {
    limit: usize,
    in_use: AtomicUsize,
}

impl RelayThreads {
    /// A budget of `limit` relays (two threads each); 0 runs every relay as a task.
    pub(crate) fn new(limit: usize) -> RelayThreads {
        RelayThreads {
            limit,
            in_use: AtomicUsize::new(0),
        }
    }

    /// The most relays on threads at once.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Two started threads waiting for a relay, or `None` when the budget is spent or the
    /// system refuses a thread (then the relay runs as a task).
    pub(crate) fn reserve(self: &Arc<RelayThreads>) -> Option<Reserved> {
        let taken = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        if taken.is_err() {
            return None;
        }
        let slot = Slot(Arc::clone(self));
        match (spawn_waiting(), spawn_waiting()) {
            (Ok(first), Ok(second)) => Some(Reserved {
                jobs: [first, second],
                slot,
            }),
            // A thread that did start sees its sender dropped and ends.
            (Err(err), _) | (_, Err(err)) => {
                tracing::debug!("cannot start relay threads ({err}); relaying as a task");
                None
            }
        }
    }
}

/// One relay's place in the budget, given back when the last of its threads ends.
#[derive(Debug)]
struct Slot(Arc<RelayThreads>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Work handed to a waiting relay thread.
type Job = Box<dyn FnOnce() + Send>;

/// Two threads, started and waiting for their directions.
pub(crate) struct Reserved {
    jobs: [mpsc::SyncSender<Job>; 2],
    slot: Slot,
}

/// Starts a thread that runs the one job it is sent, or ends if none comes.
fn spawn_waiting() -> io::Result<mpsc::SyncSender<Job>> {
    let (jobs, job) = mpsc::sync_channel::<Job>(1);
    std::thread::Builder::new()
        .name("socketkit-relay".into())
        .stack_size(STACK)
        .spawn(move || {
            if let Ok(job) = job.recv() {
                job();
            }
        })?;
    Ok(jobs)
}

/// What both directions share: the sockets, the idle clock, and the place in the budget.
struct Relay {
    client: Socket,
    upstream: Socket,
    activity: Activity,
    _slot: Slot,
}

impl Relay {
    /// Shuts both sockets both ways, which wakes a thread blocked on either; it then ends.
    fn abort(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

/// Aborts the relay when the future running it ends or is dropped (a forced shutdown), so
/// that no thread outlives its connection.
struct AbortOnDrop(Arc<Relay>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Relays `client` and `upstream` both ways on the reserved threads, with the same ends as
/// the task relay: both directions finished (each end of stream passed on as a
/// half-close), either side failed (both closed), or nothing moved for `idle`.
pub(crate) async fn relay(
    threads: Reserved,
    client: Stream,
    upstream: Stream,
    idle: Option<Duration>,
) -> io::Result<()> {
    let Reserved {
        jobs: [first, second],
        slot,
    } = threads;
    let relay = Arc::new(Relay {
        client: client.into_blocking()?,
        upstream: upstream.into_blocking()?,
        activity: Activity::new(),
        _slot: slot,
    });
    let _abort = AbortOnDrop(Arc::clone(&relay));
    let to_upstream = start(&first, &relay, |r| (&r.client, &r.upstream))?;
    let to_client = start(&second, &relay, |r| (&r.upstream, &r.client))?;
    let both = async {
        let (a, b) = tokio::join!(to_upstream, to_client);
        a.and(b)
    };
    let Some(limit) = idle else { return both.await };
    tokio::select! {
        result = both => result,
        err = splice::watchdog(&relay.activity, limit) => Err(err),
    }
}

/// Hands one direction (`from`, `to` as picked from the relay) to a waiting thread; the
/// future resolves with how the direction ended.
fn start(
    thread: &mpsc::SyncSender<Job>,
    relay: &Arc<Relay>,
    pick: fn(&Relay) -> (&Socket, &Socket),
) -> io::Result<impl Future<Output = io::Result<()>> + use<>> {
    let (report, ended) = oneshot::channel();
    let relay = Arc::clone(relay);
    let job: Job = Box::new(move || {
        let (from, to) = pick(&relay);
        let result = match one_way(from, to, &relay.activity) {
            Ok(()) => shutdown_write(to),
            Err(err) => {
                relay.abort();
                Err(err)
            }
        };
        let _ = report.send(result);
    });
    thread
        .send(job)
        .map_err(|_| io::Error::other("a relay thread ended before its work came"))?;
    Ok(async {
        ended
            .await
            .unwrap_or_else(|_| Err(io::Error::other("a relay thread ended without a result")))
    })
}

/// Half-closes `to`; a peer already gone has nobody left to tell.
fn shutdown_write(to: &Socket) -> io::Result<()> {
    match to.shutdown(Shutdown::Write) {
        Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
        other => other,
    }
}

/// Moves bytes from `from` to `to` until `from` ends: spliced where the kernel can, copied
/// where it cannot.
fn one_way(from: &Socket, to: &Socket, activity: &Activity) -> io::Result<()> {
    if splice::available() {
        let pipe = Pipe::blocking(PIPE_SIZE)?;
        match one_way_spliced(from, to, &pipe, activity) {
            Spliced::Done(result) => return result,
            Spliced::Unsupported => {
                tracing::debug!("splice refused for this pair of sockets; copying");
            }
        }
    }
    one_way_copied(from, to, activity)
}

/// How a spliced direction ended: done, or refused by the kernel before any byte moved.
enum Spliced {
    Done(io::Result<()>),
    Unsupported,
}

fn one_way_spliced(from: &Socket, to: &Socket, pipe: &Pipe, activity: &Activity) -> Spliced {
    let (pipe_in, pipe_out) = (pipe.write.as_raw_fd(), pipe.read.as_raw_fd());
    let mut moved_any = false;
    loop {
        // The pipe is empty here, so this waits only for the socket.
        let filled = match sys::splice(from.as_raw_fd(), pipe_in, CHUNK, false) {
            Ok(0) => return Spliced::Done(Ok(())),
            Ok(n) => n,
            Err(err) if !moved_any && sys::splice_unsupported(&err) => return Spliced::Unsupported,
            Err(err) => return Spliced::Done(Err(err)),
        };
        moved_any = true;
        activity.touch();
        let mut left = filled;
        while left > 0 {
            match sys::splice(pipe_out, to.as_raw_fd(), left, false) {
                Ok(0) => return Spliced::Done(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => left -= n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Spliced::Done(Err(err)),
            }
            activity.touch();
        }
    }
}

fn one_way_copied(from: &Socket, to: &Socket, activity: &Activity) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut source = from;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        activity.touch();
        let mut sent = 0;
        while sent < n {
            // socket2 sends with MSG_NOSIGNAL: a gone peer is an EPIPE error, not a signal.
            match to.send(&buf[sent..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => sent += k,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            activity.touch();
        }
    }
}
