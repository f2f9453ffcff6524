//! What socketkit does where the kernel lacks a feature it uses (docs/platform-notes.md),
//! tested on this machine by taking the feature away from the one process under test with a
//! seccomp filter (`support::seccomp`), as a container's profile or an older kernel does:
//! io_uring, `SO_REUSEPORT`, `splice(2)`, growing a pipe. Each is detected and falls back,
//! and where the fallback costs speed, the log says so.

use std::io::Write;
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

/// No IPv6: `socket(AF_INET6, …)` fails with `EAFNOSUPPORT`, as with `ipv6.disable=1`.
const NO_IPV6: Refusal = Refusal {
    syscall: libc::SYS_socket,
    args: &[(0, libc::AF_INET6 as u32)],
    errno: libc::EAFNOSUPPORT,
};

/// No BPF program on a reuseport group (before Linux 4.5, or a filter that refuses it).
const NO_REUSEPORT_STEERING: Refusal = Refusal {
    syscall: libc::SYS_setsockopt,
    args: &[
        (1, libc::SOL_SOCKET as u32),
        (2, libc::SO_ATTACH_REUSEPORT_CBPF as u32),
    ],
    errno: libc::ENOPROTOOPT,
};

/// No `TCP_DEFER_ACCEPT` (a kernel or a sandbox without it).
const NO_DEFER_ACCEPT: Refusal = Refusal {
    syscall: libc::SYS_setsockopt,
    args: &[
        (1, libc::IPPROTO_TCP as u32),
        (2, libc::TCP_DEFER_ACCEPT as u32),
    ],
    errno: libc::ENOPROTOOPT,
};

/// No idle clock from the kernel: `getsockopt(IPPROTO_TCP, TCP_INFO)` fails.
const NO_TCP_INFO: Refusal = Refusal {
    syscall: libc::SYS_getsockopt,
    args: &[(1, libc::IPPROTO_TCP as u32), (2, libc::TCP_INFO as u32)],
    errno: libc::ENOPROTOOPT,
};

/// Where io_uring is refused, `auto` serves on epoll and says why; `io_uring` is exit 1.
#[test]
fn where_io_uring_is_refused_auto_serves_on_epoll_and_says_why() {
    let mut cmd = socketkit_refusing(&[NO_IO_URING]);
    cmd.args(["serve", "-v", "--io-engine", "auto", "-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    let line = format!(
        "{}: epoll engine (io_uring is not available: operation not permitted",
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
        out.stderr.starts_with(
            "error: cannot listen on tcp:127.0.0.1:0: the io_uring engine was asked for, and ",
        ) && out.stderr.contains("operation not permitted"),
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
    let back = crate::io_engine::echo_round_trip(&relay.addr(), data.clone());
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

/// Without IPv6, `-l :PORT` (the tutorial's server listens so) binds IPv4's any address
/// and serves; `connect localhost:PORT` reaches it whatever `localhost` resolves to first.
#[test]
fn without_ipv6_the_any_address_is_ipv4s() {
    let mut cmd = socketkit_refusing(&[NO_IPV6]);
    cmd.args(["serve", "-l", ":0"]);
    let server = Running::start(cmd, 1);
    let endpoint = &server.endpoints()[0];
    assert!(endpoint.starts_with("tcp:0.0.0.0:"), "{endpoint}");
    let port = server.port();
    assert_eq!(
        read_to_end(&mut connect(&format!("127.0.0.1:{port}"))),
        "你好".as_bytes()
    );
    let mut cmd = socketkit_refusing(&[NO_IPV6]);
    cmd.args(["connect", &format!("localhost:{port}")]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "你好".as_bytes());
}

/// Without a BPF program on the reuseport group, the workers of a greeting keep the
/// kernel's hash (docs/benchmarks.md: it only costs wake-ups) and serve every client, on
/// either engine.
#[test]
fn without_reuseport_steering_the_workers_keep_the_hash() {
    let mut engines = vec!["epoll"];
    if crate::io_engine::io_uring_available() {
        engines.push("io_uring");
    }
    for engine in engines {
        let mut cmd = socketkit_refusing(&[NO_REUSEPORT_STEERING]);
        cmd.args(["serve", "-vv", "--io-engine", engine, "--workers", "2"])
            .args(["-l", "127.0.0.1:0"]);
        let server = Running::start(cmd, 1);
        let addr = server.addr();
        let mut clients: Vec<_> = (0..200).map(|_| connect(&addr)).collect();
        for client in &mut clients {
            assert_eq!(read_to_end(client), "你好".as_bytes(), "{engine}");
        }
        server.wait_for_stderr(&["reuseport steering not attached"], DEADLINE);
        // Said after the readiness lines, as SPEC §2.2 wants every line (it came first).
        let log = server.stderr();
        assert!(log.starts_with("listening on "), "{engine}: {log}");
    }
}

/// Without `TCP_DEFER_ACCEPT`, a PROXY protocol listener accepts at once and waits for the
/// header in the connection's task: the header is still read and the reply still sent.
#[test]
fn without_defer_accept_proxy_headers_are_still_read() {
    let mut cmd = socketkit_refusing(&[NO_DEFER_ACCEPT]);
    cmd.args([
        "serve",
        "-v",
        "--proxy-protocol",
        "--trusted-proxy",
        "127.0.0.1",
    ])
    .args(["-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    let mut client = connect(&server.addr());
    // Sent late, so that the header is not there at accept.
    std::thread::sleep(Duration::from_millis(100));
    client
        .write_all(b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n")
        .expect("header");
    assert_eq!(read_to_end(&mut client), "你好".as_bytes());
    server.wait_for_stderr(
        &["TCP_DEFER_ACCEPT is not available", "peer=192.0.2.9:5000"],
        DEADLINE,
    );
}

/// Without `TCP_INFO` (the kernel's clock of the last data each way), an exec program under
/// `--idle-timeout` gets pipes, as on a Unix socket, and socketkit times the bytes itself:
/// the idle connection still ends on time.
#[test]
fn without_tcp_info_an_idle_exec_program_gets_pipes_and_still_times_out() {
    let script = format!("{}; exec sleep 60", crate::service_exec::STDIN_KIND);
    let mut cmd = socketkit_refusing(&[NO_TCP_INFO]);
    cmd.args([
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--idle-timeout",
        "300ms",
    ])
    .args(["--shell", "--", &script]);
    let server = Running::start(cmd, 1);
    let started = std::time::Instant::now();
    assert_eq!(read_to_end(&mut connect(&server.addr())), b"pipe\n");
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(300) && lasted < Duration::from_secs(5),
        "{lasted:?}"
    );
}
