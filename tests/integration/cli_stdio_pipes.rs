//! `connect` and `listen` driven the way a program drives them: stdin and stdout are pipes,
//! stdout is read as bytes arrive (a line, or a single byte, at a time), and the peer waits
//! for an answer before it sends more. Every byte that has arrived must be readable at once,
//! whatever is still to come; a bridge that holds bytes back until more arrive deadlocks here
//! and the test fails at its first round rather than hanging.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{ChildStdin, Command};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use crate::support::net::{IO_TIMEOUT, hash, payload, read_once};
use crate::support::process::{DEADLINE, Running, lines_of, socketkit};

/// How long an answer may take to come through the bridge. Generous for a loaded CI
/// machine; a held-back byte never comes at all.
const ANSWER: Duration = Duration::from_secs(5);

/// Request/response rounds per test.
const ROUNDS: usize = 100;

/// The test's side of the socket: a stream, or a datagram socket that answers whoever sent
/// to it last.
enum Peer {
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket, Option<std::net::SocketAddr>),
    Unixgram(UnixDatagram, Option<PathBuf>),
}

impl Peer {
    fn send(&mut self, bytes: &[u8]) {
        match self {
            Peer::Tcp(s) => s.write_all(bytes).expect("peer send"),
            Peer::Unix(s) => s.write_all(bytes).expect("peer send"),
            Peer::Udp(s, to) => {
                s.send_to(bytes, to.expect("the client spoke first"))
                    .expect("peer send");
            }
            Peer::Unixgram(s, to) => {
                let to = to.as_ref().expect("the client spoke first");
                s.send_to(bytes, to).expect("peer send");
            }
        }
    }

    /// Receives one line (streams: up to the newline; datagrams: one datagram).
    fn recv_line(&mut self) -> Vec<u8> {
        match self {
            Peer::Tcp(s) => read_line(s),
            Peer::Unix(s) => read_line(s),
            Peer::Udp(s, from) => {
                let mut buf = [0u8; 2048];
                let (n, addr) = s.recv_from(&mut buf).expect("peer receive");
                *from = Some(addr);
                buf[..n].to_vec()
            }
            Peer::Unixgram(s, from) => {
                let mut buf = [0u8; 2048];
                let (n, addr) = s.recv_from(&mut buf).expect("peer receive");
                *from = addr.as_pathname().map(PathBuf::from);
                buf[..n].to_vec()
            }
        }
    }
}

/// Reads a stream up to and including a newline, a byte at a time (so nothing past the line
/// is taken from the socket).
fn read_line(stream: &mut impl Read) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match read_once(stream, &mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(err) => panic!("peer receive: {err}"),
        }
    }
    line
}

fn expect_line(lines: &Receiver<Vec<u8>>, want: &[u8], round: usize, child: &Running) {
    match lines.recv_timeout(ANSWER) {
        Ok(line) => assert_eq!(line, want, "round {round}"),
        Err(_) => panic!(
            "round {round}: {:?} was sent but stdout showed nothing within {ANSWER:?}; stderr:\n{}",
            String::from_utf8_lossy(want),
            child.stderr()
        ),
    }
}

/// Rounds in which the peer speaks first: it sends a line and waits for the answer, which the
/// program writes to the bridge's stdin once the line has come out of its stdout.
fn peer_asks(child: &mut Running, mut peer: Peer) {
    let lines = lines_of(child.take_stdout());
    let mut stdin = child.take_stdin();
    for round in 0..ROUNDS {
        let question = format!("question {round}\n");
        peer.send(question.as_bytes());
        expect_line(&lines, question.as_bytes(), round, child);
        answer(&mut stdin, round);
        assert_eq!(peer.recv_line(), format!("answer {round}\n").as_bytes());
    }
}

/// Rounds in which the program speaks first (datagram peers must learn its address).
fn program_asks(child: &mut Running, mut peer: Peer) {
    let lines = lines_of(child.take_stdout());
    let mut stdin = child.take_stdin();
    for round in 0..ROUNDS {
        answer(&mut stdin, round);
        let got = peer.recv_line();
        assert_eq!(got, format!("answer {round}\n").as_bytes(), "round {round}");
        let reply = format!("reply {round}\n");
        peer.send(reply.as_bytes());
        expect_line(&lines, reply.as_bytes(), round, child);
    }
}

fn answer(stdin: &mut ChildStdin, round: usize) {
    stdin
        .write_all(format!("answer {round}\n").as_bytes())
        .expect("write to the program's stdin");
    stdin.flush().expect("flush");
}

fn connect(endpoint: &str) -> Running {
    let mut cmd = socketkit();
    cmd.args(["connect", endpoint]);
    Running::start(cmd, 0)
}

fn listen(endpoint: &str) -> Running {
    let mut cmd: Command = socketkit();
    cmd.args(["listen", endpoint]);
    Running::start(cmd, 1)
}

fn accept_tcp(listener: &TcpListener) -> Peer {
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    Peer::Tcp(stream)
}

fn accept_unix(listener: &UnixListener) -> Peer {
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    Peer::Unix(stream)
}

fn udp_peer() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

fn unixgram_peer(path: &std::path::Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).expect("bind");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

#[test]
fn connect_tcp_answers_a_peer_that_waits() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut child = connect(&listener.local_addr().expect("addr").to_string());
    let peer = accept_tcp(&listener);
    peer_asks(&mut child, peer);
}

#[test]
fn connect_unix_answers_a_peer_that_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peer.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let mut child = connect(&format!("unix:{}", path.display()));
    let peer = accept_unix(&listener);
    peer_asks(&mut child, peer);
}

