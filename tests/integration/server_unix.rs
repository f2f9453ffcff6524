//! The Unix socket file rules of `serve`: replace a stale socket, refuse anything else and
//! leave it untouched, remove ours on exit, honour `--unix-mode`.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use crate::support::TestResult;
use crate::support::process::{DEADLINE, Running, run, socketkit};

fn serve_unix(path: &std::path::Path, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", &format!("unix:{}", path.display())])
        .args(extra);
    Running::start(cmd, 1)
}

fn serve_fails(path: &std::path::Path) -> (i32, String) {
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", &format!("unix:{}", path.display())]);
    let out = run(cmd, Vec::new(), DEADLINE);
    (out.code(), out.stderr.trim_end().to_owned())
}

#[test]
fn a_stale_socket_is_replaced() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path)?); // bound, then nobody listens
    assert!(std::fs::symlink_metadata(&path)?.file_type().is_socket());
    let _server = serve_unix(&path, &[]);
    std::os::unix::net::UnixStream::connect(&path)?;
    Ok(())
}

#[test]
fn a_regular_file_is_refused_and_left_untouched() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("data.txt");
    std::fs::write(&path, "precious")?;
    let (code, line) = serve_fails(&path);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        format!(
            "error: cannot listen on unix:{}: the path exists and is not a socket; not replacing it",
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path)?, "precious");
    Ok(())
}

#[test]
fn a_live_socket_is_refused_and_keeps_working() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("live.sock");
    let _first = serve_unix(&path, &[]);
    let (code, line) = serve_fails(&path);
    assert_eq!(code, 1);
    assert!(
        line.ends_with("another server is listening on this socket"),
        "{line}"
    );
    std::os::unix::net::UnixStream::connect(&path)?;
    Ok(())
}

/// A live server whose backlog is full (it stopped accepting) is still a live server: the
/// start says so at once, where a blocking connect to ask waited, deaf to signals, until
/// that server took a connection.
#[test]
fn a_live_socket_with_a_full_backlog_is_refused_at_once() -> TestResult {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("full.sock");
    let live = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    live.bind(&SockAddr::unix(&path)?)?;
    live.listen(0)?;
    // Connections it never accepts, until the queue takes no more.
    let mut queued = Vec::new();
    for _ in 0..64 {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        client.set_nonblocking(true)?;
        if client.connect(&SockAddr::unix(&path)?).is_err() {
            break;
        }
        queued.push(client);
    }
    let started = std::time::Instant::now();
    let (code, line) = serve_fails(&path);
    assert!(started.elapsed() < Duration::from_secs(5), "{line}");
    assert_eq!(code, 1);
    assert!(
        line.ends_with("another server is listening on this socket (its backlog is full)"),
        "{line}"
    );
    assert!(path.exists(), "the live server's file is left alone");
    Ok(())
}

#[test]
fn unix_mode_sets_the_permissions_and_exit_removes_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mode.sock");
    let mut server = serve_unix(&path, &["--unix-mode", "600"]);
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    assert!(!path.exists());
    Ok(())
}

#[test]
fn unixgram_stale_socket_is_replaced_too() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("stale.dgram");
    drop(std::os::unix::net::UnixDatagram::bind(&path)?);
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        &format!("unixgram:{}", path.display()),
    ]);
    let _server = Running::start(cmd, 1);
    let client = std::os::unix::net::UnixDatagram::bind(dir.path().join("c.dgram"))?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    client.send_to(b"ok", &path)?;
    let mut buf = [0u8; 8];
    let n = client.recv(&mut buf)?;
    assert_eq!(&buf[..n], b"ok");
    Ok(())
}

/// A `unixgram:` server answers a client bound to a name in the abstract namespace
/// (`@NAME`, as systemd's and many daemons' sockets are): it took the client for an
/// unnamed one, never answered, and named it `(unnamed)`. Found by an outside audit that
/// ran the library beside Python's `socketserver`.
#[test]
fn a_unixgram_server_answers_a_client_bound_to_an_abstract_name() -> TestResult {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("echo.sock");
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        &format!("unixgram:{}", path.display()),
    ])
    .args(["-v", "--log-format", "json"]);
    let mut server = Running::start(cmd, 1);
    let name = format!("socketkit-test-{}-abstract-client", std::process::id());
    let client = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.send_to(b"ping", &path)?;
    let mut buf = [0u8; 16];
    let n = client.recv(&mut buf)?;
    assert_eq!(&buf[..n], b"ping");
    server.signal(libc::SIGTERM);
    let _ = server.wait(DEADLINE);
    let peer = format!("\"peer\":\"@{name}\"");
    assert!(server.stderr().contains(&peer), "{}", server.stderr());
    Ok(())
}
