//! The library inside a host program that does what the docs allow and a little more: a
//! handler that panics before its `async` block, limits of `Duration::MAX` ("no practical
//! limit"), a host whose SIGPIPE is at its default. Each of these took the server's accept
//! loop down, panicked, or killed the host. Found by an outside audit of the library.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use socketkit::proxy_protocol::ProxyHeader;
use socketkit::server::{Connection, Server};
use socketkit::services::echo::Echo;
use socketkit::socket::socketpair;
use tokio::io::AsyncWriteExt;

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect};

/// A server on 127.0.0.1:0 with `idle_timeout`, its address and the handle that stops it.
async fn bound(idle_timeout: Option<Duration>) -> (Server, String) {
    let mut builder = Server::builder();
    builder.listen("127.0.0.1:0".parse().expect("an endpoint"));
    if let Some(limit) = idle_timeout {
        builder.idle_timeout(limit);
    }
    let server = builder.bind().await.expect("binds port 0");
    let addr = server.local_endpoints()[0].to_string();
    let addr = addr.split_once(':').expect("scheme:address").1.to_owned();
    (server, addr)
}

/// Sends `text`, half-closes, and reads the answer to its end.
fn ask(addr: &str, text: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(text).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// The `Handler` docs say to take what a connection needs of the state before the `async`
/// block: a panic there (a poisoned lock's `unwrap`) ran on the accept loop and closed the
/// listener for every client after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_before_its_async_block_ends_only_its_connection() -> TestResult {
    let (server, addr) = bound(None).await;
    let handle = server.shutdown_handle();
    let visitors = Arc::new(AtomicUsize::new(0));
    let serving = tokio::spawn(server.serve(move |mut conn: Connection| {
        let n = visitors.fetch_add(1, Ordering::Relaxed);
        assert_ne!(n, 0, "no state for the first visitor");
        async move { conn.write_all(format!("visitor {n}").as_bytes()).await }
    }));
    let answers = tokio::task::spawn_blocking(move || [1, 2, 3].map(|_| ask(&addr, b""))).await?;
    assert_eq!(answers[0], b"", "the first visitor's handler panicked");
    assert_eq!(answers[1], b"visitor 1", "served after the panic");
    assert_eq!(answers[2], b"visitor 2");
    assert!(!serving.is_finished());
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}

/// `idle_timeout(Duration::MAX)` panicked the accept loop at the first connection
/// (`Instant + Duration` overflowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_of_duration_max_serves() -> TestResult {
    let (server, addr) = bound(Some(Duration::MAX)).await;
    let handle = server.shutdown_handle();
    let serving = tokio::spawn(server.serve(Echo));
    let answers =
        tokio::task::spawn_blocking(move || [ask(&addr, b"one"), ask(&addr, b"two")]).await?;
    assert_eq!(answers, [b"one".to_vec(), b"two".to_vec()]);
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}

/// A socket timeout of `Duration::MAX` (Python's `settimeout(1e18)`) made `sendall` and
/// `read_header` panic.
#[test]
fn socket_timeouts_of_duration_max_do_not_overflow() -> TestResult {
    let (a, mut b) = socketpair()?;
    a.set_timeout(Some(Duration::MAX))?;
    a.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n")?;
    let header = socketkit::proxy_protocol::read_header(&mut b, Duration::MAX)?;
    assert!(
        matches!(header, ProxyHeader::Proxied { source, .. } if source.to_string() == "192.0.2.1:5000"),
        "{header:?}"
    );
    Ok(())
}

/// What a host whose SIGPIPE is at its default action does with `sendall` to a peer that
/// has closed: run in a child (this test binary again), where the action can be changed.
const SIGPIPE_CHILD: &str = "SOCKETKIT_TEST_SIGPIPE_CHILD";

