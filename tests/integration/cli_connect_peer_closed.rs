//! `socketkit connect` after the peer has ended its side while the input is still open: a
//! peer that answered and closed (the tutorial's greeting) ends it once the input is quiet,
//! a receiver that half-closed without a word (`listen </dev/null > file`) gets the input
//! to its end however long it pauses, and a peer known to be gone ends it. An outside audit
//! found a transfer cut at the producer's first pause of a second, exit 0.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, one_shot};
use crate::support::process::{DEADLINE, socketkit, stderr_of, wait_bounded};
use crate::support::pty::pty;

fn connect_cmd(endpoint: &str) -> std::process::Command {
    let mut cmd = socketkit();
    cmd.args(["connect", endpoint])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `listen tls:127.0.0.1:0 -q` with `pki`'s server certificate: with an empty input, a
/// receiver that sends close_notify without a word and reads on.
fn listen_tls(pki: &crate::support::certs::Pki) -> std::process::Command {
    let mut receiver = socketkit();
    receiver.args(["listen", "tls:127.0.0.1:0", "-q"]).args([
        "--tls-cert",
        pki.server.cert(),
        "--tls-key",
        pki.server.key(),
    ]);
    receiver
}

/// Waits for `child` (bounded): exit 0, having printed `want`.
fn exits_zero_having_printed(mut child: std::process::Child, want: &[u8]) -> TestResult {
    let status = wait_bounded(&mut child, DEADLINE);
    assert_eq!(status.code(), Some(0));
    let mut out = Vec::new();
    child.stdout.take().ok_or("stdout")?.read_to_end(&mut out)?;
    assert_eq!(out, want);
    Ok(())
}

/// A receiver that half-closes as it accepts (`listen </dev/null > file`), waits `stall`,
/// then reads to the end: its address, and what it got.
fn silent_receiver(stall: Duration) -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        thread::sleep(stall);
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        got
    });
    (addr, handle)
}

/// The tutorial's client at a terminal: the server greets and closes, the terminal stays
/// open and quiet, and `connect` exits 0 with the greeting.
#[test]
fn a_quiet_terminal_ends_with_zero_when_the_peer_closes() -> TestResult {
    let (addr, server) = one_shot(|mut stream| {
        stream.write_all(b"bye").expect("write");
    });
    let (_controller, terminal) = pty()?;
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::from(terminal));
    let child = cmd.spawn()?;
    exits_zero_having_printed(child, b"bye")?;
    server.join().expect("server thread");
    Ok(())
}

/// Typed at a terminal to a receiver that half-closes, without a word, after the first
/// line: the typist's pauses do not end the sending; Ctrl-D does.
#[test]
fn a_half_closed_peer_gets_what_is_typed_at_a_terminal_after_a_pause() -> TestResult {
    let (addr, server) = one_shot(|stream| {
        let mut reader = std::io::BufReader::new(stream);
        let mut got = String::new();
        std::io::BufRead::read_line(&mut reader, &mut got).expect("first line");
        reader
            .get_ref()
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        reader
            .get_ref()
            .set_read_timeout(Some(DEADLINE))
            .expect("timeout");
        let _ = reader.read_to_string(&mut got);
        assert_eq!(got, "one\ntwo\nthree\n");
    });
    let (controller, terminal) = pty()?;
    let mut typist = std::fs::File::from(controller);
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::from(terminal));
    let mut child = cmd.spawn()?;
    typist.write_all(b"one\n")?;
    thread::sleep(Duration::from_millis(400));
    typist.write_all(b"two\n")?;
    thread::sleep(Duration::from_millis(1500));
    typist.write_all(b"three\n\x04")?; // Ctrl-D: the end of a terminal's input
    let status = wait_bounded(&mut child, DEADLINE);
    server
        .join()
        .map_err(|_| "the receiver did not get every line")?;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

