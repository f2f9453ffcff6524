//! TLS servers under bad clients and bad configuration: a thousand clients that never finish
//! a handshake, the handshake deadline, handshakes counted against --max-connections,
//! garbage instead of a ClientHello, plain TCP to a tls: listener, and every start-up
//! error (exit 2, before listening).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socketkit::tls::rustls;

use crate::support::certs::Pki;
use crate::support::net::{IO_TIMEOUT, connect, connect_from, read_once, try_connect_from};
use crate::support::process::{DEADLINE, Running, run, socketkit};

/// The first bytes of a ClientHello that promises 512 bytes and sends 6 of them.
const HALF_A_CLIENT_HELLO: [u8; 11] = [
    0x16, 0x03, 0x01, 0x02, 0x00, // handshake record, 512 bytes
    0x01, 0x00, 0x01, 0xfc, // ClientHello, 508 bytes
    0x03, 0x03, // client version
];

fn serve_greeting(pki: &Pki, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "greeting", "-l", "tls:127.0.0.1:0"])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(extra);
    Running::start(cmd, 1)
}

/// A full TLS exchange with the greeting server, timed from the TCP connect to the
/// greeting's close_notify.
fn greet(pki: &Pki, addr: &str) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut conn = pki.client_session();
    let mut tcp = connect(addr);
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut got = Vec::new();
    tls.read_to_end(&mut got)
        .expect("the greeting, ended by close_notify");
    (got, started.elapsed())
}

/// Which of `sockets` the server has closed (readable with end of stream or an error).
fn closed(sockets: &mut [TcpStream]) -> usize {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) on a valid array of pollfd of the given length, without waiting.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    assert!(ready >= 0, "poll failed");
    let mut count = 0;
    for (socket, fd) in sockets.iter_mut().zip(&fds) {
        if fd.revents == 0 {
            continue;
        }
        let mut buf = [0u8; 512];
        // Readable: an alert, then the end; either way the server is done with it.
        socket.set_nonblocking(true).expect("set non-blocking");
        let ended = loop {
            match socket.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        count += usize::from(ended);
    }
    count
}

#[test]
fn a_thousand_stalled_handshakes_delay_nobody_and_end_at_the_deadline() {
    crate::support::allow_descriptors(4096);
    let pki = Pki::new();
    let deadline = Duration::from_secs(3);
    let server = serve_greeting(&pki, &["--tls-handshake-timeout", "3s"]);
    let addr = server.addr().replace("tls:", "");
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut socket = connect(&addr);
            if i % 2 == 1 {
                socket.write_all(&HALF_A_CLIENT_HELLO).expect("send");
            }
            socket
        })
        .collect();
    let all_open = opened.elapsed();

    // A real client is served at once, whatever the thousand are doing.
    for _ in 0..3 {
        let (got, took) = greet(&pki, &addr);
        assert_eq!(got, "你好".as_bytes());
        assert!(took < Duration::from_millis(200), "served in {took:?}");
    }

    // None is closed early...
    let early = (opened + deadline).saturating_duration_since(Instant::now());
    std::thread::sleep(early.saturating_sub(Duration::from_millis(500)));
    assert_eq!(closed(&mut stalled), 0, "closed before the deadline");
    // ...and every one is closed at it.
    let waited = Instant::now();
    let mut ended = 0;
    while ended < stalled.len() && waited.elapsed() < all_open + Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        ended = closed(&mut stalled);
    }
    assert_eq!(ended, 1000, "after {:?}", opened.elapsed());
    assert!(
        opened.elapsed() < deadline + all_open + Duration::from_secs(3),
        "took {:?}",
        opened.elapsed()
    );
}

