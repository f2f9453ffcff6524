//! The server's numbers for Prometheus (SPEC §3.5): connections accepted, active and refused
//! by reason, bytes each way, accept errors by errno, and how long connections last, each
//! with a `listener` label; and the HTTP endpoint that serves them with `/health`.
//!
//! The hot path touches only atomics: each listener takes its own handles
//! ([`ListenerMetrics`]) once, at start-up, and a connection adds to them without a lock or
//! a lookup. Each accept loop also takes shards of its own ([`LoopCounts`]) for what it
//! counts itself — connections accepted and those answered on the spot — summed when
//! scraped, so that loops on different cores do not share a cache line. Only the rare paths
//! (an accept error's errno) look a label up.

mod classic;
mod histogram;
mod http;
mod scrape;
mod sharded;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use classic::classic_text;
pub use histogram::{DurationHistogram, HistogramShard};
pub use http::HttpListener;
pub use scrape::serve_http;
pub use sharded::{CounterShard, ShardedCounter};

type Labels = Vec<(&'static str, String)>;

/// Every metric of one process, and whether it is draining (for `/health`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accepted: Family<Labels, ShardedCounter>,
    active: Family<Labels, Gauge>,
    refused: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    received: Family<Labels, ShardedCounter>,
    sent: Family<Labels, ShardedCounter>,
    accept_errors: Family<Labels, Counter>,
    durations: Family<Labels, DurationHistogram>,
    target_connections: Family<Labels, Counter>,
    target_failures: Family<Labels, Counter>,
    target_up: Family<Labels, Gauge>,
    target_active: Family<Labels, Gauge>,
    tls_expiry: Family<Labels, Gauge>,
    reloads: [Counter; 2],
    last_reload_ok: Gauge,
    draining: AtomicBool,
}

/// One listener's handles: clones of the metrics' atomics, so that counting is an atomic
/// add.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    name: String,
    metrics: Arc<Metrics>,
    /// Connections accepted (admitted or not).
    pub accepted: ShardedCounter,
    /// Connections open now.
    pub active: Gauge,
    /// Bytes received from peers.
    pub received: ShardedCounter,
    /// Bytes sent to peers.
    pub sent: ShardedCounter,
    /// How long connections lasted.
    pub duration: DurationHistogram,
    refused: [Counter; RefusalReason::ALL.len()],
    dropped: [Counter; RefusalReason::ALL.len()],
}

