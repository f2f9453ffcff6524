//! The connection pipeline: after accept, an ordered chain of admission stages, each a small
//! type with one job ([`Admission`]), that may refuse a connection before the service sees
//! a byte of it. A refusal carries its [`RefusalReason`]; the server counts it by reason
//! ([`Refusals`]) and logs it, with the source, at debug level (`-v`).
//!
//! The chain keeps SPEC §3's order whatever order the stages were added in: PROXY header →
//! access control → per-source limits (connections, then rate) → TLS handshake → the
//! service. A server with no stage takes none of this path: connections are answered or
//! handed to their task exactly as before (see `acceptor.rs`).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Connection;
use super::meter::ListenerMeter;
use super::proxy::ProxyStage;
use crate::metrics::RefusalReason;
use crate::socket::Address;

/// A stage's "no" to a connection: the reason it is counted under, and what exactly was
/// wrong, for the log.
///
/// # Examples
///
/// ```
/// use socketkit::server::{Refusal, RefusalReason};
/// let refusal = Refusal::new(RefusalReason::Acl, "denied by 10.0.0.0/8");
/// assert_eq!(refusal.to_string(), "acl: denied by 10.0.0.0/8");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that refused the connection.
    pub reason: RefusalReason,
    /// What exactly was wrong, in words.
    pub detail: Cow<'static, str>,
}

impl Refusal {
    /// A refusal for `reason`, explained by `detail`.
    pub fn new(reason: RefusalReason, detail: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// A stage's "yes" to a connection, and whatever the stage keeps for as long as the
/// connection lasts: a per-source limit's place in its source's count, given back when the
/// connection closes.
///
/// # Examples
///
/// ```
/// use socketkit::server::Admitted;
/// let plain = Admitted::new();
/// let holding = Admitted::holding(std::sync::Arc::new(()));
/// # let _ = (plain, holding);
/// ```
#[derive(Default)]
pub struct Admitted(Option<Box<dyn Send + Sync>>);

impl Admitted {
    /// Admitted, with nothing to keep.
    pub fn new() -> Admitted {
        Admitted(None)
    }

    /// Admitted, keeping `guard` until the connection closes (it is dropped then).
    pub fn holding(guard: impl Send + Sync + 'static) -> Admitted {
        Admitted(Some(Box::new(guard)))
    }
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Admitted")
            .field(&self.0.as_ref().map(|_| "guard"))
            .finish()
    }
}

/// What [`Admission::admit`] returns: a boxed future, so that stages of different types
/// can stand in one chain.
pub type Admit<'a> = Pin<Box<dyn Future<Output = Result<Admitted, Refusal>> + Send + 'a>>;

/// What the stages kept for an admitted connection (see [`Admitted::holding`]); dropped
/// when the connection closes.
pub(crate) type Held = Vec<Admitted>;

/// One admission stage: a check a new connection must pass before the service sees it
/// (PROXY header, access control, per-source limits, TLS handshake). Add stages with
/// [`Builder::stage`](super::Builder::stage).
///
/// Stages run in the connection's own task, never on the accept loop, so a stage that waits
/// for the client delays no other client; each may have a [deadline](Admission::deadline).
/// While they run, the connection holds its `max_connections` slot.
///
/// # Examples
///
/// A stage that admits only clients that first send the line `hello`, within a second:
///
/// ```
/// use std::time::Duration;
/// use socketkit::server::{Admission, Admit, Admitted, Connection, Refusal, RefusalReason};
/// use tokio::io::AsyncReadExt;
///
/// struct Hello;
///
/// impl Admission for Hello {
///     fn reason(&self) -> RefusalReason {
///         RefusalReason::Proxy
///     }
///
///     fn deadline(&self) -> Option<Duration> {
///         Some(Duration::from_secs(1))
///     }
///
///     fn admit<'a>(&'a self, conn: &'a mut Connection) -> Admit<'a> {
///         Box::pin(async move {
///             let mut line = [0u8; 6];
///             match conn.read_exact(&mut line).await {
///                 Ok(_) if &line == b"hello\n" => Ok(Admitted::new()),
///                 _ => Err(Refusal::new(RefusalReason::Proxy, "no hello")),
///             }
///         })
///     }
/// }
///
/// let mut builder = socketkit::server::Server::builder();
/// builder.stage(Hello);
/// ```
pub trait Admission: Send + Sync + 'static {
    /// The rule this stage applies: it places the stage in the chain (SPEC §3's order) and
    /// names its refusals, including the one for a missed deadline.
    fn reason(&self) -> RefusalReason;

