//! The metrics endpoint: `GET /metrics` (the text of [`Metrics::render`]) and `GET /health`
//! (200 while accepting, 503 once draining, so a balancer stops sending before the listener
//! closes). One short HTTP/1.1 exchange per connection, then close.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Metrics;
use crate::endpoint::Endpoint;
use crate::error::{Error, Op, Result};
use crate::net::{Bound, ListenOptions, bind_endpoint};

/// The longest request head read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The most scrapes served at once; more wait in the listen backlog. Without a bound, idle
/// connections to the metrics port would each hold a descriptor for `REQUEST_TIMEOUT` and
/// could take the ones the service needs to accept its clients.
const MAX_CONNECTIONS: usize = 32;

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
}

impl HttpListener {
    /// Binds `endpoint` (TCP; `:0` picks a port) as the server binds its own listeners, with
    /// `SO_REUSEPORT` so that a restarted server can bind it before the old one is gone
    /// ([`HttpListener::bind_beside_predecessor`]); but the port is claimed alone first, so
    /// that a port another process holds is "address already in use", not shared (scrapes
    /// and health checks would go to either process). Must be called inside a tokio
    /// runtime.
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
    /// restarts (SIGUSR2), which still drains and answers 503 until it exits. Must be called
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
        let Bound {
            socket, endpoint, ..
        } = bind_endpoint(endpoint, Self::options())?;
        let fail = |err| Error::new(Op::Listen, &endpoint, err);
        socket
            .set_blocking(false)
            .map_err(|err| fail(err.into_io_error()))?;
        let listener = std::net::TcpListener::from(OwnedFd::from(socket));
        let listener = TcpListener::from_std(listener).map_err(fail)?;
        Ok(HttpListener { listener, endpoint })
    }

    /// `SO_REUSEPORT`: the process a SIGUSR2 restart starts binds the same port while the old
    /// one still drains.
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

    /// Serves `metrics` until the task is dropped (see [`serve_http`]).
    pub async fn serve(self, metrics: Arc<Metrics>) {
        serve_http(self.listener, metrics).await;
    }
}

/// Serves `metrics` on `listener` until the task is dropped.
pub async fn serve_http(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors and the like: the scrape is retried; do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &metrics)).await;
            drop(slot);
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let (method, path) = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or("").to_owned();
                let path = request.path.unwrap_or("").to_owned();
                break (method, path);
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            _ => {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    b"bad request\n",
                    true,
                )
                .await;
            }
        }
    };
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            with_body,
        )
        .await;
    }
    // The query string does not matter to either page; a proxy's absolute form
    // (`http://host:port/metrics`) names the same path.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => &path,
    };
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let text = metrics.render();
            let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            respond(&mut stream, "200 OK", kind, text.as_bytes(), with_body).await
        }
        "/health" if metrics.is_draining() => {
            respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                b"draining\n",
                with_body,
            )
            .await
        }
        "/health" => respond(&mut stream, "200 OK", "text/plain", b"ok\n", with_body).await,
        _ => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                with_body,
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    // RFC 9110: a 405 names the methods the resource has.
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn health_metrics_and_everything_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Metrics::new();
        metrics.listener("tcp:127.0.0.1:1").accepted.inc();
        let server = tokio::spawn(serve_http(listener, Arc::clone(&metrics)));
        let health = get(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"),
            "{health}"
        );
        let scrape = get(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(
            scrape.contains("socketkit_connections_accepted_total{listener=\"tcp:127.0.0.1:1\"} 1"),
            "{scrape}"
        );
        let head = get(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        assert!(
            get(addr, b"GET /nope HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        let post = get(addr, b"POST /health HTTP/1.1\r\n\r\n").await;
        assert!(
            post.starts_with("HTTP/1.1 405") && post.contains("\r\nAllow: GET, HEAD\r\n"),
            "{post}"
        );
        let absolute = get(addr, b"GET http://127.0.0.1:9/health HTTP/1.1\r\n\r\n").await;
        assert!(absolute.starts_with("HTTP/1.1 200 OK\r\n"), "{absolute}");
        assert!(
            get(addr, b"\x00\x01garbage\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 400")
        );
        metrics.set_draining();
        let draining = get(addr, b"GET /health HTTP/1.1\r\n\r\n").await;
        assert!(draining.starts_with("HTTP/1.1 503"), "{draining}");
        server.abort();
    }
}