#[test]
fn connect_udp_request_response() {
    let socket = udp_peer();
    let endpoint = format!("udp:{}", socket.local_addr().expect("addr"));
    let mut child = connect(&endpoint);
    program_asks(&mut child, Peer::Udp(socket, None));
}

#[test]
fn connect_unixgram_request_response() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peer.sock");
    let socket = unixgram_peer(&path);
    let mut child = connect(&format!("unixgram:{}", path.display()));
    program_asks(&mut child, Peer::Unixgram(socket, None));
}

#[test]
fn listen_tcp_answers_a_peer_that_waits() {
    let mut child = listen("127.0.0.1:0");
    let stream = TcpStream::connect(child.addr()).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    peer_asks(&mut child, Peer::Tcp(stream));
}

#[test]
fn listen_unix_answers_a_peer_that_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("listen.sock");
    let mut child = listen(&format!("unix:{}", path.display()));
    let stream = UnixStream::connect(&path).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    peer_asks(&mut child, Peer::Unix(stream));
}

#[test]
fn listen_udp_answers_a_peer_that_waits() {
    let mut child = listen("udp:127.0.0.1:0");
    let socket = udp_peer();
    let target: std::net::SocketAddr = child.endpoints()[0]
        .trim_start_matches("udp:")
        .parse()
        .expect("a socket address");
    peer_asks(&mut child, Peer::Udp(socket, Some(target)));
}

#[test]
fn listen_unixgram_answers_a_peer_that_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("listen.sock");
    let mut child = listen(&format!("unixgram:{}", path.display()));
    let socket = unixgram_peer(&dir.path().join("peer.sock"));
    peer_asks(&mut child, Peer::Unixgram(socket, Some(path)));
}

#[test]
fn a_reader_taking_one_byte_at_a_time_gets_every_byte_without_more_traffic() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut child = connect(&listener.local_addr().expect("addr").to_string());
    let _stdin = child.take_stdin(); // kept open: the bridge must not end
    let Peer::Tcp(mut peer) = accept_tcp(&listener) else {
        unreachable!("accept_tcp makes a TCP peer")
    };
    let (tx, bytes) = mpsc::channel();
    let mut stdout = child.take_stdout();
    thread::spawn(move || {
        let mut byte = [0u8; 1];
        while let Ok(1) = stdout.read(&mut byte) {
            if tx.send(byte[0]).is_err() {
                return;
            }
        }
    });
    for round in 0..10 {
        let message = format!("message {round}, then silence\n");
        peer.write_all(message.as_bytes()).expect("peer send");
        for (i, want) in message.bytes().enumerate() {
            let got = bytes.recv_timeout(ANSWER).unwrap_or_else(|_| {
                panic!("round {round}: byte {i} of {message:?} never became readable")
            });
            assert_eq!(got, want, "round {round}, byte {i}");
        }
    }
}

#[test]
fn four_mib_both_ways_at_once_through_a_peer_that_echoes_as_we_send() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = listener.local_addr().expect("addr").to_string();
    let echo = thread::spawn(move || {
        let Peer::Tcp(mut stream) = accept_tcp(&listener) else {
            unreachable!("accept_tcp makes a TCP peer")
        };
        let mut writer = stream.try_clone().expect("clone");
        let mut buf = vec![0u8; 16 * 1024];
        let mut echoed = 0usize;
        loop {
            match read_once(&mut stream, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    writer.write_all(&buf[..n]).expect("echo");
                    echoed += n;
                }
                Err(err) => panic!("echo peer: {err}"),
            }
        }
        echoed // dropping the stream closes it once the client half-closed
    });
    let mut child = connect(&endpoint);
    let data = payload(4 * 1024 * 1024);
    let want = hash(&data);
    let mut stdin = child.take_stdin();
    let writer = thread::spawn(move || {
        stdin.write_all(&data).expect("stdin takes all of it");
    });
    let mut stdout = child.take_stdout();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).expect("read stdout");
        got
    });
    writer.join().expect("writer");
    let status = child.wait(DEADLINE);
    let got = reader.join().expect("reader");
    assert_eq!(status.code(), Some(0), "{}", child.stderr());
    assert_eq!(echo.join().expect("echo peer"), 4 * 1024 * 1024);
    assert_eq!(got.len(), 4 * 1024 * 1024);
    assert_eq!(hash(&got), want, "every byte came back in order");
}

#[test]
fn stdin_and_stdout_as_sockets_pass_each_line_at_once() {
    // As under inetd or systemd's Accept=yes: the program's stdio is a socket, not a pipe.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs_out = theirs.try_clone().expect("clone");
    let mut cmd = socketkit();
    cmd.args(["connect", &listener.local_addr().expect("addr").to_string()])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs_out,
        )))
        .stderr(std::process::Stdio::null());
    let _child = KilledOnDrop(cmd.spawn().expect("the program starts"));
    let Peer::Tcp(mut peer) = accept_tcp(&listener) else {
        unreachable!("accept_tcp makes a TCP peer")
    };
    ours.set_read_timeout(Some(ANSWER)).expect("timeout");
    let mut stdio = ours;
    for round in 0..ROUNDS {
        let question = format!("question {round}\n");
        peer.write_all(question.as_bytes()).expect("peer send");
        assert_eq!(read_line(&mut stdio), question.as_bytes(), "round {round}");
        stdio
            .write_all(format!("answer {round}\n").as_bytes())
            .expect("answer");
        assert_eq!(read_line(&mut peer), format!("answer {round}\n").as_bytes());
    }
}

/// A child started by hand, killed and reaped however the test ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
