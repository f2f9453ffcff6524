//! Health checks of a relay's targets ([`super::Forward::check_every`]): every interval,
//! each target is connected to as a client would be (through the proxy, with a PROXY header
//! that names no client — v1 `UNKNOWN`, v2 `LOCAL` — and a `tls:` target's handshake) and
//! the connection closed. A check that fails marks the target down (tried after the others)
//! until a check or a client's connection succeeds, so that a target that died costs no
//! client a failed attempt once a check has seen it, and one that came back gets its share
//! at the next check rather than after `retry_after`. Changes are logged: `health check:
//! tcp:… is down: connection refused`, `health check: tcp:… is up`.
//!
//! With an HTTP path ([`super::Forward::check_http`]) a check also asks for it and reads
//! the status line: `2xx` and `3xx` pass, anything else (or nothing within the timeout) is
//! a failure named in the log line (`answered HTTP 503`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::endpoint::Endpoint;
use crate::error::describe;
use crate::net;

use super::by_name::NameRoutes;
use super::dial::Dialer;
use super::relay::Upstream;
use super::targets::{List, Target, Targets, Verdict};

/// The checks of one relay; they end once the relay (every clone of it) is dropped.
#[derive(Debug)]
pub(super) struct Checks {
    /// Weak: the checks must not keep a relay's targets alive.
    pub(super) targets: Weak<Targets>,
    /// The targets of the routes by server name, checked by connection only: behind a
    /// plain listener they speak the client's TLS, which a plain HTTP request is not.
    pub(super) routes: Option<Weak<NameRoutes>>,
    /// With a timeout, always: a check never outlives its round by much.
    pub(super) dial: Dialer,
    /// The PROXY header of a check, if the relay sends them.
    pub(super) header: Option<Vec<u8>>,
    /// The path to ask for over HTTP, if a connection is not check enough.
    pub(super) http_path: Option<Arc<str>>,
    /// Passing checks in a row that take a target back.
    pub(super) rise: u32,
    /// Failed checks in a row that take a target out.
    pub(super) fall: u32,
    pub(super) interval: Duration,
}

