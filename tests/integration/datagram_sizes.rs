//! Datagrams at their transports' limits through `connect`, `listen` and `serve`: a
//! 65,527-byte UDP datagram over IPv6 (the largest there is) and Unix datagrams past 64 KiB
//! pass whole both ways, never cut to IPv4's 65,507 bytes. Inputs come from files, so that
//! one read is one datagram whatever the pipe would have split.

use std::fs::File;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use socketkit::socket::{Family, Socket, Type};

use crate::support::net::{IO_TIMEOUT, hash, payload};
use crate::support::process::{DEADLINE, Running, drain, socketkit, wait_bounded};

/// The largest UDP payload over IPv6.
const UDP_V6_MAX: usize = 65_527;

/// A Unix datagram past every UDP limit, which the default send buffer (about 208 KiB)
/// still carries.
const UNIX_BIG: usize = 100_000;

/// A UDP socket on ::1, or `None` (with the reason printed) where IPv6 loopback is missing.
fn v6_socket() -> Option<UdpSocket> {
    match UdpSocket::bind("[::1]:0") {
        Ok(socket) => {
            socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            Some(socket)
        }
        Err(err) => {
            println!("skipped: no IPv6 loopback here ({err})");
            None
        }
    }
}

/// A Unix datagram socket bound at `path`, able to send `UNIX_BIG`-byte datagrams and more.
fn unix_socket(path: &Path) -> Socket {
    let socket = Socket::new(Family::Unix, Type::Datagram).expect("a unix socket");
    socket.set_send_buffer_size(400_000).expect("SO_SNDBUF");
    socket.set_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket.bind(path).expect("bind");
    socket
}

/// Starts `socketkit ARGS` with `input` (written to a file in `dir`) on stdin; stdout and
/// stderr are collected.
fn start_with_file(dir: &Path, args: &[&str], input: &[u8]) -> Started {
    let file = dir.join("stdin");
    std::fs::write(&file, input).expect("write the input");
    let mut cmd: Command = socketkit();
    cmd.args(args)
        .stdin(Stdio::from(File::open(&file).expect("open the input")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the program starts");
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    Started {
        child,
        stdout: Some(stdout),
        stderr: Some(stderr),
    }
}

/// A child with its output being read; killed and reaped on drop.
struct Started {
    child: Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Started {
    /// Waits for the exit (exit 0 expected) and returns stdout.
    fn finish(mut self) -> Vec<u8> {
        let status = wait_bounded(&mut self.child, DEADLINE);
        let take = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
            handle
                .map(|h| h.join().expect("reader"))
                .unwrap_or_default()
        };
        let stdout = take(self.stdout.take());
        let stderr = String::from_utf8_lossy(&take(self.stderr.take())).into_owned();
        assert!(status.success(), "{status}: {stderr}");
        assert!(!stderr.contains("cut"), "{stderr}");
        stdout
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that `got` is `wanted`, by length and digest (no megabyte of bytes printed).
fn assert_whole(got: &[u8], wanted: &[u8], what: &str) {
    assert_eq!(got.len(), wanted.len(), "{what}: the datagram's length");
    assert_eq!(hash(got), hash(wanted), "{what}: the datagram's bytes");
}

#[test]
fn connect_udp_over_ipv6_sends_and_receives_65527_bytes_whole() {
    let Some(server) = v6_socket() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = payload(UDP_V6_MAX);
    let port = server.local_addr().expect("addr").port();
    let target = format!("[::1]:{port}");
    let client = start_with_file(
        dir.path(),
        &["connect", "-u", &target, "--wait", "2s"],
        &out,
    );
    let mut buf = vec![0u8; 70_000];
    let (n, from) = server.recv_from(&mut buf).expect("the client's datagram");
    assert_whole(&buf[..n], &out, "sent by connect -u");
    let back: Vec<u8> = out.iter().rev().copied().collect();
    server.send_to(&back, from).expect("answer");
    assert_whole(&client.finish(), &back, "received by connect -u");
}

#[test]
fn listen_udp_over_ipv6_writes_a_65527_byte_datagram_whole() {
    let Some(client) = v6_socket() else { return };
    let mut cmd = socketkit();
    cmd.args(["listen", "-u", "[::1]:0", "--wait", "300ms"]);
    let mut listener = Running::start(cmd, 1);
    let stdout = drain(listener.take_stdout());
    let data = payload(UDP_V6_MAX);
    client
        .send_to(&data, ("::1", listener.port()))
        .expect("send");
    drop(listener.take_stdin());
    let status = listener.wait(DEADLINE);
    assert!(status.success(), "{status}: {}", listener.stderr());
    assert!(!listener.stderr().contains("cut"), "{}", listener.stderr());
    assert_whole(&stdout.join().expect("reader"), &data, "listen -u");
}

#[test]
fn listen_unixgram_writes_a_100000_byte_datagram_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l.sock");
    let mut cmd = socketkit();
    cmd.arg("listen")
        .arg(format!("unixgram:{}", path.display()))
        .args(["--wait", "300ms"]);
    let mut listener = Running::start(cmd, 1);
    let stdout = drain(listener.take_stdout());
    let client = unix_socket(&dir.path().join("c.sock"));
    let data = payload(UNIX_BIG);
    client.sendto(&data, path.as_path()).expect("send");
    drop(listener.take_stdin());
    let status = listener.wait(DEADLINE);
    assert!(status.success(), "{status}: {}", listener.stderr());
    assert_whole(&stdout.join().expect("reader"), &data, "listen unixgram:");
}

#[test]
fn connect_unixgram_sends_and_receives_datagrams_past_64_kib_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sock");
    let server = unix_socket(&path);
    let out = payload(UNIX_BIG);
    let target = format!("unixgram:{}", path.display());
    let client = start_with_file(dir.path(), &["connect", &target, "--wait", "2s"], &out);
    let (got, from) = server.recvfrom(400_000).expect("the client's datagram");
    assert_whole(&got, &out, "sent by connect unixgram:");
    let back = payload(150_000);
    server.sendto(&back, &from).expect("answer");
    assert_whole(&client.finish(), &back, "received by connect unixgram:");
}

#[test]
fn serve_echo_on_unixgram_answers_datagrams_past_64_kib_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("echo.sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l"])
        .arg(format!("unixgram:{}", path.display()));
    let _server = Running::start(cmd, 1);
    let client = unix_socket(&dir.path().join("c.sock"));
    // Past 64 KiB, then small again (the server's buffer shrinks back), then empty.
    for len in [UNIX_BIG, 10, 0, UNIX_BIG + 1] {
        let data = payload(len);
        client.sendto(&data, path.as_path()).expect("send");
        let (got, _) = client.recvfrom(400_000).expect("the echo");
        assert_whole(&got, &data, &format!("echo of {len} bytes"));
    }
}

