//! The numbers of a load test: live counters the progress display reads, one latency
//! histogram, a per-interval timeline for the report, errors by kind, and the final
//! [`Report`] as a table or JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::report::{Latency, Report, Setup};

/// Why one operation failed: by errno where the error had one, else in a word of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// An operating-system error, by its errno (`ECONNREFUSED`, `EMFILE`, …).
    Errno(i32),
    /// No progress within the operation's timeout (our own deadline: no errno).
    Timeout,
    /// The bytes received were not the ones expected.
    WrongBytes,
    /// The TLS handshake or a TLS record failed, with no errno (`tls:` endpoints).
    Tls,
    /// The peer ended the stream before the answer was complete.
    Eof,
    /// Any other error without an errno.
    Other,
}

/// Marks an I/O error as a failed TLS handshake, for [`Failure::of`].
#[derive(Debug)]
pub(crate) struct HandshakeFailed(pub(crate) io::Error);

impl fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HandshakeFailed {}

impl HandshakeFailed {
    /// `err`, marked.
    pub(crate) fn wrap(err: io::Error) -> io::Error {
        io::Error::new(err.kind(), HandshakeFailed(err))
    }
}

impl Failure {
    /// Sorts an I/O error: its errno if it has one (a failed handshake's too), else the
    /// word for what went wrong.
    pub fn of(err: &io::Error) -> Failure {
        let handshake = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<HandshakeFailed>());
        let cause = handshake.map_or(err, |failed| &failed.0);
        if let Some(code) = cause.raw_os_error() {
            return Failure::Errno(code);
        }
        // tokio-rustls reports a bad record as InvalidData carrying the rustls error.
        let tls = handshake.is_some()
            || cause
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>());
        match cause.kind() {
            io::ErrorKind::TimedOut => Failure::Timeout,
            _ if tls => Failure::Tls,
            io::ErrorKind::InvalidData => Failure::WrongBytes,
            io::ErrorKind::UnexpectedEof => Failure::Eof,
            _ => Failure::Other,
        }
    }

    /// The name the report counts it under: the errno's C name, or a word.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Errno(code) => errno_name(code),
            Failure::Timeout => "timeout".into(),
            Failure::WrongBytes => "wrong-bytes".into(),
            Failure::Tls => "tls".into(),
            Failure::Eof => "eof".into(),
            Failure::Other => "other".into(),
        }
    }
}

/// Counters and histograms shared by every task of a run.
#[derive(Debug)]
pub struct Stats {
    start: Instant,
    interval: Duration,
    /// Microseconds since `start` at which recording started; 0 while not recording.
    recording: AtomicU64,
    /// The measured span in microseconds, once recording has stopped; 0 before.
    measured: AtomicU64,
    /// Completed operations past which nothing is counted (`--count`); `u64::MAX`: none.
    limit: AtomicU64,
    completed: AtomicU64,
    /// Open loop: arrivals that fell due in the measured span and started in it.
    arrivals: AtomicU64,
    bytes: AtomicU64,
    /// Failed operations, all kinds (read by the progress display without a lock).
    failed: AtomicU64,
    failures: Mutex<BTreeMap<Failure, u64>>,
    latency: Mutex<Histogram<u64>>,
    timeline: Mutex<Vec<u64>>,
    first_error: Mutex<Option<String>>,
    /// Told by the operation that reaches the limit, so the run ends at once rather than
    /// at the clock's next look (operations started meanwhile reach the server uncounted).
    at_limit: tokio::sync::Notify,
}

