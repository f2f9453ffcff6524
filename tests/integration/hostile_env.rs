//! What a parent may leave socketkit with, and what socketkit does about it: signals blocked
//! or ignored, no `PATH`, `NO_COLOR` and `TERM=dumb`, a pid file that cannot be written.
//! Found by an outside audit of socketkit run in hostile process environments.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::connect;
use crate::support::process::{Running, run, socketkit, wait_bounded};
use crate::support::pty::pty;

/// Makes `cmd`'s program start with `signals` blocked, as a parent that blocked them and
/// then exec'd would leave it (the mask survives exec).
fn with_blocked(cmd: &mut Command, signals: &'static [libc::c_int]) {
    // SAFETY: the hook runs in the forked child before exec and calls only sigemptyset,
    // sigaddset and sigprocmask, which are async-signal-safe, on a set on its stack.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s program start with `SIGCHLD` ignored (an ignored signal stays ignored
/// across exec).
fn with_sigchld_ignored(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec and calls only signal(2),
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::signal(libc::SIGCHLD, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The signals blocked in process `pid`'s mask, from `/proc/PID/status` (`SigBlk`).
fn blocked_mask(pid: i32) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("SigBlk:"))
        .ok_or("no SigBlk line")?;
    Ok(u64::from_str_radix(line.trim(), 16)?)
}

/// The bit of `signal` in a `/proc` signal mask.
fn bit(signal: libc::c_int) -> u64 {
    1 << (signal - 1)
}

/// Sends `input` to `addr`, half-closes, and returns everything that comes back.
fn exchange(addr: &str, input: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut stream = connect(addr);
    stream.write_all(input)?;
    stream.shutdown(Shutdown::Write)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

#[test]
fn a_blocked_sigterm_still_stops_serve_gracefully() -> TestResult {
    const HANDLED: &[libc::c_int] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR2];
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    with_blocked(&mut cmd, HANDLED);
    let mut server = Running::start(cmd, 1);
    let blocked = blocked_mask(server.pid())?;
    for &signal in HANDLED {
        assert_eq!(
            blocked & bit(signal),
            0,
            "signal {signal} still blocked: {blocked:x}"
        );
    }
    assert_eq!(
        exchange(&server.addr(), b"still serving")?,
        b"still serving"
    );
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    Ok(())
}

#[test]
fn with_sigchld_ignored_listen_e_waits_for_its_programs_without_a_warning() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "-e", "tr a-z A-Z", "127.0.0.1:0"]);
    with_sigchld_ignored(&mut cmd);
    let server = Running::start(cmd, 1);
    // One program at a time: the second answer comes after the first program was waited for.
    for client in ["one\n", "two\n"] {
        let answer = exchange(&server.addr(), client.as_bytes())?;
        assert_eq!(answer, client.to_uppercase().as_bytes());
    }
    thread::sleep(Duration::from_millis(200));
    let stderr = server.stderr();
    assert!(!stderr.contains("cannot start"), "stderr:\n{stderr}");
    assert!(!stderr.contains("no child processes"), "stderr:\n{stderr}");
    Ok(())
}

#[test]
fn with_sigchld_ignored_serve_exec_logs_its_first_programs_exit() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "-v", "-l", "127.0.0.1:0", "--", "cat"]);
    with_sigchld_ignored(&mut cmd);
    let server = Running::start(cmd, 1);
    assert_eq!(exchange(&server.addr(), b"first")?, b"first");
    server.wait_for_stderr(&["the program exited"], Duration::from_secs(5));
    Ok(())
}

#[test]
fn without_path_serve_exec_finds_its_program_where_execvp_would() -> TestResult {
    let mut cmd = socketkit();
    cmd.env_remove("PATH").args([
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--",
        "tr",
        "a-z",
        "A-Z",
    ]);
    let server = Running::start(cmd, 1);
    assert_eq!(exchange(&server.addr(), b"plain\n")?, b"PLAIN\n");
    Ok(())
}

