//! `socketkit listen`: one peer (or, with -k, one after another) bridged with stdio.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::support::net::{IO_TIMEOUT, connect, read_to_end};
use crate::support::process::{DEADLINE, Running, lines_of, socketkit};
use crate::support::{TestResult, wait_until};

fn listen(args: &[&str], input: &[u8]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("listen").args(args);
    Running::start_with_stdin(cmd, 1, input.to_vec())
}

/// One exchange with a `listen` whose stdin is "hello client": the client sends "hello
/// listener", half-closes and reads the answer, and the listener exits 0. Returns the
/// client's own address.
pub(crate) fn exchange_and_exit(listener: &mut Running) -> String {
    let mut client = connect(&listener.addr());
    let peer = client.local_addr().expect("addr").to_string();
    client.write_all(b"hello listener").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_to_end(&mut client), b"hello client");
    assert_eq!(
        listener.wait(DEADLINE).code(),
        Some(0),
        "{}",
        listener.stderr()
    );
    peer
}

#[test]
fn one_connection_then_exit_zero_and_a_second_client_is_refused() {
    let mut listener = listen(&["127.0.0.1:0"], b"hello client");
    let addr = listener.addr();
    exchange_and_exit(&mut listener);
    assert_eq!(listener.stdout_text(), "hello listener");
    assert!(TcpStream::connect(&addr).is_err(), "the listener is closed");
}

/// Issue 9: `-v` names the peer, as `ncat -v` does ("Connection from").
#[test]
fn verbose_says_where_the_connection_came_from() {
    let mut listener = listen(&["127.0.0.1:0", "-v"], b"");
    let mut client = connect(&listener.addr());
    let from = client.local_addr().expect("addr").to_string();
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_to_end(&mut client), b"");
    assert_eq!(listener.wait(DEADLINE).code(), Some(0));
    assert!(
        listener
            .stderr()
            .lines()
            // The message, then the fields of the connection's line (`peer=… local=…`).
            .any(|line| line.contains(&format!("connection from {from} peer={from} "))),
        "{}",
        listener.stderr()
    );
}

#[test]
fn the_listener_closes_once_the_first_client_is_accepted() {
    let listener = listen(&["127.0.0.1:0"], b"");
    let addr = listener.addr();
    let _first = connect(&addr);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(&addr).is_err(),
        "a second client is refused, not queued"
    );
}

#[test]
fn keep_open_serves_three_clients_in_turn() {
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "127.0.0.1:0"]);
    let mut listener = Running::start(cmd, 1);
    let addr = listener.addr();
    for i in 0..3 {
        let mut client = connect(&addr);
        client
            .write_all(format!("client {i}\n").as_bytes())
            .expect("write");
        drop(client); // FIN: the listener moves on to the next
        std::thread::sleep(Duration::from_millis(200));
    }
    listener.signal(libc::SIGTERM);
    let _ = listener.wait(DEADLINE);
    assert_eq!(listener.stdout_text(), "client 0\nclient 1\nclient 2\n");
}

#[test]
fn udp_listen_answers_the_first_peer() -> TestResult {
    let mut listener = listen(&["udp:127.0.0.1:0", "--wait", "300ms"], b"reply");
    let addr = listener.endpoints()[0]
        .trim_start_matches("udp:")
        .to_owned();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.send_to(b"first", &addr)?;
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf)?;
    assert_eq!(&buf[..n], b"reply");
    assert_eq!(listener.wait(DEADLINE).code(), Some(0));
    assert_eq!(listener.stdout_text(), "first");
    Ok(())
}

#[test]
fn unix_listen_and_its_file_is_removed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("l.sock");
    let mut listener = listen(&[&format!("unix:{}", path.display())], b"over unix");
    // Give the listener time to block in accept: a non-blocking listener would fail here.
    std::thread::sleep(Duration::from_millis(200));
    let mut client = std::os::unix::net::UnixStream::connect(&path)?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut got = Vec::new();
    client.read_to_end(&mut got)?;
    assert_eq!(got, b"over unix");
    drop(client);
    assert_eq!(listener.wait(DEADLINE).code(), Some(0));
    assert!(
        !path.exists(),
        "the socket file is removed once the listener closes"
    );
    Ok(())
}

#[test]
fn keep_open_is_for_streams_only() {
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "udp:127.0.0.1:0"]);
    let out = crate::support::process::run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2);
    assert_eq!(out.stderr, "error: -k applies to stream endpoints only\n");
}

