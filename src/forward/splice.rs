//! The relay of two plain sockets: each direction copies through a buffer while its reads
//! come short of it, and once a read fills it (a bulk stream) goes zero-copy, socket → pipe
//! → socket with `splice(2)`, never through user space. Splicing is Linux only, and only
//! where the kernel (or sandbox) supports splicing sockets: [`available`] probes once, and
//! `SOCKETKIT_NO_SPLICE=1` turns it off on purpose so that the copy loop alone can be run
//! and tested on any machine. See `docs/platform-notes.md`.

use std::io;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::Interest;

use crate::net::{Activity, Pipe, Stream, descriptor_limit, splice};
use crate::server::Tally;

/// The pipe size asked for: each splice into the pipe takes in what it can hold, so a pipe
/// this size moves a quarter MiB per wake-up under load; a socket's bytes arrive in pieces
/// smaller than a page and each takes one of the pipe's slots. Kernels may refuse (`/proc/sys/fs/pipe-max-size`, per-user pipe quotas); the relay
/// then runs with what the pipe has.
const PIPE_SIZE: usize = 256 * 1024;

/// The environment variable that forces the copy fallback.
pub const DISABLE_VAR: &str = "SOCKETKIT_NO_SPLICE";

/// Whether the splice relay is used: not disabled by [`DISABLE_VAR`], and a probe that
/// spliced a byte from a socket into a pipe worked. Decided once per process, by the
/// splice's own answer: a probe that could not even be set up (no IPv4 loopback in a
/// sandbox, descriptors short at the first relay) decides nothing, and the next relay
/// asks again.
pub fn available() -> bool {
    /// 0: not decided yet; 1: available; 2: not.
    static DECIDED: AtomicU8 = AtomicU8::new(0);
    match DECIDED.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    if std::env::var_os(DISABLE_VAR).is_some_and(|v| v != "0") {
        tracing::debug!("splice disabled by {DISABLE_VAR}; relaying with a copy loop");
        DECIDED.store(2, Ordering::Relaxed);
        return false;
    }
    match probe() {
        Probed::Works => {
            DECIDED.store(1, Ordering::Relaxed);
            true
        }
        Probed::Refused(err) => {
            // Said once, whichever relays race to decide.
            if DECIDED.swap(2, Ordering::Relaxed) != 2 {
                tracing::info!(
                    "splice(2) is not available here ({}); relaying with a copy loop",
                    crate::error::describe(&err)
                );
            }
            false
        }
        Probed::Undecided(err) => {
            tracing::debug!(
                "cannot try splice(2) yet ({}); this relay copies",
                crate::error::describe(&err)
            );
            false
        }
    }
}

/// What a splice probe found.
enum Probed {
    Works,
    /// The splice itself failed.
    Refused(io::Error),
    /// The sockets or the pipe to try it on could not be made.
    Undecided(io::Error),
}

/// Splices one byte from a loopback TCP connection into a pipe (a connected Unix socket
/// pair where there is no IPv4 loopback).
fn probe() -> Probed {
    let made = tcp_pair().or_else(|_| {
        let (client, server) = std::os::unix::net::UnixStream::pair()?;
        Ok((OwnedFd::from(client), OwnedFd::from(server)))
    });
    let (client, server) = match made {
        Ok(pair) => pair,
        Err(err) => return Probed::Undecided(err),
    };
    let pipe = match std::fs::File::from(client)
        .write_all(b"x")
        .and_then(|()| Pipe::new(PIPE_SIZE))
    {
        Ok(pipe) => pipe,
        Err(err) => return Probed::Undecided(err),
    };
    match splice(server.as_raw_fd(), pipe.write.as_raw_fd(), 1, true) {
        Ok(1) => Probed::Works,
        Ok(_) => Probed::Refused(io::ErrorKind::UnexpectedEof.into()),
        Err(err) => Probed::Refused(err),
    }
}

/// A connected loopback TCP pair: the client's end and the server's.
fn tcp_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((client.into(), server.into()))
}

/// The pipe of one direction of a relay, made once that direction carries a bulk stream
/// (two descriptors: the price of zero copy).
struct SharedPipe {
    pipe: Pipe,
    _share: PipeShare,
}

impl SharedPipe {
    /// A pipe, or an error on which the direction goes on copying: the pipes' share of the
    /// descriptor limit is used up ([`pipe_share`]), or the pipe cannot be made (`EMFILE`).
    fn new() -> io::Result<SharedPipe> {
        let share = PipeShare::take().ok_or_else(|| {
            io::Error::other("the relays' pipes hold their share of the descriptor limit")
        })?;
        Ok(SharedPipe {
            pipe: Pipe::new(PIPE_SIZE)?,
            _share: share,
        })
    }
}