impl Checks {
    /// Checks every target every interval (the first time at once), each on its own: a
    /// target whose check is still under way at the next tick (one that hangs until the
    /// timeout) is not checked again until it ends, and holds up no other target's check —
    /// which waited for the slowest of its round, so that one hung target slowed the news
    /// of every other's death from a second to the timeout. Runs until the relay is gone.
    pub(super) async fn run(self) {
        let mut ticks = tokio::time::interval(self.interval);
        // A tick missed while the runtime was busy is not followed by a burst to catch up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut under_way = UnderWay::default();
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let Some(targets) = self.targets.upgrade() else {
                        return;
                    };
                    // One list for the tick: a reload meanwhile is checked from the next.
                    let own = targets.snapshot();
                    drop(targets);
                    let routed = (self.routes.as_ref().and_then(Weak::upgrade))
                        .map(|routes| routes.snapshots())
                        .unwrap_or_default();
                    let list = (own.iter().map(|target| (target, self.http_path.clone())))
                        .chain(
                            routed
                                .iter()
                                .flat_map(|list| list.iter().map(|target| (target, None))),
                        );
                    for (target, http_path) in list {
                        under_way.start(target, |target| self.check(target, http_path));
                    }
                }
                Some((target, result)) = under_way.next(), if !under_way.is_empty() => {
                    let Some(targets) = self.targets.upgrade() else {
                        return;
                    };
                    // A target a reload removed while it was checked is no longer the
                    // relay's: its news would send an operator after a server not in use.
                    let in_force = self.in_force(&target, &targets);
                    // Dropped before the retired are let go, or this one could not be.
                    self.judge(target, result, in_force);
                    // A target a reload removed while it was checked leaves the metrics
                    // now, not when some relay to another target ends.
                    targets.let_go_of_retired();
                }
            }
        }
    }

    /// One check of `target`: a connection as a client's (and the HTTP request, with a
    /// path), within the dialer's timeout.
    fn check(
        &self,
        target: Arc<Target>,
        http_path: Option<Arc<str>>,
    ) -> impl Future<Output = (Arc<Target>, io::Result<()>)> + Send + 'static {
        let dial = self.dial.clone();
        let header = self.header.clone();
        async move {
            let endpoint = target.endpoint();
            let result = async {
                let mut upstream = dial.connect(endpoint, header.as_deref(), None).await?;
                let result = match &http_path {
                    Some(path) => ask_http(&mut upstream, endpoint, path, dial.timeout).await,
                    None => Ok(()),
                };
                // Closed beside the check, not in it: the verdict is in, and a target slow
                // to close must not hold up the next check.
                tokio::spawn(async move { close_gently(&mut upstream).await });
                result
            }
            .await;
            (target, result)
        }
    }

    /// Whether `target` is in a list in force: the relay's own (`targets`) or a route's.
    fn in_force(&self, target: &Arc<Target>, targets: &Targets) -> bool {
        let named = |list: &List| list.iter().any(|named| Arc::ptr_eq(named, target));
        named(&targets.snapshot())
            || (self.routes.as_ref().and_then(Weak::upgrade))
                .is_some_and(|routes| routes.snapshots().iter().any(|list| named(list)))
    }

    /// Marks `target` by the check's `result`, and logs a change if it is `in_force`.
    fn judge(&self, target: Arc<Target>, result: io::Result<()>, in_force: bool) {
        let endpoint = target.endpoint();
        let through = self.dial.through();
        match result {
            Ok(()) => match target.check_passed(self.rise) {
                Verdict::Changed if in_force => {
                    tracing::info!("health check: {endpoint}{through} is up");
                }
                Verdict::Counting(passed) if in_force => tracing::debug!(
                    "health check: {endpoint}{through} passed ({passed} of {})",
                    self.rise
                ),
                _ => {}
            },
            Err(err) => match target.check_failed(self.fall) {
                Verdict::Changed if in_force => tracing::warn!(
                    "health check: {endpoint}{through} is down: {}",
                    describe(&err)
                ),
                Verdict::Counting(failed) if in_force => tracing::debug!(
                    "health check: {endpoint}{through} failed ({failed} of {}): {}",
                    self.fall,
                    describe(&err)
                ),
                _ => {}
            },
        }
    }
}

/// The checks under way, at most one per target (known by its record's address, which
/// stays its own while the check holds the record).
#[derive(Default)]
struct UnderWay {
    tasks: JoinSet<(Arc<Target>, io::Result<()>)>,
    /// The target of each check.
    targets: HashMap<tokio::task::Id, usize>,
    /// The targets being checked: a route table's many targets are looked up, not scanned.
    checked: HashSet<usize>,
}

