//! The TLS stage of a `tls:` listener (SPEC §3.1): an admission stage ([`Admission`]) that
//! runs the server's handshake on the connection in the connection's own task — never on
//! the accept loop, so a client that connects and sends nothing delays nobody — under the
//! handshake deadline, holding the connection's `max_connections` slot. It comes last in
//! the pipeline (after PROXY, access control and per-source limits, SPEC §3), and only on
//! `tls:` listeners. A handshake that fails or runs out of time refuses the connection with
//! reason `tls`; one that succeeds turns the [`Connection`] into a TLS session, which is
//! what the handler then reads and writes.
//!
//! Below the stage: how a connection reads and writes through its session.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::Connection;
use super::admission::{Admission, Admit, Admitted, Refusal};
use crate::metrics::RefusalReason;
use crate::net::Stream;
use crate::tls::ReloadableServerConfig;

/// A server-side TLS session over an accepted stream.
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<Stream>;

/// The handshake deadline when none is set (`--tls-handshake-timeout`).
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a `tls:` listener's configuration comes from.
#[derive(Debug, Clone)]
pub(crate) enum ServerTlsSource {
    /// One configuration for the server's life ([`super::Builder::tls`]).
    Fixed(Arc<rustls::ServerConfig>),
    /// The one in force at each handshake ([`super::Builder::tls_reloadable`]).
    Reloadable(Arc<ReloadableServerConfig>),
}

/// The TLS handshake as an admission stage.
pub(crate) struct TlsHandshake {
    source: ServerTlsSource,
    deadline: Duration,
}

impl TlsHandshake {
    pub(crate) fn new(source: ServerTlsSource, deadline: Duration) -> TlsHandshake {
        TlsHandshake { source, deadline }
    }

    /// The acceptor for a handshake that starts now.
    fn acceptor(&self) -> TlsAcceptor {
        match &self.source {
            ServerTlsSource::Fixed(config) => TlsAcceptor::from(Arc::clone(config)),
            ServerTlsSource::Reloadable(config) => TlsAcceptor::from(config.current()),
        }
    }
}

impl Admission for TlsHandshake {
    fn reason(&self) -> RefusalReason {
        RefusalReason::Tls
    }

    fn deadline(&self) -> Option<Duration> {
        Some(self.deadline)
    }

    fn admit<'a>(&'a self, conn: &'a mut Connection) -> Admit<'a> {
        Box::pin(async move {
            let Some(stream) = conn.take_plain() else {
                return Err(Refusal::new(
                    RefusalReason::Tls,
                    "the connection is not plain TCP",
                ));
            };
            // A TLS server writes in several pieces (the handshake's flights, session
            // tickets, then the application's records and close_notify): the connection has
            // Nagle off from its listener (`server::listener`), or from its adoption under
            // inetd, or each piece after the first would wait 40 ms for the client's ACK.
            let fd = stream.as_raw_fd();
            let handshake = std::pin::pin!(self.acceptor().accept(stream));
            // Declared after the handshake, so dropped before it (its socket still open).
            let reset = ResetIfUnfinished(fd);
            let outcome = handshake.await;
            // Over: the socket is the session's now, or closed with the failed handshake.
            std::mem::forget(reset);
            match outcome {
                Ok(session) => {
                    conn.set_tls(session);
                    Ok(Admitted::new())
                }
                // The stream went with the failed handshake, closed after the alert rustls
                // sent: the client learns why, where the reset other refusals get would
                // hide it.
                Err(err) => {
                    let why = crate::error::describe(&crate::tls::handshake_failure(err));
                    Err(Refusal::new(
                        RefusalReason::Tls,
                        format!("TLS handshake failed: {why}"),
                    ))
                }
            }
        })
    }
}

/// Resets a connection whose handshake is dropped before it ends: by the stage's deadline
/// (a refusal, which closes with a reset as every other refusal does) or by a forced close
/// (the drain deadline: a client cut off before its session began must not read the close
/// as a finished exchange, as a [`Connection`] does not, `shutdown::dropping_forced`).
struct ResetIfUnfinished(RawFd);

impl Drop for ResetIfUnfinished {
    fn drop(&mut self) {
        // SAFETY: the guard is forgotten once the handshake ends, and while it runs the
        // handshake, which owns the socket, is dropped after the guard (declared before it):
        // the descriptor is open here.
        crate::net::close_with_reset(unsafe { BorrowedFd::borrow_raw(self.0) });
    }
}

/// Waits until the session has plaintext (or its end) to read. TLS bytes still waiting to
/// go out are pushed first: a handler that wrote and now waits for an answer must not sit
/// on its own unsent bytes.
pub(crate) fn poll_readable(
    tls: &mut TlsStream,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<io::Result<()>> {
    push_pending(tls, cx)?;
    std::pin::Pin::new(tls)
        .poll_fill_buf(cx)
        .map(|filled| filled.map(drop).map_err(read_error))
}

/// A failed read in words; an end without close_notify says the data may be truncated.
pub(crate) fn read_error(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => {
            io::Error::new(io::ErrorKind::UnexpectedEof, crate::tls::TRUNCATED)
        }
        _ => crate::tls::in_words(err),
    }
}

/// Takes plaintext the session already holds, without waiting: `WouldBlock` when there is
/// none, `Ok(0)` after the client's close_notify, `UnexpectedEof` when its connection ended
/// without one.
pub(crate) fn try_read(tls: &mut TlsStream, buf: &mut [u8]) -> io::Result<usize> {
    io::Read::read(&mut tls.get_mut().1.reader(), buf).map_err(|err| match err.kind() {
        io::ErrorKind::WouldBlock => err,
        _ => read_error(err),
    })
}

/// Sends what the session holds for the client, as far as the socket takes it now; the
/// rest waits for the next write, read or flush (the waker is registered for it).
pub(crate) fn push_pending(tls: &mut TlsStream, cx: &mut std::task::Context<'_>) -> io::Result<()> {
    if tls.get_ref().1.wants_write()
        && let std::task::Poll::Ready(Err(err)) = std::pin::Pin::new(tls).poll_flush(cx)
    {
        return Err(err);
    }
    Ok(())
}