/// How many descriptors the relays' pipes may hold at once: a third of the process's
/// descriptor limit. A relay that splices both ways holds six descriptors and a copying one two, so
/// without a bound, near the limit, the pipes of the first relays would take the
/// descriptors that later clients need for their sockets (and those clients would be
/// closed); with it, the relays past the share copy and the sockets keep two thirds.
fn pipe_share() -> usize {
    static SHARE: OnceLock<usize> = OnceLock::new();
    *SHARE.get_or_init(|| {
        let soft = descriptor_limit().unwrap_or(1024);
        usize::try_from(soft / 3).unwrap_or(usize::MAX)
    })
}

/// Two descriptors of the pipes' share, given back on drop.
struct PipeShare;

/// Descriptors the relays' pipes hold now.
static PIPE_DESCRIPTORS: AtomicUsize = AtomicUsize::new(0);

impl PipeShare {
    fn take() -> Option<PipeShare> {
        PIPE_DESCRIPTORS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + 2 <= pipe_share()).then_some(held + 2)
            })
            .ok()
            .map(|_| PipeShare)
    }
}

impl Drop for PipeShare {
    fn drop(&mut self) {
        PIPE_DESCRIPTORS.fetch_sub(2, Ordering::AcqRel);
    }
}

/// Relays `client` and `upstream` both ways until both directions end (each end of stream
/// passed on as a half-close), either side fails, or nothing moves for `idle`; a direction
/// that carries a bulk stream splices, if [`available`]. The bytes are counted into
/// `tallies` (received from the client, sent to it) as they are passed on.
pub(crate) async fn relay(
    client: &Stream,
    upstream: &Stream,
    idle: Option<Duration>,
    tallies: (Tally<'_>, Tally<'_>),
) -> io::Result<()> {
    let (mut received, mut sent) = tallies;
    let activity = Activity::new();
    let splicing = available();
    let one_ended = AtomicBool::new(false);
    let result = {
        let both = async {
            tokio::try_join!(
                one_way(
                    client,
                    upstream,
                    &activity,
                    &mut received,
                    splicing,
                    &one_ended
                ),
                one_way(upstream, client, &activity, &mut sent, splicing, &one_ended),
            )
            .map(drop)
        };
        crate::net::unless_idle(idle, &activity, both).await
    };
    if result
        .as_ref()
        .is_err_and(|err| !crate::net::is_idle_timeout(err))
    {
        // One side failed, and the other is reset next: what the target had sent before
        // (an answer to an upload it then refused: a 413, and a reset for the bytes it left
        // unread) goes to the client first, as a direct client would read it.
        salvage(upstream, client, &activity, &mut sent).await;
    }
    result
}

/// How long, at most, [`salvage`] passes on what a failed relay's target had sent.
pub(super) const SALVAGE_TIME: Duration = Duration::from_millis(500);

/// Passes on what `from` holds already (without waiting for more: up to its end, an error,
/// or [`SALVAGE_TIME`]) to `to`, then waits, within the same time, for `to`'s peer to
/// acknowledge it, since the reset that follows would throw away what is still queued.
async fn salvage(from: &Stream, to: &Stream, activity: &Activity, tally: &mut Tally<'_>) {
    let deadline = tokio::time::Instant::now() + SALVAGE_TIME;
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); super::relay::CHUNK];
    let pass_on = async {
        while let Ok(read @ 1..) = receive(from, &mut buf) {
            // SAFETY: `recv(2)` initialized the first `read` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), read) };
            if send_all(to, bytes, activity).await.is_err() {
                return;
            }
            tally.add(read);
        }
        until_acknowledged(to).await;
    };
    let _ = tokio::time::timeout_at(deadline, pass_on).await;
}

