//! The library as a program uses it when something goes wrong around it: a handler that
//! panics (on a datagram, mid-answer), a `serve` future dropped by a `select!` or a
//! `timeout`, a `tls:` endpoint given to a call that returns a plain socket, the TLS bridge
//! called from async code, a peer too slow for `sendall`'s timeout; and what Python's
//! `socket` gives that a reader expects (`recv`'s result sized to what came, a Unix path as
//! text). All through real loopback sockets.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socketkit::client::{self, BridgeEnd, BridgeOptions, ConnectOptions, Handshake, Input, Output};
use socketkit::endpoint::Endpoint;
use socketkit::server::{BlockingConnection, Connection, Reply, Server, ShutdownHandle};
use socketkit::socket::{self, Address, Family, Socket, Type};
use tokio::io::AsyncWriteExt;

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, read_to_reset};

/// A server bound to `endpoint` (its port 0 chosen by the system), its real address (without
/// the scheme) and the handle that stops it.
async fn bound(endpoint: &str) -> (Server, String, ShutdownHandle) {
    let mut builder = Server::builder();
    builder.listen(endpoint.parse().expect("a valid endpoint"));
    let server = builder.bind().await.expect("binds port 0");
    let endpoint = server.local_endpoints()[0].to_string();
    let addr = endpoint
        .split_once(':')
        .expect("scheme:address")
        .1
        .to_owned();
    let handle = server.shutdown_handle();
    (server, addr, handle)
}

/// Sends `text` from `client` and returns the answer, or `None` when none comes in time.
fn ask_datagram(client: &UdpSocket, text: &[u8]) -> Option<Vec<u8>> {
    client.send(text).expect("send");
    let mut buf = [0u8; 64];
    client.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_handler_that_panics_on_one_datagram_answers_the_next() -> TestResult {
    let (server, addr, handle) = bound("udp:127.0.0.1:0").await;
    let serving = tokio::spawn(server.serve_datagrams(
        |payload: &[u8], _: &Address, reply: &mut Reply| {
            reply.send(payload);
            assert_ne!(payload, b"boom", "a bug that one datagram finds");
            Ok(())
        },
    ));
    let answers = tokio::task::spawn_blocking(move || {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.connect(&addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        ["first", "boom", "after"].map(|text| ask_datagram(&client, text.as_bytes()))
    })
    .await?;
    assert_eq!(answers[0].as_deref(), Some(&b"first"[..]));
    assert_eq!(
        answers[1], None,
        "what it queued before the panic is not sent"
    );
    assert_eq!(
        answers[2].as_deref(),
        Some(&b"after"[..]),
        "served after the panic"
    );
    assert!(!serving.is_finished());
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}

/// Starts `serve` on a server bound to 127.0.0.1:0 and returns its address and the handle.
async fn serving<F, Fut>(
    serve: F,
) -> (
    String,
    ShutdownHandle,
    tokio::task::JoinHandle<socketkit::Result<()>>,
)
where
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = socketkit::Result<()>> + Send + 'static,
{
    let (server, addr, handle) = bound("127.0.0.1:0").await;
    (addr, handle, tokio::spawn(serve(server)))
}

/// Connects, reads the part of the answer a handler writes before it panics, and returns
/// how the stream ended: it must be a reset, not an end of stream that reads as complete.
fn cut_answer(addr: &str) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(b"go").expect("send");
    read_to_reset(&mut stream, "a handler that panicked mid-answer")
}

/// Two clients in turn each get the first half of the answer and a reset (the server goes on
/// serving after a panic); then the server stops as asked.
async fn each_answer_is_cut(
    addr: String,
    handle: ShutdownHandle,
    task: tokio::task::JoinHandle<socketkit::Result<()>>,
) -> TestResult {
    let (got, next) =
        tokio::task::spawn_blocking(move || (cut_answer(&addr), cut_answer(&addr))).await?;
    assert_eq!(got, b"the first half");
    assert_eq!(next, b"the first half", "the server goes on serving");
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, task).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_handler_that_panics_mid_answer_resets_its_client() -> TestResult {
    let (addr, handle, task) = serving(|server| {
        server.serve(|mut conn: Connection| async move {
            // The request is read first: a close with it unread would be a reset anyway.
            let mut request = [0u8; 2];
            tokio::io::AsyncReadExt::read_exact(&mut conn, &mut request).await?;
            conn.write_all(b"the first half").await?;
            conn.flush().await?;
            panic!("a bug half-way through the answer");
        })
    })
    .await;
    each_answer_is_cut(addr, handle, task).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_that_panics_mid_answer_resets_its_client() -> TestResult {
    let (addr, handle, task) = serving(|server| {
        server.serve_blocking(|mut conn: BlockingConnection| {
            let mut request = [0u8; 2];
            conn.read_exact(&mut request)?;
            conn.write_all(b"the first half")?;
            panic!("a bug half-way through the answer");
        })
    })
    .await;
    each_answer_is_cut(addr, handle, task).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_serve_future_closes_the_listener_and_resets_open_connections() -> TestResult {
    let (server, addr, _handle) = bound("127.0.0.1:0").await;
    let serve = server.serve(|mut conn: Connection| async move {
        conn.write_all(b"hello\n").await?;
        // Held open until the client closes (or the server stops).
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut rest).await?;
        Ok(())
    });
    let opened = addr.clone();
    // What a `select!` on Ctrl-C or a `timeout` around `serve` does: the future is dropped
    // while a client is connected.
    let (mut open, timed_out) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            let mut open = connect(&opened);
            let mut line = [0u8; 6];
            open.read_exact(&mut line).expect("the greeting");
            open
        }),
        tokio::time::timeout(Duration::from_millis(500), serve),
    );
    assert!(timed_out.is_err(), "serve runs until dropped");
    let open = open.as_mut().map_err(|err| err.to_string())?;
    let refused = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + IO_TIMEOUT;
        // The accept loops end as the force reaches them: soon, not necessarily at once. A
        // connect whose handshake the closing listener cut is reset: tried again.
        while Instant::now() < deadline {
            match TcpStream::connect(&addr) {
                Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
                Err(err) => return Some(err.kind()),
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        None
    })
    .await?;
    assert_eq!(
        refused,
        Some(ErrorKind::ConnectionRefused),
        "the listener closed"
    );
    open.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut rest = [0u8; 16];
    let err = open
        .read(&mut rest)
        .expect_err("the open connection is reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    Ok(())
}