#[test]
fn sendall_to_a_closed_peer_is_an_error_even_where_sigpipe_kills() -> TestResult {
    if std::env::var_os(SIGPIPE_CHILD).is_some() {
        // SAFETY: this process is the child started below, which runs this test alone.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (a, b) = socketpair()?;
        drop(b);
        let first = a.sendall(b"to nobody");
        let second = a.sendall(b"again");
        let failed = [first, second].into_iter().find_map(Result::err);
        let err = failed.expect("a send to a closed peer fails");
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
        return Ok(());
    }
    let status = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "library_edges::sendall_to_a_closed_peer_is_an_error_even_where_sigpipe_kills",
            "--test-threads",
            "1",
        ])
        .env(SIGPIPE_CHILD, "1")
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(
        status.success(),
        "the host was killed or failed: {status:?}"
    );
    Ok(())
}

/// A listener bound in one runtime and served in another after the first has gone (a sync
/// wrapper's shape) fails at its first wait: the accept loop said so in a warning and
/// closed it, while `serve` ran on with no listener and returned `Ok(())`. It returns the
/// failure now, naming the listener.
#[test]
fn a_listener_that_fails_for_good_ends_serve_with_its_error() -> TestResult {
    let binding = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let server = binding.block_on(async {
        let mut builder = Server::builder();
        builder
            .listen("127.0.0.1:0".parse().expect("an endpoint"))
            .io_engine(socketkit::server::IoEngine::Epoll);
        builder.bind().await
    })?;
    drop(binding);
    let serving = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = server.local_endpoints()[0].to_string();
    let result =
        serving.block_on(async { tokio::time::timeout(IO_TIMEOUT, server.serve(Echo)).await })?;
    let err = result.expect_err("serving failed");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot serve on {endpoint}: ")),
        "{err}"
    );
    Ok(())
}

/// `idle_timeout(Duration::MAX)` on the relays: the `Forward` handler's splice watchdog and
/// the datagram relay's idle wait added it to a moment of the connection and panicked (every
/// client reset; no answer relayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_with_an_idle_timeout_of_duration_max_relay() -> TestResult {
    let (echo, echo_addr) = bound(None).await;
    let echo_handle = echo.shutdown_handle();
    let echoing = tokio::spawn(echo.serve(Echo));
    let (relay, relay_addr) = bound(Some(Duration::MAX)).await;
    let relay_handle = relay.shutdown_handle();
    let target = format!(
        "127.0.0.1:{}",
        echo_addr.rsplit(':').next().unwrap_or_default()
    );
    let forward = socketkit::forward::Forward::new(target.parse()?)?;
    let relaying = tokio::spawn(relay.serve(forward));
    let answer = tokio::task::spawn_blocking(move || ask(&relay_addr, b"through")).await?;
    assert_eq!(answer, b"through");

    let mut udp_echo = Server::builder();
    udp_echo.listen("udp:127.0.0.1:0".parse()?);
    let udp_echo = udp_echo.bind().await?;
    let udp_target = udp_echo.local_endpoints()[0].clone();
    let udp_handle = udp_echo.shutdown_handle();
    let udp_echoing = tokio::spawn(udp_echo.serve_datagrams(Echo));
    let datagrams = socketkit::forward::datagram::DatagramForward::new(udp_target)?
        .idle_timeout(Duration::MAX)
        .bind(&"udp:127.0.0.1:0".parse()?)?;
    let datagram_relay = datagrams.local_endpoint().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let datagram_relaying = tokio::spawn(datagrams.run(async {
        let _ = stopped.await;
    }));
    let answer = tokio::task::spawn_blocking(move || {
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let to = datagram_relay.trim_start_matches("udp:").to_owned();
        client.send_to(b"datagram", to).expect("send");
        let mut buf = [0u8; 64];
        client.recv(&mut buf).map(|n| buf[..n].to_vec())
    })
    .await??;
    assert_eq!(answer, b"datagram");

    let _ = stop.send(());
    tokio::time::timeout(IO_TIMEOUT, datagram_relaying).await???;
    for handle in [relay_handle, echo_handle, udp_handle] {
        handle.shutdown();
    }
    tokio::time::timeout(IO_TIMEOUT, relaying).await???;
    tokio::time::timeout(IO_TIMEOUT, echoing).await???;
    tokio::time::timeout(IO_TIMEOUT, udp_echoing).await???;
    Ok(())
}
