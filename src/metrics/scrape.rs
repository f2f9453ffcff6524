//! One scrape: the HTTP/1.1 exchange of the metrics endpoint on each connection (`GET
//! /metrics`, `GET /health`, then close), and how many connections it holds at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use super::Metrics;
use crate::net::is_resource_exhaustion;

/// The longest request head read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The most connections held at once. Without a bound, idle connections to the metrics
/// port would each hold a descriptor for `REQUEST_TIMEOUT` and could take the ones the
/// service needs to accept its clients; past it, the one that has waited longest for its
/// request is closed for the newcomer (see [`serve_http`]).
const MAX_CONNECTIONS: usize = 32;

/// The most request headers read (hyper's default): a scrape through proxies that add
/// their own still fits.
const MAX_HEADERS: usize = 100;

/// Serves `metrics` on `listener` until the task is dropped. The descriptor it keeps in
/// reserve (for a scrape while the process has no other) is opened when this is called,
/// not when the future first runs: a service whose clients take every descriptor before
/// then would leave it none.
pub fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
) -> impl Future<Output = ()> + Send + 'static {
    serve_http_with(listener, metrics, Reserve::filled())
}

/// [`serve_http`] with `reserve` opened already.
pub(super) async fn serve_http_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    reserve: Reserve,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let waiting = Arc::new(Waiting::default());
    // A descriptor kept in reserve: when the process is out of them (the very time an
    // operator scrapes to see why), it is let go for one scrape to be accepted and answered,
    // and taken again the moment that scrape's socket closes, before the service's accept
    // loops, backing off, can take the descriptor for a client of theirs.
    let reserve = Arc::new(reserve);
    loop {
        reserve.refill();
        let (stream, from_reserve) = match listener.accept().await {
            Ok((stream, _)) => (stream, false),
            Err(err) if is_resource_exhaustion(&err) && reserve.release() => {
                match accept_on_reserve(&listener, &reserve).await {
                    Some(stream) => (stream, true),
                    None => continue,
                }
            }
            Err(_) => {
                // Out of descriptors and the like: the scrape is retried; do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Every slot taken: the connection that has waited longest for its request
                // goes (a scraper sends its request at once), so that connections that
                // send nothing cannot keep a health check waiting; a slot answering a
                // request frees when its answer is written.
                waiting.close_oldest();
                let free =
                    tokio::time::timeout(REQUEST_TIMEOUT, Arc::clone(&slots).acquire_owned());
                // The semaphore is never closed, so acquiring cannot fail.
                match free.await {
                    Ok(Ok(slot)) => slot,
                    _ => continue,
                }
            }
        };
        let metrics = Arc::clone(&metrics);
        let waiting = Arc::clone(&waiting);
        let reserve = Arc::clone(&reserve);
        let closed = waiting.add();
        tokio::spawn(async move {
            let mut stream = stream;
            let exchange = async {
                let read = tokio::select! {
                    biased;
                    () = closed.notified() => return Ok(()),
                    read = read_request(&mut stream) => read?,
                };
                waiting.remove(&closed);
                match read {
                    Some(request) => answer(&mut stream, request, &metrics).await,
                    None => Ok(()),
                }
            };
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await;
            waiting.remove(&closed);
            drop(stream);
            if from_reserve {
                reserve.refill();
            }
            drop(slot);
        });
    }
}

/// Accepts a scrape on a descriptor of the reserve, one let go already; when the service's
/// own accept (a retry as it backs off) took that one in the moment between, the next is
/// let go. `None` once the accept fails otherwise or the reserve is spent.
async fn accept_on_reserve(listener: &TcpListener, reserve: &Reserve) -> Option<TcpStream> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return Some(stream),
            Err(err) if is_resource_exhaustion(&err) && reserve.release() => {}
            Err(_) => return None,
        }
    }
}

/// The metrics endpoint's descriptor in reserve (`/dev/null`), for a scrape to be answered
/// while the process has no other (see [`serve_http`]).
#[derive(Debug, Default)]
pub(super) struct Reserve(std::sync::Mutex<Vec<std::fs::File>>);

/// How many descriptors the reserve holds: a second for when the service's accept takes
/// the first in the moment it is let go.
const RESERVED: usize = 2;

impl Reserve {
    /// The reserve, opened now (while a descriptor is free).
    pub(super) fn filled() -> Reserve {
        let reserve = Reserve::default();
        reserve.refill();
        reserve
    }

    /// Opens the reserve again if it was let go (and a descriptor is free).
    fn refill(&self) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while held.len() < RESERVED {
            match std::fs::File::open("/dev/null") {
                Ok(file) => held.push(file),
                Err(_) => break,
            }
        }
    }

    /// Lets the reserve go for an accept; false when there was none to let go.
    fn release(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .is_some()
    }
}

/// The connections still waiting for their request, oldest first, each known by what
/// closes it (see [`serve_http`]).
#[derive(Default)]
struct Waiting(std::sync::Mutex<std::collections::VecDeque<Arc<Notify>>>);

