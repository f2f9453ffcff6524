//! The EOF model of `docs/cli.md`, row by row: what each subcommand does on stdin EOF, peer
//! FIN, peer RST and a closed stdout, per transport. Rows covered elsewhere name their test.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::{connect, free_port, reset};
use crate::support::process::{DEADLINE, Running, run, socketkit, wait_bounded};

/// Runs `socketkit ARGS` with stdout closed from the start, stdin `input`; returns the exit
/// code and stderr.
fn with_closed_stdout(args: &[&str], input: &[u8]) -> (Option<i32>, String) {
    let mut cmd = socketkit();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start");
    drop(child.stdout.take()); // nobody will ever read: every write fails with EPIPE
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(input);
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    (status.code(), err)
}

// connect, Unix stream. (stdin EOF and peer FIN: cli_connect::unix_stream_endpoint.)

#[test]
fn connect_unix_peer_reset_is_exit_1() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rst.sock");
    let listener = UnixListener::bind(&path)?;
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        thread::sleep(Duration::from_millis(200)); // our bytes arrive, unread
        drop(stream); // closing with unread data resets a Unix stream
    });
    let mut cmd = socketkit();
    cmd.args(["connect", &format!("unix:{}", path.display())]);
    let out = run(cmd, b"never read".to_vec(), DEADLINE);
    server.join().expect("server");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("connection reset by peer"),
        "{}",
        out.stderr
    );
    Ok(())
}

/// The same while a send is under way: a peer that reads a little of a large upload and
/// closes fails our send with `EPIPE` and leaves the receive a plain end of stream (a Unix
/// stream has no reset to report), which must not read as a complete transfer.
#[test]
fn connect_unix_peer_closing_during_an_upload_is_exit_1() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cut.sock");
    let listener = UnixListener::bind(&path)?;
    let rounds = 5;
    let server = thread::spawn(move || {
        for _ in 0..rounds {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut first = [0; 1000];
            let _ = stream.read_exact(&mut first);
            thread::sleep(Duration::from_millis(100));
        }
    });
    let upload = vec![b'u'; 20 * 1024 * 1024];
    for round in 0..rounds {
        let mut cmd = socketkit();
        cmd.args(["connect", &format!("unix:{}", path.display())]);
        let out = run(cmd, upload.clone(), DEADLINE);
        assert_eq!(out.code(), 1, "round {round}: {}", out.stderr);
        assert!(
            out.stderr.contains("connection reset by peer"),
            "round {round}: {}",
            out.stderr
        );
    }
    server.join().expect("server");
    Ok(())
}

#[test]
fn connect_unix_closed_stdout_is_exit_0_quietly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("out.sock");
    let listener = UnixListener::bind(&path)?;
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let chunk = [b'u'; 65536];
        for _ in 0..1024 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let (code, err) = with_closed_stdout(&["connect", &format!("unix:{}", path.display())], b"");
    server.join().expect("server");
    assert_eq!((code, err.as_str()), (Some(0), ""));
    Ok(())
}

// connect, UDP. (stdin EOF: interop::udp_connect_against_serve_echo_and_daytime.)

