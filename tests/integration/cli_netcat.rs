//! The netcat habits of SPEC §3.6, through the real binary with pipes on both ends: nc's
//! two-argument forms, -u, -w, -z, -e/-c, --send-only/--recv-only (over TLS too), -C,
//! -o/-x, -s/-p, -4/-6 on listen, and the hints for nc flags socketkit spells differently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use crate::support::net::{IO_TIMEOUT, read_once, read_within, wait_acknowledged};
use crate::support::process::{DEADLINE, Running, lines_of, run, socketkit};
use crate::support::wait_until;

/// How long an answer may take through the bridge on a loaded machine.
const ANSWER: Duration = Duration::from_secs(5);

fn start(args: &[&str], listening: usize) -> Running {
    let mut cmd = socketkit();
    cmd.args(args);
    Running::start(cmd, listening)
}

fn tcp_peer() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    (listener, port)
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

fn read_exact(stream: &mut impl Read, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).expect("the peer receives");
    buf
}

fn expect_line(child: &mut Running, lines: &std::sync::mpsc::Receiver<Vec<u8>>, want: &[u8]) {
    match lines.recv_timeout(ANSWER) {
        Ok(line) => assert_eq!(line, want),
        Err(_) => panic!("stdout showed nothing; stderr:\n{}", child.stderr()),
    }
}