impl Waiting {
    /// A new connection's place at the end: what tells it to close.
    fn add(&self) -> Arc<Notify> {
        let closed = Arc::new(Notify::new());
        self.list().push_back(Arc::clone(&closed));
        closed
    }

    /// Takes the connection `closed` belongs to off the list (its request came, or it
    /// ended).
    fn remove(&self, closed: &Arc<Notify>) {
        self.list().retain(|other| !Arc::ptr_eq(other, closed));
    }

    /// Closes the connection that has waited longest, if any waits.
    fn close_oldest(&self) {
        let oldest = self.list().pop_front();
        if let Some(closed) = oldest {
            // A stored permit: the connection sees it even before it waits.
            closed.notify_one();
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Arc<Notify>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a request asks: its method, its path and whether it takes OpenMetrics.
struct Request {
    method: String,
    path: String,
    open_metrics: bool,
}

/// The request head, or `None` when the client closed first or sent no HTTP (answered 400
/// here).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                // Prometheus asks for OpenMetrics first; a scraper that does not name it
                // gets the classic format, as the Prometheus client libraries answer.
                let open_metrics = request.headers.iter().any(|header| {
                    header.name.eq_ignore_ascii_case("accept")
                        && String::from_utf8_lossy(header.value)
                            .contains("application/openmetrics-text")
                });
                return Ok(Some(Request {
                    method: request.method.unwrap_or("").to_owned(),
                    path: request.path.unwrap_or("").to_owned(),
                    open_metrics,
                }));
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            _ => {
                respond(
                    stream,
                    "400 Bad Request",
                    "text/plain",
                    b"bad request\n",
                    true,
                )
                .await?;
                return Ok(None);
            }
        }
    }
}

async fn answer(
    stream: &mut TcpStream,
    request: Request,
    metrics: &Metrics,
) -> std::io::Result<()> {
    let Request {
        method,
        path,
        open_metrics,
    } = request;
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return respond(
            stream,
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
        "/metrics" if open_metrics => {
            let text = metrics.render();
            let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            respond(stream, "200 OK", kind, text.as_bytes(), with_body).await
        }
        "/metrics" => {
            let text = metrics.render_classic();
            let kind = "text/plain; version=0.0.4; charset=utf-8";
            respond(stream, "200 OK", kind, text.as_bytes(), with_body).await
        }
        "/health" if metrics.is_draining() => {
            respond(
                stream,
                "503 Service Unavailable",
                "text/plain",
                b"draining\n",
                with_body,
            )
            .await
        }
        "/health" => respond(stream, "200 OK", "text/plain", b"ok\n", with_body).await,
        _ => {
            respond(
                stream,
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
pub(super) mod tests {
    use super::*;

    /// What the endpoint at `addr` answers `request` with, whole.
    pub(in crate::metrics) async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
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

    /// Prometheus asks for OpenMetrics and gets it; a scraper that does not (promtool,
    /// `curl`) gets the classic format, whose parser would leave OpenMetrics counters
    /// untyped; a request with many headers (proxies add theirs) is answered.
    #[tokio::test]
    async fn the_format_follows_accept_and_many_headers_are_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Metrics::new();
        metrics.listener("tcp:127.0.0.1:1").accepted.inc();
        let server = tokio::spawn(serve_http(listener, Arc::clone(&metrics)));
        let prometheus = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;\
                          version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n";
        let open = get(addr, prometheus.as_bytes()).await;
        assert!(
            open.contains("Content-Type: application/openmetrics-text; version=1.0.0")
                && open.contains("# TYPE socketkit_connections_accepted counter\n")
                && open.ends_with("# EOF\n"),
            "{open}"
        );
        let classic = get(addr, b"GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n").await;
        assert!(
            classic.contains("Content-Type: text/plain; version=0.0.4")
                && classic.contains("# TYPE socketkit_connections_accepted_total counter\n")
                && classic.contains(
                    "socketkit_connections_accepted_total{listener=\"tcp:127.0.0.1:1\"} 1"
                )
                && !classic.contains("# EOF"),
            "{classic}"
        );
        let many: String = (0..60).map(|n| format!("X-Proxy-{n}: yes\r\n")).collect();
        let proxied = get(
            addr,
            format!("GET /health HTTP/1.1\r\n{many}\r\n").as_bytes(),
        )
        .await;
        assert!(proxied.starts_with("HTTP/1.1 200 OK\r\n"), "{proxied}");
        server.abort();
    }

    /// Connections that send nothing cannot keep a health check waiting: past the slots,
    /// the one that has waited longest for its request is closed for the newcomer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_do_not_starve_a_health_check() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_http(listener, Metrics::new()));
        let mut idle = Vec::new();
        for _ in 0..3 * MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let started = std::time::Instant::now();
        let health = tokio::time::timeout(
            REQUEST_TIMEOUT / 2,
            get(addr, b"GET /health HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("answered while idle connections hold every slot");
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        server.abort();
    }
}