#[test]
fn handshakes_hold_a_connection_slot_until_their_deadline() {
    let pki = Pki::new();
    let server = serve_greeting(
        &pki,
        &["--max-connections", "2", "--tls-handshake-timeout", "1s"],
    );
    let addr = server.addr().replace("tls:", "");
    let _silent: Vec<TcpStream> = (0..2).map(|_| connect(&addr)).collect();
    std::thread::sleep(Duration::from_millis(100));
    // Both slots are held by handshakes: this client waits in the backlog until they end.
    let (got, took) = greet(&pki, &addr);
    assert_eq!(got, "你好".as_bytes());
    assert!(took >= Duration::from_millis(700), "served after {took:?}");
    assert!(took < Duration::from_secs(5), "served after {took:?}");
}

/// `--max-per-source` counts a connection from its accept, before its handshake (SPEC §3's
/// order: per-source limits, then TLS): a second connection from one source is reset at
/// once while the first is still in its handshake, and another source is served.
#[test]
fn a_handshake_holds_its_sources_place_under_max_per_source() {
    let pki = Pki::new();
    // One listener: the two connections from one source are accepted in the order made.
    // The handshake deadline far off: a reset that came from it would not be the limit's.
    let limits = ["--max-per-source", "1", "--workers", "1"];
    let server = serve_greeting(
        &pki,
        &[&limits[..], &["--tls-handshake-timeout", "60s"]].concat(),
    );
    let addr = server.addr().replace("tls:", "");
    let to: std::net::SocketAddr = addr.parse().expect("a socket address");
    let _in_its_handshake = connect_from("127.0.0.2", to);
    let refused = match try_connect_from("127.0.0.2", to) {
        Err(err) => err.kind() == ErrorKind::ConnectionReset,
        Ok(mut second) => {
            second.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            let mut byte = [0u8; 1];
            let started = Instant::now();
            let reset = matches!(read_once(&mut second, &mut byte),
                Err(err) if err.kind() == ErrorKind::ConnectionReset);
            reset && started.elapsed() < Duration::from_secs(5)
        }
    };
    assert!(refused, "a second connection from 127.0.0.2 was not reset");
    let (got, _) = greet(&pki, &addr);
    assert_eq!(got, "你好".as_bytes(), "127.0.0.1 is another source");
}

#[test]
fn garbage_instead_of_a_client_hello_is_refused_at_once_and_the_server_goes_on() {
    let pki = Pki::new();
    let server = serve_greeting(&pki, &["-v"]);
    let addr = server.addr().replace("tls:", "");
    for garbage in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0xffu8; 64][..]] {
        let started = Instant::now();
        let mut socket = connect(&addr);
        socket.write_all(garbage).expect("send");
        let mut got = Vec::new();
        let _ = socket.read_to_end(&mut got);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed only after {:?}",
            started.elapsed()
        );
        assert!(
            !got.windows(6).any(|w| w == "你好".as_bytes()),
            "the service answered garbage"
        );
    }
    let (got, _) = greet(&pki, &addr);
    assert_eq!(got, "你好".as_bytes());
    let log = server.stderr();
    assert!(
        log.contains("refused: TLS handshake failed: the peer does not speak TLS"),
        "{log}"
    );
    assert!(log.contains("reason=\"tls\""), "{log}");
    // The refusal names the address the client connected to, as the closing line does.
    let local = format!("local={}", addr.trim_start_matches("tls:"));
    assert!(
        log.lines()
            .filter(|line| line.contains("refused: TLS"))
            .all(|line| line.contains(&local)),
        "{local}: {log}"
    );
}

#[test]
fn plain_tcp_to_a_tls_listener_gets_no_service() {
    let pki = Pki::new();
    let server = serve_greeting(&pki, &[]);
    let mut socket = connect(&server.addr().replace("tls:", ""));
    socket.write_all(b"hello\n").expect("send");
    let mut got = Vec::new();
    let _ = socket.read_to_end(&mut got);
    // At most a TLS alert record (content type 21), never the greeting.
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
}