fn connect_to(listener_addr: &str) -> TcpStream {
    let stream = TcpStream::connect(listener_addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

#[test]
fn connect_takes_host_and_port_as_two_arguments() {
    let (listener, port) = tcp_peer();
    let mut child = start(&["connect", "127.0.0.1", &port], 0);
    let mut peer = accept(&listener);
    let lines = lines_of(child.take_stdout());
    let mut stdin = child.take_stdin();
    peer.write_all(b"hello\n").expect("send");
    expect_line(&mut child, &lines, b"hello\n");
    stdin.write_all(b"back\n").expect("stdin");
    assert_eq!(read_exact(&mut peer, 5), b"back\n");
    drop(stdin);
    drop(peer);
    assert!(child.wait(DEADLINE).success());
}

#[test]
fn listen_takes_a_bare_port_and_host_port() {
    for args in [&["listen", "0"][..], &["listen", "127.0.0.1", "0"]] {
        let mut child = start(args, 1);
        let mut peer = connect_to(&format!("127.0.0.1:{}", child.port()));
        let lines = lines_of(child.take_stdout());
        peer.write_all(b"hi\n").expect("send");
        expect_line(&mut child, &lines, b"hi\n");
        drop(child.take_stdin());
        assert_eq!(read_to_end(&mut peer), b"");
        drop(peer);
        assert!(child.wait(DEADLINE).success(), "{args:?}");
    }
}

fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("read to end");
    all
}

#[test]
fn dash_u_turns_host_port_into_udp() {
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    peer.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let port = peer.local_addr().expect("addr").port().to_string();
    let mut child = start(&["connect", "-u", "127.0.0.1", &port, "--wait", "5s"], 0);
    let lines = lines_of(child.take_stdout());
    let mut stdin = child.take_stdin();
    stdin.write_all(b"ping\n").expect("stdin");
    let mut buf = [0u8; 64];
    let (n, from) = peer.recv_from(&mut buf).expect("a datagram");
    assert_eq!(&buf[..n], b"ping\n");
    peer.send_to(b"pong\n", from).expect("reply");
    expect_line(&mut child, &lines, b"pong\n");
}

#[test]
fn dash_w_is_the_connect_timeout() {
    let out = run_args(&["connect", "-w", "0s", "127.0.0.1:1"]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("--timeout"), "{}", out.stderr);
    let (listener, port) = tcp_peer();
    let mut child = start(&["connect", "-w", "2s", "127.0.0.1", &port], 0);
    let mut peer = accept(&listener);
    drop(child.take_stdin());
    assert_eq!(read_to_end(&mut peer), b"");
    drop(peer);
    assert!(child.wait(DEADLINE).success());
}

fn run_args(args: &[&str]) -> crate::support::process::Output {
    let mut cmd = socketkit();
    cmd.args(args);
    run(cmd, Vec::new(), DEADLINE)
}

#[test]
fn dash_z_probes_and_sends_nothing() {
    let (listener, port) = tcp_peer();
    let out = run_args(&["connect", "-z", "127.0.0.1", &port]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let mut peer = accept(&listener);
    assert_eq!(read_to_end(&mut peer), b"", "a probe sends nothing");
    drop(listener);
    let out = run_args(&["connect", "-z", "127.0.0.1", &port]);
    assert_eq!(out.code(), 1, "a refused probe fails: {}", out.stderr);
}

#[test]
fn dash_e_runs_a_program_on_the_connection() {
    let (listener, port) = tcp_peer();
    let mut child = start(&["connect", "127.0.0.1", &port, "-e", "cat"], 0);
    let mut peer = accept(&listener);
    peer.write_all(b"echoed by cat\n").expect("send");
    assert_eq!(read_exact(&mut peer, 14), b"echoed by cat\n");
    peer.shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert_eq!(
        read_to_end(&mut peer),
        b"",
        "cat exits at EOF: the connection ends"
    );
    assert!(child.wait(DEADLINE).success());
}

#[test]
fn dash_c_on_listen_gets_the_exec_environment() {
    let mut child = start(
        &[
            "listen",
            "127.0.0.1:0",
            "-c",
            "echo $SOCKETKIT_PEER_ADDR $SOCKETKIT_PEER_PORT",
        ],
        1,
    );
    let mut peer = connect_to(&child.addr());
    let ours = peer.local_addr().expect("addr");
    let got = String::from_utf8(read_to_end(&mut peer)).expect("text");
    assert_eq!(got, format!("{} {}\n", ours.ip(), ours.port()));
    assert!(child.wait(DEADLINE).success());
}

#[test]
fn send_only_drops_what_arrives_and_ends_with_stdin() {
    let (listener, port) = tcp_peer();
    let mut child = start(&["connect", "--send-only", "127.0.0.1", &port], 0);
    let mut peer = accept(&listener);
    peer.write_all(b"not for stdout\n").expect("send");
    // In the client's kernel before the input: a banner, not an answer to it.
    wait_acknowledged(&peer);
    let mut stdin = child.take_stdin();
    stdin.write_all(b"sent\n").expect("stdin");
    assert_eq!(read_exact(&mut peer, 5), b"sent\n");
    drop(stdin);
    // The peer keeps the connection open: the end of stdin alone ends the run.
    assert!(child.wait(DEADLINE).success(), "{}", child.stderr());
    assert_eq!(child.stdout_text(), "");
    drop(peer);
}

/// Reads `peer` to its end, echoing every chunk back (until an echo fails: the read goes on),
/// and closes: a peer whose replies pile up unread on the send-only side. What it read.
fn echo_until_end(mut peer: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut echoing = true;
    loop {
        match read_once(&mut peer, &mut buf) {
            Ok(0) => return got,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                echoing = echoing && peer.write_all(&buf[..n]).is_ok();
            }
            // A reset: what arrived is all there is; the comparison tells the rest.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(err) => panic!("the echo peer failed: {err}"),
        }
    }
}

#[test]
fn send_only_delivers_everything_and_exits_0_against_an_echoing_peer() {
    // The peer's echoes arrive while and after stdin ends; reading none of them must
    // neither reset the connection before the peer has every byte nor be reported.
    let started = std::time::Instant::now();
    let (listener, port) = tcp_peer();
    for round in 0..50 {
        // Small inputs (nc's usual one line) and large ones, whose echoes pile up.
        let input = match round % 4 {
            0 => b"x\n".to_vec(),
            1 => crate::support::net::payload(64 * 1024),
            _ => crate::support::net::payload(1024 * 1024),
        };
        let mut cmd = socketkit();
        cmd.args(["connect", "--send-only", "127.0.0.1", &port]);
        let mut child = Running::start_with_stdin(cmd, 0, input.clone());
        let got = echo_until_end(accept(&listener));
        let status = child.wait(DEADLINE);
        assert!(
            status.success(),
            "round {round} ({} bytes): {status}; stderr:\n{}",
            input.len(),
            child.stderr()
        );
        assert!(
            got == input,
            "round {round}: the peer got {} of {} bytes",
            got.len(),
            input.len()
        );
        assert_eq!(child.stdout_text(), "", "round {round}");
        assert!(started.elapsed() < DEADLINE * 2, "50 rounds take too long");
    }
}

#[test]
fn recv_only_never_sends_stdin() {
    let (listener, port) = tcp_peer();
    let mut child = start(&["connect", "--recv-only", "127.0.0.1", &port], 0);
    let mut peer = accept(&listener);
    let mut stdin = child.take_stdin();
    stdin.write_all(b"must not be sent\n").expect("stdin");
    drop(stdin);
    peer.write_all(b"to stdout\n").expect("send");
    let mut buf = [0u8; 64];
    let got = read_within(&mut peer, &mut buf, Duration::from_millis(500));
    assert!(
        got.is_none(),
        "expected no bytes and no half-close, got {got:?}"
    );
    drop(peer);
    assert!(child.wait(DEADLINE).success());
    assert_eq!(child.stdout_text(), "to stdout\n");
}

#[test]
fn dash_capital_c_sends_crlf() {
    let (listener, port) = tcp_peer();
    let mut cmd = socketkit();
    cmd.args(["connect", "-C", "127.0.0.1", &port]);
    let mut child = Running::start_with_stdin(cmd, 0, b"a\nb\r\n".to_vec());
    let mut peer = accept(&listener);
    assert_eq!(read_to_end(&mut peer), b"a\r\nb\r\n");
    drop(peer);
    assert!(child.wait(DEADLINE).success());
}

#[test]
fn dash_o_and_dash_x_log_both_directions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("traffic.txt");
    let hex = dir.path().join("traffic.hex");
    for (flag, path) in [("-o", &text), ("-x", &hex)] {
        let (listener, port) = tcp_peer();
        let mut cmd = socketkit();
        cmd.args(["connect", "127.0.0.1", &port, flag]).arg(path);
        let mut child = Running::start(cmd, 0);
        let mut peer = accept(&listener);
        let lines = lines_of(child.take_stdout());
        let mut stdin = child.take_stdin();
        stdin.write_all(b"question\n").expect("stdin");
        assert_eq!(read_exact(&mut peer, 9), b"question\n");
        peer.write_all(b"answer\n").expect("send");
        expect_line(&mut child, &lines, b"answer\n");
        drop(stdin);
        drop(peer);
        assert!(child.wait(DEADLINE).success());
    }
    assert_eq!(
        std::fs::read(&text).expect("the text log"),
        b"question\nanswer\n"
    );
    let dump = std::fs::read_to_string(&hex).expect("the hex log");
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 2, "{dump}");
    assert!(
        lines[0].starts_with("> 00000000  71 75 65 73 74 69 6f 6e  0a"),
        "{dump}"
    );
    assert!(lines[0].ends_with("|question.|"), "{dump}");
    assert!(
        lines[1].starts_with("< 00000000  61 6e 73 77 65 72 0a"),
        "{dump}"
    );
}

