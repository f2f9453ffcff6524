//! Start-up under tight limits. Readiness is told only once the server can serve: under a descriptor limit that lets it
//! bind but not set up an io_uring worker's ring, `serve` wrote `listening on` (and told a
//! service manager `READY=1`, and wrote its pid file) and then exited 1 with "cannot listen
//! on …", which pointed at the port. Now either it is ready and serves, or it says what
//! failed, with no readiness line before. And a thread the system refuses (`ulimit -u`, a
//! container's pids limit) is an `error:` line, exit 1: tokio's runtime and the bridge's
//! threads panicked with a backtrace, and `serve` then hung. Found by an outside audit that
//! ran the binary under tight limits. And a soft descriptor limit far below the hard one
//! (systemd's 1024 and 524288) is raised to it: a server held about a thousand clients.

use std::io::Read;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::net::connect;
use crate::support::process::{Running, socketkit_after, socketkit_with_fd_limit};

/// What `serve` did within 300 ms under `ulimit -n limit`: its exit code if it ended by
/// itself (`None` if it was still running and was killed), its stderr, and — when it said
/// it was ready — whether a client was served (its `ping` echoed).
fn serve_under(limit: u32, engine: &str, command: &[&str]) -> (Option<i32>, String, Option<bool>) {
    let mut cmd = socketkit_with_fd_limit(limit);
    // The options before a program's `--`, if any.
    let (options, program) = command.split_at(
        command
            .iter()
            .position(|a| *a == "--")
            .unwrap_or(command.len()),
    );
    cmd.args(options)
        .args(["-l", "127.0.0.1:0", "--workers", "2"])
        .args(["--io-engine", engine])
        .args(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("socketkit starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line.clone());
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut code = None;
    let mut served = None;
    while Instant::now() < deadline && served.is_none() {
        if let Ok(Some(status)) = child.try_wait() {
            code = Some(status.code().unwrap_or(-1));
            break;
        }
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(10))
            && let Some(rest) = line.strip_prefix("listening on tcp:")
        {
            let addr = rest.split(' ').next().unwrap_or_default().to_owned();
            served = Some(echoes(&addr));
        }
    }
    if code.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    (code, reader.join().unwrap_or_default(), served)
}

/// Whether the echo server at `addr` echoes a `ping` within two seconds.
fn echoes(addr: &str) -> bool {
    use std::io::Write;
    let mut stream = connect(addr);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut got = [0u8; 4];
    stream.write_all(b"ping").is_ok() && stream.read_exact(&mut got).is_ok() && &got == b"ping"
}

fn readiness_comes_only_when_serving(engine: &str) {
    readiness_comes_only_when_serving_with(engine, &["serve", "echo"]);
    // Handlers that open descriptors of their own: a relay's target socket, a program's
    // start (the second review: ready at limits where every client was reset).
    let echo = Running::start(
        {
            let mut cmd = crate::support::process::socketkit();
            cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
            cmd
        },
        1,
    );
    let to = echo.endpoints()[0].clone();
    readiness_comes_only_when_serving_with(engine, &["forward", "--to", &to]);
    readiness_comes_only_when_serving_with(engine, &["serve", "exec", "--", "cat"]);
}

fn readiness_comes_only_when_serving_with(engine: &str, command: &[&str]) {
    let mut failed = 0;
    for limit in 8..=28 {
        let (code, stderr, served) = serve_under(limit, engine, command);
        match code {
            // Still running at the end of the wait: serving, and it said so first (or, on
            // a slow machine, not started yet). Ready, it serves: at the limit where its
            // set-up took the last descriptor it was ready and accepted no one (an outside
            // audit of the io_uring engine).
            None => {
                assert!(
                    stderr.is_empty() || stderr.starts_with("listening on"),
                    "{command:?} ulimit -n {limit}: running, but\n{stderr}"
                );
                assert_ne!(
                    served,
                    Some(false),
                    "{command:?} ulimit -n {limit}: ready, deaf:\n{stderr}"
                );
            }
            Some(code) => {
                failed += 1;
                assert_eq!(code, 1, "ulimit -n {limit}:\n{stderr}");
                assert!(
                    !stderr.contains("listening on"),
                    "ulimit -n {limit}: ready, then failed:\n{stderr}"
                );
                let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
                assert_eq!(errors.len(), 1, "ulimit -n {limit}:\n{stderr}");
            }
        }
    }
    assert!(failed > 0, "no limit was tight enough to fail");
}

#[test]
fn under_a_descriptor_limit_the_io_uring_engine_is_ready_or_says_why_not() {
    if crate::io_engine::io_uring_available() {
        readiness_comes_only_when_serving("io_uring");
    }
}

#[test]
fn under_a_descriptor_limit_the_epoll_engine_is_ready_or_says_why_not() {
    readiness_comes_only_when_serving("epoll");
}

/// `cmd` run as `nobody` with at most `threads` tasks of that user (`ulimit -u`): what a
/// container's pids limit does. `None` unless the tests run as root (only root can switch
/// users), with the reason printed.
fn under_thread_limit(
    mut cmd: std::process::Command,
    threads: u64,
) -> Option<std::process::Command> {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot run as nobody under a thread limit; skipped");
        return None;
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: threads,
                rlim_max: threads,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &limit) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Some(cmd)
}

