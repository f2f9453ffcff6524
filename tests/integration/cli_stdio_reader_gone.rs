//! A reader of stdout that leaves while the peer is quiet: `socketkit connect … | head -1`
//! against a server that greets and then waits (as SSH and SMTP do), `socketkit listen … |
//! head -1` with a client that sends a line and waits. The program must see the reader go at
//! once and end with exit 0 (SPEC §2.2: a closed stdout ends it quietly), not hang on until
//! the peer closes. Each way the peer's bytes reach stdout is driven: spliced (TCP, Unix),
//! copied through a traffic log (`-o`), TLS, datagrams, and a listener with and without -k;
//! with stdin closed, and with stdin open and quiet (a terminal nobody types into).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixListener;
use std::process::{ChildStdout, Command};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::support::process::{Running, socketkit};

/// How long the program may take to end once its reader is gone: generous for a loaded
/// machine, and far less than the peer holds its connection open.
const PROMPTLY: Duration = Duration::from_secs(3);

/// How long a peer holds its connection open after its line, unless released first: past
/// [`PROMPTLY`], so that only the reader's leaving can end the program in time.
const HOLD: Duration = Duration::from_secs(20);

/// How long the first line may take to reach stdout.
const ANSWER: Duration = Duration::from_secs(10);

/// A peer that sends one line and then holds the connection open, reading nothing, until
/// released (dropped) or [`HOLD`] passes.
struct QuietPeer {
    release: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl QuietPeer {
    /// Accepts one connection with `accept`, sends it `line`, and holds it.
    fn start<S: Write + Send + 'static>(
        accept: impl FnOnce() -> S + Send + 'static,
        line: &'static [u8],
    ) -> QuietPeer {
        let (release, released) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let mut stream = accept();
            stream.write_all(line).expect("the peer sends its line");
            let _ = released.recv_timeout(HOLD);
        });
        QuietPeer {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for QuietPeer {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the first line of `stdout`, then closes it, as `head -1` does.
fn first_line_then_close(stdout: ChildStdout) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let _ = reader.read_until(b'\n', &mut line);
        drop(reader); // the pipe's only reader is gone
        let _ = tx.send(line);
    });
    rx.recv_timeout(ANSWER)
        .expect("the peer's line reaches stdout")
}

/// Runs `cmd` (announcing `announced` `listening on` lines), lets `peer_side` start the
/// peer once the program is up, reads the first line of stdout and closes it; the program
/// must then end with exit 0 within [`PROMPTLY`]. With `stdin_open`, stdin stays open and
/// quiet throughout; otherwise it is closed at once.
fn ends_promptly_once_stdout_is_closed<P>(
    cmd: Command,
    announced: usize,
    stdin_open: bool,
    peer_side: impl FnOnce(&Running) -> P,
    want: &[u8],
) {
    let mut child = Running::start(cmd, announced);
    let stdin = child.take_stdin();
    let _stdin = stdin_open.then_some(stdin);
    let _peer = peer_side(&child);
    let line = first_line_then_close(child.take_stdout());
    assert_eq!(line, want, "stderr:\n{}", child.stderr());
    let status = child.wait(PROMPTLY);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", child.stderr());
    assert!(!child.stderr().contains("error"), "{}", child.stderr());
}

fn connect(args: &[&str]) -> Command {
    let mut cmd = socketkit();
    cmd.arg("connect").args(args);
    cmd
}

fn tcp_greeter() -> (String, impl FnOnce(&Running) -> QuietPeer) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let peer = move |_: &Running| {
        QuietPeer::start(
            move || listener.accept().expect("accept").0,
            b"SSH-2.0-greeting\r\n",
        )
    };
    (addr, peer)
}

#[test]
fn connect_tcp_with_stdin_closed() {
    let (addr, peer) = tcp_greeter();
    ends_promptly_once_stdout_is_closed(connect(&[&addr]), 0, false, peer, b"SSH-2.0-greeting\r\n");
}

#[test]
fn connect_tcp_with_stdin_open() {
    let (addr, peer) = tcp_greeter();
    ends_promptly_once_stdout_is_closed(connect(&[&addr]), 0, true, peer, b"SSH-2.0-greeting\r\n");
}

/// A request sent, stdin open after it, the answer's first line taken (`{ echo request;
/// sleep 5; } | connect … | head -1`): the program ended a second after the request, the
/// pause input gets when the peer has closed, not at once (an outside audit).
#[test]
fn connect_tcp_with_a_request_sent_and_stdin_open() {
    let (addr, peer) = tcp_greeter();
    let mut child = Running::start(connect(&[&addr]), 0);
    let mut stdin = child.take_stdin();
    stdin.write_all(b"request\n").expect("stdin");
    // Sent before the answer comes (the program has read it).
    thread::sleep(Duration::from_millis(100));
    let _peer = peer(&child);
    let line = first_line_then_close(child.take_stdout());
    assert_eq!(line, b"SSH-2.0-greeting\r\n", "stderr:\n{}", child.stderr());
    let status = child.wait(Duration::from_millis(500));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", child.stderr());
    drop(stdin);
}