/// A source address the host does not have: the error names the source, not the target
/// (it said `cannot connect to tcp:127.0.0.1:9: cannot assign requested address`).
#[test]
fn a_source_the_host_does_not_have_is_named() {
    let mut cmd = socketkit();
    // TEST-NET-1 (RFC 5737): no host has it; nothing is sent, the bind fails first.
    cmd.args(["connect", "-s", "192.0.2.1", "127.0.0.1:9"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: cannot bind 192.0.2.1:0: cannot assign requested address"),
        "{}",
        out.stderr
    );
}

#[test]
fn dash_s_and_dash_p_choose_the_source() {
    let (listener, port) = tcp_peer();
    let source_port = {
        // A port free right now (bound and released); another process taking it in between
        // is unlikely on loopback, and would fail the test with "address in use".
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let mut child = start(
        &[
            "connect",
            "-s",
            "127.0.0.1",
            "-p",
            &source_port.to_string(),
            "127.0.0.1",
            &port,
        ],
        0,
    );
    let (peer, from) = listener.accept().expect("accept");
    assert_eq!(from.port(), source_port);
    assert_eq!(from.ip().to_string(), "127.0.0.1");
    drop(child.take_stdin());
    drop(peer);
    assert!(child.wait(DEADLINE).success(), "{}", child.stderr());
}

#[test]
fn listen_dash_4_and_dash_6_pick_the_family() {
    let child = start(&["listen", "-4", "0"], 1);
    assert!(
        child.endpoints()[0].starts_with("tcp:0.0.0.0:"),
        "{:?}",
        child.endpoints()
    );
    drop(child);
    // A name binds its address of that family (it bound the name's first address,
    // whichever family: `-4 localhost` an IPv6-only listener where localhost is ::1 first).
    let child = start(&["listen", "-4", "localhost", "0"], 1);
    assert!(
        child.endpoints()[0].starts_with("tcp:127.0.0.1:"),
        "{:?}",
        child.endpoints()
    );
    drop(child);
    let mut cmd = socketkit();
    cmd.args(["listen", "-6", "localhost", "0"]);
    let six = Running::start(cmd, 0);
    wait_until(
        DEADLINE,
        || six.stderr(),
        || six.stderr().contains("listening on") || six.stderr().contains("error:"),
    );
    let said = six.stderr();
    assert!(
        said.contains("listening on tcp:[::1]:")
            || said
                .contains("error: cannot listen on tcp:localhost:0: localhost has no IPv6 address"),
        "{said}"
    );
    drop(six);
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped the -6 half: no IPv6 loopback here");
        return;
    }
    let child = start(&["listen", "-6", "0"], 1);
    assert!(
        child.endpoints()[0].starts_with("tcp:[::]:"),
        "{:?}",
        child.endpoints()
    );
    // IPv6 alone: an IPv4 client is refused.
    assert!(TcpStream::connect(("127.0.0.1", child.port())).is_err());
    let peer = TcpStream::connect(("::1", child.port()));
    assert!(peer.is_ok(), "an IPv6 client is served");
}

#[test]
fn nc_flags_spelled_differently_get_a_hint() {
    for (args, words) in [
        (
            &["connect", "-q", "1", "127.0.0.1", "80"][..],
            "half-closes at stdin EOF",
        ),
        (&["connect", "-N", "127.0.0.1", "80"], "always half-closes"),
        (&["connect", "-l", "80"], "socketkit listen"),
        (&["listen", "-l", "80"], "always listens"),
        // nc's -l -p PORT in its usual spellings; -p stays connect's source port.
        (&["listen", "-p", "1234"], "socketkit listen PORT"),
        (&["listen", "-lp", "1234"], "socketkit listen PORT"),
        (&["listen", "-l", "-p", "1234"], "socketkit listen PORT"),
        (&["listen", "-lvnp", "4444"], "socketkit listen PORT"),
        (&["connect", "-U", "/tmp/s.sock"], "unix:PATH"),
        (&["listen", "-lU", "/tmp/s.sock"], "unix:PATH"),
        (&["connect", "-d", "127.0.0.1", "80"], "--recv-only"),
        (&["listen", "-d", "80"], "--recv-only"),
        (&["connect", "--ssl", "127.0.0.1", "443"], "tls:HOST:PORT"),
        (&["listen", "--ssl", "443"], "tls:HOST:PORT"),
    ] {
        let out = run_args(args);
        assert_eq!(out.code(), 2, "{args:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(words),
            "{}",
            out.stderr
        );
    }
}

/// A `listen tls:` peer with a throwaway certificate, its stdin and stdout the other end.
fn tls_peer() -> Running {
    start(&["listen", "tls:127.0.0.1:0", "--tls-self-signed"], 1)
}

#[test]
fn send_only_over_tls_drops_what_arrives_and_ends_with_stdin() {
    let mut peer = tls_peer();
    let endpoint = peer.endpoints()[0].clone();
    let mut child = start(&["connect", &endpoint, "--tls-insecure", "--send-only"], 0);
    let from_client = lines_of(peer.take_stdout());
    let mut peer_in = peer.take_stdin();
    peer_in.write_all(b"not for stdout\n").expect("peer stdin");
    let mut stdin = child.take_stdin();
    stdin.write_all(b"sent\n").expect("stdin");
    match from_client.recv_timeout(ANSWER) {
        Ok(line) => assert_eq!(line, b"sent\n"),
        Err(_) => panic!("nothing arrived; stderr:\n{}", child.stderr()),
    }
    drop(stdin);
    // The end of stdin (and close_notify) ends the run. (This peer, `listen`, closes about
    // 1 s after the client's close_notify, which would end it too; tls_send_only.rs has a
    // server that holds the connection.)
    assert!(child.wait(DEADLINE).success(), "{}", child.stderr());
    assert_eq!(child.stdout_text(), "");
    drop(peer_in);
    assert!(peer.wait(DEADLINE).success(), "{}", peer.stderr());
}

#[test]
fn recv_only_over_tls_never_sends_stdin_nor_closes_first() {
    let mut peer = tls_peer();
    let endpoint = peer.endpoints()[0].clone();
    let mut child = start(&["connect", &endpoint, "--tls-insecure", "--recv-only"], 0);
    let from_client = lines_of(peer.take_stdout());
    let mut stdin = child.take_stdin();
    stdin.write_all(b"must not be sent\n").expect("stdin");
    drop(stdin);
    let mut peer_in = peer.take_stdin();
    peer_in.write_all(b"to stdout\n").expect("peer stdin");
    // Neither bytes nor close_notify come from the client: the peer's output stays open.
    match from_client.recv_timeout(Duration::from_millis(500)) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("expected nothing from the client, got {other:?}"),
    }
    // The peer's end of input is its close_notify: the client's run ends with it.
    drop(peer_in);
    assert!(child.wait(DEADLINE).success(), "{}", child.stderr());
    assert_eq!(child.stdout_text(), "to stdout\n");
    assert!(peer.wait(DEADLINE).success(), "{}", peer.stderr());
}