#[test]
fn connect_and_listen_refuse_a_tls_endpoint_and_the_transport_calls_open_its_tcp_side() -> TestResult
{
    let server = socket::create_server(("127.0.0.1", 0), 5, false)?;
    let port = server.local_addr()?.port().expect("a TCP port");
    let endpoint: Endpoint = format!("tls:127.0.0.1:{port}").parse()?;
    let refused = client::connect(&endpoint, ConnectOptions::default()).expect_err("refused");
    assert_eq!(refused.kind(), ErrorKind::InvalidInput);
    assert!(
        refused.to_string().contains("needs a TLS session"),
        "{refused}"
    );
    let tcp = client::connect_transport(&endpoint, ConnectOptions::default())?;
    assert_eq!(tcp.socket.peer_addr()?, server.local_addr()?);
    let listen_at: Endpoint = "tls:127.0.0.1:0".parse()?;
    let refused = client::listen(&listen_at).expect_err("refused");
    assert_eq!(refused.kind(), ErrorKind::InvalidInput);
    let listening = client::listen_transport(&listen_at, false)?;
    assert!(
        listening
            .local_endpoint()
            .to_string()
            .starts_with("tls:127.0.0.1:")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_bridge_runs_when_called_from_async_code() -> TestResult {
    use socketkit::tls::{
        ClientOptions, Connector, Identity, ServerOptions, client_config, server_config,
    };
    let tls = server_config(&ServerOptions::new(Identity::SelfSigned(vec![
        "localhost".into(),
    ])))?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.self_signed.as_ref().expect("self-signed").pem)?;
    let mut builder = Server::builder();
    builder.listen("tls:127.0.0.1:0".parse()?).tls(tls.config);
    let server = builder.bind().await?;
    let endpoint = server.local_endpoints()[0].clone();
    let handle = server.shutdown_handle();
    let task = tokio::spawn(server.serve(socketkit::services::echo::Echo));
    let connector = Connector::new(client_config(&ClientOptions {
        ca: Some(ca),
        ..ClientOptions::default()
    })?)
    .with_server_name("localhost")?;
    let Endpoint::Tls(target) = &endpoint else {
        return Err("a tls: listener".into());
    };
    let tcp = client::connect_transport(&endpoint, ConnectOptions::default())?;
    let input = Input::spawn(&b"through TLS"[..], 1024)?;
    let mut echoed = Vec::new();
    // Called on a runtime's thread, as a program that is async throughout would.
    let end = client::bridge_tls(
        tcp.socket,
        Handshake::Client {
            connector: &connector,
            host: &target.host,
            endpoint: &endpoint,
            timeout: Some(IO_TIMEOUT),
        },
        &input,
        Output::writer(&mut echoed),
        BridgeOptions::default(),
    )?;
    assert_eq!(end, BridgeEnd::PeerClosed);
    assert_eq!(echoed, b"through TLS");
    handle.shutdown();
    tokio::time::timeout(IO_TIMEOUT, task).await???;
    Ok(())
}

#[test]
fn sendall_with_a_timeout_gives_up_at_it_against_a_peer_that_reads_slowly() -> TestResult {
    let (ours, theirs) = socket::socketpair()?;
    let done = Arc::new(AtomicBool::new(false));
    let reading = Arc::clone(&done);
    // A kilobyte every 10 ms for 3 s at most: progress each time, never fast enough.
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 1024];
        while Instant::now() < deadline
            && !reading.load(Ordering::Relaxed)
            && theirs.recv_into(&mut buf).is_ok_and(|n| n > 0)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    ours.set_timeout(Some(Duration::from_millis(300)))?;
    let started = Instant::now();
    let err = ours
        .sendall(&vec![7u8; 8 << 20])
        .expect_err("8 MiB cannot go in time");
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // The reader's 3 s is what the timeout-per-send() reading would have run into.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    done.store(true, Ordering::Relaxed);
    drop(ours);
    reader.join().map_err(|_| "the reader panicked")?;
    Ok(())
}