/// Stdin streaming to a peer that has stopped reading (the sender blocked in a send): the
/// reader's leaving ends the program at once, not after the linger that input already
/// read gets when the peer closes (which took a second here).
#[test]
fn connect_tcp_with_stdin_streaming_to_a_peer_that_stopped_reading() {
    let (addr, peer) = tcp_greeter();
    let mut child = Running::start(connect(&[&addr]), 0);
    let mut stdin = child.take_stdin();
    let _peer = peer(&child);
    // Until the program is gone (a broken pipe), at most 256 MiB.
    thread::spawn(move || {
        let block = vec![0u8; 64 * 1024];
        for _ in 0..4096 {
            if stdin.write_all(&block).is_err() {
                return;
            }
        }
    });
    let line = first_line_then_close(child.take_stdout());
    assert_eq!(line, b"SSH-2.0-greeting\r\n", "stderr:\n{}", child.stderr());
    let status = child.wait(Duration::from_millis(700));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", child.stderr());
}

#[test]
fn connect_tcp_copying_through_a_traffic_log() {
    // -o puts a tap in front of stdout: the bytes are copied, not spliced.
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("traffic.log");
    let (addr, peer) = tcp_greeter();
    let cmd = connect(&[&addr, "-o", log.to_str().expect("a UTF-8 path")]);
    ends_promptly_once_stdout_is_closed(cmd, 0, true, peer, b"SSH-2.0-greeting\r\n");
}

#[test]
fn connect_unix_with_stdin_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("greeter.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let peer = move |_: &Running| {
        QuietPeer::start(
            move || listener.accept().expect("accept").0,
            b"220 ready\r\n",
        )
    };
    let cmd = connect(&[&format!("unix:{}", path.display())]);
    ends_promptly_once_stdout_is_closed(cmd, 0, true, peer, b"220 ready\r\n");
}

#[test]
fn connect_tls_with_stdin_open() {
    // The peer is socketkit's own TLS listener, its stdin a line and then silence.
    let mut server = socketkit();
    server.args(["listen", "tls:127.0.0.1:0", "--tls-self-signed"]);
    let mut server = Running::start(server, 1);
    let mut server_stdin = server.take_stdin();
    server_stdin
        .write_all(b"220 over TLS\r\n")
        .expect("the server's stdin");
    let endpoint = server.endpoints()[0].clone();
    let cmd = connect(&[&endpoint, "--tls-insecure"]);
    let hold = move |_: &Running| (server, server_stdin);
    ends_promptly_once_stdout_is_closed(cmd, 0, true, hold, b"220 over TLS\r\n");
}

#[test]
fn connect_udp_with_stdin_open() {
    // The peer answers the first datagram and then says nothing more; stdin stays open, so
    // only the reader's leaving can end the program.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(ANSWER)).expect("read timeout");
    let endpoint = format!("udp:{}", socket.local_addr().expect("addr"));
    let mut child = Running::start(connect(&[&endpoint]), 0);
    let mut stdin = child.take_stdin();
    stdin.write_all(b"hello?\n").expect("stdin");
    let mut buf = [0u8; 64];
    let (_, from) = socket.recv_from(&mut buf).expect("the program's datagram");
    socket.send_to(b"answer\n", from).expect("answer");
    let line = first_line_then_close(child.take_stdout());
    assert_eq!(line, b"answer\n");
    let status = child.wait(PROMPTLY);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", child.stderr());
    drop(stdin);
}

/// A client of `listen` that sends a line and then holds its connection (it is returned,
/// and kept until the test ends), reading nothing.
fn listen_client(child: &Running) -> TcpStream {
    let mut stream = TcpStream::connect(child.addr()).expect("connect");
    stream.write_all(b"one line\n").expect("send");
    stream
}

#[test]
fn listen_with_stdin_open() {
    let mut cmd = socketkit();
    cmd.args(["listen", "127.0.0.1:0"]);
    ends_promptly_once_stdout_is_closed(cmd, 1, true, listen_client, b"one line\n");
}

#[test]
fn listen_keep_open_ends_too() {
    // -k would wait for the next client; with nobody reading the output there is no point.
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "127.0.0.1:0"]);
    ends_promptly_once_stdout_is_closed(cmd, 1, false, listen_client, b"one line\n");
}
