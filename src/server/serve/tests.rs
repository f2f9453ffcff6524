//! Serving's edges, without the CLI: a reply taken in parts, a listener without its handler.

use std::borrow::Cow;
use std::time::Duration;

use super::*;
use crate::server::{Connection, IoEngine};

/// A greeting of `len` bytes, answered on the accept loop.
struct Long(Vec<u8>);

impl crate::server::Handler for Long {
    // Not an `async fn`: its future would borrow `self`, and the trait wants 'static.
    #[allow(clippy::manual_async_fn)]
    fn call(&self, _conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        async { Ok(()) }
    }

    fn immediate_reply(&self) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(&self.0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_the_socket_takes_in_two_parts_is_counted_whole() -> Result<()> {
    // Far more than a socket takes at once: the accept loop sends what fits, a task the
    // rest, and the bytes sent are counted once each.
    const LEN: usize = 32 << 20;
    let metrics = crate::metrics::Metrics::new();
    let mut builder = Server::builder();
    builder
        .listen("127.0.0.1:0".parse().expect("valid endpoint"))
        .metrics(Arc::clone(&metrics))
        .io_engine(IoEngine::Epoll);
    let server = builder.bind().await?;
    let addr = server.local_endpoints()[0].to_string();
    let shutdown = server.shutdown_handle();
    let serving = tokio::spawn(server.serve(Long(vec![b'x'; LEN])));
    let addr = addr.trim_start_matches("tcp:").to_owned();
    let got = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        std::thread::sleep(Duration::from_millis(50));
        let mut got = Vec::new();
        client.read_to_end(&mut got).expect("the reply");
        got.len()
    })
    .await
    .expect("the client thread");
    assert_eq!(got, LEN);
    shutdown.shutdown();
    serving.await.expect("the server task")?;
    let text = metrics.render();
    let sent = text
        .lines()
        .find(|line| line.starts_with("socketkit_bytes_sent_total{"))
        .unwrap_or_default();
    assert!(sent.ends_with(&format!(" {LEN}")), "{sent}\n{text}");
    Ok(())
}

#[tokio::test]
async fn a_listener_without_its_handler_fails_before_anything_is_served() -> Result<()> {
    let mut builder = Server::builder();
    builder
        .listen("127.0.0.1:0".parse().expect("valid endpoint"))
        .listen("udp:127.0.0.1:0".parse().expect("valid endpoint"));
    let server = builder.bind().await?;
    let tcp = server.local_endpoints()[0].to_string();
    let err = server
        .serve(|_conn: Connection| async { Ok(()) })
        .await
        .expect_err("a UDP listener needs a datagram handler");
    assert!(
        err.to_string().ends_with("no datagram handler was given"),
        "{err}"
    );
    // The TCP listener was not left serving: it is closed with the server.
    let addr = tcp.trim_start_matches("tcp:").to_owned();
    assert!(std::net::TcpStream::connect(addr).is_err());
    Ok(())
}