#[test]
fn a_signal_removes_the_socket_file_and_still_ends_listen_by_that_signal() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir()?;
    let cases: [(&str, &[&str], i32); 5] = [
        ("unix", &[], libc::SIGTERM),
        ("unix", &["-k"], libc::SIGINT),
        ("unixgram", &[], libc::SIGTERM),
        ("unixgram", &[], libc::SIGINT),
        ("unix", &[], libc::SIGHUP),
    ];
    for (n, (scheme, extra, signal)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("{n}.sock"));
        let mut cmd = socketkit();
        cmd.arg("listen")
            .arg(format!("{scheme}:{}", path.display()))
            .args(extra);
        // Stdin stays open: only the signal ends the listener.
        let mut listener = Running::start(cmd, 1);
        assert!(
            path.exists(),
            "{scheme} {extra:?}: no socket file to begin with"
        );
        listener.signal(signal);
        let status = listener.wait(DEADLINE);
        // As nc: the signal ends the process (a shell shows 128 + N), not an exit code.
        assert_eq!(
            status.signal(),
            Some(signal),
            "{scheme} {extra:?}: {status}; stderr:\n{}",
            listener.stderr()
        );
        assert!(
            !path.exists(),
            "{scheme} {extra:?} signal {signal}: the file is left"
        );
    }
    Ok(())
}

#[test]
fn a_signal_during_a_connection_removes_the_socket_file() -> TestResult {
    use std::os::unix::net::{UnixDatagram, UnixStream};
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir()?;
    // -k: the listening socket, and its file, stay while a peer is bridged.
    let path = dir.path().join("k.sock");
    let mut cmd = socketkit();
    cmd.arg("listen")
        .arg(format!("unix:{}", path.display()))
        .arg("-k");
    let mut listener = Running::start(cmd, 1);
    let mut peer = UnixStream::connect(&path)?;
    let lines = lines_of(listener.take_stdout());
    peer.write_all(b"bridged\n")?;
    assert_eq!(lines.recv_timeout(IO_TIMEOUT)?, b"bridged\n");
    listener.signal(libc::SIGTERM);
    assert_eq!(listener.wait(DEADLINE).signal(), Some(libc::SIGTERM));
    assert!(!path.exists(), "listen -k: the file is left");
    // unixgram: the file stays for the first sender, who keeps sending to it.
    let path = dir.path().join("g.sock");
    let mut cmd = socketkit();
    cmd.arg("listen")
        .arg(format!("unixgram:{}", path.display()));
    let mut listener = Running::start(cmd, 1);
    let sender_path = dir.path().join("sender.sock");
    let sender = UnixDatagram::bind(&sender_path)?;
    let lines = lines_of(listener.take_stdout());
    sender.send_to(b"first\n", &path)?;
    assert_eq!(lines.recv_timeout(IO_TIMEOUT)?, b"first\n");
    listener.signal(libc::SIGINT);
    assert_eq!(listener.wait(DEADLINE).signal(), Some(libc::SIGINT));
    assert!(!path.exists(), "listen unixgram: the file is left");
    Ok(())
}

