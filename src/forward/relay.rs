//! One client's relay: its target chosen (the client passed to the next target when one
//! cannot be reached), then bytes moved between the two sides: `splice(2)` through pipes
//! where it can, a copy loop elsewhere, half-closes passed on, and a failure on one side a
//! reset on the other.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;

use tokio::io::AsyncWriteExt;

use crate::net::{self, Stream};
use crate::proxy_protocol::{self, Tls, Tlvs, Version};
use crate::server::{Connection, Handler};

use super::by_name::Route;
use super::{Forward, splice};

impl Handler for Forward {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let relay = self.clone();
        async move { relay.relay(conn).await }
    }

    /// The target's socket, made after the accept.
    fn opens_descriptors(&self) -> bool {
        true
    }
}

impl Forward {
    async fn relay(&self, mut client: Connection) -> io::Result<()> {
        let Route {
            targets: routed,
            hello,
            name,
        } = match &self.names {
            Some(names) => match names.route(&mut client).await {
                Some(route) => route,
                None => return Ok(()), // closed, or reset
            },
            None => Route::default(),
        };
        let targets = routed.as_deref().unwrap_or(&self.targets);
        let header = self.send_proxy.map(|version| {
            let tlvs = match version {
                Version::V2 => session_tlvs(&client, name),
                Version::V1 => Tlvs::default(),
            };
            proxy_protocol::encode_with(
                version,
                client.peer_addr().as_socket_addr(),
                // Behind a proxy, the address its client connected to, as HAProxy passes it
                // on: the next hop serves that client, not this relay's listener.
                client
                    .proxied_destination()
                    .or_else(|| client.local_addr().ok().and_then(|at| at.as_socket_addr())),
                &tlvs,
            )
        });
        // A client that came in over TLS speaks the protocol it agreed on (or none): a `tls:`
        // target is offered that one alone, or none, not the relay's list, from which it
        // could pick another (curl's HTTP/1.1 sent to an h2 target).
        let alpn: Option<Vec<Vec<u8>>> = client.is_tls().then(|| {
            client
                .alpn_protocol()
                .map(|p| vec![p.to_vec()])
                .unwrap_or_default()
        });
        let mut order = targets.order(client.peer_addr().ip());
        let mut left = order.len();
        let connected = loop {
            let Some(target) = order.next() else {
                break None;
            };
            left -= 1;
            let endpoint = target.endpoint();
            let dialed = self
                .dial
                .connect(endpoint, header.as_deref(), alpn.as_deref())
                .await;
            // The accept loop may be waiting for this relay's descriptor before the next.
            crate::server::handler_opened();
            match dialed {
                Ok(upstream) => break Some((target, upstream)),
                Err(err) if net::is_resource_exhaustion(&err) => {
                    out_of_resources(&client, endpoint, &err, "resetting");
                    break None;
                }
                Err(err) => {
                    targets.failed(&target);
                    let through = self.dial.through();
                    let next = if left > 0 {
                        "trying the next target"
                    } else {
                        "resetting the client"
                    };
                    tracing::warn!(
                        peer = %client.peer_addr(),
                        "cannot reach {endpoint}{through}: {}; {next}",
                        crate::error::describe(&err)
                    );
                }
            }
        };
        // The list the order was made from goes now, not with the relay: a target a reload
        // removed is let go once the relays to it end, not the relays made beside it.
        drop(order);
        let Some((target, upstream)) = connected else {
            // Whatever the client sent is lost: a FIN would read as a target that took it
            // and had nothing to say.
            client.reset_on_close();
            return Ok(());
        };
        tracing::trace!(peer = %client.peer_addr(), "relaying to {}", target.endpoint());
        target.succeeded();
        // The order's reference moves into the guard: no count to add.
        let open = target.open();
        let result = relay_to(client, upstream, &hello).await;
        drop(open);
        // A target a reload removed while this relay held it leaves the metrics now.
        targets.let_go_of_retired();
        result
    }
}