#[test]
fn without_path_serve_exec_shell_runs_bin_sh() -> TestResult {
    let mut cmd = socketkit();
    cmd.env_remove("PATH").args([
        "serve",
        "exec",
        "--shell",
        "-l",
        "127.0.0.1:0",
        "--",
        "tr a-z A-Z | tr -d X",
    ]);
    let server = Running::start(cmd, 1);
    assert_eq!(exchange(&server.addr(), b"shell x\n")?, b"SHELL \n");
    Ok(())
}

#[test]
fn without_path_listen_c_runs_its_command() -> TestResult {
    let mut cmd = socketkit();
    cmd.env_remove("PATH")
        .args(["listen", "-c", "tr a-z A-Z", "127.0.0.1:0"]);
    let mut server = Running::start(cmd, 1);
    assert_eq!(exchange(&server.addr(), b"nc\n")?, b"NC\n");
    let status = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    Ok(())
}

#[test]
fn a_pid_file_that_cannot_be_written_leaves_no_temporary_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("app.pid");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    // No file may grow past 0 bytes (RLIMIT_FSIZE): writing the pid fails with EFBIG, as on
    // a full disk, once the temporary file is created. SIGXFSZ ignored, so the write fails
    // rather than the process dying by it.
    // SAFETY: the hook runs in the forked child before exec and calls only setrlimit and
    // signal, which are async-signal-safe, on a struct on its stack.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(cmd, Vec::new(), Duration::from_secs(10));
    assert_eq!(out.code(), 1, "stderr:\n{}", out.stderr);
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    let left: Vec<_> = std::fs::read_dir(dir.path())?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// What `serve echo -v` writes to a terminal as its stderr, from start to a SIGTERM's end,
/// with `env` set.
fn log_on_a_terminal(env: &[(&str, &str)]) -> Result<String, Box<dyn std::error::Error>> {
    let (controller, terminal) = pty()?;
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "-l", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(terminal));
    let mut child = cmd.spawn()?;
    // Only the child holds the terminal side now: the reads end when it exits.
    drop(cmd);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        let mut controller = std::fs::File::from(controller);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // A terminal whose other side closed reads EIO: the end.
            while let Ok(n @ 1..) = controller.read(&mut buf) {
                seen.lock().map(|mut s| s.extend_from_slice(&buf[..n])).ok();
            }
        })
    };
    let text = || {
        String::from_utf8_lossy(&seen.lock().map(|s| s.clone()).unwrap_or_default()).into_owned()
    };
    crate::support::wait_until(Duration::from_secs(10), text, || {
        text().contains("listening on")
    });
    // SAFETY: kill(2) with a pid we spawned and have not reaped.
    unsafe { libc::kill(i32::try_from(child.id())?, libc::SIGTERM) };
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let _ = reader.join();
    Ok(text())
}

#[test]
fn no_color_and_a_dumb_terminal_turn_the_logs_colour_off() -> TestResult {
    let coloured = log_on_a_terminal(&[("TERM", "xterm")])?;
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal at all:\n{coloured}"
    );
    for env in [
        [("TERM", "xterm"), ("NO_COLOR", "1")],
        [("TERM", "dumb"), ("NO_COLOR", "")],
    ] {
        let plain = log_on_a_terminal(&env)?;
        assert!(plain.contains("DEBUG"), "{env:?}:\n{plain}");
        assert!(!plain.contains('\x1b'), "{env:?}: coloured:\n{plain:?}");
    }
    Ok(())
}

/// Runs `socketkit ARGS` with `stdin` as its standard input (bounded), after `env`.
fn run_with_stdin(
    args: &[&str],
    stdin: Stdio,
    env: &[(&str, &str)],
) -> Result<(Option<i32>, String, Duration), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let mut child = socketkit()
        .args(args)
        .envs(env.iter().copied())
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = crate::support::process::drain(child.stderr.take().ok_or("stderr")?);
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    Ok((status.code(), stderr, started.elapsed()))
}

/// Standard input that fails at its first read: a directory (`EISDIR`).
fn failing_stdin() -> Result<Stdio, Box<dyn std::error::Error>> {
    Ok(Stdio::from(std::fs::File::open(env!(
        "CARGO_TARGET_TMPDIR"
    ))?))
}