/// A greeting longer than a UDP datagram holds could never answer one: exit 2 at start,
/// naming the listener, rather than a server that answers nothing (said only at `-v`).
#[test]
fn a_greeting_longer_than_a_udp_datagram_is_refused_at_start() {
    let greeting = |length: usize| {
        let mut cmd = socketkit();
        cmd.args(["serve", "greeting", "-l", "udp:127.0.0.1:0", "--message"])
            .arg("a".repeat(length));
        cmd
    };
    let out = crate::support::process::run(greeting(65_508), Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--message is 65508 bytes, more than a UDP datagram holds")
            && out.stderr.contains("udp:127.0.0.1:0")
            && !out.stderr.contains("listening on"),
        "{}",
        out.stderr
    );
    // At the limit, it is served whole.
    let cmd = greeting(65_507);
    let server = Running::start(cmd, 1);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client
        .send_to(b"hi", server.endpoints()[0].trim_start_matches("udp:"))
        .expect("send");
    let mut buf = vec![0u8; 70_000];
    let (len, _) = client.recv_from(&mut buf).expect("the greeting");
    assert_eq!(len, 65_507);
}

/// An IPv6 socket's IPv4 peer (here an IPv4-mapped address; a dual-stack `listen -u`'s
/// IPv4 client alike) takes IPv4's datagrams: a full read from a file, sized for IPv6, was
/// refused whole by the kernel (`EMSGSIZE`) and lost, the run exiting 0. It goes in two.
#[test]
fn connect_udp_to_an_ipv4_mapped_peer_delivers_reads_sized_for_ipv6() {
    if v6_socket().is_none() {
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let dir = tempfile::tempdir().expect("tempdir");
    // One read sized for IPv6, then a short one.
    let out = payload(UDP_V6_MAX + 100);
    let port = server.local_addr().expect("addr").port();
    let target = format!("udp:[::ffff:127.0.0.1]:{port}");
    let client = start_with_file(dir.path(), &["connect", &target, "--wait", "300ms"], &out);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while got.len() < out.len() {
        let (n, _) = server
            .recv_from(&mut buf)
            .unwrap_or_else(|err| panic!("{} of {} bytes came: {err}", got.len(), out.len()));
        got.extend_from_slice(&buf[..n]);
    }
    assert_whole(&got, &out, "sent by connect to a mapped peer");
    client.finish();
}