/// `producer | connect` to a receiver that half-closed at once: every byte arrives, the
/// producer's pauses of more than a second notwithstanding (TCP).
#[test]
fn a_half_closed_tcp_peer_gets_a_pausing_producers_every_byte() -> TestResult {
    let (addr, server) = silent_receiver(Duration::ZERO);
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    for line in ["first\n", "second\n", "third\n"] {
        stdin.write_all(line.as_bytes())?;
        thread::sleep(Duration::from_millis(1300));
    }
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    let got = server.join().map_err(|_| "receiver")?;
    assert_eq!(String::from_utf8_lossy(&got), "first\nsecond\nthird\n");
    assert_eq!(status.code(), Some(0));
    Ok(())
}

/// The same over a Unix socket, where a peer that half-closed is told from one that closed.
#[test]
fn a_half_closed_unix_peer_gets_a_pausing_producers_every_byte() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("receiver.sock");
    let listener = UnixListener::bind(&path)?;
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        got
    });
    let mut cmd = connect_cmd(&format!("unix:{}", path.display()));
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    stdin.write_all(b"first\n")?;
    thread::sleep(Duration::from_millis(1300));
    stdin.write_all(b"second\n")?;
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    let got = server.join().map_err(|_| "receiver")?;
    assert_eq!(got, b"first\nsecond\n");
    assert_eq!(status.code(), Some(0));
    Ok(())
}

/// A Unix peer that closed (not half-closed) is known to be gone: a program's open, quiet
/// input does not keep `connect` waiting.
#[test]
fn a_unix_peer_that_closed_ends_it_though_a_programs_input_stays_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("greeter.sock");
    let listener = UnixListener::bind(&path)?;
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.write_all(b"bye").expect("write");
    });
    let mut cmd = connect_cmd(&format!("unix:{}", path.display()));
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let _stdin_kept_open = child.stdin.take();
    exits_zero_having_printed(child, b"bye")?;
    server.join().map_err(|_| "server")?;
    Ok(())
}

/// The same with a program holding the input open: a greeting server's answer and close
/// end `connect` once the input is quiet (a harness that never closes its pipe still gets
/// its exit).
#[test]
fn a_tcp_peer_that_answered_and_closed_ends_it_though_a_programs_input_stays_open() -> TestResult {
    let (addr, server) = one_shot(|mut stream| {
        stream.write_all(b"bye").expect("write");
    });
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let _stdin_kept_open = child.stdin.take();
    exits_zero_having_printed(child, b"bye")?;
    server.join().expect("server thread");
    Ok(())
}

/// A peer that answered and closed while the program's input stays open and quiet: the
/// sender, waiting for input, was told the bridge was over only at the end of its 100 ms
/// wait, so `connect` exited 0–100 ms after the close. Ten peers close at offsets spread
/// over that wait, each after the bridge's first 50 ms (in which input on its way still
/// goes): the median exit comes within 30 ms of the close (50 ms before). Found by an
/// outside audit of latency.
#[test]
fn a_peer_that_closes_ends_it_at_once_though_a_programs_input_stays_open() -> TestResult {
    let mut delays = Vec::new();
    for round in 0..10u64 {
        let (tx, closed_at) = std::sync::mpsc::channel();
        let (addr, server) = one_shot(move |mut stream| {
            stream.write_all(b"bye").expect("write");
            thread::sleep(Duration::from_millis(100 + round * 10));
            drop(stream);
            tx.send(Instant::now()).expect("the test waits");
        });
        let mut cmd = connect_cmd(&addr);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn()?;
        let _stdin_kept_open = child.stdin.take();
        let closed = closed_at.recv_timeout(IO_TIMEOUT)?;
        let deadline = closed + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("connect ran on after the peer closed".into());
            }
            thread::sleep(Duration::from_millis(1));
        };
        delays.push(closed.elapsed());
        assert_eq!(status.code(), Some(0));
        server.join().expect("server thread");
    }
    delays.sort();
    assert!(
        delays[delays.len() / 2] < Duration::from_millis(30),
        "exits after the peer closed: {delays:?}"
    );
    Ok(())
}