#[test]
fn start_up_errors_are_said_before_listening() {
    let pki = Pki::new();
    let not_pem = pki.file("not.pem", b"this is not a certificate\n");
    let not_pem = not_pem.to_str().expect("utf-8");
    let cases: Vec<(Vec<&str>, String, i32)> = vec![
        (
            vec!["--tls-cert", not_pem, "--tls-key", pki.server.key()],
            format!("error: cannot load TLS certificate {not_pem}: not a PEM file (no -----BEGIN line)"),
            2,
        ),
        (
            vec!["--tls-cert", pki.server.cert(), "--tls-key", pki.client.key()],
            format!(
                "error: cannot load TLS private key {}: it does not match the certificate in {}",
                pki.client.key(),
                pki.server.cert()
            ),
            2,
        ),
        (
            vec!["--tls-cert", "/nonexistent/cert.pem", "--tls-key", pki.server.key()],
            "error: cannot load TLS certificate /nonexistent/cert.pem: no such file or directory"
                .to_owned(),
            // A file that cannot be read is exit 1, as for every file an option names.
            1,
        ),
        (
            vec!["--tls-cert", pki.server.cert(), "--tls-key", pki.server.cert()],
            format!("error: cannot load TLS private key {}: no private key", pki.server.cert()),
            2,
        ),
        (
            vec![],
            "error: tls:127.0.0.1:0 needs --tls-cert FILE and --tls-key FILE (or --tls-self-signed)"
                .to_owned(),
            2,
        ),
        (
            vec!["--tls-cert", "/dev/null", "--tls-key", pki.server.key()],
            "error: cannot load TLS certificate /dev/null: not a regular file".to_owned(),
            1,
        ),
        (
            vec!["--tls-self-signed", "--tls-client-ca", "/nonexistent/ca.pem"],
            "error: cannot load TLS CA certificates /nonexistent/ca.pem: no such file".to_owned(),
            1,
        ),
        (
            vec!["--tls-self-signed", "--tls-alpn", ""],
            "error: invalid --tls-alpn '': a protocol name is 1-255 bytes".to_owned(),
            2,
        ),
    ];
    for (args, want, code) in cases {
        let mut cmd = socketkit();
        cmd.args(["serve", "greeting", "-l", "tls:127.0.0.1:0"])
            .args(&args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), code, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(&want),
            "{args:?}\nwant {want}\ngot  {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(!out.stderr.contains("listening on"));
    }
    // TLS options with nothing TLS to apply to.
    let misplaced: [(&str, &[&str], &str); 4] = [
        (
            "serve",
            &["-l", "127.0.0.1:0", "--tls-self-signed"],
            "--tls-self-signed applies to a tls: listener only",
        ),
        (
            "connect",
            &["127.0.0.1:9", "--tls-insecure"],
            "--tls-insecure applies to a tls: target only",
        ),
        (
            "forward",
            &[
                "-l",
                "127.0.0.1:0",
                "--to",
                "127.0.0.1:9",
                "--tls-ca",
                pki.ca(),
            ],
            "--tls-ca applies to a tls: target only",
        ),
        (
            "bench",
            &["127.0.0.1:9", "--tls-alpn", "h2"],
            "--tls-alpn applies to a tls: endpoint only",
        ),
    ];
    for (command, args, want) in misplaced {
        let mut cmd = socketkit();
        cmd.arg(command).args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{command} {args:?}: {}", out.stderr);
        assert_eq!(out.stderr.trim_end(), format!("error: {want}"));
    }
}

