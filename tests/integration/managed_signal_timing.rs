//! Signals that come at awkward moments of a server's life (an outside audit sent them at
//! every stage, many times over):
//! - after a SIGUSR2 restart, the old process took its first SIGINT/SIGTERM (a terminal's
//!   Ctrl-C reaches the whole process group) for a second one and reset every connection
//!   it was still draining;
//! - the new process wrote its pid file before it caught signals, so `kill $(cat pidfile)`
//!   at that moment killed it by the default action (the stop was lost, the file named a
//!   dead process);
//! - a stop just before readiness sent `STOPPING=1` before `READY=1` and printed
//!   `listening on` for a server already stopping; a SIGHUP there wrote a line before the
//!   readiness lines; a signal between bind and the handlers left the socket file and the
//!   pid file (or its temporary) behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::support::net::{IO_TIMEOUT, connect};
use crate::support::process::{Running, socketkit, wait_bounded};
use crate::support::restart::{Descendants, become_subreaper, send_signal, wait_for_new_pid};

#[test]
fn after_a_restart_the_old_processs_first_stop_still_lets_its_connections_finish() {
    become_subreaper();
    let dir = tempfile::tempdir().expect("a temp dir");
    let pid_file = dir.path().join("echo.pid");
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        "127.0.0.1:0",
        "--drain-timeout",
        "10s",
    ])
    .arg("--pid-file")
    .arg(&pid_file);
    let mut old = Running::start(cmd, 1);
    let mut conn = connect(&old.addr());
    conn.set_read_timeout(Some(IO_TIMEOUT)).expect("a timeout");
    let mut echo = |line: &[u8]| {
        conn.write_all(line).expect("sent");
        let mut back = vec![0u8; line.len()];
        conn.read_exact(&mut back).map(|()| back)
    };
    assert_eq!(echo(b"one\n").expect("echoed"), b"one\n");
    old.signal(libc::SIGUSR2);
    let mut adopted = Descendants::default();
    let new = wait_for_new_pid(&pid_file, old.pid(), Duration::from_secs(15));
    adopted.add(new);
    old.wait_for_stderr(&["draining connections"], IO_TIMEOUT);
    // The first stop the old process hears: it drains already, and goes on doing so.
    old.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        echo(b"two\n").unwrap_or_else(|err| panic!("{err}:\n{}", old.stderr())),
        b"two\n"
    );
    drop(conn);
    assert_eq!(old.wait(IO_TIMEOUT).code(), Some(0), "{}", old.stderr());
    assert!(!old.stderr().contains("closing every connection now"));
    send_signal(new, libc::SIGTERM);
    assert_eq!(adopted.reap(new, IO_TIMEOUT), 0);
}

#[test]
fn a_stop_sent_to_the_pid_the_new_process_wrote_is_a_graceful_stop() {
    become_subreaper();
    for _ in 0..4 {
        let dir = tempfile::tempdir().expect("a temp dir");
        let pid_file = dir.path().join("echo.pid");
        let mut cmd = socketkit();
        cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--pid-file"])
            .arg(&pid_file);
        let mut old = Running::start(cmd, 1);
        old.signal(libc::SIGUSR2);
        let mut adopted = Descendants::default();
        let new = wait_for_new_pid(&pid_file, old.pid(), Duration::from_secs(15));
        adopted.add(new);
        // `kill $(cat pidfile)` as soon as the file names the new process.
        send_signal(new, libc::SIGTERM);
        // The new process is the old one's child until the old one exits.
        assert_eq!(old.wait(IO_TIMEOUT).code(), Some(0), "{}", old.stderr());
        assert_eq!(adopted.reap(new, IO_TIMEOUT), 0, "{}", old.stderr());
        assert!(!pid_file.exists(), "{}", old.stderr());
    }
}

/// The processes whose command line names `path`.
fn processes_naming(path: &std::path::Path) -> Vec<i32> {
    let wanted = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&wanted))
        })
        .collect()
}

/// What a server started with a notify socket did when `signal` came `delay` after it was
/// started: its stderr lines, the notifications, and its exit (`None`: still running after
/// a SIGTERM that followed, which the caller reports).
fn signalled_early(signal: i32, delay: Duration) -> (Vec<String>, Vec<String>, bool) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let notify = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify).expect("bound");
    manager
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("a timeout");
    let pid_file = dir.path().join("s.pid");
    let socket = dir.path().join("s.sock");
    let mut child = socketkit()
        .env("NOTIFY_SOCKET", &notify)
        .args(["serve", "echo", "-l", "127.0.0.1:0", "-l"])
        .arg(format!("unix:{}", socket.display()))
        .arg("--pid-file")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("started");
    let stderr = child.stderr.take().expect("piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect();
        let _ = lines_tx.send(lines);
    });
    thread::sleep(delay);
    let pid = i32::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on the child we started and have not reaped.
    unsafe { libc::kill(pid, signal) };
    if signal != libc::SIGTERM {
        thread::sleep(Duration::from_millis(300));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let status = wait_bounded(&mut child, IO_TIMEOUT);
    // A SIGUSR2 once ready restarted: the process that serves now (this test's, a
    // subreaper's, once the first has exited) is found by the temp dir in its command line,
    // stopped and reaped.
    let mut adopted = Descendants::default();
    for successor in processes_naming(dir.path()) {
        adopted.add(successor);
        send_signal(successor, libc::SIGTERM);
        assert_eq!(adopted.reap(successor, IO_TIMEOUT), 0);
    }
    let mut heard = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = manager.recv(&mut buf) {
        heard.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
    }
    let lines = lines_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("stderr ends once every process has");
    let clean = !pid_file.exists()
        && !socket.exists()
        && std::fs::read_dir(dir.path())
            .expect("listed")
            .filter_map(Result::ok)
            .all(|entry| !entry.file_name().to_string_lossy().ends_with(".tmp"));
    // Killed by the signal only before anything was bound or written.
    assert!(
        status.code() == Some(0) || lines.is_empty(),
        "{status:?}: {lines:#?}"
    );
    (lines, heard, clean)
}

#[test]
fn signals_just_after_start_keep_the_order_of_readiness_and_leave_no_file() {
    become_subreaper();
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR2] {
        for delay_ms in [0, 1, 2, 3, 5, 8, 13, 20] {
            let (lines, heard, clean) = signalled_early(signal, Duration::from_millis(delay_ms));
            let context = format!("signal {signal} after {delay_ms} ms: {lines:#?} {heard:?}");
            assert!(clean, "files left behind: {context}");
            // Nothing before the readiness lines (a server stopped before it was ready
            // has none, and says it is shutting down).
            if lines.iter().any(|l| l.starts_with("listening on ")) {
                assert!(lines[0].starts_with("listening on "), "{context}");
            }
            // READY=1 never after STOPPING=1.
            let at = |what: &str| heard.iter().position(|h| h == what);
            if let (Some(ready), Some(stopping)) = (at("READY=1"), at("STOPPING=1")) {
                assert!(ready < stopping, "{context}");
            }
            if signal == libc::SIGTERM && at("READY=1").is_none() {
                assert!(
                    !lines.iter().any(|l| l.starts_with("listening on ")),
                    "{context}"
                );
            }
        }
    }
}
