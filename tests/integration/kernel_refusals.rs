//! Sandboxes that refuse a system call socketkit depends on, beyond the features with a
//! documented fallback (`kernel_fallbacks`): each refusal, made by a seccomp filter on the
//! one process under test, ends in a fallback that serves or in one `error:` line — never
//! a panic, a spin, or a server that listens and serves nobody. Found by an outside audit
//! of restricted kernels (2026-12-07).

use std::process::Command;
use std::time::Duration;

use crate::server_faults::cpu_ticks;
use crate::support::net::{connect, read_to_end};
use crate::support::process::{DEADLINE, Running, run, socketkit, with_rlimit};
use crate::support::seccomp::{Refusal, refuse};

fn refusing(syscall: libc::c_long, errno: i32) -> Command {
    let mut cmd = socketkit();
    refuse(
        &mut cmd,
        &[Refusal {
            syscall,
            args: &[],
            errno,
        }],
    );
    cmd
}

/// `accept4` refused by a filter fails every try, the connection left in the queue: with
/// `EPERM`, or with an error that stands for one connection (`ECONNABORTED`), the accept
/// loop backs off (one warning) instead of spinning, and SIGTERM still ends the server
/// (the spin kept the shutdown from ever running).
#[test]
fn an_accept_refused_for_good_backs_off_and_the_server_still_stops() {
    for errno in [libc::EPERM, libc::ECONNABORTED] {
        let mut cmd = refusing(libc::SYS_accept4, errno);
        cmd.args(["serve", "echo", "--io-engine", "epoll", "-l", "127.0.0.1:0"]);
        let mut server = Running::start(cmd, 1);
        let _client = connect(&server.addr());
        server.wait_for_stderr(&["; backing off until it succeeds"], DEADLINE);
        let before = cpu_ticks(server.pid());
        std::thread::sleep(Duration::from_secs(1));
        let spent = cpu_ticks(server.pid()) - before;
        // 100 ticks a second: a spinning loop takes most of them.
        assert!(
            spent < 20,
            "errno {errno}: {spent} ticks of CPU in a second"
        );
        server.signal(libc::SIGTERM);
        let status = server.wait(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "errno {errno}: {}", server.stderr());
    }
}

/// `socketpair` refused: tokio's first runtime with I/O makes one for the process's signals
/// and panics when it cannot; the commands that run one say so in one line instead.
#[test]
fn a_refused_socketpair_is_an_error_line_not_a_panic() {
    for args in [
        &["serve", "-l", "127.0.0.1:0"][..],
        &["forward", "-l", "127.0.0.1:0", "--to", "127.0.0.1:9"],
        &["bench", "127.0.0.1:9", "-d", "200ms"],
    ] {
        let mut cmd = refusing(libc::SYS_socketpair, libc::EPERM);
        cmd.args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 1, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains("operation not permitted"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // Room for a pair, not for the runtime's descriptors besides: the same panic.
    for limit in [6, 7] {
        let mut cmd = socketkit();
        cmd.args(["serve", "-l", "127.0.0.1:0"]);
        with_rlimit(&mut cmd, libc::RLIMIT_NOFILE, limit);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 1, "limit {limit}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: ") && !out.stderr.contains("panicked"),
            "limit {limit}: {}",
            out.stderr
        );
    }
}

/// A filter that lets rings be made but refuses `io_uring_enter`: the probe enters its ring,
/// so `auto` serves on epoll (its workers stopped at once behind open listeners), and
/// `io_uring` is exit 1.
#[test]
fn a_ring_that_cannot_be_entered_is_no_ring() {
    let mut cmd = refusing(libc::SYS_io_uring_enter, libc::EPERM);
    cmd.args(["serve", "-v", "--io-engine", "auto", "-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    server.wait_for_stderr(&["io_uring cannot be entered"], DEADLINE);
    assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());

    let mut cmd = refusing(libc::SYS_io_uring_enter, libc::EPERM);
    cmd.args(["serve", "--io-engine", "io_uring", "-l", "127.0.0.1:0"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be entered"), "{}", out.stderr);
}

/// `splice` refused with `EPERM` (what seccomp profiles answer), `EACCES` or `ENOMEM`:
/// `connect` with its output on a pipe copies instead, as it does for `EINVAL`.
#[test]
fn connect_copies_where_splice_is_refused_with_eperm() {
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    for errno in [libc::EPERM, libc::EACCES, libc::ENOMEM] {
        let mut cmd = refusing(libc::SYS_splice, errno);
        cmd.args(["connect", &server.addr()]);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 0, "errno {errno}: {}", out.stderr);
        assert_eq!(out.stdout, "你好".as_bytes(), "errno {errno}");
    }
}

/// `auto` takes whichever engine works: where the workers' rings do not fit the locked
/// memory an unprivileged user may have (a probe's ring does), it serves on epoll. Needs
/// root, to run the server as `nobody` with a small `RLIMIT_MEMLOCK`.
#[test]
fn auto_serves_on_epoll_when_the_workers_rings_cannot_be_made() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root, to start the server as nobody");
        return;
    }
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "--workers", "2", "-l", "127.0.0.1:0"])
        .args(["--io-engine", "auto"]);
    {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    with_rlimit(&mut cmd, libc::RLIMIT_MEMLOCK, 256 * 1024);
    let server = Running::start(cmd, 1);
    server.wait_for_stderr(&["epoll engine after all"], DEADLINE);
    let mut client = connect(&server.addr());
    std::io::Write::write_all(&mut client, b"ping").expect("send");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert_eq!(read_to_end(&mut client), b"ping");
    assert_eq!(
        server.stderr().matches("epoll engine after all").count(),
        1,
        "one line for the endpoint: {}",
        server.stderr()
    );
}