#[test]
fn connect_udp_to_a_closed_port_is_exit_1_refused() {
    let port = {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let mut cmd = socketkit();
    cmd.args(["connect", &format!("udp:127.0.0.1:{port}"), "--wait", "2s"]);
    let out = run(cmd, b"anyone?".to_vec(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.ends_with("connection refused\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn connect_udp_closed_stdout_is_exit_0_quietly() {
    let mut serve = socketkit();
    serve.args(["serve", "echo", "-l", "udp:127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let args = ["connect", server.endpoints()[0].as_str(), "--wait", "300ms"];
    let (code, err) = with_closed_stdout(&args, b"echo me");
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

// connect, Unix datagram.

#[test]
fn connect_unixgram_waits_for_replies_after_stdin_eof() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("echo.dgram");
    let mut serve = socketkit();
    serve.args([
        "serve",
        "echo",
        "-l",
        &format!("unixgram:{}", path.display()),
    ]);
    let _server = Running::start(serve, 1);
    let mut cmd = socketkit();
    cmd.args([
        "connect",
        &format!("unixgram:{}", path.display()),
        "--wait",
        "300ms",
    ]);
    let out = run(cmd, b"over unixgram".to_vec(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"over unixgram");
    Ok(())
}

#[test]
fn connect_unixgram_without_a_server_is_exit_1() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("nobody.dgram");
    let mut cmd = socketkit();
    cmd.args(["connect", &format!("unixgram:{}", path.display())]);
    let out = run(cmd, b"x".to_vec(), DEADLINE);
    assert_eq!(out.code(), 1);
    let expected = format!(
        "error: cannot connect to unixgram:{}: no such file or directory\n",
        path.display()
    );
    assert_eq!(out.stderr, expected);
    Ok(())
}

// listen, TCP. (stdin EOF and peer FIN: cli_listen::one_connection_then_exit_zero….)

#[test]
fn listen_peer_reset_is_exit_1_or_logged_with_keep_open() {
    for keep_open in [false, true] {
        let mut cmd = socketkit();
        cmd.arg("listen")
            .args(if keep_open { &["-k"][..] } else { &[] })
            .arg("127.0.0.1:0");
        let mut listener = Running::start(cmd, 1);
        let client = connect(&listener.addr());
        reset(client);
        if keep_open {
            // Logged, and the next client is served.
            let mut next = connect(&listener.addr());
            next.write_all(b"next").expect("write");
            drop(next);
            thread::sleep(Duration::from_millis(300));
            listener.assert_said("connection reset by peer");
            listener.signal(libc::SIGTERM);
            let _ = listener.wait(DEADLINE);
            assert_eq!(listener.stdout_text(), "next");
        } else {
            assert_eq!(listener.wait(DEADLINE).code(), Some(1));
            listener.assert_said("error: cannot receive from 127.0.0.1:");
        }
    }
}

/// `listen -k tls:`: a client that does not speak TLS is refused as `serve` refuses one,
/// said at `-v` only; at the default level each such client wrote a WARN line (an outside
/// audit: any client could grow the log a line per connection).
#[test]
fn listen_keep_open_refuses_clients_that_fail_the_handshake_quietly() {
    for verbose in [false, true] {
        let mut cmd = socketkit();
        cmd.args(["listen", "-k", "tls:127.0.0.1:0", "--tls-self-signed"]);
        if verbose {
            cmd.arg("-v");
        }
        let mut listener = Running::start(cmd, 1);
        let addr = format!("127.0.0.1:{}", listener.port());
        for _ in 0..3 {
            let mut client = connect(&addr);
            client.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
            let mut rest = Vec::new();
            // Refused: the listener closes it.
            let _ = client.read_to_end(&mut rest);
        }
        // The next client is served.
        let mut next = connect(&addr);
        let mut byte = [0u8; 1];
        next.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let _ = next.read(&mut byte);
        listener.signal(libc::SIGTERM);
        let _ = listener.wait(DEADLINE);
        let said = listener.stderr();
        let refusals = said.matches("refused: TLS handshake failed: ").count();
        if verbose {
            assert_eq!(refusals, 3, "{said}");
        } else {
            assert_eq!(refusals, 0, "{said}");
            assert!(!said.contains("WARN"), "{said}");
        }
    }
}

#[test]
fn listen_closed_stdout_is_exit_0_quietly() {
    let port = free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let sender = thread::spawn(move || {
        crate::support::net::wait_until_listening(port);
        let mut stream = connect(&endpoint);
        let chunk = [b'l'; 65536];
        for _ in 0..1024 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let (code, err) = with_closed_stdout(&["listen", &format!("127.0.0.1:{port}")], b"");
    sender.join().expect("sender");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.starts_with("listening on ") && err.lines().count() == 1,
        "{err}"
    );
}

// forward: FIN and RST both ways are in cli_forward.

// forward, target RST: "the client connection is reset after what came before it".

/// A target that answers an upload early and resets (an HTTP server's 413 to a POST, the
/// bytes it left unread turning its close into a reset): a direct client reads the answer,
/// and so must one through the relay, whose reset follows the answer instead of replacing
/// it (3 or 4 in 10 clients got only the reset). Ten rounds, each with an upload far
/// larger than the socket buffers.
#[test]
fn forward_passes_on_a_targets_early_answer_before_the_reset() -> TestResult {
    const ANSWER: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
    const ROUNDS: usize = 10;
    let target = std::net::TcpListener::bind("127.0.0.1:0")?;
    let to = target.local_addr()?.to_string();
    let server = thread::spawn(move || {
        for _ in 0..ROUNDS {
            let Ok((mut upload, _)) = target.accept() else {
                return;
            };
            let mut head = [0u8; 64];
            let _ = upload.read_exact(&mut head);
            let _ = upload.write_all(ANSWER);
            // Closed with the rest of the upload unread: a reset.
        }
    });
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &to]);
    let relay = Running::start(cmd, 1);
    for round in 0..ROUNDS {
        let mut client = connect(&relay.addr());
        let mut writer = client.try_clone()?;
        let uploading = thread::spawn(move || {
            let chunk = [b'x'; 64 * 1024];
            for _ in 0..256 {
                if writer.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        // Until the answer is whole, the end, or an error (the reset after it).
        while got.len() < ANSWER.len() {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        drop(client);
        let _ = uploading.join();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(ANSWER),
            "round {round}: {}",
            relay.stderr()
        );
    }
    server.join().map_err(|_| "the target panicked")?;
    Ok(())
}

// connect, TCP, peer FIN without a word then RST: "a peer that closed answers what is sent
// with a reset, which ends it" — as the documented error.

/// A peer that closed without a word, then reset the line typed after (its socket was
/// closed): the line was lost, and `connect` says so (`cannot send to …: connection reset
/// by peer`, exit 1) with its input still open, as when a send meets the reset itself — it
/// ended quietly, exit 0, before.
#[test]
fn connect_says_that_a_closed_peer_reset_what_was_typed() -> TestResult {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let peer = thread::spawn(move || {
        let (silent, _) = listener.accept().expect("accept");
        drop(silent);
    });
    let mut cmd = socketkit();
    cmd.args(["connect", &addr.to_string()]);
    let mut client = Running::start(cmd, 0);
    peer.join().map_err(|_| "the peer panicked")?;
    let mut stdin = client.take_stdin();
    thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"is anyone there?\n")?;
    // The input stays open (a person at a terminal, thinking).
    let status = client.wait(DEADLINE);
    drop(stdin);
    let err = client.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "error: cannot send to {addr}: connection reset by peer"
        )),
        "{err}"
    );
    Ok(())
}

/// Not a reset: a Unix peer that reads a line, answers and closes with nothing unread, and
/// input that comes after it closed, which the bridge no longer owes it. Exit 0, as over
/// TCP (the send that found it gone read as a reset for a moment).
#[test]
fn connect_unix_input_after_a_clean_close_is_exit_0() -> TestResult {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("line.sock");
    let listener = UnixListener::bind(&path)?;
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(&stream);
        reader.read_line(&mut line).expect("a line");
        (&stream).write_all(b"ok\n").expect("answer");
    });
    let mut cmd = socketkit();
    cmd.args(["connect", &format!("unix:{}", path.display())]);
    let mut client = Running::start(cmd, 0);
    let mut stdin = client.take_stdin();
    stdin.write_all(b"a\n")?;
    server.join().expect("server");
    thread::sleep(Duration::from_millis(300));
    let _ = stdin.write_all(b"b\n");
    drop(stdin);
    let status = client.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", client.stderr());
    Ok(())
}
