//! What socketkit does where the kernel lacks a feature it uses (docs/platform-notes.md),
//! tested on this machine by taking the feature away from the one process under test with a
//! seccomp filter (`support::seccomp`), as a container's profile or an older kernel does:
//! io_uring, `SO_REUSEPORT`, `splice(2)`, growing a pipe. Each is detected and falls back,
//! and where the fallback costs speed, the log says so.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;
use std::time::Duration;

use crate::support::net::{connect, http_get, payload, read_to_end};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::seccomp::{Refusal, refuse};

/// `socketkit` with `refusals` in force.
fn socketkit_refusing(refusals: &[Refusal]) -> Command {
    let mut cmd = socketkit();
    refuse(&mut cmd, refusals);
    cmd
}

/// io_uring_setup refused with EPERM, as Docker's (25+) and containerd's default profiles do.
const NO_IO_URING: Refusal = Refusal {
    syscall: libc::SYS_io_uring_setup,
    args: &[],
    errno: libc::EPERM,
};

/// `setsockopt(SOL_SOCKET, SO_REUSEPORT)` refused, as on a kernel without it.
const NO_REUSEPORT: Refusal = Refusal {
    syscall: libc::SYS_setsockopt,
    args: &[(1, libc::SOL_SOCKET as u32), (2, libc::SO_REUSEPORT as u32)],
    errno: libc::ENOPROTOOPT,
};

/// `splice(2)` refused, as where sockets or pipes do not support it.
const NO_SPLICE: Refusal = Refusal {
    syscall: libc::SYS_splice,
    args: &[],
    errno: libc::EINVAL,
};

/// Pipes kept at their size (`fcntl(F_SETPIPE_SZ)` refused, as past `pipe-user-pages-soft`).
const NO_PIPE_GROWTH: Refusal = Refusal {
    syscall: libc::SYS_fcntl,
    args: &[(1, libc::F_SETPIPE_SZ as u32)],
    errno: libc::EPERM,
};

/// Where io_uring is refused, `auto` serves on epoll and says why; `io_uring` is exit 1.
#[test]
fn where_io_uring_is_refused_auto_serves_on_epoll_and_says_why() {
    let mut cmd = socketkit_refusing(&[NO_IO_URING]);
    cmd.args(["serve", "-v", "--io-engine", "auto", "-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    let line = format!(
        "{}: epoll engine (io_uring is not available: Operation not permitted",
        server.endpoints()[0]
    );
    server.wait_for_stderr(&[&line], Duration::from_secs(10));
    assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());
    // Answered, so the engine is running: no ring worker thread was started.
    let threads = crate::io_engine::threads(server.pid());
    assert!(
        !threads
            .iter()
            .any(|name| name.starts_with("socketkit-uring")),
        "{threads:?}"
    );

    let mut cmd = socketkit_refusing(&[NO_IO_URING]);
    cmd.args(["serve", "--io-engine", "io_uring", "-l", "127.0.0.1:0"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
}

/// Without `SO_REUSEPORT`, `--workers 3` shares one listener among its accept loops, and
/// the metrics endpoint (which asks for the option, for restarts) binds all the same.
#[test]
fn without_reuseport_the_workers_share_one_listener() {
    let mut cmd = socketkit_refusing(&[NO_REUSEPORT]);
    cmd.args(["serve", "--workers", "3", "-l", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0"]);
    let (server, metrics) = crate::balancer::start_with_metrics(cmd);
    let (addr, port) = (server.addr(), server.port());
    let mut clients: Vec<_> = (0..100).map(|_| connect(&addr)).collect();
    for client in &mut clients {
        assert_eq!(read_to_end(client), "你好".as_bytes());
    }
    assert_eq!(crate::cli_serve::listeners_on(port), 1);
    assert_eq!(http_get(&metrics, "/health").0, 200);
}

/// Without `splice(2)`, `forward` and `connect` say so once and copy instead: every byte
/// still arrives, both ways.
#[test]
fn without_splice_forward_and_connect_copy_every_byte() {
    let echo = Running::start(
        {
            let mut cmd = socketkit();
            cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
            cmd
        },
        1,
    );
    let mut cmd = socketkit_refusing(&[NO_SPLICE]);
    cmd.args(["forward", "-v", "-l", "127.0.0.1:0", "--to", &echo.addr()]);
    let relay = Running::start(cmd, 1);
    let data = payload(1 << 20);
    let mut client = connect(&relay.addr());
    let writer = {
        let (mut client, data) = (client.try_clone().expect("clone"), data.clone());
        std::thread::spawn(move || {
            client.write_all(&data).expect("send");
            client.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let mut back = Vec::new();
    client.read_to_end(&mut back).expect("the echo");
    writer.join().expect("writer");
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
    relay.wait_for_stderr(&["splice(2) is not available here"], DEADLINE);

    // The same for `connect`, whose stdin and stdout pipes cannot be grown either.
    let mut cmd = socketkit_refusing(&[NO_SPLICE, NO_PIPE_GROWTH]);
    cmd.args(["connect", &echo.addr()]);
    let out = run(cmd, data.clone(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout == data,
        "{} of {} bytes",
        out.stdout.len(),
        data.len()
    );
}