    /// How long the stage may take on one connection; past it the connection is refused
    /// (with [`Admission::reason`]). `None`, the default, sets no limit of the stage's own
    /// (the server's idle timeout still bounds each read).
    fn deadline(&self) -> Option<Duration> {
        None
    }

    /// Admits `conn` (`Ok`, possibly [holding](Admitted::holding) something until it
    /// closes) or refuses it. A stage may read from the connection (a PROXY header) before
    /// the service does — what it reads, the service does not see — and may set the peer
    /// address that everything after it sees ([`Connection::set_peer_addr`]).
    fn admit<'a>(&'a self, conn: &'a mut Connection) -> Admit<'a>;

    /// Whether the stage decides from the peer's address alone, with no I/O (access rules,
    /// per-source limits). Such stages at the head of the chain (no stage that reads from
    /// the connection before them) run on the accept loop through
    /// [`Admission::check_peer`], before the connection is registered with tokio: a refused
    /// connection costs no task, and an admitted one keeps the immediate-reply path.
    fn peer_only(&self) -> bool {
        false
    }

    /// The decision of a [`peer_only`](Admission::peer_only) stage on `peer`; it must be
    /// the one [`Admission::admit`] would make. Stages that are not peer-only are never
    /// asked.
    fn check_peer(&self, _peer: &Address) -> Result<Admitted, Refusal> {
        Ok(Admitted::new())
    }
}

/// The ordered stages of a server, as the builder collects them.
#[derive(Clone, Default)]
pub(crate) struct Stages {
    list: Vec<Arc<dyn Admission>>,
    /// The server's own PROXY stage, if it has one: it may be tried on the accept loop.
    proxy: Option<Arc<ProxyStage>>,
}

impl Stages {
    /// Adds `stage` after every stage whose rule applies before or with its own.
    pub(crate) fn add(&mut self, stage: Arc<dyn Admission>) {
        let reason = stage.reason();
        let at = self.list.partition_point(|other| other.reason() <= reason);
        self.list.insert(at, stage);
    }

    /// Adds the server's PROXY stage (see [`Pipeline::proxy_now`]).
    pub(crate) fn add_proxy(&mut self, stage: ProxyStage) {
        let stage = Arc::new(stage);
        self.proxy = Some(Arc::clone(&stage));
        self.add(stage);
    }

    /// The server's PROXY stage, if it has one.
    pub(crate) fn proxy(&self) -> Option<&ProxyStage> {
        self.proxy.as_deref()
    }

    /// The chain to run on each connection, or `None` when there is no stage (the fast path).
    pub(crate) fn pipeline(
        &self,
        refusals: &Refusals,
        dropped: &Refusals,
    ) -> Option<Arc<Pipeline>> {
        (!self.list.is_empty()).then(|| {
            // Our PROXY stage at the head and only peer-only stages after it: the whole
            // chain can be decided on the accept loop when the header is there at once.
            let proxy_now = self.proxy.clone().filter(|proxy| {
                let head = self.list[0].as_ref() as *const dyn Admission as *const ();
                std::ptr::eq(head, Arc::as_ptr(proxy).cast())
                    && self.list[1..].iter().all(|stage| stage.peer_only())
            });
            Arc::new(Pipeline {
                early: self
                    .list
                    .iter()
                    .take_while(|stage| stage.peer_only())
                    .count(),
                stages: self.list.clone().into_boxed_slice(),
                proxy_now,
                refusals: refusals.clone(),
                dropped: dropped.clone(),
            })
        })
    }
}

impl fmt::Debug for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|stage| stage.reason()))
            .finish()
    }
}

/// The admission stages in the order they run, and where their refusals are counted.
pub(crate) struct Pipeline {
    stages: Box<[Arc<dyn Admission>]>,
    /// How many stages at the head are [peer-only](Admission::peer_only): they run on the
    /// accept loop ([`Pipeline::check_early`]), the rest in the connection's task.
    early: usize,
    /// The PROXY stage, when it heads a chain of otherwise peer-only stages.
    proxy_now: Option<Arc<ProxyStage>>,
    refusals: Refusals,
    /// Datagrams dropped by the peer-only stages, by reason.
    dropped: Refusals,
}

