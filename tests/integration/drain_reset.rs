//! What a client sees of a drain (SIGTERM): a connection still open at the drain deadline
//! was cut short, and ends with a reset (`ECONNRESET`), never with a clean end of stream
//! that would read as a complete exchange; a connection that ends on its own during the
//! drain ends as always, with a FIN. `serve` (a streaming service, echo, and a `tls:`
//! client still in its handshake), `forward` (both of its sides), the library's
//! `ShutdownHandle::force`, and a Unix socket, which has no reset. The suite runs on both engines (`.ci/run` sets `SOCKETKIT_IO_ENGINE=epoll` for
//! the second run; the default here is io_uring where the kernel has it).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use socketkit::server::Server;
use tokio::io::AsyncReadExt;

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, read_to_end, read_to_reset};
use crate::support::process::{DEADLINE, Running, socketkit};

/// The drain deadline of the servers that cut connections.
const DRAIN: &str = "200ms";

/// How long after the signal a cut connection must have seen its reset: the deadline, and
/// a wide margin for a loaded machine.
const BOUND: Duration = Duration::from_secs(5);

/// `socketkit ARGS...`, once it listens.
fn start(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(args);
    Running::start(cmd, 1)
}

/// `serve echo -v` with the drain deadline of the servers that cut connections.
fn echo_cut_at_the_deadline() -> Running {
    start(&[
        "serve",
        "echo",
        "-v",
        "--drain-timeout",
        DRAIN,
        "-l",
        "127.0.0.1:0",
    ])
}

/// Sends SIGTERM to `server` and waits until it says its listeners are closed: the drain
/// has begun. (Not by connecting until refused: a relay would serve those probes, and
/// each would hold the drain up.)
fn start_draining(server: &Running) {
    server.signal(libc::SIGTERM);
    server.wait_for_stderr(&["listeners closed, draining connections"], BOUND);
}

/// Reads `stream` to its end, which must be a reset that comes within [`BOUND`] of
/// `since` (and not before the drain deadline).
fn assert_reset_in_time(stream: &mut TcpStream, since: Instant, what: &str) {
    read_to_reset(stream, what);
    let waited = since.elapsed();
    assert!(waited < BOUND, "{what}: reset after {waited:?}");
    assert!(
        waited >= Duration::from_millis(150),
        "{what}: reset after {waited:?}, before the drain deadline"
    );
}

/// `server` exits 0 in time, saying it closed `count` connections at the deadline (or,
/// with 0, that it closed none).
fn assert_exits_having_forced(server: &mut Running, count: usize) {
    let status = server.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let forced = format!("closed {count} connection(s) still open at the drain deadline");
    match count {
        0 => assert!(
            !server.stderr().contains("still open"),
            "{}",
            server.stderr()
        ),
        _ => assert!(server.stderr().contains(&forced), "{}", server.stderr()),
    }
}

#[test]
fn a_chargen_reader_cut_at_the_deadline_reads_a_reset_not_an_end() {
    let mut server = start(&[
        "serve",
        "chargen",
        "--drain-timeout",
        DRAIN,
        "-l",
        "127.0.0.1:0",
    ]);
    let mut reader = connect(&server.addr());
    let mut some = [0u8; 4096];
    reader.read_exact(&mut some).expect("chargen streams");
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    // It goes on streaming until the deadline, then the stream is cut: a reset.
    assert_reset_in_time(&mut reader, signalled, "chargen");
    assert_exits_having_forced(&mut server, 1);
}

#[test]
fn an_echo_client_that_keeps_its_connection_open_is_reset_at_the_deadline() {
    let mut server = echo_cut_at_the_deadline();
    let mut client = connect(&server.addr());
    client.write_all(b"ping").expect("send");
    let mut back = [0u8; 4];
    client.read_exact(&mut back).expect("echoed");
    let signalled = Instant::now();
    start_draining(&server);
    // Still served while draining.
    client.write_all(b"pong").expect("send while draining");
    client.read_exact(&mut back).expect("echoed while draining");
    assert_eq!(&back, b"pong");
    assert_reset_in_time(&mut client, signalled, "echo");
    assert_exits_having_forced(&mut server, 1);
    // Its `closed` line says the server cut it, on both engines (the ring's said "reset by
    // peer", the reset's own failure; the epoll engine's said nothing).
    let log = server.stderr();
    let closed: Vec<&str> = log.lines().filter(|l| l.contains("closed peer=")).collect();
    assert_eq!(closed.len(), 1, "{log}");
    assert!(
        closed[0].ends_with(" error=\"cut short by the shutdown: reset\""),
        "{log}"
    );
}