#[test]
fn under_a_thread_limit_serve_forward_and_connect_say_so_without_a_panic() {
    let target = crate::support::process::Running::start(
        {
            let mut cmd = crate::support::process::socketkit();
            cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
            cmd
        },
        1,
    );
    let addr = target.addr();
    for (args, threads) in [
        (vec!["serve", "echo", "-l", "127.0.0.1:0"], 2),
        (
            vec![
                "serve",
                "echo",
                "-l",
                "127.0.0.1:0",
                "--io-engine",
                "io_uring",
            ],
            3,
        ),
        (
            vec!["forward", "-l", "127.0.0.1:0", "--to", addr.as_str()],
            2,
        ),
        (vec!["connect", addr.as_str()], 2),
    ] {
        let mut cmd = crate::support::process::socketkit();
        cmd.args(&args);
        let Some(cmd) = under_thread_limit(cmd, threads) else {
            return;
        };
        let output = crate::support::process::run(cmd, b"hi\n".to_vec(), Duration::from_secs(10));
        let line = format!("{args:?} under ulimit -u {threads}: {}", output.stderr);
        assert_eq!(output.code(), 1, "{line}");
        assert!(!output.stderr.contains("panicked"), "{line}");
        assert!(!output.stderr.contains("listening on"), "{line}");
        assert!(output.stderr.starts_with("error: "), "{line}");
        assert_eq!(output.stderr.lines().count(), 1, "{line}");
    }
}

#[test]
fn serve_and_forward_raise_a_low_soft_descriptor_limit_to_the_hard_one() {
    use std::io::Write;
    const CLIENTS: usize = 150;
    if crate::support::descriptor_limits().rlim_max < 1024 {
        eprintln!("skipped: the hard descriptor limit is below 1024 here");
        return;
    }
    // 64 descriptors would hold ~55 echo clients, or ~25 relayed ones.
    let mut serve = socketkit_after("ulimit -S -n 64");
    serve.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let mut forward = socketkit_after("ulimit -S -n 64");
    forward.args(["forward", "-l", "127.0.0.1:0", "--to", &server.addr()]);
    let relay = Running::start(forward, 1);
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", relay.pid())).expect("/proc/PID/limits");
    let soft = |limits: &str| -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    };
    assert_eq!(
        soft(&limits),
        Some(crate::support::descriptor_limits().rlim_max),
        "{limits}"
    );
    // Every client held open at once: each is answered, none waits in a backlog.
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let mut stream = connect(&relay.addr());
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        let line = format!("{client:05}\n");
        stream.write_all(line.as_bytes()).expect("sent");
        let mut answer = [0u8; 6];
        if let Err(err) = stream.read_exact(&mut answer) {
            panic!(
                "client {client} of {CLIENTS}: {err}\nrelay:\n{}\nserver:\n{}",
                relay.stderr(),
                server.stderr()
            );
        }
        assert_eq!(&answer, line.as_bytes());
        clients.push(stream);
    }
}

/// `listen -k -e cat` under tight descriptor limits: ready only with room for a
/// connection (its socket, and the program's descriptors), else one `error:` line, exit 1.
/// It was ready at limits where it then failed at its first client (`i/o error on stdio`,
/// `cannot accept`) or reset every client (`cannot start cat`): the second review.
#[test]
fn listen_is_ready_only_with_room_for_a_connection() {
    let mut failed = 0;
    for limit in 4..=14 {
        let mut cmd = socketkit_with_fd_limit(limit);
        cmd.args(["listen", "-k", "127.0.0.1:0", "-e", "cat"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("socketkit starts");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("piped"));
        let mut first = String::new();
        let _ = std::io::BufRead::read_line(&mut stderr, &mut first);
        if let Some(rest) = first.strip_prefix("listening on tcp:") {
            let addr = rest.split(' ').next().unwrap_or_default().to_owned();
            let served = echoes(&addr);
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                served,
                "ulimit -n {limit}: ready, and the client was not served"
            );
        } else {
            failed += 1;
            let status = child.wait().expect("wait");
            assert_eq!(status.code(), Some(1), "ulimit -n {limit}: {first}");
            assert!(first.starts_with("error: "), "ulimit -n {limit}: {first}");
        }
    }
    assert!(failed > 0, "no limit was tight enough to fail");
}