#[test]
fn a_failing_stdin_is_an_error_and_resets_the_tcp_connection() -> TestResult {
    let (addr, server) = crate::support::net::one_shot(|mut stream| {
        let mut got = Vec::new();
        let read = stream.read_to_end(&mut got);
        assert_eq!(
            read.map_err(|err| err.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "the peer read a clean end after {got:?}"
        );
    });
    let (code, stderr, _) = run_with_stdin(&["connect", &addr], failing_stdin()?, &[])?;
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("error: i/o error on stdin: is a directory"),
        "{stderr}"
    );
    server.join().map_err(|_| "the server thread failed")?;
    Ok(())
}

#[test]
fn a_failing_stdin_ends_a_udp_connect_at_once_with_an_error() -> TestResult {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let target = format!("udp:{}", peer.local_addr()?);
    let args = ["connect", &target, "--wait", "5s"];
    let (code, stderr, took) = run_with_stdin(&args, failing_stdin()?, &[])?;
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("error: i/o error on stdin: is a directory"),
        "{stderr}"
    );
    assert!(
        took < Duration::from_secs(4),
        "waited {took:?} for replies first"
    );
    Ok(())
}

#[test]
fn a_reply_socket_that_cannot_be_bound_is_named_not_the_server() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("dg.sock");
    let _server = std::os::unix::net::UnixDatagram::bind(&path)?;
    let target = format!("unixgram:{}", path.display());
    let env = [("TMPDIR", "/nonexistent-socketkit-tmp")];
    let (code, stderr, _) = run_with_stdin(&["connect", &target], Stdio::null(), &env)?;
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("error: cannot bind the reply socket /nonexistent-socketkit-tmp/")
            && stderr.contains("in $TMPDIR: no such file or directory"),
        "{stderr}"
    );
    Ok(())
}

/// Reads `stderr` line by line until a `listening on` line, and returns the address in it
/// and the reader (kept, unread, by a test that wants the pipe to fill up).
fn read_until_listening(
    stderr: std::process::ChildStderr,
) -> Result<(String, std::io::BufReader<std::process::ChildStderr>), Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        if let Some(rest) = line.split("listening on tcp:").nth(1) {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            return Ok((addr, reader));
        }
        line.clear();
    }
    Err("no `listening on` line".into())
}

#[test]
fn a_log_reader_that_stops_reading_holds_up_neither_the_service_nor_the_stop() -> TestResult {
    const CLIENTS: usize = 5000;
    let mut child = socketkit()
        .args(["serve", "echo", "-v", "-l", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("stderr is piped")?;
    let result = (|| -> TestResult {
        let (addr, reader) = read_until_listening(stderr)?;
        // A line of ~140 bytes a connection at `-v`: the pipe (64 KiB) fills after a few
        // hundred, and nobody reads it now; 700 KB is more than the pipe and the queue.
        for client in 0..CLIENTS {
            let mut stream = connect(&addr);
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"hi")?;
            let mut answer = [0u8; 2];
            stream
                .read_exact(&mut answer)
                .map_err(|err| format!("client {client} of {CLIENTS}: {err}"))?;
        }
        // The reader is back: the count of what was dropped comes once the queue is written
        // out (events meanwhile may be dropped too), then, stopped, the stop's lines.
        let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
        let collected = thread::spawn(move || {
            use std::io::BufRead;
            let mut rest = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if line.contains("log line(s) dropped: standard error was not read fast enough") {
                    let _ = dropped_tx.send(());
                }
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        let counted = dropped_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        // SAFETY: kill(2) on the child we spawned and have not reaped.
        unsafe { libc::kill(i32::try_from(child.id())?, libc::SIGTERM) };
        let status = wait_bounded(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(0));
        let rest = collected.join().map_err(|_| "the reader panicked")?;
        assert!(counted, "no count of dropped lines:\n{rest}");
        assert!(rest.contains("shutting down"), "{rest}");
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
