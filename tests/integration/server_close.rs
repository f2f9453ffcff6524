//! How a served connection closes when its handler is done with it: a handler that answers
//! without reading all its client sent (the first line of a pipelined request, or nothing
//! at all) gives its client the answer and a clean end of stream, as Python's
//! `socketserver` does (a half-close before the close). The close alone was a reset, for
//! the kernel resets a connection closed with bytes unread, which the client read as an
//! error after a complete exchange (`connect` exits 1 on it). Found by an outside audit
//! that ran the library beside CPython.

use std::io::{Read, Write};
use std::time::Duration;

use socketkit::server::{BlockingConnection, Connection, Server, ShutdownHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect};
use crate::support::process::{run, socketkit};

/// A server on 127.0.0.1 port 0, its address and its handle.
async fn bound() -> (Server, String, ShutdownHandle) {
    let mut builder = Server::builder();
    builder.listen("127.0.0.1:0".parse().expect("a valid endpoint"));
    let server = builder.bind().await.expect("binds port 0");
    let addr = server.local_endpoints()[0]
        .to_string()
        .trim_start_matches("tcp:")
        .to_owned();
    let handle = server.shutdown_handle();
    (server, addr, handle)
}

/// The first of the client's two requests, all a handler reads.
const FIRST: &[u8] = b"HELLO\n";

/// Sends two requests at once (the second lands before the server answers the first, and
/// stays unread), then reads to the end: the answer, and an end of stream, not a reset.
fn pipelined_client(addr: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = connect(addr);
    stream.write_all(b"HELLO\nQUIT\n")?;
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    Ok(got)
}

async fn clients(addr: String) -> TestResult {
    let answers = tokio::task::spawn_blocking(move || {
        (0..20).map(|_| pipelined_client(&addr)).collect::<Vec<_>>()
    })
    .await?;
    for answer in answers {
        assert_eq!(answer?, b"OK\n", "the answer, then the end of stream");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_handler_that_leaves_a_request_unread_ends_its_answer_cleanly() -> TestResult {
    let (server, addr, handle) = bound().await;
    let serving = tokio::spawn(server.serve(|mut conn: Connection| async move {
        // The first request only (a buffered reader would take both off the socket).
        let mut first = [0u8; FIRST.len()];
        conn.read_exact(&mut first).await?;
        // Give the client's second line time to arrive, unread.
        tokio::time::sleep(Duration::from_millis(5)).await;
        conn.write_all(b"OK\n").await?;
        Ok(())
    }));
    clients(addr).await?;
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_that_leaves_a_request_unread_ends_its_answer_cleanly() -> TestResult {
    let (server, addr, handle) = bound().await;
    let serving = tokio::spawn(server.serve_blocking(|mut conn: BlockingConnection| {
        let mut first = [0u8; FIRST.len()];
        conn.read_exact(&mut first)?;
        std::thread::sleep(Duration::from_millis(5));
        conn.write_all(b"OK\n")?;
        Ok(())
    }));
    clients(addr).await?;
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_written_without_reading_reaches_connect_as_a_clean_end() -> TestResult {
    let (server, addr, handle) = bound().await;
    let serving = tokio::spawn(server.serve(|mut conn: Connection| async move {
        // A banner that never reads what the client sends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.write_all(b"OK\n").await?;
        Ok(())
    }));
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = socketkit();
        cmd.args(["connect", &addr]);
        run(cmd, b"a request it never reads\n".to_vec(), IO_TIMEOUT)
    })
    .await?;
    assert_eq!(output.code(), 0, "{}", output.stderr);
    assert_eq!(output.stdout, b"OK\n");
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}
