//! The metrics endpoint: `GET /metrics` (the text of [`Metrics::render`]) and `GET /health`
//! (200 while accepting, 503 once draining, so a balancer stops sending before the listener
//! closes). One short HTTP/1.1 exchange per connection, then close.
//!
//! On a SIGUSR2 restart the listening socket itself goes to the new process
//! ([`HttpListener::handover_socket`], [`HttpListener::adopt`]), and the old process stops
//! accepting on it ([`HttpListener::serve_until`]) once the new one serves: every scrape
//! is then the new process's, and none queued on the socket is lost.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::Metrics;
use super::scrape::{Reserve, serve_http_with};
use crate::endpoint::Endpoint;
use crate::error::{Error, Op, Result};
use crate::net::{Bound, ListenOptions, bind_endpoint};

/// The metrics endpoint's socket: bound, with the port the system chose, ready to serve.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketkit::Result<()> {
/// use socketkit::metrics::{HttpListener, Metrics};
/// let http = HttpListener::bind(&"127.0.0.1:0".parse().unwrap())?;
/// assert!(http.local_endpoint().to_string().starts_with("tcp:127.0.0.1:"));
/// let serving = tokio::spawn(http.serve(Metrics::new()));
/// serving.abort();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
    endpoint: Endpoint,
    /// The descriptor kept for a scrape when the process has no other, opened with the
    /// socket: before the service's first clients can take every descriptor.
    reserve: Reserve,
}

impl HttpListener {
    /// Binds `endpoint` (TCP; `:0` picks a port) as the server binds its own listeners.
    /// The port is claimed alone first, so that a port another process holds is "address
    /// already in use", not shared (scrapes and health checks would go to either process);
    /// the socket then has `SO_REUSEPORT` only so that a socketkit that binds beside its
    /// predecessor instead of inheriting the socket — one older than the handing over of
    /// the metrics socket, started by a SIGUSR2 to roll back — can still take over (see
    /// [`HttpListener::bind_beside_predecessor`]). Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// `cannot listen on ENDPOINT: REASON`, also for an endpoint that is not TCP.
    pub fn bind(endpoint: &Endpoint) -> Result<HttpListener> {
        let claimed = bind_endpoint(
            endpoint,
            ListenOptions {
                reuse_port: false,
                ..Self::options()
            },
        )?
        .endpoint;
        Self::bind_beside_predecessor(&claimed)
    }

    /// Binds `endpoint` with `SO_REUSEPORT` beside the listener of the server this process
    /// restarts (SIGUSR2) — only for a predecessor that handed over no metrics socket (a
    /// socketkit older than that; a current one hands its socket over, see
    /// [`HttpListener::adopt`]). The two processes then share the port until the old one
    /// exits, and scrapes queued on its socket when it closes are reset. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`HttpListener::bind`].
    pub fn bind_beside_predecessor(endpoint: &Endpoint) -> Result<HttpListener> {
        if !matches!(endpoint, Endpoint::Tcp(_)) {
            let reason = io::Error::new(
                io::ErrorKind::InvalidInput,
                "the metrics endpoint is HTTP over TCP (HOST:PORT)",
            );
            return Err(Error::new(Op::Listen, endpoint, reason));
        }
        Self::serving(bind_endpoint(endpoint, Self::options())?)
    }