impl Pipeline {
    /// Runs the peer-only stages at the head of the chain on `peer`, on the accept loop:
    /// what they keep, or `None` (counted and logged) when one refuses.
    pub(crate) fn check_early(&self, peer: &Address, listener: &ListenerMeter) -> Option<Held> {
        self.check_peer_only(&self.stages[..self.early], peer, listener)
    }

    /// The PROXY stage to try on the accept loop, when the stages after it are all
    /// peer-only (see [`Pipeline::check_after_proxy`]); `None` otherwise.
    pub(crate) fn proxy_now(&self) -> Option<&ProxyStage> {
        self.proxy_now.as_deref()
    }

    /// Once [`Pipeline::proxy_now`]'s stage has admitted a connection on the accept loop,
    /// runs every stage after it on `peer` (the header's client): what they keep, or
    /// `None` (counted and logged) when one refuses.
    pub(crate) fn check_after_proxy(
        &self,
        peer: &Address,
        listener: &ListenerMeter,
    ) -> Option<Held> {
        self.check_peer_only(&self.stages[1..], peer, listener)
    }

    /// Counts and logs a refusal made on the accept loop.
    pub(crate) fn refused_early(
        &self,
        peer: &Address,
        refusal: &Refusal,
        listener: &ListenerMeter,
    ) {
        listener.refused(refusal.reason);
        self.count(peer, refusal);
    }

    fn check_peer_only(
        &self,
        stages: &[Arc<dyn Admission>],
        peer: &Address,
        listener: &ListenerMeter,
    ) -> Option<Held> {
        let mut held = Held::new();
        for stage in stages {
            match stage.check_peer(peer) {
                Ok(Admitted(None)) => {}
                Ok(kept) => held.push(kept),
                Err(refusal) => {
                    self.refused_early(peer, &refusal, listener);
                    return None;
                }
            }
        }
        Some(held)
    }

    /// Whether a datagram from `peer` may reach the handler: every peer-only stage is
    /// asked (the others, such as PROXY headers and TLS, do not apply to datagrams), and
    /// what it keeps is let go at once (a datagram holds no place). A refused datagram is
    /// counted as dropped and logged.
    pub(crate) fn admits_datagram(&self, peer: &Address, listener: &ListenerMeter) -> bool {
        for stage in self.stages.iter().filter(|stage| stage.peer_only()) {
            if let Err(refusal) = stage.check_peer(peer) {
                self.dropped.count(refusal.reason);
                listener.dropped(refusal.reason);
                tracing::debug!(
                    peer = %peer,
                    reason = refusal.reason.as_str(),
                    "dropped a datagram: {}",
                    refusal.detail
                );
                return false;
            }
        }
        true
    }

    /// Whether any stage must run in the connection's task (one that reads from it, or
    /// comes after one that does).
    pub(crate) fn has_late(&self) -> bool {
        self.early < self.stages.len()
    }

    /// Runs the stages after the early ones on `conn` in order: what they keep for the
    /// connection's life, or `None` (counted and logged) at the first that refuses it.
    pub(crate) async fn admit(&self, conn: &mut Connection) -> Option<Held> {
        let mut held = Held::new();
        for stage in &self.stages[self.early..] {
            let verdict = match stage.deadline() {
                Some(limit) => tokio::time::timeout(limit, stage.admit(conn))
                    .await
                    .unwrap_or_else(|_| Err(late(stage.reason(), limit))),
                None => stage.admit(conn).await,
            };
            match verdict {
                Ok(Admitted(None)) => {}
                Ok(kept) => held.push(kept),
                Err(refusal) => {
                    self.refused(conn, &refusal);
                    return None;
                }
            }
        }
        Some(held)
    }

    /// Counts and logs a refusal in the task; the connection is reset when it closes.
    fn refused(&self, conn: &Connection, refusal: &Refusal) {
        conn.reset_on_close();
        conn.meter().refused(refusal.reason);
        self.count(conn.peer_addr(), refusal);
    }

    /// Counts and logs a refusal: the one place every refused connection passes.
    fn count(&self, peer: &Address, refusal: &Refusal) {
        self.refusals.count(refusal.reason);
        tracing::debug!(
            peer = %peer,
            reason = refusal.reason.as_str(),
            "refused: {}",
            refusal.detail
        );
    }
}

