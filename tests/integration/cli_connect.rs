//! `socketkit connect`: the stdio bridge, its EOF rules and its failures, against servers
//! written in the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::{one_shot, payload, read_once};
use crate::support::process::{DEADLINE, Running, run, socketkit, stderr_of, wait_bounded};

fn connect_cmd(endpoint: &str) -> std::process::Command {
    let mut cmd = socketkit();
    cmd.args(["connect", endpoint]);
    cmd
}

#[test]
fn prints_the_greeting_and_exits_zero() {
    let mut serve = socketkit();
    serve.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let out = run(connect_cmd(&server.addr()), Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "你好".as_bytes());
    assert_eq!(out.stderr, "");
}

/// Issue 9: `-v` names what was reached, as `ncat -v` does ("Connected to").
#[test]
fn verbose_says_where_it_connected() {
    let mut serve = socketkit();
    serve.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let mut cmd = connect_cmd(&server.addr());
    cmd.arg("-v");
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "你好".as_bytes());
    assert!(
        out.stderr
            .lines()
            .any(|line| line.ends_with(&format!("connected to {}", server.endpoints()[0]))),
        "{}",
        out.stderr
    );
}

#[test]
fn stdin_eof_half_closes_and_output_continues() {
    // The server reads to end of stream first, then answers: only a half-close lets it.
    let (addr, server) = one_shot(|mut stream| {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).expect("read to EOF");
        thread::sleep(Duration::from_millis(100));
        stream
            .write_all(format!("got {} bytes", got.len()).as_bytes())
            .expect("write");
    });
    let out = run(connect_cmd(&addr), payload(100_000), DEADLINE);
    server.join().expect("server thread");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"got 100000 bytes");
}

/// `--no-shutdown` (ncat's): the end of stdin is not passed on, for a peer (or a proxy) that
/// takes a half-close as the end of everything; the run ends when the peer closes.
#[test]
fn no_shutdown_keeps_the_sending_side_open_until_the_peer_closes() {
    let (addr, server) = one_shot(|mut stream| {
        let mut line = [0u8; 5];
        stream.read_exact(&mut line).expect("the request");
        assert_eq!(&line, b"ping\n");
        // Long after stdin's end: still open (a half-close would read as 0 here).
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut more = [0u8; 1];
        let read = read_once(&mut stream, &mut more);
        assert!(read.is_err(), "no end of stream came: {read:?}");
        stream.write_all(b"pong\n").expect("the answer");
    });
    let mut cmd = connect_cmd(&addr);
    cmd.arg("--no-shutdown");
    let out = run(cmd, b"ping\n".to_vec(), DEADLINE);
    server.join().expect("server thread");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"pong\n");
}

#[test]
fn four_mebibytes_echo_intact() {
    let (addr, server) = one_shot(|mut stream| {
        let mut reader = stream.try_clone().expect("clone");
        std::io::copy(&mut reader, &mut stream).expect("echo");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    });
    let data = payload(4 * 1024 * 1024);
    let out = run(connect_cmd(&addr), data.clone(), DEADLINE);
    server.join().expect("server thread");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout == data, "echoed bytes differ");
}

