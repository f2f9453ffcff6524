//! When socketkit ends an exec program's connection itself (an idle timeout, its client's
//! reset), the connection ends for whatever still holds the socket, and the log says how
//! the program ended. A child that had left the program's process group (`setsid`) went on
//! talking to the client seconds after the idle timeout had logged the connection closed,
//! and a killed program left no line. Found by an outside audit of the exec service.

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