#[test]
fn recv_returns_a_buffer_the_size_of_what_arrived() -> TestResult {
    let (a, b) = socket::socketpair()?;
    a.sendall(b"ten bytes!")?;
    let got = b.recv(65536)?;
    assert_eq!(got, b"ten bytes!");
    assert!(
        got.capacity() < 1024,
        "kept {} bytes of room",
        got.capacity()
    );
    let server = Socket::new(Family::Inet, Type::Datagram)?;
    server.bind(("127.0.0.1", 0))?;
    let client = Socket::new(Family::Inet, Type::Datagram)?;
    client.sendto(b"small", server.local_addr()?)?;
    let (datagram, _) = server.recvfrom(65536)?;
    assert!(
        datagram.capacity() < 1024,
        "kept {} bytes of room",
        datagram.capacity()
    );
    Ok(())
}

#[test]
fn create_server_and_create_connection_take_a_unix_path_as_text() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.sock");
    let text = path.to_str().ok_or("a UTF-8 temp path")?;
    let server = socket::create_server(text, 5, false)?;
    let client = socket::create_connection(text, Some(IO_TIMEOUT))?;
    let (accepted, _) = server.accept()?;
    client.sendall(b"over a path given as text")?;
    client.shutdown(Shutdown::Write)?;
    let mut got = Vec::new();
    (&accepted).read_to_end(&mut got)?;
    assert_eq!(got, b"over a path given as text");
    Ok(())
}

/// A peer on 127.0.0.1 with a receive buffer of `buffer` bytes (half-closed at once with
/// `half_close`) that reads 8 KiB at a time, sleeping `pause_ms` after each read that
/// `pauses_after` picks (by its index), until the end of stream: its address, and the
/// thread that returns how many bytes it read.
fn slow_reader(
    buffer: usize,
    half_close: bool,
    pauses_after: fn(usize) -> bool,
    pause_ms: u64,
) -> socketkit::Result<(Address, std::thread::JoinHandle<std::io::Result<usize>>)> {
    let listener = Socket::new(Family::Inet, Type::Stream)?;
    listener.set_recv_buffer_size(buffer)?;
    listener.bind(("127.0.0.1", 0))?;
    listener.listen(1)?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (peer, _) = listener.accept()?;
        peer.set_timeout(Some(IO_TIMEOUT))?;
        if half_close {
            peer.shutdown(Shutdown::Write)?;
        }
        let mut got = 0;
        let mut buf = [0u8; 8192];
        for read in 0.. {
            let n = peer.recv_into(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
            if pauses_after(read) {
                std::thread::sleep(Duration::from_millis(pause_ms));
            }
        }
        Ok(got)
    });
    Ok((addr, reader))
}