#[tokio::test]
async fn the_library_counts_failed_handshakes_as_tls_refusals_and_serves_plain_listeners_as_before()
-> crate::support::TestResult {
    use socketkit::server::{Connection, RefusalReason, Server};
    use socketkit::tls::{Identity, ServerOptions, server_config};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tls = server_config(&ServerOptions::new(Identity::SelfSigned(vec![
        "localhost".into(),
    ])))?;
    let mut builder = Server::builder();
    builder
        .listen("tls:127.0.0.1:0".parse()?)
        .listen("127.0.0.1:0".parse()?)
        .tls(tls.config)
        .tls_handshake_timeout(Duration::from_millis(300));
    let server = builder.bind().await?;
    let endpoints = server.local_endpoints();
    assert!(endpoints[0].to_string().starts_with("tls:127.0.0.1:"));
    assert!(endpoints[1].to_string().starts_with("tcp:127.0.0.1:"));
    let port = |i: usize| endpoints[i].host_port().map_or(0, |hp| hp.port);
    let (tls_port, plain_port) = (port(0), port(1));
    let refusals = server.refusals();
    let handle = server.shutdown_handle();
    let serving = tokio::spawn(server.serve(|mut conn: Connection| async move {
        let answer: &[u8] = if conn.is_tls() { b"tls" } else { b"plain" };
        conn.write_all(answer).await?;
        conn.shutdown().await
    }));
    // The plain listener answers without a handshake.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", plain_port)).await?;
    let mut got = Vec::new();
    plain.read_to_end(&mut got).await?;
    assert_eq!(got, b"plain");
    // Garbage, then silence past the deadline: two tls refusals, and no answer to either.
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await?;
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await?;
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await?;
    for stream in [&mut garbage, &mut silent] {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await?;
        assert!(!got.windows(3).any(|w| w == b"tls"), "{got:?}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while refusals.get(RefusalReason::Tls) < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refusals.get(RefusalReason::Tls), 2);
    handle.shutdown();
    serving.await??;
    Ok(())
}

/// A handshake that does not finish by the deadline is refused as every refusal is: with a
/// reset (it was a clean end of stream), logged in the words of a failed handshake (it was
/// the PROXY header's "no decision within"). Found by an outside audit.
#[test]
fn a_handshake_past_its_deadline_is_reset_and_said_to_be_a_tls_failure() {
    let pki = Pki::new();
    let server = serve_greeting(&pki, &["-v", "--tls-handshake-timeout", "300ms"]);
    let addr = server.addr().replace("tls:", "");
    let mut stalled = connect(&addr);
    stalled.write_all(&HALF_A_CLIENT_HELLO).expect("send");
    let mut got = Vec::new();
    let ended = stalled.read_to_end(&mut got);
    assert!(
        ended
            .as_ref()
            .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionReset),
        "{ended:?}, {got:?}"
    );
    server.wait_for_stderr(
        &["refused: TLS handshake failed: not finished within 300ms"],
        Duration::from_secs(5),
    );
}

/// `forward -l tls: --idle-timeout`: a target that stops reading while the relay holds the
/// client's bytes for it stalls both halves of the relay (its write to the target waits,
/// its read from the target finds nothing), and the connection's own idle timer, looked at
/// only when the client is read or written, never fired: the relay held its slot and
/// sockets until shutdown (an outside audit of hostile clients). It is reset at the limit.
#[test]
fn a_tls_relay_stalled_on_a_target_that_stopped_reading_ends_at_the_idle_timeout() {
    let pki = Pki::new();
    let target = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target_addr = target.local_addr().expect("addr").to_string();
    // Accepts and never reads.
    let held = std::thread::spawn(move || target.accept().map(|(stream, _)| stream));
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "tls:127.0.0.1:0", "--to", &target_addr])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(["--idle-timeout", "500ms"]);
    let relay = Running::start(cmd, 1);
    let mut conn = pki.client_session();
    let mut tcp = connect(&format!("127.0.0.1:{}", relay.port()));
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    // Until every buffer on the way is full: a write that waits 300 ms means they are.
    tls.sock
        .set_write_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let block = vec![b'k'; 16 * 1024];
    let mut pushed = 0usize;
    while pushed < 256 << 20 {
        match tls.write(&block) {
            Ok(n) => pushed += n,
            Err(_) => break,
        }
    }
    let _target = held.join().expect("the target").expect("accepted");
    let stalled = Instant::now();
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let end = tls.read(&mut buf);
    let took = stalled.elapsed();
    assert!(
        !matches!(&end, Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the relay still held the connection 10 s into a 500 ms idle limit ({pushed} bytes pushed); \
         relay: {}",
        relay.stderr()
    );
    assert!(took < Duration::from_secs(5), "{took:?}: {end:?}");
}
