//! [`Activity`]: when bytes last moved through something with two directions (the stdio
//! bridge, the relays), shared by the threads or futures that move them, for an idle limit
//! over both ([`unless_idle`]; [`Touching`] counts a stream's bytes in one); and
//! [`idle_error`], what an idle limit ends a connection with.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How far past its time a wait may end before the program is taken to have been stopped
/// (^Z, a debugger, a paused VM) or starved during it, and the time counted as not its own.
pub(crate) const OVERSLEPT: Duration = Duration::from_millis(100);

/// The time a wait of `limit` begun at `started`, seen ended, gives back: what it overslept
/// when that is more than [`OVERSLEPT`] (the program did not run), up to `limit` once more;
/// else none.
pub(crate) fn given_back(started: Instant, limit: Duration) -> Duration {
    let overslept = started.elapsed().saturating_sub(limit);
    if overslept > OVERSLEPT {
        overslept.min(limit)
    } else {
        Duration::ZERO
    }
}

/// Sleeps for `period` of the time the program ran: a sleep seen ended late by more than
/// 100 ms (the program was stopped or starved: ^Z, a debugger, a paused VM) sleeps on for
/// the time it overslept, up to `period` once more, so that what the period was for (a
/// listener accepting the connections of its shutdown delay, a relay passing the datagrams
/// of its own) gets done.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::{Duration, Instant};
///
/// let started = Instant::now();
/// socketkit::server::sleep_running(Duration::from_millis(20)).await;
/// assert!(started.elapsed() >= Duration::from_millis(20));
/// # }
/// ```
pub async fn sleep_running(period: Duration) {
    let started = Instant::now();
    tokio::time::sleep(period).await;
    let more = given_back(started, period);
    if !more.is_zero() {
        tokio::time::sleep(more).await;
    }
}

/// Awaits `work` for up to `limit` of the time the program ran: `None` once that has
/// passed.
///
/// A program stopped past the limit (^Z, a debugger, a paused VM) wakes with its timers
/// run before its sockets are looked at, and what the peer did during the stop would count
/// for nothing. So a limit seen passed late by more than [`OVERSLEPT`] gives back the time
/// it overslept, up to the limit once more (a TLS handshake whose ClientHello came during
/// the stop still needs its round trips); any other gets one more look, after the runtime
/// has taken in the readiness that came meanwhile.
///
/// `work` comes pinned by the caller: taken by value and pinned here, a large future (a
/// connection attempt) would be laid out twice in every task that awaits this.
pub(crate) async fn within_running<F: Future + ?Sized>(
    limit: Duration,
    mut work: Pin<&mut F>,
) -> Option<F::Output> {
    let started = Instant::now();
    if let Ok(done) = tokio::time::timeout(limit, work.as_mut()).await {
        return Some(done);
    }
    let more = given_back(started, limit);
    tokio::task::yield_now().await;
    // A timeout of zero polls `work` once, then gives up.
    tokio::time::timeout(more, work).await.ok()
}

/// The time of the last progress, as milliseconds since creation in an atomic.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Counts as progress now.
    pub(crate) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records progress now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the last progress was.
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// How long nothing has moved.
    pub(crate) fn quiet_for(&self) -> Duration {
        self.last().elapsed()
    }

    /// When an idle `limit` runs out, if nothing moves before.
    pub(crate) fn deadline(&self, limit: Duration) -> Instant {
        self.last() + limit
    }
}

/// The error of a connection that moved no data for `limit`, the same words wherever an
/// idle timeout ends one (a served connection, a relay, a program's socket).
pub(crate) fn idle_error(limit: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, IdleTimeout(limit))
}

/// Whether `err` is an idle timeout's ([`idle_error`]), not a failure of the connection:
/// its kind alone cannot say, for the kernel's `ETIMEDOUT` (a peer that stopped
/// acknowledging) has the same.
pub(crate) fn is_idle_timeout(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<IdleTimeout>())
}

/// The payload of [`idle_error`], so that [`is_idle_timeout`] can tell it apart.
#[derive(Debug)]
struct IdleTimeout(Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "idle for {}", humantime::format_duration(self.0))
    }
}

impl std::error::Error for IdleTimeout {}

/// Runs `work` (a mover whose bytes count in `activity`), ended with the idle timeout's
/// error ([`idle_error`]) once nothing has moved for `limit`, if there is one: the watchdog
/// of a mover whose own reads and writes may all be waiting on something else (a peer that
/// stopped reading) when the limit runs out.
pub(crate) async fn unless_idle<T>(
    limit: Option<Duration>,
    activity: &Activity,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match limit {
        None => work.await,
        Some(limit) => tokio::select! {
            // The work first: what it takes in on the watchdog's second look counts.
            biased;
            result = work => result,
            err = idle_watchdog(activity, limit) => Err(err),
        },
    }
}

/// Waits until nothing has moved through `activity` for `limit`, and gives the idle
/// timeout's error. The limit seen passed is looked at once more after the runtime has
/// taken in the readiness that came meanwhile (the work, polled first, then takes what came):
/// a program stopped longer than the limit wakes with its timers run before its sockets
/// are looked at, and bytes that came during the stop are no idleness.
async fn idle_watchdog(activity: &Activity, limit: Duration) -> io::Error {
    let mut looked_again = false;
    loop {
        let deadline = activity.deadline(limit);
        if Instant::now() < deadline {
            looked_again = false;
            tokio::time::sleep_until(deadline.into()).await;
        } else if looked_again {
            return idle_error(limit);
        } else {
            looked_again = true;
            tokio::task::yield_now().await;
        }
    }
}

/// A stream whose reads and writes count as progress in an [`Activity`], for
/// [`idle_watchdog`] to see.
pub(crate) struct Touching<'a, T: ?Sized> {
    inner: &'a mut T,
    activity: &'a Activity,
}

impl<'a, T: ?Sized> Touching<'a, T> {
    /// `inner`, its bytes counted in `activity`.
    pub(crate) fn new(inner: &'a mut T, activity: &'a Activity) -> Touching<'a, T> {
        Touching { inner, activity }
    }
}

impl<T: AsyncRead + Unpin + ?Sized> AsyncRead for Touching<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut *self.inner).poll_read(cx, buf);
        // An end of stream moves no bytes, but it is the peer's word all the same.
        if matches!(poll, Poll::Ready(Ok(()))) {
            self.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin + ?Sized> AsyncWrite for Touching<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_idle_limit_is_an_idle_timeout() {
        let idle = idle_error(Duration::from_millis(1500));
        assert!(is_idle_timeout(&idle));
        assert_eq!(idle.to_string(), "idle for 1s 500ms");
        assert!(!is_idle_timeout(&io::Error::from_raw_os_error(
            libc::ETIMEDOUT
        )));
        assert!(!is_idle_timeout(&io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out"
        )));
    }

    #[test]
    fn touching_moves_the_deadline() {
        let activity = Activity::new();
        let first = activity.deadline(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(5));
        activity.touch();
        assert!(activity.deadline(Duration::from_secs(1)) > first);
        assert!(activity.quiet_for() < Duration::from_secs(1));
    }
}
