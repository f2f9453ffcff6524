//! What an admission stage is and what it answers: the [`Admission`] trait, its "yes"
//! ([`Admitted`], with what it keeps for the connection's life) and its "no" ([`Refusal`],
//! with its [`RefusalReason`]), and the server's count of refusals by reason
//! ([`Refusals`]). The chain that runs the stages on each connection is in `pipeline.rs`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Connection;
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

    /// The refusal of a source the allow/deny rules do not admit.
    pub fn not_allowed() -> Refusal {
        Refusal::new(RefusalReason::Acl, "the source is not allowed")
    }
}

/// A per-source limit's refusal, in its words.
impl From<crate::access::SourceRefusal> for Refusal {
    fn from(refusal: crate::access::SourceRefusal) -> Refusal {
        Refusal::new(refusal.into(), refusal.as_str())
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
pub struct Admitted(pub(super) Option<Box<dyn Send + Sync>>);

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

/// The refusal of a stage that did not decide within `limit`. A TLS handshake's says so in
/// the words of its other failures (`TLS handshake failed: …`), so that one line tells it
/// from a PROXY header's wait.
pub(crate) fn late(reason: RefusalReason, limit: Duration) -> Refusal {
    let limit = humantime::format_duration(limit);
    let why = match reason {
        RefusalReason::Tls => format!("TLS handshake failed: not finished within {limit}"),
        _ => format!("no decision within {limit}"),
    };
    Refusal::new(reason, why)
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

    pub(super) fn count(&self, reason: RefusalReason) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