impl Metrics {
    /// An empty set of metrics, every family registered.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let accepted = Family::<Labels, ShardedCounter>::default();
        let active = Family::<Labels, Gauge>::default();
        let refused = Family::<Labels, Counter>::default();
        let dropped = Family::<Labels, Counter>::default();
        let received = Family::<Labels, ShardedCounter>::default();
        let sent = Family::<Labels, ShardedCounter>::default();
        let accept_errors = Family::<Labels, Counter>::default();
        let durations = Family::<Labels, DurationHistogram>::default();
        let target_connections = Family::<Labels, Counter>::default();
        let target_failures = Family::<Labels, Counter>::default();
        let target_up = Family::<Labels, Gauge>::default();
        let target_active = Family::<Labels, Gauge>::default();
        let tls_expiry = Family::<Labels, Gauge>::default();
        let reloads = Family::<Labels, Counter>::default();
        let last_reload_ok = Gauge::default();
        // Both results from the start, and "successful" until a reload fails: an alert on
        // either needs no series that appears only once something went wrong.
        let reloads_by_result = ["success", "failure"].map(|result| {
            reloads
                .get_or_create(&vec![("result", result.to_owned())])
                .clone()
        });
        last_reload_ok.set(1);
        registry.register(
            "socketkit_config_reloads",
            "SIGHUP reloads of the files the process reads (rules, certificates, targets, routes, users), by result",
            reloads,
        );
        registry.register(
            "socketkit_config_last_reload_successful",
            "0 when the last SIGHUP reload failed in part (what did not reload stays as it was), else 1",
            last_reload_ok.clone(),
        );
        registry.register(
            "socketkit_connections_accepted",
            "Connections accepted, admitted or not",
            accepted.clone(),
        );
        registry.register(
            "socketkit_connections_active",
            "Connections open now",
            active.clone(),
        );
        registry.register(
            "socketkit_connections_refused",
            "Connections refused before the service, by reason",
            refused.clone(),
        );
        registry.register(
            "socketkit_datagrams_dropped",
            "Datagrams dropped from refused sources, by reason",
            dropped.clone(),
        );
        registry.register(
            "socketkit_bytes_received",
            "Bytes received from peers",
            received.clone(),
        );
        registry.register("socketkit_bytes_sent", "Bytes sent to peers", sent.clone());
        registry.register(
            "socketkit_accept_errors",
            "Failed accepts, by errno",
            accept_errors.clone(),
        );
        registry.register(
            "socketkit_connection_duration_seconds",
            "How long connections lasted",
            durations.clone(),
        );
        registry.register(
            "socketkit_forward_target_connections",
            "Connections a relay made to each of its targets",
            target_connections.clone(),
        );
        registry.register(
            "socketkit_forward_target_failures",
            "Attempts to reach each target of a relay that failed (the client passed on or reset)",
            target_failures.clone(),
        );
        registry.register(
            "socketkit_forward_target_up",
            "1 unless a relay's last attempt or health check on the target failed",
            target_up.clone(),
        );
        registry.register(
            "socketkit_forward_target_active",
            "Relayed connections open now to each target",
            target_active.clone(),
        );
        registry.register(
            "socketkit_tls_certificate_expiry_timestamp_seconds",
            "When the TLS certificate in force stops being valid (notAfter), in seconds since the epoch",
            tls_expiry.clone(),
        );
        Arc::new(Metrics {
            registry,
            accepted,
            active,
            refused,
            dropped,
            received,
            sent,
            accept_errors,
            durations,
            target_connections,
            target_failures,
            target_up,
            target_active,
            tls_expiry,
            reloads: reloads_by_result,
            last_reload_ok,
            draining: AtomicBool::new(false),
        })
    }

    /// The handles of the listener called `name` (its endpoint, as `listening on` prints it).
    ///
    /// A stream listener's refusals are `connections_refused_total`; a datagram listener's
    /// (a name that starts `udp:` or `unixgram:`) are `datagrams_dropped_total`, for the
    /// reasons that apply to a datagram (`acl`, `max_per_source`, `rate`). Only those series
    /// are exported, so a scrape shows no refusal series that could never move.
    pub fn listener(self: &Arc<Self>, name: &str) -> ListenerMetrics {
        let labels: Labels = vec![("listener", name.to_owned())];
        let datagrams = name.starts_with("udp:") || name.starts_with("unixgram:");
        let by_reason = |family: &Family<Labels, Counter>,
                         exported: &dyn Fn(RefusalReason) -> bool| {
            RefusalReason::ALL.map(|reason| {
                if !exported(reason) {
                    // Counted (nothing on a hot path asks which kind it is) but not shown.
                    return Counter::default();
                }
                let labels = vec![
                    ("listener", name.to_owned()),
                    ("reason", reason.as_str().to_owned()),
                ];
                family.get_or_create(&labels).clone()
            })
        };
        let refused = by_reason(&self.refused, &|_| !datagrams);
        let dropped = by_reason(&self.dropped, &|reason| {
            datagrams && reason.applies_to_datagrams()
        });
        ListenerMetrics {
            name: name.to_owned(),
            metrics: Arc::clone(self),
            accepted: self.accepted.get_or_create(&labels).clone(),
            active: self.active.get_or_create(&labels).clone(),
            received: self.received.get_or_create(&labels).clone(),
            sent: self.sent.get_or_create(&labels).clone(),
            duration: self.durations.get_or_create(&labels).clone(),
            refused,
            dropped,
        }
    }

    /// The counters of a relay's target called `name` (its endpoint, as the readiness line
    /// prints it).
    pub fn forward_target(&self, name: &str) -> TargetMetrics {
        let labels: Labels = vec![("target", name.to_owned())];
        let up = self.target_up.get_or_create(&labels).clone();
        up.set(1);
        TargetMetrics {
            connected: self.target_connections.get_or_create(&labels).clone(),
            failed: self.target_failures.get_or_create(&labels).clone(),
            up,
            active: self.target_active.get_or_create(&labels).clone(),
        }
    }

    /// Stops exporting the series of the forward target `name` (a target a reload took
    /// out); a target of that name added later starts them afresh.
    pub fn forget_forward_target(&self, name: &str) {
        let labels: Labels = vec![("target", name.to_owned())];
        self.target_connections.remove(&labels);
        self.target_failures.remove(&labels);
        self.target_up.remove(&labels);
        self.target_active.remove(&labels);
    }

    /// Records when the TLS certificate `certificate` (its file, or `self-signed`) in force
    /// stops being valid; set again by each reload.
    pub fn tls_certificate_expiry(&self, certificate: &str, not_after: std::time::SystemTime) {
        let seconds = not_after
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        let labels: Labels = vec![("certificate", certificate.to_owned())];
        self.tls_expiry.get_or_create(&labels).set(seconds);
    }

    /// Says the server is draining: `/health` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Every metric in the OpenMetrics text format (which Prometheus scrapes as its own).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a SIGHUP reload: `ok` when every file it read was put in force.
    pub fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
        self.last_reload_ok.set(i64::from(ok));
    }

    /// Every metric in Prometheus's classic text format (0.0.4), for the scrapers that
    /// ask for it rather than OpenMetrics (see [`classic_text`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::metrics::Metrics;
    /// let metrics = Metrics::new();
    /// metrics.listener("tcp:127.0.0.1:7").accepted.inc();
    /// let text = metrics.render_classic();
    /// assert!(text.contains("# TYPE socketkit_connections_accepted_total counter\n"));
    /// assert!(!text.contains("# EOF"));
    /// ```
    pub fn render_classic(&self) -> String {
        classic_text(&self.render())
    }
}

