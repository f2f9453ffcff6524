//! Under a service manager (SPEC §3.4), with the real tools: `systemd-socket-activate` for
//! socket activation (`-l`, `--fdname`) and inetd mode (`--inetd -a`), a Python parent
//! that passes a socket with another process's `LISTEN_PID`, and `NOTIFY_SOCKET` read by
//! the test itself. `systemd-socket-activate` starts the program at the first connection,
//! so each test connects first and reads the `listening on` lines after.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, free_port};
use crate::support::process::{Running, command, run};
use crate::support::restart::{
    Descendants, become_subreaper, read_pid, send_signal, wait_for_new_pid,
};
use crate::support::tools::available;

const ACTIVATE: &str = "systemd-socket-activate";

fn socketkit_path() -> &'static str {
    env!("CARGO_BIN_EXE_socketkit")
}

/// `systemd-socket-activate ARGS socketkit SOCKETKIT_ARGS`.
fn activate(tool_args: &[&str], socketkit_args: &[&str]) -> Command {
    let mut cmd = command(Path::new("/usr/bin/env"));
    cmd.arg(ACTIVATE)
        .args(tool_args)
        .arg(socketkit_path())
        .args(socketkit_args);
    cmd
}

/// Connects to `open`'s socket as soon as the tool listens on it (it binds before it
/// starts anything), within the test's deadline.
fn connect_when_up<S>(mut open: impl FnMut() -> std::io::Result<S>) -> S {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match open() {
            Ok(stream) => return stream,
            Err(err) => {
                assert!(Instant::now() < deadline, "nothing listens: {err}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn tcp(addr: &str) -> TcpStream {
    let stream = connect_when_up(|| TcpStream::connect(addr));
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

fn unix(path: &Path) -> UnixStream {
    let stream = connect_when_up(|| UnixStream::connect(path));
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// Sends `data`, half-closes, and returns everything read back.
fn echo<S: Read + Write>(stream: &mut S, data: &[u8], shutdown: impl FnOnce(&S)) -> Vec<u8> {
    stream.write_all(data).expect("write");
    shutdown(stream);
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read back");
    got
}

fn echo_tcp(addr: &str, data: &[u8]) -> Vec<u8> {
    echo(&mut tcp(addr), data, |s| {
        s.shutdown(Shutdown::Write).expect("shutdown");
    })
}

fn echo_unix(path: &Path, data: &[u8]) -> Vec<u8> {
    echo(&mut unix(path), data, |s| {
        s.shutdown(Shutdown::Write).expect("shutdown");
    })
}

/// Everything an `exec` program sends on a connection to `path`.
fn exec_output(path: &Path) -> String {
    let mut stream = unix(path);
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    text
}

#[test]
fn socket_activation_serves_echo_on_the_inherited_port() -> TestResult {
    if !available(ACTIVATE) {
        return Ok(());
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Running::start(activate(&["-l", &addr], &["serve", "echo"]), 0);
    // The first connection waits in the tool's socket while socketkit starts on it.
    assert_eq!(echo_tcp(&addr, b"hello"), b"hello");
    server.wait_for_listening(1);
    assert_eq!(server.endpoints(), [format!("tcp:{addr}")]);
    assert_eq!(echo_tcp(&addr, b"again"), b"again");
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait(IO_TIMEOUT).code(),
        Some(0),
        "{}",
        server.stderr()
    );
    Ok(())
}

/// The connection that starts the server (queued in the tool's socket before socketkit set
/// `TCP_NODELAY` on it, so it did not inherit the option) has Nagle off too: its echo of a
/// message longer than one read came back 44 ms late, on both engines. Found by the review
/// of the change that set the option on listeners.
#[test]
fn the_connection_that_starts_the_server_has_nagle_off() -> TestResult {
    if !available(ACTIVATE) {
        return Ok(());
    }
    for engine in ["epoll", "io_uring"] {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let args = ["serve", "echo", "--io-engine", engine];
        let mut server = Running::start(activate(&["-l", &addr], &args), 0);
        let mut first = tcp(&addr);
        let median = crate::support::net::echo_round_trip_median(&mut first, 20_000, 20);
        assert!(
            median < Duration::from_millis(20),
            "{engine}: the first connection's echo of 20000 bytes took {median:?}"
        );
        drop(first);
        server.wait_for_listening(1);
        server.signal(libc::SIGTERM);
        assert_eq!(
            server.wait(IO_TIMEOUT).code(),
            Some(0),
            "{}",
            server.stderr()
        );
    }
    Ok(())
}

/// Two named Unix sockets, as `systemd-socket-activate --fdname=web:admin` passes them.
fn two_named(dir: &Path, socketkit_args: &[&str]) -> (Command, PathBuf, PathBuf) {
    let web = dir.join("web.sock");
    let admin = dir.join("admin.sock");
    let cmd = activate(
        &[
            "-l",
            &web.display().to_string(),
            "-l",
            &admin.display().to_string(),
            "--fdname=web:admin",
        ],
        socketkit_args,
    );
    (cmd, web, admin)
}

#[test]
fn fd_names_pick_the_sockets_and_no_listen_serves_them_all() -> TestResult {
    if !available(ACTIVATE) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (cmd, web, admin) = two_named(
        dir.path(),
        &["serve", "echo", "-l", "fd:admin", "-l", "fd:web"],
    );
    let mut server = Running::start(cmd, 0);
    assert_eq!(echo_unix(&web, b"to web"), b"to web");
    server.wait_for_listening(2);
    let expected = [
        format!("unix:{}", admin.display()),
        format!("unix:{}", web.display()),
    ];
    assert_eq!(server.endpoints(), expected, "in the order of -l");
    assert_eq!(echo_unix(&admin, b"to admin"), b"to admin");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    assert!(
        web.exists() && admin.exists(),
        "the manager's socket files are its own"
    );

    // No -l: every inherited socket, in the order passed.
    let dir = tempfile::tempdir()?;
    let (cmd, web, admin) = two_named(dir.path(), &["serve", "echo"]);
    let mut server = Running::start(cmd, 0);
    assert_eq!(echo_unix(&admin, b"x"), b"x");
    server.wait_for_listening(2);
    assert_eq!(server.endpoints()[0], format!("unix:{}", web.display()));
    assert_eq!(echo_unix(&web, b"y"), b"y");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    Ok(())
}

#[test]
fn an_fd_that_is_not_passed_or_of_the_wrong_kind_is_exit_2_naming_it() -> TestResult {
    if !available(ACTIVATE) {
        return Ok(());
    }
    let cases: [(&[&str], &str); 3] = [
        (
            &["serve", "echo", "-l", "fd:nope"],
            "error: cannot listen on fd:nope: no socket has that name (LISTEN_FDNAMES has web, admin)",
        ),
        (
            &["serve", "echo", "-l", "fd:9"],
            "error: cannot listen on fd:9: the service manager passed fd:3 to fd:4",
        ),
        (
            &["serve", "echo", "-l", "fd:3", "-l", "fd:web"], // fd:3 is web
            "error: cannot listen on fd:web: it is given twice",
        ),
    ];
    for (args, expected) in cases {
        let dir = tempfile::tempdir()?;
        let (cmd, web, _) = two_named(dir.path(), args);
        let mut server = Running::start(cmd, 0);
        let _trigger = unix(&web);
        let status = server.wait(IO_TIMEOUT);
        assert_eq!(status.code(), Some(2), "{args:?}: {}", server.stderr());
        server.assert_said(expected);
    }

    // A datagram socket for a service that serves streams only.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("d.sock");
    let cmd = activate(
        &["--datagram", "-l", &path.display().to_string()],
        &["serve", "exec", "-l", "fd:3", "--", "cat"],
    );
    let mut server = Running::start(cmd, 0);
    let client = UnixDatagram::unbound()?;
    connect_when_up(|| client.send_to(b"x", &path));
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(2));
    let expected = format!(
        "error: exec serves streams only; fd:3 (unixgram:{}) is a datagram endpoint",
        path.display()
    );
    server.assert_said(&expected);
    Ok(())
}

#[test]
fn inetd_mode_serves_the_connection_on_stdin() -> TestResult {
    if !available(ACTIVATE) {
        return Ok(());
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let tool = Running::start(
        activate(
            &["--inetd", "-a", "-l", &addr],
            &["serve", "echo", "--inetd"],
        ),
        0,
    );
    // One process per connection, two at once.
    let mut first = tcp(&addr);
    let mut second = tcp(&addr);
    second.write_all(b"second")?;
    first.write_all(b"first")?;
    for (stream, text) in [(&mut first, "first"), (&mut second, "second")] {
        stream.shutdown(Shutdown::Write)?;
        let mut got = String::new();
        stream.read_to_string(&mut got)?;
        assert_eq!(got, text);
    }
    drop(tool);

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let tool = Running::start(
        activate(&["--inetd", "-a", "-l", &addr], &["serve", "--inetd"]),
        0,
    );
    let mut got = Vec::new();
    tcp(&addr).read_to_end(&mut got)?;
    assert_eq!(got, "你好".as_bytes());
    drop(tool);

    // --inetd takes no -l, and stdin must be a connection.
    let out = run(
        {
            let mut cmd = command(Path::new(socketkit_path()));
            cmd.args(["serve", "--inetd", "-l", ":0"]);
            cmd
        },
        Vec::new(),
        IO_TIMEOUT,
    );
    assert_eq!(out.code(), 2, "{}", out.stderr);
    let out = run(
        {
            let mut cmd = command(Path::new(socketkit_path()));
            cmd.args(["serve", "echo", "--inetd"]);
            cmd
        },
        Vec::new(),
        IO_TIMEOUT,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: cannot accept on stdin: "),
        "{}",
        out.stderr
    );
    Ok(())
}

/// What an `exec` program reports of itself: its environment and open descriptors.
const REPORT: &str = "env; for f in /proc/$$/fd/*; do echo \"fd $f -> $(readlink $f)\"; done";

fn assert_nothing_inherited(report: &str) {
    assert!(report.contains("SOCKETKIT_PEER_ADDR"), "{report}");
    for leak in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "SOCKETKIT_HANDOVER",
    ] {
        assert!(!report.contains(leak), "{leak} leaked:\n{report}");
    }
    // Descriptors 0 and 1 are the connection's socket itself; no other socket may be open.
    let sockets: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("fd ") && line.contains("socket:["))
        .collect();
    assert_eq!(
        sockets.len(),
        2,
        "a socket leaked, or stdio is no socket:\n{report}"
    );
    for line in &sockets {
        assert!(
            line.contains("/fd/0 ->") || line.contains("/fd/1 ->"),
            "a socket leaked:\n{report}"
        );
    }
}

#[test]
fn exec_children_inherit_no_listen_variables_and_no_listening_socket() -> TestResult {
    if !available(ACTIVATE) {
        return Ok(());
    }
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("exec.sock");
    let pid_file = dir.path().join("exec.pid");
    let mut server = Running::start(
        activate(
            &["-l", &sock.display().to_string()],
            &[
                "serve",
                "exec",
                "--pid-file",
                &pid_file.display().to_string(),
                // Handed over on restart too: no more inherited by programs than the rest.
                "--metrics",
                "127.0.0.1:0",
                "--",
                "sh",
                "-c",
                REPORT,
            ],
        ),
        0,
    );
    assert_nothing_inherited(&exec_output(&sock));
    server.wait_for_listening(1);
    // After a restart the new server's programs inherit nothing either.
    let first = server.pid();
    send_signal(first, libc::SIGUSR2);
    let mut adopted = Descendants::default();
    let second = wait_for_new_pid(&pid_file, first, Duration::from_secs(15));
    adopted.add(second);
    assert_eq!(
        server.wait(IO_TIMEOUT).code(),
        Some(0),
        "{}",
        server.stderr()
    );
    assert_nothing_inherited(&exec_output(&sock));
    send_signal(second, libc::SIGTERM);
    assert_eq!(adopted.reap(second, IO_TIMEOUT), 0);
    Ok(())
}

/// A Python parent that passes a listening socket as fd 3 with `LISTEN_PID` set to
/// another process, then becomes `socketkit ARGS` (exec: the same pid).
fn wrong_pid_parent(args: &[&str]) -> Command {
    let script = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
os.dup2(s.fileno(), 3)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="web", LISTEN_PID=str(os.getpid() + 1))
sys.stderr.write("inherited tcp:127.0.0.1:%d\n" % s.getsockname()[1])
sys.stderr.flush()
os.execve(sys.argv[1], sys.argv[1:], env)
"#;
    let mut cmd = command(Path::new("/usr/bin/env"));
    cmd.args(["python3", "-c", script, socketkit_path()])
        .args(args);
    cmd
}

#[test]
fn a_listen_pid_of_another_process_passes_no_socket() -> TestResult {
    if !available("python3") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let own = dir.path().join("own.sock");
    let own_arg = format!("unix:{}", own.display());
    let mut server = Running::start(
        wrong_pid_parent(&["serve", "exec", "-l", &own_arg, "--", "sh", "-c", REPORT]),
        1,
    );
    assert_eq!(
        server.endpoints(),
        std::slice::from_ref(&own_arg),
        "only its own listener"
    );
    assert_nothing_inherited(&exec_output(&own));
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0), "not an error");

    for fd in ["fd:3", "fd:web"] {
        let out = run(
            wrong_pid_parent(&["serve", "echo", "-l", fd]),
            Vec::new(),
            IO_TIMEOUT,
        );
        assert_eq!(out.code(), 2, "{}", out.stderr);
        let expected = format!(
            "error: cannot listen on {fd}: no socket was passed to this process (LISTEN_FDS and LISTEN_PID name none for it)"
        );
        assert!(out.stderr.contains(&expected), "{}", out.stderr);
    }
    Ok(())
}

/// The next notification on `socket`, within the deadline.
fn notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_service_manager_hears_ready_stopping_and_the_new_main_pid() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let notify = dir.path().join("notify.sock");
    let pid_file = dir.path().join("n.pid");
    let manager = UnixDatagram::bind(&notify)?;
    manager.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut cmd = command(Path::new(socketkit_path()));
    cmd.env("NOTIFY_SOCKET", &notify)
        .args(["serve", "-l", "127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    let mut server = Running::start(cmd, 1);
    assert_eq!(notification(&manager), "READY=1\n");

    let first = server.pid();
    server.signal(libc::SIGUSR2);
    let mut adopted = Descendants::default();
    let second = wait_for_new_pid(&pid_file, first, Duration::from_secs(15));
    adopted.add(second);
    let mut heard = [notification(&manager), notification(&manager)];
    heard.sort();
    assert_eq!(
        heard,
        [format!("MAINPID={second}\n"), "READY=1\n".to_owned()]
    );
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    assert_eq!(read_pid(&pid_file), Some(second));

    send_signal(second, libc::SIGTERM);
    assert_eq!(notification(&manager), "STOPPING=1\n");
    assert_eq!(adopted.reap(second, IO_TIMEOUT), 0);
    Ok(())
}