impl UnderWay {
    /// Starts the check `make` gives for `target`, unless one is under way.
    fn start<F>(&mut self, target: &Arc<Target>, make: impl FnOnce(Arc<Target>) -> F)
    where
        F: Future<Output = (Arc<Target>, io::Result<()>)> + Send + 'static,
    {
        let key = Arc::as_ptr(target) as usize;
        if !self.checked.insert(key) {
            return;
        }
        let id = self.tasks.spawn(make(Arc::clone(target))).id();
        self.targets.insert(id, key);
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next check to end with a verdict, or `None` once none is under way. A check
    /// that panicked gives none, and its target may be checked again.
    async fn next(&mut self) -> Option<(Arc<Target>, io::Result<()>)> {
        loop {
            let (id, checked) = match self.tasks.join_next_with_id().await? {
                Ok((id, checked)) => (id, Some(checked)),
                Err(err) => (err.id(), None),
            };
            if let Some(key) = self.targets.remove(&id) {
                self.checked.remove(&key);
            }
            if checked.is_some() {
                return checked;
            }
        }
    }
}

/// The longest status line a check reads: `HTTP/1.1 200 OK` and a long reason fit.
const STATUS_LINE_MAX: usize = 1024;

/// Asks `target` for `path` over HTTP/1.1 on `upstream` and passes on a `2xx` or `3xx`
/// status, all within `limit`.
async fn ask_http(
    upstream: &mut Upstream,
    target: &Endpoint,
    path: &str,
    limit: Option<Duration>,
) -> io::Result<()> {
    let host = target
        .host_port()
        .map_or_else(|| "localhost".to_owned(), ToString::to_string);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: socketkit-health-check\r\n\
         Connection: close\r\n\r\n"
    );
    let exchange = async {
        let status = match upstream {
            Upstream::Plain(stream) => status_of(stream, request.as_bytes()).await?,
            Upstream::Tls(tls) => status_of(&mut **tls, request.as_bytes()).await?,
        };
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(io::Error::other(format!("answered HTTP {status}")))
        }
    };
    net::within(limit, exchange).await.map_err(|err| {
        if err.kind() == io::ErrorKind::TimedOut {
            io::Error::new(io::ErrorKind::TimedOut, "no HTTP answer in time")
        } else {
            err
        }
    })
}

/// How long a check's connection is given to end cleanly ([`close_gently`]).
const CLOSE_TIME: Duration = Duration::from_secs(1);

/// The most a check reads of what its target still sends while closing ([`close_gently`]):
/// session tickets and the rest of an HTTP answer fit; a target that streams (chargen) is
/// not drained for a second at the speed of loopback.
const CLOSE_READ_MAX: usize = 64 * 1024;

/// Ends a check's connection as a well-behaved client does: a TLS close_notify (or a FIN),
/// then what the target still sends read and dropped until it closes too, within
/// [`CLOSE_TIME`] and [`CLOSE_READ_MAX`]. Dropped at once, a check was a reset to the target
/// (for bytes it left unread: a TLS 1.3 server's session tickets, the rest of an HTTP
/// answer) or a session without close_notify, which a target logs as a failed connection at
/// every check.
async fn close_gently(upstream: &mut Upstream) {
    async fn close<S>(stream: &mut S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < CLOSE_READ_MAX {
            match stream.read(&mut sink).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok(())
    }
    let closing = async {
        match upstream {
            Upstream::Plain(stream) => close(stream).await,
            Upstream::Tls(tls) => close(&mut **tls).await,
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIME, closing).await;
}

/// Sends `request` and reads the status code of the answer's status line.
async fn status_of<S>(stream: &mut S, request: &[u8]) -> io::Result<u16>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    stream.write_all(request).await?;
    let mut line = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    let end = loop {
        if let Some(end) = line.windows(2).position(|pair| pair == b"\r\n") {
            break end;
        }
        if line.len() >= STATUS_LINE_MAX {
            return Err(io::Error::other("answered with no HTTP status line"));
        }
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            return Err(io::Error::other(if line.is_empty() {
                "closed without an HTTP answer"
            } else {
                "answered with no HTTP status line"
            }));
        }
        line.extend_from_slice(&buf[..read]);
    };
    status_code(&line[..end]).ok_or_else(|| io::Error::other("answered with no HTTP status line"))
}

/// The code of a status line, `HTTP/1.x NNN reason`.
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let code = rest.strip_prefix(b" ")?.get(..3)?;
    if !minor.is_ascii_digit() || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.get(4).is_some_and(|&after| after != b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 204"), Some(204));
        for bad in [
            &b""[..],
            b"HTTP/1.1",
            b"HTTP/1.1 20",
            b"HTTP/1.1 2000 OK",
            b"HTTP/2 200",
            b"SSH-2.0-OpenSSH_9.2",
            b"HTTP/1.x 200 OK",
        ] {
            assert_eq!(status_code(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
