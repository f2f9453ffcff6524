//! SIGUSR2: restart without a refused connection (SPEC §3.4), under a bounded load, through
//! the real binary. The new process gets the listening sockets as inherited descriptors;
//! the old one drains and exits 0; `--pid-file` always names the one that serves.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::balancer::start_with_metrics;
use crate::support::net::{Fnv, connect, http_get, payload, read_once};
use crate::support::process::{Running, command, socketkit};
use crate::support::restart::{
    Descendants, Mode, Target, become_subreaper, load, read_pid, send_signal, wait_for_new_pid,
};
use crate::support::{TestResult, wait_until};

/// How long a restart may take, start to pid file.
const RESTART: Duration = Duration::from_secs(15);
/// The load of the issue: 2,000 connections over 4 seconds.
const LOAD_TOTAL: usize = 2000;
const LOAD_OVER: Duration = Duration::from_secs(4);

/// Two restarts, one right after the other, while the load runs: returns the three pids.
fn restart_twice(pid_file: &Path, first: i32, adopted: &mut Descendants) -> [i32; 3] {
    thread::sleep(Duration::from_millis(800));
    send_signal(first, libc::SIGUSR2);
    let second = wait_for_new_pid(pid_file, first, RESTART);
    adopted.add(second);
    // Right after: the new process takes SIGUSR2 as soon as it has reported ready.
    send_signal(second, libc::SIGUSR2);
    let third = wait_for_new_pid(pid_file, second, RESTART);
    adopted.add(third);
    [first, second, third]
}

/// Ends the last process with SIGTERM and checks that every one of them exited 0.
fn finish(mut old: Running, pids: [i32; 3], adopted: &mut Descendants, pid_file: &Path) {
    let status = old.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "old process: {}", old.stderr());
    assert_eq!(adopted.reap(pids[1], Duration::from_secs(20)), 0);
    assert_eq!(
        read_pid(pid_file),
        Some(pids[2]),
        "the pid file names the server"
    );
    send_signal(pids[2], libc::SIGTERM);
    assert_eq!(adopted.reap(pids[2], Duration::from_secs(20)), 0);
    assert!(!pid_file.exists(), "the last server removes its pid file");
}

#[test]
fn sigusr2_under_load_refuses_no_greeting_and_old_pid_exits_0() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("greeting.pid");
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--workers", "2", "--pid-file"])
        .arg(&pid_file);
    let mut old = Running::start(cmd, 1);
    let addr = old.addr();
    let first = read_pid(&pid_file).expect("the pid file is written once ready");
    assert_eq!(first, old.pid());
    let mut adopted = Descendants::default();
    let traffic = load(
        Target::Tcp(addr.clone()),
        Mode::Greeting("你好".as_bytes()),
        LOAD_TOTAL,
        LOAD_OVER,
        4,
    );
    let pids = restart_twice(&pid_file, first, &mut adopted);
    let tally = traffic.join().map_err(|_| "load thread panicked")?;
    tally.assert_clean(LOAD_TOTAL);
    // Each new process announced the same address, on the shared stderr.
    old.wait_for_listening(2);
    assert!(old.endpoints().iter().all(|e| e == &format!("tcp:{addr}")));
    finish(old, pids, &mut adopted, &pid_file);
    Ok(())
}

#[test]
fn sigusr2_under_load_keeps_every_echo_on_tcp_and_unix() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("echo.pid");
    let sock = dir.path().join("echo.sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "-l"])
        .arg(format!("unix:{}", sock.display()))
        .arg("--pid-file")
        .arg(&pid_file);
    let mut old = Running::start(cmd, 2);
    let first = read_pid(&pid_file).expect("pid file");
    let mut adopted = Descendants::default();
    let tcp = load(
        Target::Tcp(old.addr()),
        Mode::Echo(200),
        LOAD_TOTAL / 2,
        LOAD_OVER,
        2,
    );
    let unix = load(
        Target::Unix(sock.clone()),
        Mode::Echo(200),
        LOAD_TOTAL / 2,
        LOAD_OVER,
        2,
    );
    let pids = restart_twice(&pid_file, first, &mut adopted);
    tcp.join()
        .map_err(|_| "load thread panicked")?
        .assert_clean(LOAD_TOTAL / 2);
    unix.join()
        .map_err(|_| "load thread panicked")?
        .assert_clean(LOAD_TOTAL / 2);
    old.wait_for_listening(4);
    let status = old.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", old.stderr());
    // The old processes left the socket file to the one serving it now.
    assert!(sock.exists(), "the handed-over socket file is kept");
    assert_eq!(adopted.reap(pids[1], Duration::from_secs(20)), 0);
    assert!(sock.exists(), "the handed-over socket file is kept");
    send_signal(pids[2], libc::SIGTERM);
    assert_eq!(adopted.reap(pids[2], Duration::from_secs(20)), 0);
    assert!(!sock.exists(), "the last server removes the socket file");
    assert!(!pid_file.exists());
    Ok(())
}