/// A bridge with an idle limit, to a peer that reads slowly (a pause longer than the
/// limit's tick, shorter than the limit): everything arrives. A send that waited a tick with
/// no byte taken used to stop the sending for good, the rest of the input never sent.
#[test]
fn a_bridge_with_an_idle_limit_keeps_sending_to_a_peer_that_reads_slowly() -> TestResult {
    const TOTAL: usize = 96 * 1024;
    // The first few reads pause longer than the limit's tick (100 ms), well within the
    // limit; then the rest is taken at once (what the kernels hold once the input has ended
    // would otherwise take longer than the limit to drain, with no byte moving at the
    // bridge's socket).
    let (addr, reader) = slow_reader(4096, false, |read| read < 4, 150)?;
    let mut ours = socket::create_connection(addr, Some(IO_TIMEOUT))?;
    ours.set_send_buffer_size(4096)?;
    let input = Input::spawn(std::io::Cursor::new(vec![7u8; TOTAL]), 64 * 1024)?;
    let options = BridgeOptions {
        idle_timeout: Some(Duration::from_millis(400)),
        ..BridgeOptions::default()
    };
    let end = client::bridge(&mut ours, &input, Output::writer(std::io::sink()), options)?;
    assert_eq!(end, BridgeEnd::PeerClosed);
    let got = reader.join().map_err(|_| "the reader panicked")??;
    assert_eq!(got, TOTAL);
    Ok(())
}

/// A bridge whose peer half-closed first and reads slowly (8 KiB every 50 ms, under a
/// chunk of input a second), with kernel buffers too small to hold the input: everything
/// arrives. A blocking send of a whole chunk returned only once all of it was queued, so
/// the sender looked stuck after a second, and the rest of the input was cut (exit 0 in
/// the CLI).
#[test]
fn a_peer_that_half_closed_and_reads_slowly_gets_all_the_input() -> TestResult {
    const TOTAL: usize = 384 * 1024;
    let (addr, reader) = slow_reader(8192, true, |_| true, 50)?;
    let mut ours = socket::create_connection(addr, None)?;
    ours.set_send_buffer_size(8192)?;
    let input = Input::spawn(std::io::Cursor::new(vec![7u8; TOTAL]), 256 * 1024)?;
    let end = client::bridge(
        &mut ours,
        &input,
        Output::writer(std::io::sink()),
        BridgeOptions::default(),
    )?;
    assert_eq!(end, BridgeEnd::PeerClosed);
    let got = reader.join().map_err(|_| "the reader panicked")??;
    assert_eq!(got, TOTAL);
    Ok(())
}

/// `client::bridge` given the datagram connection `client::connect` makes for `udp:`
/// bridges it as `bridge_datagrams` does (it waited for a close a datagram peer never
/// sends, for ever; an outside audit of the library).
#[test]
fn bridge_takes_a_datagram_connection_as_datagrams() -> TestResult {
    let peer = UdpSocket::bind("127.0.0.1:0")?;
    let at = peer.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = peer.recv_from(&mut buf) {
            let _ = peer.send_to(&buf[..n], from);
        }
    });
    let endpoint: Endpoint = format!("udp:{at}").parse()?;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bridged = (|| -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
            let mut conn = client::connect(&endpoint, ConnectOptions::default())?;
            let input = Input::spawn(&b"ping"[..], 1024)?;
            let mut output = Vec::new();
            let options = BridgeOptions {
                wait: Duration::from_millis(200),
                ..BridgeOptions::default()
            };
            client::bridge(
                &mut conn.socket,
                &input,
                Output::writer(&mut output),
                options,
            )?;
            Ok(output)
        })();
        let _ = done_tx.send(bridged.map_err(|err| err.to_string()));
    });
    let output = done_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| "bridge never returned on a udp: connection")??;
    assert_eq!(output, b"ping");
    Ok(())
}