/// A TCP peer that ended its side without a word may be a receiver that reads on: a
/// program's open input is read to its end, as nc does, and `connect` exits 0 then.
#[test]
fn after_a_silent_tcp_peers_fin_a_programs_input_is_read_to_its_end() -> TestResult {
    let (addr, server) = one_shot(|stream| {
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        thread::sleep(Duration::from_millis(100));
    });
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take().ok_or("stdin")?;
    server.join().expect("server thread");
    thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait()?.is_none(),
        "connect ended while its input was still open"
    );
    let closed = Instant::now();
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    assert_eq!(status.code(), Some(0));
    assert!(closed.elapsed() < IO_TIMEOUT, "{:?}", closed.elapsed());
    Ok(())
}

/// `producer | connect` to a receiver that half-closed without a word and then stops
/// reading for two seconds (a slow disk): the sender waits for it rather than give up the
/// rest after a second with no progress.
#[test]
fn a_half_closed_receiver_that_stalls_gets_every_byte() -> TestResult {
    let data = crate::support::net::payload(32 << 20);
    let (addr, server) = silent_receiver(Duration::from_secs(2));
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let sent = data.clone();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&sent);
    });
    let status = wait_bounded(&mut child, DEADLINE);
    writer.join().map_err(|_| "writer")?;
    let got = server.join().map_err(|_| "receiver")?;
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    assert_eq!(status.code(), Some(0));
    Ok(())
}

/// With `--idle-timeout`, a sender waiting on a receiver that half-closed is still held to
/// the limit, and that is an error (exit 1, in words), as against a peer that did not
/// half-close.
#[test]
fn the_idle_limit_still_ends_a_sender_whose_peer_half_closed_with_an_error() -> TestResult {
    let (addr, server) = silent_receiver(Duration::ZERO);
    let mut cmd = connect_cmd(&addr);
    cmd.args(["--idle-timeout", "500ms"]).stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    stdin.write_all(b"first\n")?;
    let status = wait_bounded(&mut child, DEADLINE);
    drop(stdin);
    server.join().map_err(|_| "server")?;
    let err = stderr_of(&mut child)?;
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("no data either way for 500ms"), "{err}");
    Ok(())
}

/// The same rule over TLS: `producer | connect tls:` to `listen tls: </dev/null`, pauses of
/// more than a second, every byte arrives (it was cut at the first pause).
#[test]
fn over_tls_a_silent_receiver_gets_a_pausing_producers_every_byte() -> TestResult {
    let pki = crate::support::certs::Pki::new();
    let receiver = listen_tls(&pki);
    let mut receiver = crate::support::process::Running::start_with_stdin(receiver, 1, Vec::new());
    let target = receiver.endpoints()[0].clone();
    let mut cmd = connect_cmd(&target);
    cmd.arg("--tls-insecure").stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    stdin.write_all(b"first\n")?;
    thread::sleep(Duration::from_millis(1500));
    stdin.write_all(b"second\n")?;
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    assert_eq!(status.code(), Some(0));
    assert_eq!(receiver.wait(DEADLINE).code(), Some(0));
    assert_eq!(receiver.stdout_text(), "first\nsecond\n");
    Ok(())
}

/// The idle limit over TLS, as over TCP above: a silent receiver (`listen tls: </dev/null`)
/// and an open, quiet input end at the limit, exit 1 in words. (A fix for a race made the
/// sending wait for input past the limit, until the input ended; before it, the end came
/// as `took no input for 1s`, as if the peer had stopped reading.)
#[test]
fn over_tls_the_idle_limit_ends_a_sender_whose_peer_half_closed_with_an_error() -> TestResult {
    let pki = crate::support::certs::Pki::new();
    let receiver = listen_tls(&pki);
    let receiver = crate::support::process::Running::start_with_stdin(receiver, 1, Vec::new());
    let target = receiver.endpoints()[0].clone();
    let mut cmd = connect_cmd(&target);
    cmd.args(["--tls-insecure", "--idle-timeout", "500ms"])
        .stdin(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take().ok_or("stdin")?;
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let took = started.elapsed();
    drop(stdin);
    let err = stderr_of(&mut child)?;
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("no data either way for 500ms"), "{err}");
    assert!(took < Duration::from_secs(5), "ended after {took:?}");
    Ok(())
}