#[test]
fn a_tls_client_still_in_its_handshake_at_the_deadline_is_reset() {
    let pki = crate::support::certs::Pki::new();
    let mut server = start(&[
        "serve",
        "echo",
        "-vv",
        "--drain-timeout",
        DRAIN,
        "--tls-cert",
        pki.server.cert(),
        "--tls-key",
        pki.server.key(),
        "-l",
        "tls:127.0.0.1:0",
    ]);
    // A client that connected and has not sent its ClientHello yet: the server's handshake
    // waits for it (its own deadline is seconds away).
    let mut client = connect(&format!("127.0.0.1:{}", server.port()));
    // Accepted before the drain: one still in the listener's queue is reset when the
    // listener closes, at once, which is not what this tests.
    server.wait_for_stderr(&["accepted peer="], BOUND);
    let signalled = Instant::now();
    start_draining(&server);
    assert_reset_in_time(&mut client, signalled, "TLS handshake");
    assert_exits_having_forced(&mut server, 1);
}

/// The count the server gives is every connection the deadline cut, and only those: three
/// clients hold their connections, a fourth has come and gone before the signal.
#[test]
fn the_drain_deadline_counts_each_connection_it_cuts() {
    let mut server = echo_cut_at_the_deadline();
    let echoed = |client: &mut TcpStream| {
        client.write_all(b"ping").expect("send");
        let mut back = [0u8; 4];
        client.read_exact(&mut back).expect("echoed");
    };
    let mut gone = connect(&server.addr());
    echoed(&mut gone);
    gone.shutdown(Shutdown::Write).expect("half-close");
    assert!(read_to_end(&mut gone).is_empty());
    let mut holding: Vec<TcpStream> = (0..3).map(|_| connect(&server.addr())).collect();
    holding.iter_mut().for_each(echoed);
    let signalled = Instant::now();
    start_draining(&server);
    for client in &mut holding {
        assert_reset_in_time(client, signalled, "echo");
    }
    assert_exits_having_forced(&mut server, 3);
}

#[test]
fn an_echo_connection_that_ends_during_the_drain_ends_with_a_fin() {
    let mut server = start(&[
        "serve",
        "echo",
        "--drain-timeout",
        "5s",
        "-l",
        "127.0.0.1:0",
    ]);
    let mut client = connect(&server.addr());
    client.write_all(b"first").expect("send");
    let mut back = [0u8; 5];
    client.read_exact(&mut back).expect("echoed");
    start_draining(&server);
    client.write_all(b" last").expect("send while draining");
    client.shutdown(Shutdown::Write).expect("half-close");
    // A clean end (read_to_end fails the test on a reset), after every byte.
    assert_eq!(read_to_end(&mut client), b" last");
    assert_exits_having_forced(&mut server, 0);
}

/// Accepts the relay's connection to the target, within [`IO_TIMEOUT`].
fn accept_within(target: &TcpListener) -> TcpStream {
    target.set_nonblocking(true).expect("non-blocking listener");
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match target.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
                return stream;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the relay never connected");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("accept: {err}"),
        }
    }
}

/// `forward` to `target` with `extra` options, relaying by splice or (`copy`) by copying.
fn forward(target: &TcpListener, copy: bool, extra: &[&str]) -> Running {
    let to = target.local_addr().expect("bound").to_string();
    let mut cmd = socketkit();
    if copy {
        cmd.env("SOCKETKIT_NO_SPLICE", "1");
    }
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &to])
        .args(extra);
    Running::start(cmd, 1)
}

#[test]
fn a_relay_cut_at_the_deadline_resets_both_the_client_and_the_target() {
    for copy in [false, true] {
        let target = TcpListener::bind("127.0.0.1:0").expect("bind the target");
        let mut relay = forward(&target, copy, &["--drain-timeout", DRAIN]);
        let mut client = connect(&relay.addr());
        client.write_all(b"hello").expect("send");
        let mut upstream = accept_within(&target);
        let mut got = [0u8; 5];
        upstream.read_exact(&mut got).expect("relayed");
        upstream.write_all(b"hi").expect("answer");
        let mut back = [0u8; 2];
        client.read_exact(&mut back).expect("relayed back");
        let signalled = Instant::now();
        relay.signal(libc::SIGTERM);
        assert_reset_in_time(&mut client, signalled, &format!("client (copy: {copy})"));
        assert_reset_in_time(&mut upstream, signalled, &format!("target (copy: {copy})"));
        assert_exits_having_forced(&mut relay, 1);
    }
}