/// The relay, not the target, had no descriptor (or memory) for the socket to `target`
/// (`err`): the accept before took the last one. The target is not marked down and no other
/// is tried (none would do better); the accept loops are told to hold a descriptor back, so
/// that the clients behind this one wait in the backlog rather than each being accepted and
/// dropped; and the warning is written once per shortage, at debug level after that.
/// `dropping` says what becomes of this client ("resetting", "failing").
pub(super) fn out_of_resources(
    client: &Connection,
    target: impl std::fmt::Display,
    err: &io::Error,
    dropping: &str,
) {
    let reason = crate::error::describe(err);
    if crate::server::handler_out_of_resources() {
        tracing::warn!(
            peer = %client.peer_addr(),
            "out of resources to open a connection to {target}: {reason}; {dropping} the \
             client, and new clients wait in the backlog until some are freed"
        );
    } else {
        tracing::debug!(
            peer = %client.peer_addr(),
            "out of resources to open a connection to {target}: {reason}; {dropping} the client"
        );
    }
}

/// What a PROXY v2 header tells the target of the client's TLS beyond its address: the
/// session the relay terminated (server name, ALPN, version, the client certificate's
/// common name), or the server name a passed-through ClientHello asked for (`name`).
fn session_tlvs(client: &Connection, name: Option<String>) -> Tlvs {
    let Some(session) = client.tls_session() else {
        return Tlvs {
            authority: name,
            ..Tlvs::default()
        };
    };
    let client_cn = session.client_common_name();
    Tlvs {
        authority: session.server_name,
        alpn: session.alpn,
        tls: Some(Tls {
            version: session.version.to_owned(),
            client_verified: session.client_certificate.is_some(),
            client_cn,
        }),
    }
}

/// The most one splice or copy takes in before passing it on (and so the size of a copy
/// buffer). Two things bound it, both measured with `bench/client_bench.py` (4 connections,
/// 3 rounds, 2026-11-30):
///
/// - A `splice` from a socket takes all that has arrived, up to the bound, before any of it
///   goes on, so with a large bound the bytes of a fast sender wait in large batches: in the
///   echo test, 32 KiB chunks moved 1.6× the bytes of 64 KiB or 256 KiB ones.
/// - Each chunk is sent as it comes (no Nagle), and a loopback segment holds less than
///   64 KiB (the 65,536-byte MTU less headers; `TCP_MAXSEG` read 47,616 here), so a 64 KiB
///   chunk goes out as two segments, one of them a small remainder: in the one-way test
///   64 KiB chunks cost 0.58 s of CPU per GB against 0.41 for 32 KiB, which fits one
///   segment. (256 KiB chunks cost 0.32 one way, but hold echo traffic back.)
pub(super) const CHUNK: usize = 32 * 1024;

/// Relays `client` and `upstream` until both directions have ended, or one side fails;
/// `first` (what was read from the client to choose the target) goes to the target before
/// the rest.
pub(super) async fn relay_to(
    mut client: Connection,
    mut upstream: Upstream,
    first: &[u8],
) -> io::Result<()> {
    // A relay passes on writes as they come: the client's connection has Nagle off from
    // its listener (`server::listener`) or, under `--inetd`, from its adoption; the
    // target's, from `net::connect`.
    let result = async {
        if !first.is_empty() {
            upstream.write_first(first).await?;
        }
        match &mut upstream {
            Upstream::Plain(stream) => relay_plain(&mut client, stream).await,
            Upstream::Tls(tls) => copy_and_settle(&mut client, tls).await,
        }
    }
    .await;
    if let Err(err) = &result {
        // The closed line's `error` (at -v): the splice relay's failures do not pass
        // through the connection's own reads and writes, which note theirs.
        client.meter_mut().failed(err);
    }
    if let Err(err) = &result
        && (!net::is_idle_timeout(err) || in_flight(&client, &upstream))
    {
        // One side failed (a reset, a write to a peer that left, a TLS alert), so not every
        // byte reached the other: it hears that as a reset, as it would from the failed peer
        // itself, rather than a FIN that reads as a clean end. An idle timeout closes
        // quietly when it loses nothing; one that came while bytes were still on their way
        // (a client that stopped reading a download) cuts a stream short, and resets too.
        client.reset_on_close();
        upstream.reset_on_close();
    }
    result
}

