//! The exec service's edges, found by an outside audit of it. When socketkit ends a
//! program's connection itself (an idle timeout, its client's reset), the connection ends
//! for whatever still holds the socket, and the log says how the program ended: a child
//! that had left the program's process group (`setsid`) went on talking to the client
//! seconds after the idle timeout had logged the connection closed, and a killed program
//! left no line. A program the `--user` may not run is refused at start: the server said
//! it was ready, then reset every client.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, reset};
use crate::support::process::{Running, socketkit};

/// `socketkit serve exec -vv -l 127.0.0.1:0 EXTRA...`.
fn exec(extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "-vv", "-l", "127.0.0.1:0"])
        .args(extra);
    Running::start(cmd, 1)
}

#[test]
fn an_idle_timeout_ends_the_connection_for_a_child_that_left_the_group() -> TestResult {
    // The child leaves the group, waits past the timeout, then writes to the client.
    let script = "setsid sh -c 'sleep 2; echo still-talking' & exec sleep 30";
    let server = exec(&["--idle-timeout", "500ms", "--shell", "--", script]);
    let started = Instant::now();
    let mut client = connect(&server.addr());
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut got = Vec::new();
    // End of stream (or a reset) at the timeout, not the child's line two seconds later.
    let _ = client.read_to_end(&mut got);
    let lasted = started.elapsed();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(lasted < Duration::from_millis(1800), "{lasted:?}");
    server.wait_for_stderr(&["the program was killed: signal: 9"], IO_TIMEOUT);
    Ok(())
}

#[test]
fn a_program_killed_for_its_clients_reset_is_logged() -> TestResult {
    let server = exec(&["--", "sh", "-c", "echo started; exec sleep 30"]);
    let mut client = connect(&server.addr());
    let mut line = [0u8; 8];
    client.read_exact(&mut line)?;
    reset(client);
    server.wait_for_stderr(
        &[
            "connection reset by peer",
            "the program was killed: signal: 9 (SIGKILL)",
        ],
        IO_TIMEOUT,
    );
    Ok(())
}

#[test]
fn a_program_the_user_may_not_run_is_refused_at_start() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let program = dir.path().join("owner-only");
    std::fs::copy("/bin/echo", &program)?;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o700))?;
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--user",
        "nobody",
        "--",
    ])
    .arg(&program);
    let out = crate::support::process::run(cmd, Vec::new(), IO_TIMEOUT);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: program '") && out.stderr.contains("may not be run by user"),
        "{}",
        out.stderr
    );
    Ok(())
}

/// A program that answers without reading the request (nc's and ncat's quick HTTP
/// responder, `-c 'printf "HTTP/1.0 200 OK…"'`) exits with the request unread, and the
/// close of a socket with bytes unread is a reset: curl said `Connection reset by peer`
/// (exit 56) under every answer, where ncat's pipes had read the request. What the program
/// left unread is dropped before socketkit's close now, on `serve exec`, when the program
/// succeeded and left no process of its group behind. An outside audit of nc habits.
#[test]
fn a_program_that_answers_without_reading_the_request_closes_without_a_reset() -> TestResult {
    let answer = "sleep 0.2; printf 'HTTP/1.0 200 OK\\r\\n\\r\\nhello\\n'";
    let served = exec(&["--shell", "--", answer]);
    for server in [&served] {
        for _ in 0..3 {
            let mut client = connect(&server.addr());
            std::io::Write::write_all(&mut client, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            client.set_read_timeout(Some(IO_TIMEOUT))?;
            let mut got = Vec::new();
            let end = client.read_to_end(&mut got);
            assert!(
                end.is_ok(),
                "{end:?} after {:?}",
                String::from_utf8_lossy(&got)
            );
            assert!(got.ends_with(b"\r\n\r\nhello\n"), "{got:?}");
        }
    }
    Ok(())
}

/// A program that fails without reading the request leaves it unread, and its client is
/// reset: the request was not taken (as under inetd). Dropping the unread bytes made the
/// close a clean end and an upload's sender exit 0 (the review of the fix above).
#[test]
fn a_program_that_fails_without_reading_the_request_resets_its_client() -> TestResult {
    let server = exec(&["--shell", "--", "sleep 0.2; exit 1"]);
    let mut client = connect(&server.addr());
    std::io::Write::write_all(&mut client, b"a request nobody reads\n")?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    let end = client.read_to_end(&mut Vec::new());
    assert_eq!(
        end.map_err(|err| err.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    Ok(())
}

/// A program that hands the connection to a child of its own and exits (a daemonizing
/// handler): the child still holds the socket, and what the client sends is the child's —
/// none of it dropped at the program's exit (the review of the fix above: 0 of 200,000
/// bytes reached such a child).
#[test]
fn a_child_left_with_the_connection_gets_every_byte() -> TestResult {
    let dir = tempfile::tempdir()?;
    let got = dir.path().join("got");
    let script = format!("exec 3<&0; (cat <&3 > '{}') & exit 0", got.display());
    let server = exec(&["--shell", "--", &script]);
    let mut client = connect(&server.addr());
    let sent = vec![b'x'; 200_000];
    std::io::Write::write_all(&mut client, &sent)?;
    client.shutdown(std::net::Shutdown::Write)?;
    crate::support::wait_until(
        IO_TIMEOUT,
        || format!("{:?}", std::fs::metadata(&got).map(|m| m.len())),
        || std::fs::metadata(&got).is_ok_and(|m| m.len() == 200_000),
    );
    Ok(())
}