/// The refusal of a stage that did not decide within `limit`.
pub(crate) fn late(reason: RefusalReason, limit: Duration) -> Refusal {
    let limit = humantime::format_duration(limit);
    Refusal::new(reason, format!("no decision within {limit}"))
}

/// How many connections a server's admission stages refused, by reason. Cheap to clone;
/// every clone reads the same counters, which go on counting while the server runs.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketkit::Result<()> {
/// use socketkit::server::{RefusalReason, Server};
/// let mut builder = Server::builder();
/// builder.listen("127.0.0.1:0".parse().unwrap());
/// let server = builder.bind().await?;
/// let refusals = server.refusals();
/// assert_eq!(refusals.get(RefusalReason::Acl), 0);
/// assert_eq!(refusals.total(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<[AtomicU64; RefusalReason::ALL.len()]>);

impl Refusals {
    /// Connections refused for `reason` so far.
    pub fn get(&self, reason: RefusalReason) -> u64 {
        self.0[reason as usize].load(Ordering::Relaxed)
    }

    /// Connections refused for any reason so far.
    pub fn total(&self) -> u64 {
        RefusalReason::ALL.iter().map(|&r| self.get(r)).sum()
    }

    fn count(&self, reason: RefusalReason) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rule(RefusalReason);

    impl Admission for Rule {
        fn reason(&self) -> RefusalReason {
            self.0
        }

        fn admit<'a>(&'a self, _conn: &'a mut Connection) -> Admit<'a> {
            Box::pin(std::future::ready(Ok(Admitted::new())))
        }
    }

    #[test]
    fn stages_run_in_the_spec_order_whatever_the_order_they_were_added_in() {
        let mut stages = Stages::default();
        for reason in [
            RefusalReason::Tls,
            RefusalReason::Rate,
            RefusalReason::Acl,
            RefusalReason::Proxy,
            RefusalReason::MaxPerSource,
            RefusalReason::Acl,
        ] {
            stages.add(Arc::new(Rule(reason)));
        }
        assert_eq!(
            format!("{stages:?}"),
            "[Proxy, Acl, Acl, MaxPerSource, Rate, Tls]"
        );
    }

    /// A peer-only rule that admits everyone.
    struct PeerRule(RefusalReason);

    impl Admission for PeerRule {
        fn reason(&self) -> RefusalReason {
            self.0
        }

        fn admit<'a>(&'a self, _conn: &'a mut Connection) -> Admit<'a> {
            Box::pin(std::future::ready(Ok(Admitted::new())))
        }

        fn peer_only(&self) -> bool {
            true
        }
    }

    #[test]
    fn the_proxy_stage_is_tried_on_the_accept_loop_only_ahead_of_peer_only_stages() {
        let proxy = || ProxyStage::new(crate::access::CidrSet::default(), Duration::from_secs(1));
        let tried = |stages: &Stages| {
            let pipeline = stages.pipeline(&Refusals::default(), &Refusals::default());
            pipeline.is_some_and(|p| p.proxy_now().is_some())
        };
        let mut stages = Stages::default();
        stages.add_proxy(proxy());
        assert!(tried(&stages), "PROXY alone");
        stages.add(Arc::new(PeerRule(RefusalReason::Acl)));
        stages.add(Arc::new(PeerRule(RefusalReason::Rate)));
        assert!(tried(&stages), "PROXY, then peer-only rules");
        let mut with_tls = stages.clone();
        with_tls.add(Arc::new(Rule(RefusalReason::Tls)));
        assert!(!tried(&with_tls), "a TLS handshake must run in a task");
        // A stage of the user's own with the PROXY reason, added first, heads the chain.
        let mut theirs = Stages::default();
        theirs.add(Arc::new(Rule(RefusalReason::Proxy)));
        theirs.add_proxy(proxy());
        assert!(!tried(&theirs));
    }

    #[test]
    fn no_stage_means_no_pipeline() {
        assert!(
            Stages::default()
                .pipeline(&Refusals::default(), &Refusals::default())
                .is_none()
        );
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let refusals = Refusals::default();
        refusals.count(RefusalReason::Rate);
        refusals.count(RefusalReason::Rate);
        refusals.count(RefusalReason::Tls);
        let reader = refusals.clone();
        assert_eq!(reader.get(RefusalReason::Rate), 2);
        assert_eq!(reader.get(RefusalReason::Acl), 0);
        assert_eq!(reader.total(), 3);
    }
}