/// One relay target's counters: clones of the metrics' atomics.
#[derive(Debug, Clone)]
pub struct TargetMetrics {
    /// Connections made to the target (relayed).
    pub connected: Counter,
    /// Attempts that failed (refused, unresolvable, timed out, a failed TLS handshake).
    pub failed: Counter,
    /// 1, or 0 from a failed attempt or health check until a connection or check succeeds.
    pub up: Gauge,
    /// Relayed connections open now.
    pub active: Gauge,
}

impl ListenerMetrics {
    /// Counts a connection refused for `reason`.
    pub fn refused(&self, reason: RefusalReason) {
        self.refused[reason as usize].inc();
    }

    /// Counts a datagram dropped for `reason`.
    pub fn dropped(&self, reason: RefusalReason) {
        self.dropped[reason as usize].inc();
    }

    /// Counts a datagram a relay dropped: a new client's, past its `--max-connections`
    /// (`datagrams_dropped_total{reason="max_connections"}`, a series from the first such
    /// drop on, as it is no admission stage's; a rare path: the label is looked up).
    pub fn dropped_past_max_connections(&self) {
        let labels = vec![
            ("listener", self.name.clone()),
            ("reason", "max_connections".to_owned()),
        ];
        self.metrics.dropped.get_or_create(&labels).inc();
    }

    /// Counts a failed accept (a rare path: the errno's label is looked up).
    pub fn accept_error(&self, err: &std::io::Error) {
        let errno = err
            .raw_os_error()
            .map_or_else(|| "other".to_owned(), errno_name);
        let labels = vec![("listener", self.name.clone()), ("errno", errno)];
        self.metrics.accept_errors.get_or_create(&labels).inc();
    }

    /// Counts a connection's end after `lasted`.
    pub fn closed(&self, lasted: Duration) {
        self.active.dec();
        self.duration.observe(lasted);
    }

    /// Shards of this listener's counters for one accept loop to own (see
    /// [`LoopCounts`]).
    pub fn loop_counts(&self) -> LoopCounts {
        LoopCounts {
            accepted: self.accepted.shard(),
            received: self.received.shard(),
            sent: self.sent.shard(),
            duration: self.duration.shard(),
        }
    }
}