#[test]
fn a_relay_that_ends_during_the_drain_ends_cleanly_on_both_sides() {
    for copy in [false, true] {
        let target = TcpListener::bind("127.0.0.1:0").expect("bind the target");
        let mut relay = forward(&target, copy, &["--drain-timeout", "5s"]);
        let mut client = connect(&relay.addr());
        client.write_all(b"question").expect("send");
        let mut upstream = accept_within(&target);
        let mut got = [0u8; 8];
        upstream.read_exact(&mut got).expect("relayed");
        start_draining(&relay);
        client.shutdown(Shutdown::Write).expect("half-close");
        // The target reads a clean end, answers and closes; the client reads all of it
        // and a clean end.
        assert_eq!(read_to_end(&mut upstream), b"", "copy: {copy}");
        upstream.write_all(b"answer").expect("answer");
        upstream.shutdown(Shutdown::Write).expect("close");
        assert_eq!(read_to_end(&mut client), b"answer", "copy: {copy}");
        assert_exits_having_forced(&mut relay, 0);
    }
}

/// A Unix stream has no reset (`SO_LINGER` means nothing to it): a connection cut at the
/// deadline reads as an end of stream, as docs/cli.md says. (Had the server left bytes of
/// the client unread, the client would read `ECONNRESET`; echo reads everything.)
#[test]
fn a_unix_connection_cut_at_the_deadline_reads_an_end_of_stream() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("echo.sock");
    let listen = format!("unix:{}", path.display());
    let mut server = start(&["serve", "echo", "--drain-timeout", DRAIN, "-l", &listen]);
    let mut client = UnixStream::connect(&path)?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.write_all(b"ping")?;
    let mut back = [0u8; 4];
    client.read_exact(&mut back)?;
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest)?;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(signalled.elapsed() < BOUND, "{:?}", signalled.elapsed());
    assert_exits_having_forced(&mut server, 1);
    Ok(())
}

/// A library server's address, shutdown handle and task.
type Readers = (
    String,
    socketkit::server::ShutdownHandle,
    tokio::task::JoinHandle<socketkit::Result<()>>,
);

/// A library server (drain deadline a minute away) whose handler reads until its client
/// goes.
async fn serve_readers() -> Result<Readers, Box<dyn std::error::Error>> {
    let mut builder = Server::builder();
    builder
        .listen("127.0.0.1:0".parse()?)
        .drain_timeout(Duration::from_secs(60));
    let server = builder.bind().await?;
    let addr = server.local_endpoints()[0]
        .to_string()
        .trim_start_matches("tcp:")
        .to_owned();
    let handle = server.shutdown_handle();
    let serving = tokio::spawn(server.serve(
        |mut conn: socketkit::server::Connection| async move {
            let mut sink = Vec::new();
            conn.read_to_end(&mut sink).await.map(drop)
        },
    ));
    Ok((addr, handle, serving))
}

/// The library gives its users the same: `ShutdownHandle::force` (here during a long
/// drain) resets a connection its async handler still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_force_resets_the_connections_it_cuts() -> TestResult {
    let (addr, handle, serving) = serve_readers().await?;
    let cut = tokio::task::spawn_blocking(move || {
        let mut client = connect(&addr);
        client.write_all(b"unanswered").expect("send");
        std::thread::sleep(Duration::from_millis(100));
        handle.shutdown();
        std::thread::sleep(Duration::from_millis(100));
        let forced = Instant::now();
        handle.force();
        read_to_reset(&mut client, "forced by the library");
        forced.elapsed()
    })
    .await?;
    assert!(cut < BOUND, "{cut:?}");
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}

/// A forced close reaches every connection task, however many there are and whichever
/// came and went before it: 100 clients, half of them gone again (their tasks' places
/// freed), 20 more after them (in the freed places), then the force: each of the 70 still
/// open reads a reset, and the server is done in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_force_resets_every_open_connection_of_many() -> TestResult {
    let (addr, handle, serving) = serve_readers().await?;
    let cut = tokio::task::spawn_blocking(move || {
        let opened = |count: usize| -> Vec<TcpStream> {
            (0..count)
                .map(|_| {
                    let mut client = connect(&addr);
                    client.write_all(b"x").expect("send");
                    client
                })
                .collect()
        };
        let mut clients = opened(100);
        for mut gone in clients.split_off(50) {
            gone.shutdown(Shutdown::Write).expect("half-close");
            // The server's end of stream: its task is over.
            assert!(read_to_end(&mut gone).is_empty());
        }
        clients.extend(opened(20));
        std::thread::sleep(Duration::from_millis(100));
        handle.shutdown();
        let forced = Instant::now();
        handle.force();
        for (n, client) in clients.iter_mut().enumerate() {
            read_to_reset(client, &format!("client {n} of 70"));
        }
        forced.elapsed()
    })
    .await?;
    assert!(cut < BOUND, "{cut:?}");
    tokio::time::timeout(IO_TIMEOUT, serving).await???;
    Ok(())
}
