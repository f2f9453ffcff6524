//! What a listener and each of its connections count, and the line a connection leaves in
//! the log when it closes.
//!
//! A [`ListenerMeter`] is made once per listener when the server starts: its name (the
//! endpoint, as `listening on` prints it) and, with metrics on, the listener's handles
//! ([`ListenerMetrics`]). Each connection then carries a [`Meter`]: its peer, and — only
//! when metrics are on or the debug log (`-v`) is enabled — a clock and its bytes each way.
//! Counting is a plain add to the connection's own totals and an atomic add to the
//! listener's; nothing takes a lock or allocates. When the `Meter` drops (the connection
//! closes), the listener's active count goes down, the duration goes into the histogram,
//! and at `-v` one `closed` line carries `peer`, `local`, `listener`, `bytes_in`,
//! `bytes_out` and `duration_ms` as fields (the JSON log format makes them keys) — without
//! the bytes when they did not pass through this process (a socket handed to an exec
//! program), rather than a count that would be wrong.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{RefusalReason, ShardedCounter};
use crate::proxy_protocol::Tlvs;
use crate::socket::Address;

/// A connection's peer, and while it is open, what it counts (see the module docs).
#[derive(Debug)]
pub(crate) struct Meter {
    peer: Address,
    open: Option<Open>,
    /// What few connections carry (boxed, so that the others do not): the closing line's
    /// numbers, and what a PROXY header told.
    extra: Option<Box<Extra>>,
}

/// What a metered connection keeps: 16 bytes in every connection's task, so that an idle
/// connection stays small. Absent when neither metrics nor the debug log want it.
#[derive(Debug)]
struct Open {
    listener: Arc<ListenerMeter>,
    /// When the connection was accepted, in microseconds since the listener's epoch (8
    /// bytes where an `Instant` takes 16).
    started: u64,
}

/// A connection's rarer records, in one box.
#[derive(Debug, Default)]
struct Extra {
    /// Only at `-v` (and while the connection is open and not refused): the closing
    /// line's numbers.
    log: Option<Closing>,
    /// What a PROXY v2 header told of the client besides its address (its TLS with the
    /// proxy): only behind such a proxy.
    told: Option<Tlvs>,
    /// The address a PROXY header said the client connected to, at the proxy.
    destination: Option<std::net::SocketAddr>,
    /// Bytes an admission stage took (a PROXY header), counted as received once every
    /// stage has admitted the connection: a refused one received no byte of the service.
    held_back: usize,
}

/// The closing line's own numbers.
#[derive(Debug)]
struct Closing {
    bytes_in: u64,
    bytes_out: u64,
    /// False once the bytes stopped passing through this process: the line leaves them
    /// out.
    bytes_known: bool,
    local: Option<Address>,
    /// How the connection failed, in words (a reset, a broken pipe, the idle limit): the
    /// first error its reads and writes met, for the closing line's `error`.
    failed: Option<String>,
}

impl Meter {
    /// Starts metering a connection from `peer` accepted on `listener`; `local` is asked
    /// only when the debug log is on (for the closing line).
    pub(crate) fn start(
        peer: Address,
        listener: &Arc<ListenerMeter>,
        local: impl FnOnce() -> Option<Address>,
    ) -> Meter {
        let logged = tracing::enabled!(tracing::Level::DEBUG);
        if listener.metrics.is_none() && !logged {
            return Meter {
                peer,
                open: None,
                extra: None,
            };
        }
        if let Some(metrics) = &listener.metrics {
            metrics.active.inc();
        }
        let extra = logged.then(|| {
            Box::new(Extra {
                log: Some(Closing {
                    bytes_in: 0,
                    bytes_out: 0,
                    bytes_known: true,
                    failed: None,
                    local: local(),
                }),
                ..Extra::default()
            })
        });
        Meter {
            peer,
            open: Some(Open {
                listener: Arc::clone(listener),
                started: listener.now(),
            }),
            extra,
        }
    }

    /// A meter that counts nothing and records nothing when dropped: the stand-in left in a
    /// connection whose meter was taken out.
    pub(crate) fn detached() -> Meter {
        Meter {
            peer: Address::unix(""),
            open: None,
            extra: None,
        }
    }

    /// The client's address (as the PROXY header gave it, if one did).
    pub(crate) fn peer(&self) -> &Address {
        &self.peer
    }

    /// The address the client connected to, kept for the closing line: known only when
    /// the debug log is on, as the lines that name it are.
    pub(crate) fn local(&self) -> Option<&Address> {
        self.log()?.local.as_ref()
    }

    /// The closing line's numbers, at `-v`.
    fn log(&self) -> Option<&Closing> {
        self.extra.as_deref()?.log.as_ref()
    }

