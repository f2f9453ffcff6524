//! socketkit as PID 1 of a PID namespace, a container's entrypoint (`unshare --pid --fork`
//! here): the kernel gives PID 1 no default signal action, and its exit ends every process
//! in the namespace. Found by an outside audit of containers: `listen` and `connect` ignored
//! SIGTERM and Ctrl-C, and a SIGUSR2 restart killed the service it started (the old
//! process exited, ending the namespace) while saying it had restarted.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::access_control::as_root;
use crate::support::net::connect;
use crate::support::process::{DEADLINE, Running, command};
use crate::support::wait_until;

/// `socketkit ARGS` as PID 1 of a new PID namespace, started and listening; and the pid, in
/// this namespace, of socketkit (the child `unshare` made).
fn as_pid_one(args: &[&str]) -> Option<(Running, i32)> {
    if !as_root() {
        return None;
    }
    let mut cmd = command(Path::new("unshare"));
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        env!("CARGO_BIN_EXE_socketkit"),
    ])
    .args(args);
    let running = Running::start(cmd, 1);
    let children = format!("/proc/{0}/task/{0}/children", running.pid());
    let child = std::fs::read_to_string(children)
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .expect("unshare's child");
    Some((running, child))
}

#[test]
fn listen_as_pid_one_ends_on_sigterm() {
    let Some((mut listen, pid)) = as_pid_one(&["listen", "127.0.0.1:0"]) else {
        return;
    };
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = listen.wait(DEADLINE);
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "{}",
        listen.stderr()
    );
}

#[test]
fn a_restart_as_pid_one_is_refused_and_the_server_goes_on() {
    let Some((server, pid)) = as_pid_one(&["serve", "-l", "127.0.0.1:0"]) else {
        return;
    };
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(pid, libc::SIGUSR2) };
    wait_until(
        Duration::from_secs(5),
        || server.stderr(),
        || {
            server
                .stderr()
                .contains("SIGUSR2: cannot restart: this process is PID 1")
        },
    );
    let mut greeting = Vec::new();
    connect(&server.addr())
        .read_to_end(&mut greeting)
        .expect("read");
    assert_eq!(greeting, "你好".as_bytes(), "{}", server.stderr());
}

#[test]
fn exec_as_pid_one_says_that_orphans_are_not_reaped() {
    let Some((server, _)) = as_pid_one(&["serve", "exec", "-l", "127.0.0.1:0", "--", "true"])
    else {
        return;
    };
    wait_until(
        Duration::from_secs(5),
        || server.stderr(),
        || server.stderr().contains("running as PID 1"),
    );
}