/// Reads one line from `stream` (up to `\n`), within the stream's timeout.
fn line_of(stream: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("after {line:?}: {other:?}"),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// `listen -k` with stdin open (a pipe its producer writes now and then): what comes on
/// stdin just after a client has closed is the next client's, never thrown away; and the
/// next client is accepted at once, not after a look-up interval.
#[test]
fn keep_open_gives_the_next_client_what_stdin_brought_after_the_last_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let unix = format!("unix:{}", dir.path().join("k.sock").display());
    for endpoint in ["127.0.0.1:0", unix.as_str()] {
        let mut cmd = socketkit();
        cmd.args(["listen", "-k", "-v", endpoint]);
        let mut listener = Running::start(cmd, 1);
        let mut stdin = listener.take_stdin();
        // `-v` says `connection from …` once the last connection is over and the next one
        // is taken: input written after that is the new connection's.
        let accepted = |count: usize| {
            wait_until(
                IO_TIMEOUT,
                || listener.stderr(),
                || listener.stderr().matches("connection from").count() >= count,
            );
        };
        let at = listener.endpoints()[0].clone();
        let open = || -> Box<dyn ReadWrite> {
            match at.strip_prefix("unix:") {
                Some(path) => {
                    let stream = std::os::unix::net::UnixStream::connect(path).expect("unix");
                    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                    Box::new(stream)
                }
                None => Box::new(connect(at.trim_start_matches("tcp:"))),
            }
        };
        for round in 0..20 {
            let mut client = open();
            accepted(2 * round + 1);
            stdin.write_all(format!("to {round}\n").as_bytes())?;
            assert_eq!(line_of(&mut client), format!("to {round}\n"), "{at}");
            drop(client);
            // Soon after: within the tenth of a second a bridge used to go on waiting for
            // input it then sent to the closed connection, and late enough for a loaded
            // kernel to have taken in the client's end (the test cannot order it before
            // stdin's bytes otherwise).
            std::thread::sleep(Duration::from_millis(50));
            stdin.write_all(format!("between {round}\n").as_bytes())?;
            let mut next = open();
            assert_eq!(line_of(&mut next), format!("between {round}\n"), "{at}");
        }
        // 20 clients in turn, each after the last one's line is out: each accepted as the
        // last one ends (it took a tenth of a second each while the bridge looked up from
        // its wait for input that often).
        let lines = lines_of(listener.take_stdout());
        let started = std::time::Instant::now();
        for i in 0..20 {
            let mut client = open();
            client.write_all(format!("from {i}\n").as_bytes())?;
            drop(client);
            let line = lines.recv_timeout(IO_TIMEOUT)?;
            assert_eq!(line, format!("from {i}\n").as_bytes());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        drop(stdin);
        listener.signal(libc::SIGTERM);
        let _ = listener.wait(DEADLINE);
    }
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// What `listen` bridges goes out as it comes (`TCP_NODELAY`, as `connect`'s socket has):
/// a reply written in two pieces is not held for the peer's delayed acknowledgement.
#[test]
fn an_accepted_tcp_connection_has_nodelay() -> TestResult {
    let endpoint = "tcp:127.0.0.1:0".parse()?;
    let listening = socketkit::client::listen(&endpoint)?;
    let addr = listening.local_endpoint().to_string();
    let client = connect(addr.trim_start_matches("tcp:"));
    let (accepted, _) = listening.accept()?;
    assert!(accepted.nodelay()?);
    drop(client);
    Ok(())
}

/// A sender with no address (an unbound socket: `logger -u`, syslog clients) cannot be
/// answered: what it and others send is printed, and stdin is not read.
#[test]
fn unixgram_listen_prints_what_unbound_senders_send() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.sock");
    let mut cmd = socketkit();
    cmd.args(["listen", &format!("unixgram:{}", path.display())]);
    let mut listener = Running::start(cmd, 1);
    let lines = lines_of(listener.take_stdout());
    for text in ["first\n", "second\n"] {
        let sender = std::os::unix::net::UnixDatagram::unbound()?;
        sender.send_to(text.as_bytes(), &path)?;
        let got = lines.recv_timeout(IO_TIMEOUT)?;
        assert_eq!(got, text.as_bytes());
    }
    listener.assert_said("the first sender's socket is unnamed");
    listener.signal(libc::SIGTERM);
    let _ = listener.wait(DEADLINE);
    Ok(())
}

/// `listen -u PORT > log &`: a background job's stdin is /dev/null, so nothing can ever be
/// sent and there is no end of input to wait out. It took the first sender's datagrams for
/// `--wait` and stopped (an outside audit: a syslog receiver kept one of four lines); it
/// receives until it is stopped now, as `nc -lu` does.
#[test]
fn a_udp_listen_with_stdin_from_dev_null_receives_until_stopped() -> TestResult {
    // `Running` pipes stdin: the shell puts /dev/null in its place before the exec.
    let mut cmd = crate::support::process::socketkit_after("exec </dev/null");
    cmd.args(["listen", "-u", "127.0.0.1:0", "--wait", "200ms"]);
    let mut listener = Running::start(cmd, 1);
    let addr = listener.endpoints()[0]
        .trim_start_matches("udp:")
        .to_owned();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
    for i in 0..3 {
        sender.send_to(format!("line {i}\n").as_bytes(), &addr)?;
        // Longer than --wait: the old end came between two lines.
        std::thread::sleep(Duration::from_millis(500));
    }
    listener.signal(libc::SIGTERM);
    let _ = listener.wait(DEADLINE);
    assert_eq!(
        listener.stdout_text(),
        "line 0\nline 1\nline 2\n",
        "{}",
        listener.stderr()
    );
    Ok(())
}