/// A copy of the binary at a path of the test's own (a hard link where the file system
/// allows), so the test can break it.
pub(crate) fn own_binary(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("socketkit");
    let built = Path::new(env!("CARGO_BIN_EXE_socketkit"));
    if std::fs::hard_link(built, &path).is_err() {
        std::fs::copy(built, &path)?;
    }
    Ok(path)
}

/// Replaces `path` with a new file (rename, as an upgrade does: the running binary keeps
/// its own inode).
pub(crate) fn replace(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&fresh, path)
}

fn still_greets(addr: &str) {
    let mut stream = connect(addr);
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read");
    assert_eq!(got, "你好".as_bytes());
}

#[test]
fn a_broken_new_binary_leaves_the_old_one_serving() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let binary = own_binary(dir.path())?;
    let pid_file = dir.path().join("s.pid");
    let mut cmd = command(&binary);
    cmd.args(["serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .arg("--pid-file")
        .arg(&pid_file);
    // The metrics socket is handed over too: the old process goes on serving it.
    let (mut old, metrics) = start_with_metrics(cmd);
    let addr = old.addr();
    let pid = old.pid();

    // A new binary that fails at start: its own error, and ours naming its exit.
    replace(
        &binary,
        "#!/bin/sh\necho 'error: broken build' >&2\nexit 3\n",
        0o755,
    )?;
    send_signal(pid, libc::SIGUSR2);
    old.wait_for_stderr(&["restart failed, still serving"], RESTART);
    let log = old.stderr();
    assert!(log.contains("error: broken build"), "{log}");
    assert!(log.contains("exit status: 3"), "{log}");
    still_greets(&addr);
    assert_eq!(http_get(&metrics, "/health"), (200, "ok\n".to_owned()));
    assert_eq!(read_pid(&pid_file), Some(pid));

    // No binary at all.
    std::fs::remove_file(&binary)?;
    send_signal(pid, libc::SIGUSR2);
    wait_until(
        RESTART,
        || old.stderr(),
        || old.stderr().matches("restart failed").count() >= 2,
    );
    assert!(
        old.stderr().contains("No such file or directory") || old.stderr().contains("no such file"),
        "{}",
        old.stderr()
    );
    still_greets(&addr);
    assert_eq!(http_get(&metrics, "/health"), (200, "ok\n".to_owned()));
    assert_eq!(read_pid(&pid_file), Some(pid));

    send_signal(pid, libc::SIGTERM);
    assert_eq!(old.wait(Duration::from_secs(10)).code(), Some(0));
    assert!(!pid_file.exists());
    Ok(())
}

/// One long relayed stream: `len` bytes written in pieces over about `over`, echoed back
/// through the relay; returns whether every byte came back in order.
fn long_stream(addr: String, len: usize, over: Duration) -> thread::JoinHandle<Result<(), String>> {
    thread::spawn(move || {
        let data = payload(len);
        let expected = crate::support::net::hash(&data);
        let mut stream = TcpStream::connect(&addr).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
        let pieces = 100;
        let sender = thread::spawn(move || -> Result<(), String> {
            for chunk in data.chunks(len.div_ceil(pieces)) {
                writer.write_all(chunk).map_err(|e| format!("write: {e}"))?;
                thread::sleep(over / u32::try_from(pieces).unwrap_or(1));
            }
            writer.shutdown(Shutdown::Write).map_err(|e| e.to_string())
        });
        let mut digest = Fnv::default();
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read_once(&mut stream, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    digest.update(&buf[..n]);
                    got += n;
                }
                Err(e) => return Err(format!("read after {got} bytes: {e}")),
            }
        }
        sender.join().map_err(|_| "writer panicked")??;
        if got != len || digest.finish() != expected {
            return Err(format!("{got} of {len} bytes came back, or changed"));
        }
        Ok(())
    })
}

#[test]
fn forward_restarts_with_transfers_in_flight_and_loses_no_byte() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("forward.pid");
    let mut target = socketkit();
    target.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let target = Running::start(target, 1);
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-l",
        "127.0.0.1:0",
        "--drain-timeout",
        "60s",
        "--to",
    ])
    .arg(target.addr())
    .arg("--pid-file")
    .arg(&pid_file);
    let old = Running::start(cmd, 1);
    let addr = old.addr();
    let first = read_pid(&pid_file).expect("pid file");
    let mut adopted = Descendants::default();

    // Streams that start before the restarts and go on through both of them.
    let streams: Vec<_> = (0..6)
        .map(|_| long_stream(addr.clone(), 2 << 20, Duration::from_secs(4)))
        .collect();
    let short = load(
        Target::Tcp(addr.clone()),
        Mode::Echo(1024),
        1000,
        LOAD_OVER,
        2,
    );
    let pids = restart_twice(&pid_file, first, &mut adopted);
    // And streams that start on the newest process.
    let late: Vec<_> = (0..2)
        .map(|_| long_stream(addr.clone(), 1 << 20, Duration::from_secs(1)))
        .collect();
    for stream in streams.into_iter().chain(late) {
        stream.join().map_err(|_| "stream thread panicked")??;
    }
    short
        .join()
        .map_err(|_| "load thread panicked")?
        .assert_clean(1000);
    finish(old, pids, &mut adopted, &pid_file);
    Ok(())
}
