//! SIGUSR2's edges (SPEC §3.4), through the real binary: a new process that fails after it
//! has taken the sockets leaves the old one's Unix socket file alone; a `tls:` listener is
//! handed over as one (and `tls:fd:N` serves a passed socket with TLS); a service
//! manager's socket file survives a restart and the stop after it; a stop that comes while
//! the new process starts stops the service, not only the old process.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::certs::Pki;
use crate::support::net::{IO_TIMEOUT, connect};
use crate::support::process::{Running, command, run, socketkit};
use crate::support::restart::{
    Descendants, become_subreaper, read_pid, send_signal, wait_for_new_pid,
};
use crate::support::tools::available;
use crate::support::{TestResult, wait_until};

/// How long a restart may take, start to pid file.
const RESTART: Duration = Duration::from_secs(15);

/// A copy of the binary at a path of the test's own (a hard link where the file system
/// allows), so that the test can replace what a restart runs.
fn own_binary(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let built = Path::new(env!("CARGO_BIN_EXE_socketkit"));
    if std::fs::hard_link(built, &path).is_err() {
        std::fs::copy(built, &path)?;
    }
    Ok(path)
}

/// The binary a restart runs, in a temp dir of the test's own (`socketkit`), and a copy of
/// it beside (`socketkit.real`) for [`wrap`] to run.
fn replaceable_binary(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    Ok((
        own_binary(dir, "socketkit")?,
        own_binary(dir, "socketkit.real")?,
    ))
}

/// Replaces `path` (by rename, as an upgrade does) with a script that runs `before`, then
/// `real` with the arguments it is given and `extra` after them.
fn wrap(path: &Path, before: &str, real: &Path, extra: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let fresh = path.with_extension("new");
    let script = format!(
        "#!/bin/sh\n{before}\nexec '{}' \"$@\" {extra}\n",
        real.display()
    );
    std::fs::write(&fresh, script)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&fresh, path)
}

/// `serve echo` started from a replaceable binary in a directory, with its pid file there.
struct Replaceable {
    old: Running,
    /// What a restart runs (see [`wrap`]).
    binary: PathBuf,
    /// The copy of the real binary beside it.
    real: PathBuf,
    pid_file: PathBuf,
}

/// [`Replaceable`] in `dir`.
fn replaceable_echo(dir: &Path) -> std::io::Result<Replaceable> {
    let (binary, real) = replaceable_binary(dir)?;
    let pid_file = dir.join("s.pid");
    let mut cmd = command(&binary);
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    Ok(Replaceable {
        old: Running::start(cmd, 1),
        binary,
        real,
        pid_file,
    })
}

fn greets_on_unix(path: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(path) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut got = Vec::new();
    stream.read_to_end(&mut got).is_ok() && got == "你好".as_bytes()
}

#[test]
fn a_new_process_that_fails_after_taking_the_sockets_leaves_the_socket_file() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let (binary, real) = replaceable_binary(dir.path())?;
    let socket = dir.path().join("g.sock");
    let mut cmd = command(&binary);
    cmd.args(["serve", "-l"])
        .arg(format!("unix:{}", socket.display()))
        .args(["-l", "127.0.0.1:0"]);
    let mut old = Running::start(cmd, 2);
    assert!(greets_on_unix(&socket));

    // It takes the handed-over sockets, then refuses its arguments (exit 2): a TLS option
    // without a `tls:` listener.
    wrap(&binary, "", &real, "--tls-self-signed")?;
    old.signal(libc::SIGUSR2);
    old.wait_for_stderr(&["restart failed, still serving"], RESTART);
    assert!(
        old.stderr().contains("error: --tls-self-signed"),
        "{}",
        old.stderr()
    );
    assert!(
        socket.exists(),
        "the failed process removed the file the old one serves"
    );
    assert!(greets_on_unix(&socket));

    // The old process still owns the file: it removes it when it stops.
    old.signal(libc::SIGTERM);
    assert_eq!(old.wait(IO_TIMEOUT).code(), Some(0), "{}", old.stderr());
    assert!(
        !socket.exists(),
        "the last process serving the file removes it"
    );
    Ok(())
}

