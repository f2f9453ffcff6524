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
    as_pid_one_announcing(args, 1)
}

/// As [`as_pid_one`], for a command that prints `announced` `listening on` lines.
fn as_pid_one_announcing(args: &[&str], announced: usize) -> Option<(Running, i32)> {
    if !as_root() {
        return None;
    }
    let mut cmd = command(Path::new("unshare"));
    // With a /proc of its own, as a container has.
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        env!("CARGO_BIN_EXE_socketkit"),
    ])
    .args(args);
    let running = Running::start(cmd, announced);
    let children = format!("/proc/{0}/task/{0}/children", running.pid());
    let child = || -> Option<i32> {
        std::fs::read_to_string(&children)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    wait_until(
        Duration::from_secs(5),
        || "unshare started no child".to_owned(),
        || child().is_some(),
    );
    let child = child().expect("unshare's child");
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

/// `connect -e PROGRAM` as PID 1 exec'd into the program, which as PID 1 ignored SIGTERM
/// (`cat` has no handler): it starts the program and ends on the signal, and the
/// namespace's other processes with it.
#[test]
fn connect_exec_as_pid_one_ends_on_sigterm() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let peer = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let Some((mut connect, pid)) = as_pid_one_announcing(&["connect", &addr, "-e", "/bin/cat"], 0)
    else {
        return;
    };
    let _peer = peer.join().expect("the peer");
    // The program runs (a pipe's worth of time for the exec) before the signal.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = connect.wait(DEADLINE);
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "{}",
        connect.stderr()
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

/// `serve exec`'s programs that leave a background job (one a group of its own: `setsid`):
/// as PID 1 socketkit adopts the job when the program exits, and left it a zombie once it
/// ended too (50 connections, 50 zombies; under a process limit, new programs refused). It
/// reaps them (the `setsid` one too: the review found it left, told from a program by its
/// group).
#[test]
fn exec_as_pid_one_reaps_the_orphans_of_its_programs() {
    let Some((server, pid)) = as_pid_one(&[
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--shell",
        "--",
        "sleep 0.2 & setsid sleep 0.2 & echo hi",
    ]) else {
        return;
    };
    for _ in 0..20 {
        let mut answer = Vec::new();
        connect(&server.addr())
            .read_to_end(&mut answer)
            .expect("read");
        assert_eq!(answer, b"hi\n", "{}", server.stderr());
    }
    wait_until(
        Duration::from_secs(5),
        || format!("zombies left: {:?}", zombies(pid)),
        || zombies(pid).is_empty(),
    );
}

/// The children of `pid` that are zombies.
fn zombies(pid: i32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the tasks");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? == "Z"))
                .unwrap_or(false)
        })
        .collect()
}
