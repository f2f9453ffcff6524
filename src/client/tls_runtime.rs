//! What a blocking caller needs to run TLS work (the bridge, a probe): a small tokio runtime
//! of its own on the calling thread — or on a thread of its own when the caller is a tokio
//! runtime's, where another runtime cannot be entered — and the client's handshake on it.

use std::os::fd::OwnedFd;
use std::thread;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::endpoint::Host;
use crate::error::{Error, Op, Result};
use crate::net::within;
use crate::socket::Socket;
use crate::tls::Connector;

/// Runs `work`, which runs a tokio runtime of its own, on this thread; or, called from a
/// thread of a tokio runtime (where another runtime cannot be entered), on a thread of its
/// own while this one waits.
pub(super) fn off_runtime<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    thread::scope(|scope| {
        let running = thread::Builder::new()
            .spawn_scoped(scope, work)
            .map_err(super::bridge::thread_error)?;
        running
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A small tokio runtime for this thread alone, and `socket` as a non-blocking stream for
/// it (made a tokio one inside the runtime).
pub(super) fn own_runtime(
    socket: Socket,
) -> Result<(tokio::runtime::Runtime, std::net::TcpStream)> {
    // tokio's first runtime with I/O makes a socket pair for the process's signals and
    // panics if it cannot (a seccomp filter that refuses `socketpair`): an error here.
    std::os::unix::net::UnixStream::pair().map_err(|err| Error::without_target(Op::Io, err))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::without_target(Op::Io, err))?;
    socket.set_blocking(false)?;
    Ok((runtime, std::net::TcpStream::from(OwnedFd::from(socket))))
}

/// The client's side of the handshake on `tcp` to `host`, within `timeout`; a failure is
/// `cannot connect to TARGET: REASON`, `target` the endpoint (and the proxy it was reached
/// through, if one was).
pub(super) async fn client_handshake(
    connector: &Connector,
    host: &Host,
    target: &dyn std::fmt::Display,
    timeout: Option<Duration>,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = within(timeout, connector.connect(host, tcp))
        .await
        .map_err(|err| Error::new(Op::Connect, target, err))?;
    tracing::debug!("tls: {}", crate::tls::summary(tls.get_ref().1));
    Ok(tls)
}