    fn log_mut(&mut self) -> Option<&mut Closing> {
        self.extra.as_deref_mut()?.log.as_mut()
    }

    /// Replaces the client's address: what every later stage, the handler, the metrics and
    /// the closing line see.
    pub(crate) fn set_peer(&mut self, peer: Address) {
        self.peer = peer;
    }

    /// What the PROXY header told of the client besides its address, if anything.
    pub(crate) fn told(&self) -> Option<&Tlvs> {
        self.extra.as_deref()?.told.as_ref()
    }

    /// Keeps what a PROXY header told of the client (nothing, when it told nothing).
    pub(crate) fn set_told(&mut self, tlvs: Tlvs) {
        let told = (!tlvs.is_empty()).then_some(tlvs);
        match &mut self.extra {
            Some(extra) => extra.told = told,
            None if told.is_some() => {
                self.extra = Some(Box::new(Extra {
                    told,
                    ..Extra::default()
                }));
            }
            None => {}
        }
    }

    /// The address a PROXY header said the client connected to, at the proxy.
    pub(crate) fn destination(&self) -> Option<std::net::SocketAddr> {
        self.extra.as_deref()?.destination
    }

    /// Keeps the address a PROXY header said the client connected to.
    pub(crate) fn set_destination(&mut self, destination: std::net::SocketAddr) {
        self.extra.get_or_insert_default().destination = Some(destination);
    }

    /// From now on the connection's bytes pass elsewhere (its socket was handed to another
    /// process): nothing more is counted, and the closing line leaves the bytes out.
    pub(crate) fn stop_counting_bytes(&mut self) {
        if let Some(log) = self.log_mut() {
            log.bytes_known = false;
        }
    }

    /// Notes that a read or write of the connection failed with `err`; the closing line
    /// says the first such failure (`error`). Only at `-v`.
    pub(crate) fn failed(&mut self, err: &io::Error) {
        if let Some(log) = self.log_mut() {
            log.failed
                .get_or_insert_with(|| crate::error::describe(err));
        }
    }

    /// Notes that the server cut the connection short (a forced shutdown, the drain
    /// deadline): its closing line says so rather than what the reset made its reads and
    /// writes fail with. Only at `-v`.
    pub(crate) fn cut_short(&mut self) {
        if let Some(log) = self.log_mut() {
            log.failed.get_or_insert_with(|| CUT_SHORT.to_owned());
        }
    }

    /// Counts `n` bytes received from the client.
    pub(crate) fn received(&mut self, n: usize) {
        self.tallies().0.add(n);
    }

    /// Counts `n` bytes received by an admission stage once the connection is admitted
    /// ([`Meter::admitted`]); a refusal leaves them out.
    pub(crate) fn received_if_admitted(&mut self, n: usize) {
        if self.open.is_some() {
            self.extra.get_or_insert_default().held_back += n;
        }
    }

    /// Every admission stage has admitted the connection: what they received counts.
    pub(crate) fn admitted(&mut self) {
        let held_back = self
            .extra
            .as_mut()
            .map_or(0, |extra| std::mem::take(&mut extra.held_back));
        if held_back > 0 {
            self.received(held_back);
        }
    }

    /// Counts `n` bytes sent to the client.
    pub(crate) fn sent(&mut self, n: usize) {
        self.tallies().1.add(n);
    }

    /// Counters for the two directions, received and sent, to be used at once by code that
    /// moves both (the splice relay of `forward`).
    pub(crate) fn tallies(&mut self) -> (Tally<'_>, Tally<'_>) {
        let Some(open) = &mut self.open else {
            return (Tally::default(), Tally::default());
        };
        let metrics = open.listener.metrics.as_ref();
        let log = self
            .extra
            .as_deref_mut()
            .and_then(|extra| extra.log.as_mut());
        let (bytes_in, bytes_out) = match log {
            Some(Closing {
                bytes_in,
                bytes_out,
                ..
            }) => (Some(bytes_in), Some(bytes_out)),
            None => (None, None),
        };
        (
            Tally {
                total: bytes_in,
                metrics: metrics.map(|m| &m.received),
            },
            Tally {
                total: bytes_out,
                metrics: metrics.map(|m| &m.sent),
            },
        )
    }

    /// The name of the connection's listener, when it is metered or logged.
    pub(crate) fn listener_name(&self) -> Option<&str> {
        self.open.as_ref().map(|open| open.listener.name())
    }

