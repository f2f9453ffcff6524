//! `serve -v` names the engine that serves each stream listener and, when it is not io_uring,
//! why not: an operator whose server runs where io_uring is refused (a container's seccomp
//! profile, `kernel.io_uring_disabled`), or with an option only tokio's engine serves, can
//! see it without reading the code.

use std::time::Duration;

use crate::io_engine::io_uring_available;
use crate::support::process::{Running, socketkit};
use crate::support::wait_until;

/// Starts `serve -v` with `args` and `count` listeners, and waits until its log names the
/// engine of each stream listener among them (`stream` of them): the server and, for each
/// endpoint, what its engine line says after the endpoint.
fn engines(args: &[&str], count: usize, stream: usize) -> (Running, Vec<(String, String)>) {
    let mut cmd = socketkit();
    cmd.args(["serve", "-v"]).args(args);
    let server = Running::start(cmd, count);
    let lines = || -> Vec<(String, String)> {
        let log = server.stderr();
        server
            .endpoints()
            .iter()
            .filter_map(|endpoint| {
                let named = format!("{endpoint}: ");
                let line = log.lines().find(|line| line.contains(&named))?;
                let (_, said) = line.split_once(&named)?;
                Some((endpoint.clone(), said.to_owned()))
            })
            .collect()
    };
    wait_until(
        Duration::from_secs(10),
        || format!("not {stream} engine lines in:\n{}", server.stderr()),
        || lines().len() >= stream,
    );
    let found = lines();
    (server, found)
}

#[test]
fn verbose_serve_names_each_stream_listeners_engine_and_why_not_io_uring() {
    let ring = io_uring_available();
    let unavailable = |said: &str| said.starts_with("epoll engine (io_uring ");

    // auto: the ring where the kernel has it; a datagram listener has no engine line.
    let auto = [
        "--io-engine",
        "auto",
        "-l",
        "127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
    ];
    let (server, found) = engines(&auto, 2, 1);
    assert_eq!(found.len(), 1, "{}", server.stderr());
    assert!(found[0].0.starts_with("tcp:"), "{found:?}");
    if ring {
        assert_eq!(found[0].1, "io_uring engine", "{found:?}");
    } else {
        assert!(unavailable(&found[0].1), "{found:?}");
    }

    // What only tokio's engine serves is named, whatever the kernel has.
    let cases: [(&[&str], &str); 3] = [
        (
            &["--io-engine", "epoll", "-l", "127.0.0.1:0"],
            "epoll engine (the epoll engine was asked for)",
        ),
        (
            &["--max-connections", "5", "-l", "127.0.0.1:0"],
            "epoll engine (a limit on connections at once)",
        ),
        (
            &["-l", "tls:127.0.0.1:0", "--tls-self-signed"],
            "epoll engine (a tls: listener)",
        ),
    ];
    for (args, expected) in cases {
        let (server, found) = engines(args, 1, 1);
        assert_eq!(found[0].1, expected, "{args:?}: {}", server.stderr());
    }

    // A handler the ring does not run: asked for, on a kernel that has it.
    if ring {
        let args = [
            "echo",
            "--io-engine",
            "auto",
            "--idle-timeout",
            "5s",
            "-l",
            "127.0.0.1:0",
        ];
        let (server, found) = engines(&args, 1, 1);
        assert!(
            found[0]
                .1
                .starts_with("epoll engine (a handler the ring does not run"),
            "{}",
            server.stderr()
        );
    }
}

/// `socketkit` as a container with Docker's default seccomp profile runs it: `io_uring_setup`
/// fails with `EPERM` (a seccomp filter installed in the child before it runs the binary).
fn socketkit_without_io_uring() -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = socketkit();
    // SAFETY: between fork and exec the closure makes two prctl calls on data it owns (the
    // filter lives on its stack for the duration of the call); it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
                code: code as u16,
                jt,
                jf,
                k,
            };
            let mut filter = [
                // The system call's number, the first word of `seccomp_data`: io_uring_setup
                // fails with EPERM, everything else runs.
                op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
                op(
                    libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                    0,
                    1,
                    libc::SYS_io_uring_setup as u32,
                ),
                op(
                    libc::BPF_RET | libc::BPF_K,
                    0,
                    0,
                    libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                ),
                op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
            ];
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Where io_uring is refused, `auto` serves on epoll and says why; `io_uring` is exit 1.
#[test]
fn where_io_uring_is_refused_auto_serves_on_epoll_and_says_why() {
    let mut cmd = socketkit_without_io_uring();
    cmd.args(["serve", "-v", "--io-engine", "auto", "-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    let line = format!(
        "{}: epoll engine (io_uring is not available: Operation not permitted",
        server.endpoints()[0]
    );
    server.wait_for_stderr(&[&line], Duration::from_secs(10));
    assert_eq!(
        crate::support::net::read_to_end(&mut crate::support::net::connect(&server.addr())),
        "你好".as_bytes()
    );
    // Answered, so the engine is running: no ring worker thread was started.
    let threads = crate::io_engine::threads(server.pid());
    assert!(
        !threads
            .iter()
            .any(|name| name.starts_with("socketkit-uring")),
        "{threads:?}"
    );

    let mut cmd = socketkit_without_io_uring();
    cmd.args(["serve", "--io-engine", "io_uring", "-l", "127.0.0.1:0"]);
    let out = crate::support::process::run(cmd, Vec::new(), crate::support::process::DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
}