/// A peer that half-closes first (a receiver whose own stdin is empty: `listen </dev/null`
/// in a script) still reads: input that keeps coming goes on being sent, each pause short
/// of a second, until it ends. Chunks 300 ms apart once ended the bridge at the first pause.
#[test]
fn a_peer_that_half_closed_gets_input_that_keeps_coming() -> TestResult {
    let (addr, server) = one_shot(|mut stream| {
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        assert_eq!(
            String::from_utf8_lossy(&got),
            "chunk1\nchunk2\nchunk3\nchunk4\n"
        );
    });
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    for n in 1..=4 {
        stdin.write_all(format!("chunk{n}\n").as_bytes())?;
        thread::sleep(Duration::from_millis(300));
    }
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    server
        .join()
        .map_err(|_| "the receiver did not get every chunk")?;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

#[test]
fn reset_by_peer_is_an_error() {
    let (addr, server) = one_shot(|stream| {
        thread::sleep(Duration::from_millis(50));
        crate::support::net::reset(stream);
    });
    let out = run(connect_cmd(&addr), Vec::new(), DEADLINE);
    server.join().expect("server thread");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: cannot receive from 127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("connection reset by peer"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
}

/// A peer that resets at once, while input is being sent: the kernel reports the reset to
/// the first call that asks, and when that was the send, the receive found a plain end of
/// stream and the run ended with exit 0.
#[test]
fn a_reset_is_an_error_whichever_side_of_the_bridge_meets_it() -> TestResult {
    const RUNS: usize = 20;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let server = thread::spawn(move || {
        for _ in 0..RUNS {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            // The client's send is blocked on a full window by now, and its receive waits
            // too: the reset wakes both, and either may be the one told.
            thread::sleep(Duration::from_millis(30));
            crate::support::net::reset(stream);
        }
    });
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input");
    std::fs::write(&input, vec![b'x'; 8 << 20])?;
    for run_number in 0..RUNS {
        let mut cmd = connect_cmd(&addr);
        cmd.stdin(std::fs::File::open(&input)?)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stderr = crate::support::process::drain(child.stderr.take().ok_or("stderr")?);
        let status = wait_bounded(&mut child, DEADLINE);
        let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        assert_eq!(status.code(), Some(1), "run {run_number}: {stderr}");
        let line = stderr.trim_end();
        assert!(
            (line.starts_with(&format!("error: cannot receive from {addr}: "))
                || line.starts_with(&format!("error: cannot send to {addr}: ")))
                && line.ends_with("connection reset by peer")
                && stderr.lines().count() == 1,
            "run {run_number}: {stderr}"
        );
    }
    server.join().expect("server thread");
    Ok(())
}

#[test]
fn closed_stdout_ends_quietly_with_zero() -> TestResult {
    let (addr, server) = one_shot(|mut stream| {
        let chunk = vec![b'z'; 64 * 1024];
        // Stream until the client goes away (bounded: at most 1 GiB).
        for _ in 0..16 * 1024 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().ok_or("stdout")?;
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first)?;
    drop(stdout); // like `| head -c 10`
    let status = wait_bounded(&mut child, DEADLINE);
    let err = stderr_of(&mut child)?;
    server.join().expect("server thread");
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(err, "");
    Ok(())
}

#[test]
fn unix_stream_endpoint() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).expect("read");
        got.reverse();
        stream.write_all(&got).expect("write");
    });
    let out = run(
        connect_cmd(&format!("unix:{}", path.display())),
        b"abc".to_vec(),
        DEADLINE,
    );
    server.join().expect("server thread");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"cba");
    Ok(())
}

#[test]
fn output_to_a_regular_file_is_copied_not_spliced() -> TestResult {
    let (addr, server) = one_shot(|mut stream| {
        stream.write_all(&payload(1024 * 1024)).expect("write");
    });
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("out.bin");
    let mut cmd = connect_cmd(&addr);
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&path)?)
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let status = wait_bounded(&mut child, DEADLINE);
    server.join().expect("server thread");
    assert_eq!(status.code(), Some(0));
    assert!(
        std::fs::read(&path)? == payload(1024 * 1024),
        "the file holds every byte"
    );
    Ok(())
}