/// At a terminal, `connect -v`'s `connected to` line and the peer's first bytes share the
/// screen: the line comes first (it went out through the log's own thread, and was seen
/// after the greeting in about one run in ten). Ten runs.
#[test]
fn at_a_terminal_the_connected_line_comes_before_the_peers_bytes() -> TestResult {
    for run in 0..10 {
        let (addr, server) = one_shot(|mut stream| {
            stream.write_all("你好".as_bytes()).expect("write");
        });
        let (controller, terminal) = pty()?;
        let mut cmd = socketkit();
        cmd.args(["connect", "-v", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::from(terminal.try_clone()?))
            .stderr(Stdio::from(terminal));
        let mut child = cmd.spawn()?;
        let status = wait_bounded(&mut child, DEADLINE);
        // Dropped with `cmd`: the controller then reads what the terminal holds, and EIO.
        drop(cmd);
        server.join().map_err(|_| "server thread")?;
        let mut screen = Vec::new();
        let _ = std::fs::File::from(controller).read_to_end(&mut screen);
        let screen = String::from_utf8_lossy(&screen);
        assert_eq!(status.code(), Some(0), "{screen}");
        let line = screen
            .find("connected to")
            .ok_or_else(|| screen.to_string())?;
        let greeting = screen.find("你好").ok_or_else(|| screen.to_string())?;
        assert!(line < greeting, "run {run}: {screen:?}");
    }
    Ok(())
}

/// A receiver that answered first (a banner), half-closed and read on, then stopped taking
/// the input for over a second (its output stalled, as a slow disk stalls it): `connect`
/// gave up on the rest after 1 s — and closed with a FIN and exit 0, so that the receiver
/// read a clean end after part of the transfer and the user a success. The cut is a reset
/// now, and exit 1 naming it, over TCP and TLS. Found by an outside audit of data
/// integrity.
#[test]
fn a_banner_receiver_that_stops_taking_the_input_gets_a_reset_and_exit_1() -> TestResult {
    let pki = crate::support::certs::Pki::new();
    for tls in [false, true] {
        let mut receiver = socketkit();
        receiver.arg("listen");
        if tls {
            receiver.args(["tls:127.0.0.1:0", "--tls-cert", pki.server.cert()]);
            receiver.args(["--tls-key", pki.server.key()]);
        } else {
            receiver.arg("127.0.0.1:0");
        }
        // Its banner is its whole input: it half-closes after it, and reads on into a
        // stdout this test does not read, which stalls it once the pipe is full.
        let receiver = crate::support::process::Running::start_with_stdin(
            receiver,
            1,
            b"220 ready\n".to_vec(),
        );
        let mut cmd = connect_cmd(&receiver.endpoints()[0]);
        if tls {
            cmd.arg("--tls-insecure");
        }
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn()?;
        let mut stdin = child.stdin.take().ok_or("stdin")?;
        // Far more than the pipe, socket buffers and TLS records hold; written until the
        // connection is cut (the write then fails).
        let feeder = thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..1600 {
                if stdin.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let status = wait_bounded(&mut child, DEADLINE);
        let err = stderr_of(&mut child)?;
        assert_eq!(status.code(), Some(1), "tls {tls}: {err}");
        assert!(err.contains("took no input for 1s"), "tls {tls}: {err}");
        drop(receiver);
        feeder.join().expect("the feeder ends");
    }
    Ok(())
}