    /// Logs at `-v` that the connection was accepted: `connection from PEER`, with the
    /// closing line's `peer`, `local` and `listener` fields. For a program that names each
    /// peer as it comes (`listen`); a server's connections leave their closing line only.
    pub(crate) fn log_accepted(&self) {
        let Some(open) = &self.open else { return };
        let Some(log) = self.log() else { return };
        let summary = Summary {
            peer: &self.peer,
            local: log.local.as_ref(),
            bytes_in: None,
            bytes_out: None,
            lasted: None,
            error: None,
        };
        summary.log(
            &open.listener,
            format_args!(
                "connection from {}",
                crate::error::log_word(&self.peer.to_string())
            ),
        );
    }

    /// Counts the connection as refused for `reason`, in its listener's metrics. Its
    /// `refused` line is its only one at `-v`: no `closed` line follows.
    /// Nor does it count in the duration histogram, which says how long served connections
    /// lasted: a refusal made on the accept loop (or by the io_uring engine) never reaches
    /// it either.
    pub(crate) fn refused(&mut self, reason: RefusalReason) {
        if let Some(open) = &mut self.open {
            open.listener.refused(reason);
            open.started = REFUSED;
            if let Some(extra) = &mut self.extra {
                extra.log = None;
            }
        }
    }
}

/// Logs at `-v` a connection refused for `reason`: `refused: DETAIL`, with the fields of a
/// closing line that a refusal has (`peer`, `local`, `listener`) and its `reason`. One shape
/// for every refusal, a server's admission stages' and `listen`'s.
pub(crate) fn log_refusal(
    peer: &Address,
    local: Option<&Address>,
    listener: Option<&str>,
    reason: RefusalReason,
    detail: &str,
) {
    tracing::debug!(
        peer = %peer,
        local = %local.map_or_else(String::new, ToString::to_string),
        listener = listener.unwrap_or_default(),
        reason = reason.as_str(),
        "refused: {detail}"
    );
}

/// The `error` of a connection the server's forced shutdown cut (the drain deadline, a
/// second signal), reset on both engines.
const CUT_SHORT: &str = "cut short by the shutdown: reset";

/// [`Open::started`] of a refused connection: no duration to observe.
const REFUSED: u64 = u64::MAX;

impl Drop for Meter {
    fn drop(&mut self) {
        let Some(open) = &self.open else { return };
        let lasted = Duration::from_micros(open.listener.now().saturating_sub(open.started));
        if let Some(metrics) = &open.listener.metrics {
            match open.started {
                REFUSED => {
                    metrics.active.dec();
                }
                _ => metrics.closed(lasted),
            }
        }
        if let Some(log) = self.log() {
            // Dropped by a forced shutdown (the epoll engine drops the connection's task):
            // cut short, whatever its reads and writes had said.
            let forced = crate::server::shutdown::is_cut_short() && !std::thread::panicking();
            let error = log.failed.as_deref().or(forced.then_some(CUT_SHORT));
            let summary = Summary {
                peer: &self.peer,
                local: log.local.as_ref(),
                bytes_in: log.bytes_known.then_some(log.bytes_in),
                bytes_out: log.bytes_known.then_some(log.bytes_out),
                lasted: Some(lasted),
                error,
            };
            summary.log(&open.listener, "closed");
        }
    }
}

/// One direction's counter of a metered connection: its own total (at `-v`) and its
/// listener's.
#[derive(Debug, Default)]
pub(crate) struct Tally<'a> {
    total: Option<&'a mut u64>,
    metrics: Option<&'a ShardedCounter>,
}

impl Tally<'_> {
    /// Counts `n` bytes moved in this direction.
    pub(crate) fn add(&mut self, n: usize) {
        let n = as_u64(n);
        if let Some(total) = &mut self.total {
            **total += n;
        }
        if let Some(counter) = self.metrics {
            counter.inc_by(n);
        }
    }
}

/// The fields of a connection's line in the log: its closing line, or (for a program that
/// names each peer as it comes) its opening one. One event shape for both, so that a log
/// reader finds the same keys whichever command accepted the connection.
struct Summary<'a> {
    peer: &'a Address,
    local: Option<&'a Address>,
    /// `None`: not known here (or not yet: an opening line), and left out of the line.
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    /// `None` on an opening line: nothing has lasted yet.
    lasted: Option<Duration>,
    /// How the connection failed, if it did (a closing line only).
    error: Option<&'a str>,
}

impl Summary<'_> {
    fn log(&self, listener: &ListenerMeter, what: impl std::fmt::Display) {
        let duration_ms = self
            .lasted
            .map(|lasted| u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX));
        tracing::debug!(
            peer = %self.peer,
            local = %self.local.map_or_else(String::new, ToString::to_string),
            listener = listener.name.as_str(),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            duration_ms,
            error = self.error,
            "{what}"
        );
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

mod listener;
#[cfg(test)]
mod tests;

pub(crate) use listener::ListenerMeter;