#[test]
fn idle_timeout_ends_a_silent_connection_with_an_error() {
    let (addr, server) = one_shot(|mut stream| {
        // Say nothing, read until the client goes.
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    let mut cmd = connect_cmd(&addr);
    cmd.args(["--idle-timeout", "300ms"]).stdin(Stdio::piped());
    let mut cmd_out = cmd;
    cmd_out.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd_out.spawn().expect("start");
    let _stdin_open = child.stdin.take();
    let started = std::time::Instant::now();
    let status = wait_bounded(&mut child, DEADLINE);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    server.join().expect("server thread");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.starts_with("error: cannot receive from 127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with("no data either way for 300ms"),
        "{err}"
    );
}

#[test]
fn connect_timeout_bounds_a_connect_that_gets_no_answer() -> TestResult {
    // A listener that never accepts, with a full queue: further SYNs are dropped, so a
    // connect waits for an answer that does not come.
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>()?.into())?;
    listener.listen(0)?;
    let addr = listener
        .local_addr()?
        .as_socket()
        .ok_or("an IP address")?
        .to_string();
    let _fillers: Vec<TcpStream> = (0..4)
        .filter_map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&addr.parse::<std::net::SocketAddr>().ok()?.into());
            Some(TcpStream::from(s))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let mut cmd = connect_cmd(&addr);
    cmd.args(["--timeout", "500ms"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!("error: cannot connect to tcp:{addr}: timed out\n")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[test]
fn family_flags_choose_the_address_family() {
    let mut serve = socketkit();
    serve.args(["serve", "-l", "[::1]:0"]);
    let server = Running::start(serve, 1);
    let port = server.port();
    let v6 = run(
        {
            let mut c = socketkit();
            c.args(["connect", "-6", &format!("[::1]:{port}")]);
            c
        },
        Vec::new(),
        DEADLINE,
    );
    assert_eq!(
        (v6.code(), v6.stdout.as_slice()),
        (0, "你好".as_bytes()),
        "{}",
        v6.stderr
    );
    let refused = run(
        {
            let mut c = socketkit();
            c.args(["connect", "-4", &format!("[::1]:{port}")]);
            c
        },
        Vec::new(),
        DEADLINE,
    );
    assert_eq!(refused.code(), 1);
    assert_eq!(
        refused.stderr,
        format!(
            "error: cannot connect to tcp:[::1]:{port}: no IPv4 address (IPv4 only: -4, or an IPv4 -s source)\n"
        )
    );
}

/// The size of the pipe behind `fd` (`F_GETPIPE_SZ`).
fn pipe_size(fd: &impl AsRawFd) -> i32 {
    // SAFETY: F_GETPIPE_SZ only reads the size of the pipe behind a live descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) }
}

/// A pipe of `size` bytes: (read end, write end).
fn pipe_of(size: i32) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array with two new descriptors we then own, and
    // F_SETPIPE_SZ only resizes the new pipe.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ends = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        if libc::fcntl(fds[1], libc::F_SETPIPE_SZ, size) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ends)
    }
}

#[test]
fn stdio_pipes_are_grown_to_a_whole_chunk_and_never_shrunk() -> TestResult {
    for (given, expected) in [(64 * 1024, 256 * 1024), (1024 * 1024, 1024 * 1024)] {
        let (addr, server) = one_shot(|mut stream| {
            let mut got = [0u8; 4];
            stream.read_exact(&mut got).expect("read");
            stream.write_all(&got).expect("write");
        });
        let (stdin_read, stdin_write) = pipe_of(given)?;
        let (stdout_read, stdout_write) = pipe_of(given)?;
        let mut cmd = connect_cmd(&addr);
        cmd.stdin(Stdio::from(stdin_read))
            .stdout(Stdio::from(stdout_write))
            .stderr(Stdio::null());
        let mut child = cmd.spawn()?;
        // The child holds its ends now; ours would keep the pipes from ending.
        drop(cmd);
        let mut stdin = std::fs::File::from(stdin_write);
        let mut stdout = std::fs::File::from(stdout_read);
        stdin.write_all(b"ping")?;
        let mut back = [0u8; 4];
        stdout.read_exact(&mut back)?;
        assert_eq!(&back, b"ping");
        // Both pipes were seen to before the first byte moved.
        assert_eq!(
            (pipe_size(&stdin), pipe_size(&stdout)),
            (expected, expected),
            "a pipe of {given} bytes"
        );
        drop(stdin);
        assert_eq!(wait_bounded(&mut child, DEADLINE).code(), Some(0));
        server.join().expect("server thread");
    }
    Ok(())
}