/// `socketkit connect ADDR --tls-ca CA` with nothing to send: what the server said.
fn tls_greeting(addr: &str, pki: &Pki) -> String {
    let mut cmd = socketkit();
    cmd.args(["connect", addr, "--tls-ca", pki.ca()]);
    let out = run(cmd, Vec::new(), IO_TIMEOUT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--tls-cert` and `--tls-key` of the test's server certificate.
fn tls_files(pki: &Pki) -> [&str; 4] {
    [
        "--tls-cert",
        pki.server.cert(),
        "--tls-key",
        pki.server.key(),
    ]
}

/// SIGUSR2 to `pid` (the process `old` runs, or started): waits for the new process to
/// name itself in `pid_file` and for `old` to exit 0; returns the new pid, adopted.
fn restart(old: &mut Running, pid: i32, pid_file: &Path, adopted: &mut Descendants) -> i32 {
    crate::support::restart::restarted(old, pid, pid_file, adopted, RESTART)
}

#[test]
fn a_tls_listener_is_handed_over_as_one() -> TestResult {
    become_subreaper();
    let pki = Pki::new();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("s.pid");
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "tls:127.0.0.1:0", "-l", "127.0.0.1:0"])
        .args(tls_files(&pki))
        .arg("--pid-file")
        .arg(&pid_file);
    let mut old = Running::start(cmd, 2);
    let endpoints = old.endpoints().to_vec();
    assert!(endpoints[0].starts_with("tls:127.0.0.1:"), "{endpoints:?}");
    let tls = endpoints[0].clone();
    assert_eq!(tls_greeting(&tls, &pki), "你好");

    let mut adopted = Descendants::default();
    let pid = old.pid();
    let new = restart(&mut old, pid, &pid_file, &mut adopted);
    let log = old.stderr();
    assert!(!log.contains("restart failed"), "{log}");
    // The new process's readiness lines, on the same stderr: the same two listeners.
    assert_eq!(
        log.matches(&format!("listening on {tls} (greeting)"))
            .count(),
        2,
        "{log}"
    );
    assert_eq!(tls_greeting(&tls, &pki), "你好");
    let mut plain = connect(&endpoints[1].replace("tcp:", ""));
    let mut got = Vec::new();
    plain.read_to_end(&mut got)?;
    assert_eq!(got, "你好".as_bytes());

    crate::support::restart::stopped(new, &mut adopted);
    Ok(())
}

#[test]
fn a_stop_during_the_restart_stops_the_new_process_too() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let Replaceable {
        mut old,
        binary,
        real,
        pid_file,
    } = replaceable_echo(dir.path())?;
    let addr = old.addr();
    let mut adopted = Descendants::default();

    // A new process slow to start, so that the stop surely comes while it does; the pid
    // file names the old process until it is ready, so that is where a script's
    // `kill -TERM "$(cat pidfile)"` (or `systemctl reload; systemctl stop`) goes.
    wrap(&binary, "sleep 0.5", &real, "")?;
    old.signal(libc::SIGUSR2);
    old.wait_for_stderr(&["restarting: starting"], RESTART);
    assert_eq!(read_pid(&pid_file), Some(old.pid()));
    old.signal(libc::SIGTERM);
    assert_eq!(
        old.wait(Duration::from_secs(20)).code(),
        Some(0),
        "{}",
        old.stderr()
    );
    let log = old.stderr();
    let at = log
        .find("restarted: process ")
        .expect("the restart went on");
    let new: i32 = log[at + "restarted: process ".len()..]
        .split(' ')
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("the new pid");
    adopted.add(new);
    assert!(
        log.contains(&format!("telling process {new} to stop")),
        "{log}"
    );
    assert_eq!(adopted.reap(new, Duration::from_secs(20)), 0);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the service still answers on {addr}: {log}"
    );
    assert!(
        read_pid(&pid_file).is_none(),
        "the pid file outlived the service"
    );
    Ok(())
}

/// A second stop while the new process has not reported ready closes everything at once:
/// it waited for the 30 s the new process has to report (one that hung took them all).
/// Found by an outside audit.
#[test]
fn a_second_stop_during_a_hung_restart_closes_everything_at_once() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let (binary, real) = replaceable_binary(dir.path())?;
    let mut cmd = command(&binary);
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let mut old = Running::start(cmd, 1);
    // A new process that never reports ready (nor exits).
    wrap(&binary, "exec sleep 60", &real, "")?;
    old.signal(libc::SIGUSR2);
    old.wait_for_stderr(&["restarting: starting"], RESTART);
    let asked = std::time::Instant::now();
    old.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    old.signal(libc::SIGTERM);
    assert_eq!(
        old.wait(Duration::from_secs(20)).code(),
        Some(0),
        "{}",
        old.stderr()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}: {}",
        asked.elapsed(),
        old.stderr()
    );
    assert!(
        old.stderr().contains("second stop during the restart"),
        "{}",
        old.stderr()
    );
    Ok(())
}

const ACTIVATE: &str = "systemd-socket-activate";

#[test]
fn a_service_managers_socket_file_survives_a_restart_and_tls_fd_serves_tls() -> TestResult {
    if !available(ACTIVATE) {
        return Ok(());
    }
    become_subreaper();
    let pki = Pki::new();
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("echo.sock");
    let pid_file = dir.path().join("s.pid");
    let port = crate::support::net::free_port();
    let tcp = format!("127.0.0.1:{port}");
    let mut cmd = command(Path::new("/usr/bin/env"));
    cmd.arg(ACTIVATE)
        .args(["-l", &socket.display().to_string(), "-l", &tcp])
        .args(["--fdname=local:web", env!("CARGO_BIN_EXE_socketkit")])
        .args(["serve", "greeting", "-l", "fd:local", "-l", "tls:fd:web"])
        .args(tls_files(&pki))
        .arg("--pid-file")
        .arg(&pid_file);
    // The tool starts socketkit at the first connection.
    let mut activator = Running::start(cmd, 0);
    wait_until(
        IO_TIMEOUT,
        || activator.stderr(),
        || greets_on_unix(&socket),
    );
    activator.wait_for_listening(2);
    assert_eq!(
        activator.endpoints()[1],
        format!("tls:{tcp}"),
        "{}",
        activator.stderr()
    );
    assert_eq!(tls_greeting(&format!("tls:{tcp}"), &pki), "你好");

    let mut adopted = Descendants::default();
    let first = read_pid(&pid_file).expect("pid file");
    let new = restart(&mut activator, first, &pid_file, &mut adopted);
    assert!(greets_on_unix(&socket));
    assert_eq!(tls_greeting(&format!("tls:{tcp}"), &pki), "你好");
    crate::support::restart::stopped(new, &mut adopted);
    assert!(
        socket.exists(),
        "the service manager's socket file was removed"
    );
    Ok(())
}

/// Restarts one after another: once each old process has exited, the pid file names the new
/// one, and on the shared stderr each new process's `listening on` line comes before the
/// old one's `restarted: process N serves now`. The old process used to remove the file
/// the new one had just written (its look at the file and its removal straddled the new
/// write: one restart in 25 or so), and its `restarted` line came first in about half.
#[test]
fn the_pid_file_outlives_every_restart_and_the_new_lines_come_first() -> TestResult {
    const ROUNDS: usize = 12;
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("echo.pid");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    let mut first = Running::start(cmd, 1);
    let mut adopted = Descendants::default();
    let mut pid = first.pid();
    for round in 0..ROUNDS {
        send_signal(pid, libc::SIGUSR2);
        let next = wait_for_new_pid(&pid_file, pid, RESTART);
        adopted.add(next);
        let code = match round {
            0 => first.wait(RESTART).code().unwrap_or(-1),
            _ => adopted.reap(pid, RESTART),
        };
        assert_eq!(code, 0, "round {round}: {}", first.stderr());
        assert_eq!(
            read_pid(&pid_file),
            Some(next),
            "round {round}: the pid file once {pid} has exited"
        );
        pid = next;
    }
    send_signal(pid, libc::SIGTERM);
    assert_eq!(adopted.reap(pid, RESTART), 0);
    wait_until(
        RESTART,
        || first.stderr(),
        || first.stderr().matches("restarted: process").count() == ROUNDS,
    );
    let stderr = first.stderr();
    let mut listening = 0;
    let mut restarted = 0;
    for line in stderr.lines() {
        if line.starts_with("listening on ") {
            listening += 1;
        } else if line.contains("restarted: process") {
            restarted += 1;
            // The first process's line and one of each new process so far.
            assert!(listening > restarted, "restart {restarted}:\n{stderr}");
        }
    }
    Ok(())
}

/// A second SIGUSR2 while a restart is starting (a second `systemctl reload`, a binary
/// installed meanwhile) is not lost: once the new process serves, it restarts in turn; and
/// when the restart fails, the old process tries again with what is installed by then. It
/// used to say `SIGUSR2: nothing to restart` once the first was over, and the second binary
/// never ran.
#[test]
fn a_sigusr2_during_a_restart_is_carried_out_after_it() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let Replaceable {
        mut old,
        binary,
        real,
        pid_file,
    } = replaceable_echo(dir.path())?;
    let first = old.pid();
    let mut adopted = Descendants::default();
    let said = |text: &str, times: usize| {
        wait_until(
            RESTART,
            || old.stderr(),
            || old.stderr().matches(text).count() >= times,
        );
    };

    // A restart that succeeds, slowly, and a second SIGUSR2 to the old pid while it
    // starts: the new process (which runs `real`) takes it once it serves.
    wrap(&binary, "sleep 0.5", &real, "")?;
    send_signal(first, libc::SIGUSR2);
    said("restarting: starting", 1);
    send_signal(first, libc::SIGUSR2);
    let second = wait_for_new_pid(&pid_file, first, RESTART);
    adopted.add(second);
    said("another follows once this one is over", 1);
    said(&format!("passed on to process {second}"), 1);
    let third = wait_for_new_pid(&pid_file, second, RESTART);
    adopted.add(third);
    assert_eq!(adopted.reap(second, RESTART), 0);

    // A restart that fails, slowly, and a good binary installed while it starts: the
    // second SIGUSR2 runs that one.
    let good = own_binary(dir.path(), "socketkit.good")?;
    wrap(&real, "sleep 0.5; exit 3", &good, "")?;
    send_signal(third, libc::SIGUSR2);
    said("restarting: starting", 3);
    wrap(&real, "", &good, "")?;
    send_signal(third, libc::SIGUSR2);
    let fourth = wait_for_new_pid(&pid_file, third, RESTART);
    adopted.add(fourth);
    said("another follows once this one is over", 2);
    assert!(old.stderr().contains("restart failed"), "{}", old.stderr());
    assert_eq!(adopted.reap(third, RESTART), 0);
    send_signal(fourth, libc::SIGTERM);
    assert_eq!(adopted.reap(fourth, RESTART), 0);
    assert_eq!(old.wait(RESTART).code(), Some(0), "{}", old.stderr());
    Ok(())
}
