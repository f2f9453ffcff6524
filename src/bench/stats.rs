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
use serde::Serialize;

/// Why one operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The connection was refused.
    Refused,
    /// The connection was reset.
    Reset,
    /// No progress within the timeout.
    Timeout,
    /// The bytes received were not the ones expected.
    WrongBytes,
    /// The TLS handshake failed (`tls:` endpoints).
    Tls,
    /// Any other error.
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
    /// Sorts an I/O error into a kind.
    pub fn of(err: &io::Error) -> Failure {
        if err
            .get_ref()
            .is_some_and(|inner| inner.is::<HandshakeFailed>())
        {
            return Failure::Tls;
        }
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Failure::Reset,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::Timeout,
            io::ErrorKind::InvalidData => Failure::WrongBytes,
            _ => Failure::Other,
        }
    }

    const ALL: [Failure; 6] = [
        Failure::Refused,
        Failure::Reset,
        Failure::Timeout,
        Failure::WrongBytes,
        Failure::Tls,
        Failure::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::WrongBytes => "wrong bytes",
            Failure::Tls => "tls",
            Failure::Other => "other",
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
    bytes: AtomicU64,
    failures: [AtomicU64; Failure::ALL.len()],
    latency: Mutex<Histogram<u64>>,
    timeline: Mutex<Vec<u64>>,
    first_error: Mutex<Option<String>>,
    /// [`Failure::Other`] errors by errno name (`EMFILE`), so that the report names them.
    others: Mutex<BTreeMap<&'static str, u64>>,
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
            bytes: AtomicU64::new(0),
            failures: Default::default(),
            // 1 µs to 1 hour at 3 significant digits. new_with_bounds fails only for low < 1,
            // high < 2·low or more than 5 digits; these constants are none of those.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid constant bounds"),
            ),
            timeline: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
            others: Mutex::default(),
        }
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
        self.bytes.store(0, Ordering::Relaxed);
        for failure in &self.failures {
            failure.store(0, Ordering::Relaxed);
        }
        lock(&self.latency).reset();
        lock(&self.timeline).clear();
        *lock(&self.first_error) = None;
        lock(&self.others).clear();
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
            Ok(before) if before + 1 == limit => self.stop_recording(),
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

    /// One operation failed.
    pub(crate) fn fail(&self, failure: Failure) {
        if self.is_recording() {
            self.failures[failure as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One operation failed with an I/O error; the first one is kept to be shown.
    pub(crate) fn fail_io(&self, err: &io::Error) {
        if !self.is_recording() {
            return;
        }
        let failure = Failure::of(err);
        self.fail(failure);
        if failure == Failure::Other {
            *lock(&self.others).entry(errno_name(err)).or_default() += 1;
        }
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(crate::error::describe(err));
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
        self.failures
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .sum()
    }

    /// The report for a measured span of `elapsed` (`held`: idle mode's count).
    pub fn report(
        &self,
        endpoint: String,
        mode: &str,
        elapsed: Duration,
        held: Option<u64>,
    ) -> Report {
        let latency = lock(&self.latency);
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        let completed = self.completed();
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let mut errors: BTreeMap<String, u64> = Failure::ALL
            .iter()
            .map(|f| {
                (
                    f.name().to_owned(),
                    self.failures[*f as usize].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        // The errors of no known kind, by errno name: what is left without one stays
        // "other".
        if let Some(other) = errors.remove(Failure::Other.name()) {
            let mut named = 0;
            for (name, n) in lock(&self.others).iter() {
                errors.insert((*name).to_owned(), *n);
                named += n;
            }
            if other > named {
                errors.insert(Failure::Other.name().to_owned(), other - named);
            }
        }
        let interval = self.interval.as_secs_f64();
        // Whole buckets only: a last, partly filled one would read as a drop in rate.
        let buckets = (secs / interval).floor() as usize;
        let timeline = lock(&self.timeline)
            .iter()
            .take(buckets.max(1))
            .map(|n| *n as f64 / interval)
            .collect();
        Report {
            endpoint,
            mode: mode.to_owned(),
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
            held,
            interval_s: interval,
            rate_timeline: timeline,
        }
    }
}

/// The errno of `err` by its C name (`EMFILE`), or `other` when it has none we know.
fn errno_name(err: &io::Error) -> &'static str {
    let Some(code) = err.raw_os_error() else {
        return "other";
    };
    const NAMES: [(i32, &str); 22] = [
        (libc::EMFILE, "EMFILE"),
        (libc::ENFILE, "ENFILE"),
        (libc::ENOBUFS, "ENOBUFS"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (libc::EADDRINUSE, "EADDRINUSE"),
        (libc::ENETUNREACH, "ENETUNREACH"),
        (libc::EHOSTUNREACH, "EHOSTUNREACH"),
        (libc::ENETDOWN, "ENETDOWN"),
        (libc::ECONNABORTED, "ECONNABORTED"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::ECONNRESET, "ECONNRESET"),
        (libc::EPIPE, "EPIPE"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ENOTCONN, "ENOTCONN"),
        (libc::EACCES, "EACCES"),
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EINVAL, "EINVAL"),
        (libc::EPROTO, "EPROTO"),
        (libc::EMSGSIZE, "EMSGSIZE"),
        (libc::EAGAIN, "EAGAIN"),
    ];
    NAMES
        .iter()
        .find(|(errno, _)| *errno == code)
        .map_or("other", |(_, name)| name)
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

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The endpoint under test.
    pub endpoint: String,
    /// `greeting`, `echo` or `idle`.
    pub mode: String,
    /// The measured span (warm-up excluded).
    pub seconds: f64,
    /// Operations completed: connections (greeting), round trips (echo), requests (UDP).
    pub completed: u64,
    /// Completed per second.
    pub rate_per_s: f64,
    /// Payload throughput (10⁶ bytes per second), echo mode.
    pub mb_per_s: f64,
    /// Payload bytes moved in the measured span (echo: sent and verified back), echo mode.
    pub bytes: u64,
    /// Latency percentiles of completed operations.
    pub latency_ms: Latency,
    /// Failures by kind (only kinds that happened).
    pub errors: BTreeMap<String, u64>,
    /// Idle mode: connections the server still held at the end.
    pub held: Option<u64>,
    /// Width of one timeline bucket, in seconds.
    pub interval_s: f64,
    /// Completed per second, bucket by bucket.
    pub rate_timeline: Vec<f64>,
}

impl Report {
    /// Failed operations, all kinds.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {} for {:.3}s",
            self.mode, self.endpoint, self.seconds
        )?;
        if let Some(held) = self.held {
            // Idle mode holds connections; a rate of operations means nothing there.
            writeln!(f, "  held        {held:>12} connections")?;
        } else {
            writeln!(f, "  completed   {:>12}", self.completed)?;
            writeln!(f, "  rate        {:>12.1} /s", self.rate_per_s)?;
        }
        if self.bytes > 0 {
            writeln!(f, "  throughput  {:>12.2} MB/s", self.mb_per_s)?;
            writeln!(f, "  bytes       {:>12}", self.bytes)?;
        }
        let l = &self.latency_ms;
        writeln!(
            f,
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        if self.errors.is_empty() {
            writeln!(f, "  errors      {:>12}", 0)
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(
                f,
                "  errors      {:>12}  ({})",
                self.failed(),
                list.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_no_known_kind_are_named_by_errno() {
        let stats = Stats::new(Duration::from_secs(1));
        stats.start_recording();
        stats.fail_io(&io::Error::from_raw_os_error(libc::EMFILE));
        stats.fail_io(&io::Error::from_raw_os_error(libc::EMFILE));
        stats.fail_io(&io::Error::other("no errno"));
        stats.fail_io(&io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let report = stats.report(String::new(), "greeting", Duration::from_secs(1), None);
        assert_eq!(report.errors.get("EMFILE"), Some(&2));
        assert_eq!(report.errors.get("other"), Some(&1));
        assert_eq!(report.errors.get("refused"), Some(&1));
        assert_eq!(report.failed(), 4);
    }
}
