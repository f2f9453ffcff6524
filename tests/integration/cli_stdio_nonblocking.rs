//! Standard input and output that the parent left non-blocking (`O_NONBLOCK` on the open file
//! description, shared with the parent, so not the program's to clear): a read or write
//! that would block must wait, as on a blocking pipe, and never end the input early or fail
//! the output. Every byte must pass, through a writer that pauses and a reader that is slow.

use std::io::{self, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::support::net::{hash, payload, read_once};
use crate::support::process::{DEADLINE, Running, socketkit};

/// Makes the program's descriptors `fds` non-blocking as it starts, the way a parent that
/// set the flag on the pipes it hands down leaves them.
fn nonblocking(cmd: &mut Command, fds: &'static [i32]) {
    // SAFETY: the hook runs in the child between fork and exec, after its stdio is set up,
    // and calls only fcntl, which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in fds {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A TCP peer that echoes one connection until its end, then closes it; its address.
fn tcp_echo() -> (String, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let echo = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("read timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut buf = vec![0u8; 64 * 1024];
        let mut echoed = 0;
        loop {
            match read_once(&mut stream, &mut buf) {
                Ok(0) | Err(_) => return echoed,
                Ok(n) => {
                    writer.write_all(&buf[..n]).expect("echo");
                    echoed += n;
                }
            }
        }
    });
    (addr, echo)
}

/// Writes `data` to the program's stdin in pieces with pauses between them (the first
/// before any byte, so that the program's first read finds nothing), then closes it.
fn pausing_writer(
    mut stdin: impl Write + Send + 'static,
    data: Vec<u8>,
) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        for piece in data.chunks(256 * 1024) {
            thread::sleep(Duration::from_millis(100));
            stdin.write_all(piece)?;
        }
        Ok(())
    })
}

/// Reads the program's stdout to its end, slowly: nothing for a while (the pipe fills up),
/// then small reads with pauses.
fn slow_reader(mut stdout: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.len() < 1024 * 1024 {
                thread::sleep(Duration::from_millis(2));
            }
        }
    })
}

/// Runs `connect ADDR extra…` against an echo peer with `fds` non-blocking, sends `size`
/// bytes through a pausing writer, reads them back through a slow reader, and checks that
/// every byte came back in order and the program ended with exit 0 and no warning.
fn echoes_every_byte(extra: &[&str], fds: &'static [i32], size: usize) {
    let (addr, echo) = tcp_echo();
    let mut cmd = socketkit();
    cmd.arg("connect").arg(&addr).args(extra);
    nonblocking(&mut cmd, fds);
    let mut child = Running::start(cmd, 0);
    let data = payload(size);
    let want = hash(&data);
    let writer = pausing_writer(child.take_stdin(), data);
    let reader = slow_reader(child.take_stdout());
    let written = writer.join().expect("writer");
    let status = child.wait(DEADLINE);
    let got = reader.join().expect("reader");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", child.stderr());
    assert!(written.is_ok(), "stdin refused bytes: {written:?}");
    assert_eq!(
        echo.join().expect("echo peer"),
        size,
        "the peer got every byte"
    );
    assert_eq!(got.len(), size, "stderr:\n{}", child.stderr());
    assert_eq!(hash(&got), want, "every byte came back in order");
    assert!(!child.stderr().contains("WARN"), "{}", child.stderr());
}

#[test]
fn a_non_blocking_stdin_is_waited_for() {
    echoes_every_byte(&[], &[0], 1024 * 1024);
}

#[test]
fn a_non_blocking_stdout_with_a_slow_reader_gets_every_byte() {
    echoes_every_byte(&[], &[1], 3 * 1024 * 1024);
}

#[test]
fn both_non_blocking_through_a_traffic_log() {
    // -o reads stdin and writes stdout through the log's taps rather than directly.
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("traffic.log");
    let log = log.to_str().expect("a UTF-8 path");
    echoes_every_byte(&["-o", log], &[0, 1], 2 * 1024 * 1024);
}

#[test]
fn a_non_blocking_stdin_sends_its_datagrams() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let endpoint = format!("udp:{}", socket.local_addr().expect("addr"));
    let mut cmd = socketkit();
    cmd.args(["connect", &endpoint, "--wait", "300ms"]);
    nonblocking(&mut cmd, &[0, 1]);
    let mut child = Running::start(cmd, 0);
    let mut stdin = child.take_stdin();
    let mut stdout = child.take_stdout();
    for round in 0..3 {
        thread::sleep(Duration::from_millis(100)); // the program's read finds nothing first
        let line = format!("datagram {round}\n");
        stdin.write_all(line.as_bytes()).expect("stdin");
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf).expect("the program's datagram");
        assert_eq!(&buf[..n], line.as_bytes(), "round {round}");
        socket.send_to(&buf[..n], from).expect("echo");
        let mut got = vec![0u8; n];
        stdout.read_exact(&mut got).expect("the echo on stdout");
        assert_eq!(got, line.as_bytes(), "round {round}");
    }
    drop(stdin);
    let status = child.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", child.stderr());
    assert!(!child.stderr().contains("WARN"), "{}", child.stderr());
}