/// Whether bytes of the relay are still on their way, on either side: received and not
/// read, or sent and not acknowledged (what a quiet close would lose).
fn in_flight(client: &Connection, upstream: &Upstream) -> bool {
    let holds_bytes = |stream: &Stream| net::holds_bytes(stream.as_fd());
    client.stream().is_some_and(holds_bytes) || holds_bytes(upstream.stream())
}

/// The target's side of a relay.
pub(crate) enum Upstream {
    Plain(Stream),
    // Boxed: a TLS session is about 1 KiB, which a plain relay should not carry.
    Tls(Box<tokio_rustls::client::TlsStream<Stream>>),
}

impl Upstream {
    /// Sends `bytes` before the relay starts.
    async fn write_first(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Upstream::Plain(stream) => stream.write_all(bytes).await,
            Upstream::Tls(tls) => tls.write_all(bytes).await,
        }
    }

    /// The socket to the target, under its TLS session if it has one.
    fn stream(&self) -> &Stream {
        match self {
            Upstream::Plain(stream) => stream,
            Upstream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Makes the close a reset (see [`Stream::reset_on_close`]).
    fn reset_on_close(&self) {
        self.stream().reset_on_close();
    }
}

/// A relay cut short by a forced shutdown resets its target too, as it does when one side
/// fails: the target must not take the cut for the client's clean end. (The client's side,
/// a [`Connection`], resets itself.)
impl Drop for Upstream {
    fn drop(&mut self) {
        if crate::server::is_cut_short() {
            self.reset_on_close();
        }
    }
}

/// Relays a plain target: socket to socket, each direction copied until it carries a bulk
/// stream and then spliced where the kernel can (`forward/splice.rs`). A TLS client's bytes
/// are the session's, not the socket's: copied through tokio's loop.
async fn relay_plain(client: &mut Connection, upstream: &mut Stream) -> io::Result<()> {
    if !client.is_tls()
        && let Some((plain, idle, tallies)) = client.plain_parts()
    {
        let result = splice::relay(plain, upstream, idle, tallies).await;
        if result.is_ok() {
            // Both directions ended, each passed on as a half-close.
            client.set_ended();
        }
        return result;
    }
    copy_and_settle(client, upstream).await
}

/// [`copy_both_ways`] for a relay's client and its target; when one side fails, what the
/// relay has written to the client is let reach it first (flushed, then acknowledged,
/// within [`splice::SALVAGE_TIME`]), as the splice relay does: the client's reset that
/// follows would throw it away. (A TLS target that ends without close_notify fails the
/// relay after its last bytes, which a download's client may not have taken yet.)
async fn copy_and_settle<B>(client: &mut Connection, other: &mut B) -> io::Result<()>
where
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
{
    // The connection's own idle timer is looked at only when it is read or written, and a
    // relay stalled on a peer that stopped reading polls neither of its halves: the
    // watchdog over both sides' bytes ends it.
    let result = match client.idle_limit() {
        None => copy_both_ways(client, other).await,
        limit @ Some(_) => {
            let activity = net::Activity::new();
            let mut client = net::Touching::new(client, &activity);
            let mut other = net::Touching::new(other, &activity);
            net::unless_idle(limit, &activity, copy_both_ways(&mut client, &mut other)).await
        }
    };
    if result.as_ref().is_err_and(|err| !net::is_idle_timeout(err)) {
        let settle = async {
            if client.flush().await.is_ok()
                && let Some(stream) = client.stream()
            {
                splice::until_acknowledged(stream).await;
            }
        };
        let _ = tokio::time::timeout(splice::SALVAGE_TIME, settle).await;
    }
    result
}

/// Copies both ways until both have ended; the end of one direction (a FIN, or a TLS
/// close_notify) is passed on as a half-close (`shutdown`, which on TLS sends close_notify).
async fn copy_both_ways<A, B>(a: &mut A, b: &mut B) -> io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, CHUNK, CHUNK)
        .await
        .map(drop)
        .map_err(crate::tls::in_words)
}