/// Waits until `stream`'s peer has acknowledged every byte written to it (`SIOCOUTQ` is 0):
/// a reset would throw away what is still queued. Unbounded: callers bound it.
pub(super) async fn until_acknowledged(stream: &Stream) {
    while crate::net::unacknowledged(stream.as_raw_fd()).is_ok_and(|queued| queued > 0) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One direction: copied through a buffer while its reads come short of the buffer
/// (requests and answers, and the whole of most short connections), then spliced once a
/// read fills it (a bulk stream). A pipe costs two descriptors and four system calls to
/// make, size and close, more than a short connection's copies: relaying a greeting cost
/// 46.2 µs of CPU when both pipes were made for every connection, 38.0 µs when this came
/// (medians of 5 rounds, 2026-12-05), and bulk streams moved as before (docs/benchmarks.md).
async fn one_way(
    from: &Stream,
    to: &Stream,
    activity: &Activity,
    tally: &mut Tally<'_>,
    splicing: bool,
    one_ended: &AtomicBool,
) -> io::Result<()> {
    match copy_until_bulk(from, to, activity, tally, splicing, one_ended).await? {
        Some(pipe) => splice_through(from, to, &pipe.pipe, activity, tally, one_ended).await,
        None => Ok(()),
    }
}

/// Copies `from` to `to` until `from` ends (passed on: `None`) or a read fills the buffer
/// and a pipe can be had (returned, to splice the rest through; never when `splicing` is
/// off). The buffer is held only while bytes are there to move, so a quiet relay holds
/// none.
async fn copy_until_bulk(
    from: &Stream,
    to: &Stream,
    activity: &Activity,
    tally: &mut Tally<'_>,
    splicing: bool,
    one_ended: &AtomicBool,
) -> io::Result<Option<SharedPipe>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut copy_to_the_end = !splicing;
    loop {
        let read = from
            .async_io(Interest::READABLE, || {
                buf.reserve_exact(super::relay::CHUNK);
                let read = receive(from, buf.spare_capacity_mut());
                if read
                    .as_ref()
                    .is_err_and(|err| err.kind() == io::ErrorKind::WouldBlock)
                {
                    // Waits without it: a quiet connection (a keep-alive between requests)
                    // holds no buffer, and taking one again is a jemalloc cache hit.
                    buf = Vec::new();
                }
                read
            })
            .await?;
        if read == 0 {
            return pass_on_end(to, one_ended).map(|()| None);
        }
        // SAFETY: `recv(2)` initialized the first `read` bytes of the spare capacity (and
        // `buf` was empty, so they are its first `read` bytes).
        unsafe { buf.set_len(read) };
        activity.touch();
        send_all(to, &buf, activity).await?;
        tally.add(read);
        let filled = read == buf.capacity();
        buf.clear();
        if filled && !copy_to_the_end {
            match SharedPipe::new() {
                Ok(pipe) => return Ok(Some(pipe)),
                Err(err) => {
                    tracing::debug!("relaying by copying: {}", crate::error::describe(&err));
                    copy_to_the_end = true;
                }
            }
        }
    }
}

/// Passes the end of one direction on as a half-close; unless the other direction has
/// ended already, for then the relay closes both sockets next, and the close sends the same
/// FIN (this side's bytes have all been read, so it is a FIN, not a reset): a system call
/// less per connection.
fn pass_on_end(to: &Stream, one_ended: &AtomicBool) -> io::Result<()> {
    if one_ended.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    to.shutdown_write()
}

/// `recv(2)` into `buf` without waiting.
fn receive(from: &Stream, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    socket2::SockRef::from(from).recv(buf)
}

/// Sends all of `bytes`, waiting while `to` takes no more.
async fn send_all(to: &Stream, mut bytes: &[u8], activity: &Activity) -> io::Result<()> {
    let send = |bytes: &[u8]| socket2::SockRef::from(to).send_with_flags(bytes, libc::MSG_NOSIGNAL);
    while !bytes.is_empty() {
        // Tried at once: the socket usually has room, and tokio's readiness need not agree.
        let sent = match send(bytes) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                to.async_io(Interest::WRITABLE, || send(bytes)).await?
            }
            other => other?,
        };
        bytes = &bytes[sent..];
        activity.touch();
    }
    Ok(())
}

/// The rest of one direction, spliced: the pipe is filled with all it holds of what has
/// arrived, and emptied into `to` as fast as `to` takes it. While `to` takes no more, the
/// pipe is topped up from `from` without waiting, so that the next time `to` drains, a full
/// pipe moves in one call: fewer wake-ups and calls per megabyte than filling only once the
/// pipe is empty.
async fn splice_through(
    from: &Stream,
    to: &Stream,
    pipe: &Pipe,
    activity: &Activity,
    tally: &mut Tally<'_>,
    one_ended: &AtomicBool,
) -> io::Result<()> {
    let (pipe_in, pipe_out) = (pipe.write.as_raw_fd(), pipe.read.as_raw_fd());
    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    let capacity = pipe.capacity;
    // Bytes in the pipe, and whether `from` has ended.
    let (mut held, mut ended) = (0usize, false);
    loop {
        if held == 0 {
            if ended {
                return pass_on_end(to, one_ended);
            }
            let filled = from
                .async_io(Interest::READABLE, || {
                    splice(from_fd, pipe_in, capacity, true)
                })
                .await?;
            if filled == 0 {
                ended = true;
                continue;
            }
            held = filled;
            activity.touch();
        }
        let moved = match to.try_io(Interest::WRITABLE, || splice(pipe_out, to_fd, held, true)) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !ended && held < capacity {
                    // Called directly, not through `try_io`: `EAGAIN` here may mean a full
                    // pipe rather than an empty socket, and must not clear the socket's
                    // readiness (an edge-triggered wait would then miss bytes already there).
                    match splice(from_fd, pipe_in, capacity - held, true) {
                        Ok(0) => ended = true,
                        Ok(filled) => {
                            held += filled;
                            activity.touch();
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(err) => return Err(err),
                    }
                }
                to.async_io(Interest::WRITABLE, || splice(pipe_out, to_fd, held, true))
                    .await?
            }
            other => other?,
        };
        held -= moved;
        tally.add(moved);
        activity.touch();
    }
}