/// A sandbox without `/proc` (a mount namespace that does not mount it): the program's file
/// is not in `/proc/self/exe`, so a SIGUSR2 restart starts it by the path it was started by
/// (it said "nothing to restart" and gave no reason). Needs root, for the namespace.
#[test]
fn a_restart_without_proc_starts_the_program_by_its_path() {
    use crate::support::restart::{Descendants, become_subreaper, restarted, stopped};
    if unsafe { libc::geteuid() } != 0 || !crate::support::tools::available("unshare") {
        eprintln!("skipped: needs root and unshare(1), for a mount namespace without /proc");
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("s.pid");
    let program = socketkit().get_program().to_owned();
    let mut cmd = Command::new("unshare");
    // Private first, so that the unmount stays in the namespace.
    cmd.args(["-m", "sh", "-c"])
        .arg(
            "mount --make-rprivate / && umount -l /proc && \
             exec \"$0\" serve -l 127.0.0.1:0 --pid-file \"$1\"",
        )
        .arg(program)
        .arg(&pid_file);
    let mut old = Running::start(cmd, 1);
    let addr = old.addr();
    let pid = old.pid();
    let mut adopted = Descendants::default();
    let new = restarted(
        &mut old,
        pid,
        &pid_file,
        &mut adopted,
        Duration::from_secs(20),
    );
    assert!(
        old.stderr().contains("restarted: process"),
        "{}",
        old.stderr()
    );
    assert_eq!(read_to_end(&mut connect(&addr)), "你好".as_bytes());
    stopped(new, &mut adopted);
}

/// `bench` under a small open-file limit runs a run that fits it (`-c 2` under `ulimit -n
/// 64` was refused as bad usage, "allows at most 0").
#[test]
fn bench_runs_a_small_run_under_a_small_descriptor_limit() {
    let mut server = socketkit();
    server.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let server = Running::start(server, 1);
    let mut cmd = socketkit();
    cmd.args([
        "bench",
        &server.addr(),
        "--mode",
        "echo",
        "-c",
        "2",
        "-d",
        "300ms",
    ]);
    with_rlimit(&mut cmd, libc::RLIMIT_NOFILE, 64);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// In a network namespace whose loopback is down (a `--network none` sandbox), the splice
/// probe cannot make its TCP pair: it tries on a Unix pair instead, and a Unix relay still
/// splices (it said "splice(2) is not available here (network is unreachable)" and
/// copied for the life of the process). Needs root, for the namespace.
#[test]
fn the_splice_probe_needs_no_network() {
    use std::io::{Read, Write};
    if unsafe { libc::geteuid() } != 0 || !crate::support::tools::available("unshare") {
        eprintln!("skipped: needs root and unshare(1), for a network namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("t.sock");
    let front = dir.path().join("f.sock");
    let mut echo = socketkit();
    echo.args(["serve", "echo", "-l"])
        .arg(format!("unix:{}", target.display()));
    let _echo = Running::start(echo, 1);
    let mut cmd = Command::new("unshare");
    cmd.arg("-n")
        .arg(socketkit().get_program())
        .args(["forward", "-v", "-l"])
        .arg(format!("unix:{}", front.display()))
        .arg("--to")
        .arg(format!("unix:{}", target.display()));
    let relay = Running::start(cmd, 1);
    let data = crate::support::net::payload(1 << 20);
    let mut client = std::os::unix::net::UnixStream::connect(&front).expect("connect");
    client.set_read_timeout(Some(DEADLINE)).expect("a timeout");
    let writer = {
        let mut client = client.try_clone().expect("a second handle");
        let data = data.clone();
        std::thread::spawn(move || {
            client.write_all(&data).expect("send");
            client
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
        })
    };
    let mut back = Vec::new();
    client.read_to_end(&mut back).expect("the echo");
    writer.join().expect("writer");
    assert!(back == data, "the echo came back intact");
    relay.wait_for_stderr(&["closed"], DEADLINE);
    assert!(
        !relay.stderr().contains("not available here"),
        "{}",
        relay.stderr()
    );
}

/// Out of local ports (two in the range, both taken, in a network namespace of the run's
/// own): the connect's error line says so, where `cannot assign requested address` (TCP)
/// or `resource temporarily unavailable` (UDP) alone did not name the cause.
#[test]
fn a_connect_out_of_local_ports_says_so() {
    let tools = ["unshare", "ip", "ss"];
    if !crate::access_control::as_root()
        || !tools.iter().all(|t| crate::support::tools::available(t))
    {
        return;
    }
    let script = r#"
ip link set lo up && sysctl -q -w net.ipv4.ip_local_port_range="40000 40001" || exit 77
"$0" listen -k 127.0.0.1 5000 </dev/null >/dev/null 2>&1 &
server=$!
# Waited for without connecting: a probe's closed connection would hold a port.
i=0
until ss -Hltn 'sport = :5000' | grep -q .; do
  i=$((i+1)); [ $i -gt 200 ] && { kill $server; exit 78; }; sleep 0.05
done
exec 3<>/dev/tcp/127.0.0.1/5000 4<>/dev/tcp/127.0.0.1/5000
"$0" connect 127.0.0.1 5000 </dev/null; rc=$?
kill $server; exit $rc
"#;
    let mut cmd = crate::support::process::command(std::path::Path::new("unshare"));
    cmd.args(["--net", "bash", "-c", script])
        .arg(env!("CARGO_BIN_EXE_socketkit"));
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("(no local port is free: see net.ipv4.ip_local_port_range)"),
        "{}",
        out.stderr
    );
}