/// One accept loop's own shards of its listener's counters: what it counts itself
/// (connections accepted, and those it answers on the spot and closes), without a locked
/// instruction and on cache lines no other loop writes. They add up with the listener's
/// shared counters when scraped.
#[derive(Debug)]
pub struct LoopCounts {
    /// Connections accepted.
    pub accepted: CounterShard,
    /// Bytes received (a PROXY header read on the accept loop).
    pub received: CounterShard,
    /// Bytes sent (immediate replies).
    pub sent: CounterShard,
    /// How long the connections answered on the spot lasted.
    pub duration: HistogramShard,
}

/// Why a connection was refused before the service (SPEC §3: the stages in their order).
///
/// The order of the variants is the order in which the rules apply: a server's admission
/// stages run sorted by it.
///
/// # Examples
///
/// ```
/// use socketkit::metrics::RefusalReason;
/// assert_eq!(RefusalReason::MaxPerSource.as_str(), "max_per_source");
/// assert!(RefusalReason::Proxy < RefusalReason::Acl && RefusalReason::Rate < RefusalReason::Tls);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalReason {
    /// No valid PROXY header, or one from an untrusted source.
    Proxy,
    /// The access rules.
    Acl,
    /// `--max-per-source`.
    MaxPerSource,
    /// `--rate-per-source`.
    Rate,
    /// The TLS handshake failed or timed out.
    Tls,
}

impl RefusalReason {
    /// Every reason, in pipeline order.
    pub const ALL: [RefusalReason; 5] = [
        RefusalReason::Proxy,
        RefusalReason::Acl,
        RefusalReason::MaxPerSource,
        RefusalReason::Rate,
        RefusalReason::Tls,
    ];

    /// Whether a datagram can be dropped for this reason: a PROXY header and a TLS
    /// handshake belong to connections.
    pub fn applies_to_datagrams(self) -> bool {
        !matches!(self, RefusalReason::Proxy | RefusalReason::Tls)
    }

    /// The reason's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Proxy => "proxy",
            RefusalReason::Acl => "acl",
            RefusalReason::MaxPerSource => "max_per_source",
            RefusalReason::Rate => "rate",
            RefusalReason::Tls => "tls",
        }
    }
}

/// The symbolic name of an errno (`EMFILE`), or its number.
fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EPERM => "EPERM",
        libc::EPROTO => "EPROTO",
        _ => return errno.to_string(),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_listener_label() {
        let metrics = Metrics::new();
        let listener = metrics.listener("tcp:127.0.0.1:7");
        listener.accepted.inc();
        listener.active.inc();
        listener.received.inc_by(5);
        listener.sent.inc_by(6);
        listener.refused(RefusalReason::Rate);
        listener.accept_error(&std::io::Error::from_raw_os_error(libc::EMFILE));
        listener.closed(Duration::from_millis(20));
        let text = metrics.render();
        for line in [
            "socketkit_connections_accepted_total{listener=\"tcp:127.0.0.1:7\"} 1",
            "socketkit_connections_active{listener=\"tcp:127.0.0.1:7\"} 0",
            "socketkit_connections_refused_total{listener=\"tcp:127.0.0.1:7\",reason=\"rate\"} 1",
            "socketkit_connections_refused_total{listener=\"tcp:127.0.0.1:7\",reason=\"acl\"} 0",
            "socketkit_bytes_received_total{listener=\"tcp:127.0.0.1:7\"} 5",
            "socketkit_bytes_sent_total{listener=\"tcp:127.0.0.1:7\"} 6",
            "socketkit_accept_errors_total{listener=\"tcp:127.0.0.1:7\",errno=\"EMFILE\"} 1",
            "socketkit_connection_duration_seconds_count{listener=\"tcp:127.0.0.1:7\"} 1",
            "socketkit_connection_duration_seconds_bucket{le=\"0.01\",listener=\"tcp:127.0.0.1:7\"} 0",
            "socketkit_connection_duration_seconds_bucket{le=\"0.05\",listener=\"tcp:127.0.0.1:7\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