impl Stats {
    /// Empty statistics; `interval` is the width of one timeline bucket.
    pub fn new(interval: Duration) -> Stats {
        Stats {
            start: Instant::now(),
            interval,
            recording: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            completed: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::default(),
            // 1 µs to 1 hour at 3 significant digits. new_with_bounds fails only for low < 1,
            // high < 2·low or more than 5 digits; these constants are none of those.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid constant bounds"),
            ),
            timeline: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
            at_limit: tokio::sync::Notify::new(),
        }
    }

    /// Whether the operation that reaches the limit has completed: a worker starts no more
    /// (two atomic loads, asked before each operation).
    pub(crate) fn limit_reached_now(&self) -> bool {
        self.completed.load(Ordering::Relaxed) >= self.limit.load(Ordering::Relaxed)
    }

    /// Resolves once the operation that reaches the limit has completed (never without a
    /// limit).
    pub(crate) async fn limit_reached(&self) {
        self.at_limit.notified().await;
    }

    /// Ends the measured span at the `limit`th completed operation (`None`: no limit).
    pub(crate) fn set_limit(&self, limit: Option<u64>) {
        self.limit
            .store(limit.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The measured span, once recording has stopped (at the end of the run, or at the
    /// operation that reached the limit).
    pub fn measured(&self) -> Option<Duration> {
        match self.measured.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// The first I/O error of the measured span, in words, if any.
    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    /// Starts counting (after the warm-up): everything before is forgotten.
    pub(crate) fn start_recording(&self) {
        self.completed.store(0, Ordering::Relaxed);
        self.arrivals.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        lock(&self.failures).clear();
        lock(&self.latency).reset();
        lock(&self.timeline).clear();
        *lock(&self.first_error) = None;
        self.measured.store(0, Ordering::Relaxed);
        self.recording.store(self.now().max(1), Ordering::Relaxed);
    }

    /// Stops counting (at the end of the measured span): operations that finish while the
    /// run drains are not part of it. The first call fixes the measured span.
    pub(crate) fn stop_recording(&self) {
        let since = self.recording.swap(0, Ordering::Relaxed);
        if since != 0 {
            let span = self.now().saturating_sub(since).max(1);
            self.measured.store(span, Ordering::Relaxed);
        }
    }

    /// Microseconds since `start`.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed) != 0
    }

    /// One operation done, with its latency and the bytes it moved. The one that reaches
    /// the limit ends the measured span; none after it counts.
    pub(crate) fn complete(&self, latency: Duration, bytes: u64) {
        if !self.is_recording() {
            return;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        let counted = self
            .completed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            });
        match counted {
            Err(_) => return,
            Ok(before) if before + 1 == limit => {
                self.stop_recording();
                // A permit is kept if the clock is not waiting yet.
                self.at_limit.notify_one();
            }
            Ok(_) => {}
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        lock(&self.latency).saturating_record(micros);
        let bucket = self.bucket();
        let mut timeline = lock(&self.timeline);
        if timeline.len() <= bucket {
            timeline.resize(bucket + 1, 0);
        }
        timeline[bucket] += 1;
    }

    /// An open loop's arrival, due at `due`, starts now: counted if it fell due in the
    /// measured span (one due in the warm-up and started late is the warm-up's).
    pub(crate) fn arrival_started(&self, due: Instant) {
        let since = self.recording.load(Ordering::Relaxed);
        if since != 0 && due >= self.start + Duration::from_micros(since) {
            self.arrivals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One operation failed.
    pub(crate) fn fail(&self, failure: Failure) {
        if self.is_recording() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *lock(&self.failures).entry(failure).or_default() += 1;
        }
    }

    /// One operation failed with an I/O error; the first one is kept to be shown.
    pub(crate) fn fail_io(&self, err: &io::Error) {
        if !self.is_recording() {
            return;
        }
        self.fail(Failure::of(err));
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(crate::tls::words_of(err));
        }
    }

    fn bucket(&self) -> usize {
        let since = self.recording.load(Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let interval = u64::try_from(self.interval.as_micros()).unwrap_or(1).max(1);
        usize::try_from(now.saturating_sub(since) / interval).unwrap_or(usize::MAX)
    }

    /// Completed operations so far (for the progress display).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Failed operations so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The report of a run of `mode` against `endpoint`, configured as `config`, for a
    /// measured span of `elapsed` (idle runs fill in [`Report::held`] and
    /// [`Report::memory`] afterwards).
    pub fn report(&self, endpoint: String, mode: &str, config: Setup, elapsed: Duration) -> Report {
        let latency = lock(&self.latency);
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        let completed = self.completed();
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let mut errors = BTreeMap::new();
        for (failure, n) in lock(&self.failures).iter() {
            // Two unknown errnos never share a name ("errno N"), so no count is lost.
            *errors.entry(failure.name().into_owned()).or_default() += n;
        }
        // A span shorter than one bucket is one bucket of its own width (its count over the
        // bucket's width would read as a fraction of the rate).
        let interval = self.interval.as_secs_f64().min(secs);
        // Whole buckets only: a last, partly filled one would read as a drop in rate. Every
        // one of them, those in which nothing completed too (a server that stalled or died
        // before the end shows as the zeros it was).
        let buckets = ((secs / interval).floor() as usize).max(1);
        let counts = lock(&self.timeline);
        let timeline = (0..buckets)
            .map(|i| counts.get(i).copied().unwrap_or(0) as f64 / interval)
            .collect();
        // The arrivals a rate of `rate` makes in the span, less those that started: what
        // found every slot busy (or held by a failure's pause) until the end.
        let not_started = config.rate.map(|rate| {
            let due = (rate * secs).floor() as u64;
            due.saturating_sub(self.arrivals.load(Ordering::Relaxed))
        });
        Report {
            endpoint,
            mode: mode.to_owned(),
            config,
            seconds: round(secs, 3),
            completed,
            rate_per_s: round(completed as f64 / secs, 1),
            mb_per_s: round(self.bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs, 2),
            bytes: self.bytes.load(Ordering::Relaxed),
            latency_ms: Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                p999: ms(0.999),
                max: latency.max() as f64 / 1000.0,
            },
            errors,
            not_started,
            held: None,
            memory: None,
            interval_s: interval,
            rate_timeline: timeline,
        }
    }
}

/// An errno by its C name (`EMFILE`); one we do not list as `errno N`.
fn errno_name(code: i32) -> std::borrow::Cow<'static, str> {
    const NAMES: [(i32, &str); 36] = [
        (libc::EMFILE, "EMFILE"),
        (libc::ENFILE, "ENFILE"),
        (libc::ENOBUFS, "ENOBUFS"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (libc::EADDRINUSE, "EADDRINUSE"),
        (libc::ENETUNREACH, "ENETUNREACH"),
        (libc::EHOSTUNREACH, "EHOSTUNREACH"),
        (libc::ENETDOWN, "ENETDOWN"),
        (libc::EHOSTDOWN, "EHOSTDOWN"),
        (libc::ECONNABORTED, "ECONNABORTED"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::ECONNRESET, "ECONNRESET"),
        (libc::EPIPE, "EPIPE"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ENOTCONN, "ENOTCONN"),
        (libc::ESHUTDOWN, "ESHUTDOWN"),
        (libc::EISCONN, "EISCONN"),
        (libc::EALREADY, "EALREADY"),
        (libc::EINPROGRESS, "EINPROGRESS"),
        (libc::EACCES, "EACCES"),
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::EPROTO, "EPROTO"),
        (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
        (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
        (libc::EMSGSIZE, "EMSGSIZE"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::EINTR, "EINTR"),
        (libc::EBADF, "EBADF"),
        (libc::ENOTSOCK, "ENOTSOCK"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EIO, "EIO"),
        (libc::ENOSYS, "ENOSYS"),
    ];
    NAMES.iter().find(|(errno, _)| *errno == code).map_or_else(
        || format!("errno {code}").into(),
        |(_, name)| (*name).into(),
    )
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// A poisoned statistics lock only means a task panicked mid-update; the numbers are still
/// the best there are.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_named_by_errno_or_by_a_word_when_they_have_none() {
        let stats = Stats::new(Duration::from_secs(1));
        stats.start_recording();
        stats.fail_io(&io::Error::from_raw_os_error(libc::EMFILE));
        stats.fail_io(&io::Error::from_raw_os_error(libc::EMFILE));
        stats.fail_io(&io::Error::other("no errno"));
        stats.fail_io(&io::Error::from_raw_os_error(libc::ECONNREFUSED));
        stats.fail_io(&io::Error::from_raw_os_error(libc::EPIPE));
        stats.fail_io(&io::Error::from_raw_os_error(4095));
        stats.fail_io(&io::ErrorKind::TimedOut.into());
        stats.fail_io(&io::ErrorKind::UnexpectedEof.into());
        stats.fail_io(&HandshakeFailed::wrap(io::Error::from_raw_os_error(
            libc::ECONNRESET,
        )));
        stats.fail_io(&HandshakeFailed::wrap(io::ErrorKind::InvalidData.into()));
        stats.fail(Failure::WrongBytes);
        let setup = Setup {
            connections: 1,
            size: None,
            window: None,
            duration_s: 1.0,
            warmup_s: 0.0,
            rate: None,
            count: None,
            threads: 1,
        };
        let report = stats.report(String::new(), "greeting", setup, Duration::from_secs(1));
        let expected = [
            ("ECONNREFUSED", 1),
            ("ECONNRESET", 1),
            ("EMFILE", 2),
            ("EPIPE", 1),
            ("eof", 1),
            ("errno 4095", 1),
            ("other", 1),
            ("timeout", 1),
            ("tls", 1),
            ("wrong-bytes", 1),
        ];
        let got: Vec<(&str, u64)> = report
            .errors
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(report.failed(), 11);
        assert_eq!(stats.failed(), 11);
    }
}
