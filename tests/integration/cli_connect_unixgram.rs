//! `socketkit connect unixgram:`: the socket file a Unix datagram client binds so that its
//! server can answer, and what becomes of it when the client ends or dies.

use std::io::Write;

use crate::support::TestResult;
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{DEADLINE, Running, socketkit};

/// A Unix datagram server for a `connect unixgram:` client, and a directory of its own for
/// the client's `TMPDIR` (where it binds its socket file).
struct UnixgramSetup {
    dir: tempfile::TempDir,
    temp: tempfile::TempDir,
    server_path: std::path::PathBuf,
    server: std::os::unix::net::UnixDatagram,
}

impl UnixgramSetup {
    fn new() -> Result<UnixgramSetup, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let temp = tempfile::tempdir()?;
        let server_path = dir.path().join("server.sock");
        let server = std::os::unix::net::UnixDatagram::bind(&server_path)?;
        server.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(UnixgramSetup {
            dir,
            temp,
            server_path,
            server,
        })
    }
}

/// A Unix datagram client binds a temporary socket file so that its server can answer; a
/// signal that ends `connect` (as it ends nc) must not leave that file behind.
#[test]
fn a_signal_removes_a_unixgram_clients_temporary_socket_file() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    let UnixgramSetup {
        dir: _dir,
        temp,
        server_path,
        server,
    } = UnixgramSetup::new()?;
    // nc's ending signals, and others whose default action ends a process (the file was
    // left on SIGUSR1 and SIGALRM).
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGALRM] {
        let mut cmd = socketkit();
        cmd.arg("connect")
            .arg(format!("unixgram:{}", server_path.display()))
            .env("TMPDIR", temp.path());
        let mut client = Running::start(cmd, 0);
        // Stdin stays open: only the signal ends the client.
        let mut stdin = client.take_stdin();
        stdin.write_all(b"hello\n")?;
        let mut buf = [0; 64];
        let (n, from) = server.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"hello\n");
        let file = from
            .as_pathname()
            .ok_or("the client has a socket file")?
            .to_path_buf();
        assert!(file.starts_with(temp.path()), "{file:?}");
        assert!(file.exists());
        client.signal(signal);
        let status = client.wait(DEADLINE);
        assert_eq!(status.signal(), Some(signal), "{status}");
        assert!(!file.exists(), "signal {signal}: {file:?} is left");
    }
    Ok(())
}

/// A Unix datagram client killed with SIGKILL cannot remove its socket file, and PIDs come
/// round again: the next client of the same PID finds a file of its PID there (the names
/// of older socketkits were `socketkit-PID-N.sock`; now a random part follows, so that
/// nobody can take them first). It must still connect, not fail with `address already in
/// use`, and remove its own file at the end. The client is started by a shell that waits
/// for the stale file and then execs it, so that the file can be named after the PID it
/// will have.
#[test]
fn a_unixgram_client_replaces_a_dead_clients_socket_file_of_its_pid() -> TestResult {
    use std::os::unix::net::UnixDatagram;
    let UnixgramSetup {
        dir,
        temp,
        server_path,
        server,
    } = UnixgramSetup::new()?;
    let go = dir.path().join("go");
    let mut cmd = crate::support::process::command(std::path::Path::new("/bin/sh"));
    cmd.arg("-c")
        .arg(r#"while [ ! -e "$1" ]; do sleep 0.01; done; exec "$2" connect "$3""#)
        .arg("sh")
        .arg(&go)
        .arg(env!("CARGO_BIN_EXE_socketkit"))
        .arg(format!("unixgram:{}", server_path.display()))
        .env("TMPDIR", temp.path());
    let mut client = Running::start(cmd, 0);
    let stale = temp
        .path()
        .join(format!("socketkit-{}-0.sock", client.pid()));
    drop(UnixDatagram::bind(&stale)?); // its socket gone, the file stays
    std::fs::write(&go, b"")?;
    let mut stdin = client.take_stdin();
    stdin.write_all(b"hello\n")?;
    let mut buf = [0; 64];
    let (n, from) = server
        .recv_from(&mut buf)
        .map_err(|err| format!("no datagram ({err}); stderr: {}", client.stderr()))?;
    assert_eq!(&buf[..n], b"hello\n");
    let own = from.as_pathname().ok_or("an unnamed client")?.to_path_buf();
    let name = own
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let prefix = format!("socketkit-{}-0-", client.pid());
    assert!(
        name.starts_with(&prefix) && name.ends_with(".sock"),
        "{name}"
    );
    server.send_to(b"answer\n", &own)?;
    drop(stdin);
    let status = client.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", client.stderr());
    assert!(!own.exists(), "the client removes its file when it ends");
    Ok(())
}
