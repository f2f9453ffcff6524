//! Blocking handlers (`Server::serve_blocking`) through real loopback sockets: connections
//! waiting for a thread of the pool at shutdown are in flight like the others, and the
//! idle limit ends a blocking read in words.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use socketkit::server::{BlockingConnection, Builder, Server, ShutdownHandle};
use tokio::task::JoinHandle;

use crate::support::net::{IO_TIMEOUT, connect, read_once};
use crate::support::{TestResult, wait_until};

/// A server of `handler` on 127.0.0.1, configured by `configure`: its address, the handle
/// that stops it, and its task.
async fn start<F>(
    configure: impl FnOnce(&mut Builder),
    handler: F,
) -> (String, ShutdownHandle, JoinHandle<socketkit::Result<()>>)
where
    F: Fn(BlockingConnection) -> std::io::Result<()> + Send + Sync + 'static,
{
    let mut builder = Server::builder();
    builder.listen("127.0.0.1:0".parse().expect("valid endpoint"));
    configure(&mut builder);
    let server = builder.bind().await.expect("binds 127.0.0.1:0");
    let addr = server.local_endpoints()[0].to_string();
    let handle = server.shutdown_handle();
    let task = tokio::spawn(server.serve_blocking(handler));
    (addr.trim_start_matches("tcp:").to_owned(), handle, task)
}

/// Sends `byte` on a new connection and returns the connection.
fn ask(addr: &str, byte: u8) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(&[byte]).expect("send");
    stream
}

/// The one byte the server answers on `stream`, then the end of stream.
fn answer(mut stream: TcpStream) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_waiting_for_a_thread_at_shutdown_is_still_served() -> TestResult {
    let (started_tx, started) = mpsc::channel();
    let started_tx = std::sync::Mutex::new(started_tx);
    let (addr, handle, task) = start(
        |b| {
            b.blocking_threads(1).drain_timeout(Duration::from_secs(5));
        },
        move |mut conn| {
            let mut byte = [0u8; 1];
            conn.read_exact(&mut byte)?;
            let _ = started_tx.lock().expect("not poisoned").send(byte[0]);
            std::thread::sleep(Duration::from_millis(400));
            conn.write_all(&byte)
        },
    )
    .await;
    let (first, second) = tokio::task::spawn_blocking(move || {
        let first = ask(&addr, b'1');
        assert_eq!(started.recv_timeout(IO_TIMEOUT), Ok(b'1'));
        // The only thread is busy: this one is accepted and waits for it.
        let second = ask(&addr, b'2');
        std::thread::sleep(Duration::from_millis(100));
        handle.shutdown();
        (answer(first), answer(second))
    })
    .await?;
    assert_eq!(first?, b"1");
    assert_eq!(
        second?, b"2",
        "the waiting connection is served in the drain"
    );
    tokio::time::timeout(IO_TIMEOUT, task).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_ends_the_wait_for_a_thread() -> TestResult {
    let (addr, handle, task) = start(
        |b| {
            b.blocking_threads(1)
                .drain_timeout(Duration::from_millis(300));
        },
        |mut conn| {
            // Holds the only thread until the forced shutdown resets the connection.
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).map(drop)
        },
    )
    .await;
    let started = std::time::Instant::now();
    let (first, second) = tokio::task::spawn_blocking(move || {
        let first = ask(&addr, b'1');
        let second = ask(&addr, b'2');
        std::thread::sleep(Duration::from_millis(100));
        handle.shutdown();
        (answer(first), answer(second))
    })
    .await?;
    tokio::time::timeout(IO_TIMEOUT, task).await???;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Neither got a byte, and both were cut short: the busy one was reset under its
    // handler, the waiting one unserved; each reads a reset, not a clean end.
    for (what, got) in [("busy", first), ("waiting", second)] {
        let err = got.expect_err(what);
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset,
            "{what}: {err}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_limit_ends_a_blocking_read_as_timed_out_in_words() -> TestResult {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let (addr, handle, task) = start(
        |b| {
            b.idle_timeout(Duration::from_millis(200));
        },
        move |mut conn| {
            let mut byte = [0u8; 1];
            let err = read_once(&mut conn, &mut byte).expect_err("nothing comes");
            let _ = tx
                .lock()
                .expect("not poisoned")
                .send((err.kind(), err.to_string()));
            Ok(())
        },
    )
    .await;
    let silent = tokio::task::spawn_blocking(move || connect(&addr)).await?;
    let (kind, text) = tokio::task::spawn_blocking(move || rx.recv_timeout(IO_TIMEOUT)).await??;
    assert_eq!(kind, std::io::ErrorKind::TimedOut, "{text}");
    assert_eq!(text, "idle for 200ms");
    drop(silent);
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, task).await???;
    Ok(())
}