    /// Serves the listening socket `fd` that the process this one restarts handed over
    /// (its metrics endpoint, whatever `--metrics` says now: the port stays, even one the
    /// system chose for `:0`). Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// `cannot listen on handed-over metrics socket: REASON` when `fd` is not a listening
    /// TCP socket.
    pub fn adopt(fd: OwnedFd) -> Result<HttpListener> {
        const NAME: &str = "handed-over metrics socket";
        let bound = crate::net::adopt(fd, NAME)?;
        if !matches!(bound.endpoint, Endpoint::Tcp(_)) {
            let reason = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a TCP listener", bound.endpoint),
            );
            return Err(Error::new(Op::Listen, NAME, reason));
        }
        Self::serving(bound)
    }

    /// The bound socket, non-blocking, registered with tokio.
    fn serving(bound: Bound) -> Result<HttpListener> {
        let Bound {
            socket, endpoint, ..
        } = bound;
        let fail = |err| Error::new(Op::Listen, &endpoint, err);
        socket
            .set_blocking(false)
            .map_err(|err| fail(err.into_io_error()))?;
        // As a server's listeners (`server::listener`): a response written as its head and
        // then its body is not held for the scraper's ACK. Only latency rides on it.
        let _ = socket.set_nodelay(true);
        let listener = std::net::TcpListener::from(OwnedFd::from(socket));
        let listener = TcpListener::from_std(listener).map_err(fail)?;
        Ok(HttpListener {
            listener,
            endpoint,
            reserve: Reserve::filled(),
        })
    }

    /// A duplicate of the listening socket (close-on-exec) to hand to the process a restart
    /// starts ([`Handover::add_metrics_socket`](crate::server::Handover::add_metrics_socket)).
    ///
    /// # Errors
    ///
    /// The system is out of descriptors.
    pub fn handover_socket(&self) -> Result<OwnedFd> {
        self.listener
            .as_fd()
            .try_clone_to_owned()
            .map_err(|err| Error::new(Op::Listen, &self.endpoint, err))
    }

    /// `SO_REUSEPORT` so that a socketkit that binds beside its predecessor rather than
    /// inheriting the socket can take over on SIGUSR2 (see [`HttpListener::bind`]): one older
    /// than the handing over, either way.
    fn options() -> ListenOptions {
        ListenOptions {
            backlog: 128,
            unix_mode: None,
            reuse_port: true,
            only_v6: false,
        }
    }

    /// The endpoint really listened on.
    pub fn local_endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Serves `metrics` until the task is dropped (see [`serve_http`](super::serve_http)).
    pub async fn serve(self, metrics: Arc<Metrics>) {
        serve_http_with(self.listener, metrics, self.reserve).await;
    }

    /// Serves `metrics` until `stop` completes, then stops accepting and closes this
    /// process's descriptor of the socket; requests already accepted are still answered.
    /// The socket's queue goes on where another process holds the socket too (a restart's
    /// new process, which inherited it): the connections on it are that process's to
    /// accept. Once `stop` completes, no accept happens after this future is dropped or
    /// returns; `stop` itself is dropped then, which a caller can wait for (a
    /// `watch::Sender::closed`) to know that every later scrape goes elsewhere.
    pub async fn serve_until(self, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
        tokio::select! {
            // `stop` first: once it is done, no poll accepts again.
            biased;
            () = stop => {}
            () = serve_http_with(self.listener, metrics, self.reserve) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::metrics::scrape::tests::get;

    /// A restart's old process: once its `serve_until` has stopped, connections queue on
    /// the socket for whoever else holds it (the test, here), rather than being reset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_server_leaves_the_queue_to_the_other_holder_of_the_socket() {
        let shared = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = shared.local_addr().expect("addr");
        let fd = shared.as_fd().try_clone_to_owned().expect("dup");
        let old = HttpListener::adopt(fd).expect("a listening TCP socket is adopted");
        assert_eq!(old.local_endpoint().to_string(), format!("tcp:{addr}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(old.serve_until(Metrics::new(), async {
            let _ = stopped.await;
        }));
        let health = get(addr, b"GET /health HTTP/1.0\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        let _ = stop.send(());
        serving.await.expect("serve_until returns once stopped");
        // Queued, not refused or reset: the socket is still open, in `shared`.
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET /health HTTP/1.0\r\n\r\n")
            .await
            .expect("send");
        let (mut accepted, _) = TcpListener::from_std({
            shared.set_nonblocking(true).expect("non-blocking");
            shared
        })
        .expect("register")
        .accept()
        .await
        .expect("the queued connection is accepted by the other holder");
        let mut request = [0u8; 4];
        accepted.read_exact(&mut request).await.expect("read");
        assert_eq!(&request, b"GET ");
    }

    #[test]
    fn only_a_listening_tcp_socket_is_adopted() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let err = HttpListener::adopt(udp.as_fd().try_clone_to_owned().expect("dup"))
            .expect_err("a UDP socket is no metrics listener");
        assert!(
            err.to_string().contains("handed-over metrics socket"),
            "{err}"
        );
    }
}