/// A blocking handler whose write waits out the idle limit on a client that stopped
/// reading: the connection is reset, not closed quietly with the rest of the stream left
/// to the kernel to deliver, which the client would read as its clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_limit_resets_a_stream_its_client_stopped_reading() -> TestResult {
    let (addr, handle, task) = start(
        |b| {
            b.idle_timeout(Duration::from_millis(200));
        },
        |mut conn| loop {
            conn.write_all(&[b'x'; 16 * 1024])?;
        },
    )
    .await;
    let end = tokio::task::spawn_blocking(move || {
        let mut stalled = connect(&addr);
        let mut some = [0u8; 1024];
        stalled.read_exact(&mut some).expect("streaming");
        std::thread::sleep(Duration::from_millis(1000));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stalled.read(&mut buf) {
                Ok(0) => break None,
                Ok(_) => {}
                Err(err) => break Some(err.kind()),
            }
        }
    })
    .await?;
    assert_eq!(end, Some(std::io::ErrorKind::ConnectionReset));
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, task).await???;
    Ok(())
}

/// The accepted connections a server of `metrics` has counted so far.
fn accepted(metrics: &socketkit::metrics::Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .filter(|line| line.starts_with("socketkit_connections_accepted_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// Clients that connect and say nothing hold the pool's threads; the connections past them
/// waited, accepted, for a thread without bound (two descriptors each: 500 silent clients
/// held a thousand). As many as the pool has threads wait accepted now, and the rest in the
/// kernel's backlog until one ends. Found by an outside audit of fairness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_twice_the_pool_silent_clients_wait_in_the_backlog() -> TestResult {
    let metrics = socketkit::metrics::Metrics::new();
    let counted = std::sync::Arc::clone(&metrics);
    let (addr, handle, task) = start(
        move |b| {
            b.blocking_threads(2).metrics(counted);
        },
        |mut conn| {
            // Says which clients have a thread: the order they get one in is tokio's.
            conn.write_all(b"!")?;
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).map(drop)
        },
    )
    .await;
    tokio::task::spawn_blocking(move || {
        let settled_at = |count: u64| {
            wait_until(
                IO_TIMEOUT,
                || format!("{} accepted, not {count}", accepted(&metrics)),
                || accepted(&metrics) >= count,
            );
            // Time for more to be accepted, were the server to take them.
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(accepted(&metrics), count);
        };
        let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(&addr)).collect();
        settled_at(4);
        // A served client leaves: a waiting one takes its thread, and one more is accepted.
        let served = |client: &TcpStream| {
            client.set_nonblocking(true).expect("non-blocking");
            let told = client.peek(&mut [0u8; 1]).is_ok_and(|n| n == 1);
            client.set_nonblocking(false).expect("blocking");
            told
        };
        wait_until(
            IO_TIMEOUT,
            || "no client was told it has a thread".to_owned(),
            || clients.iter().any(served),
        );
        let first = clients.iter().position(served).expect("found above");
        drop(clients.remove(first));
        settled_at(5);
        drop(clients);
        handle.shutdown();
    })
    .await?;
    tokio::time::timeout(IO_TIMEOUT, task).await???;
    Ok(())
}
