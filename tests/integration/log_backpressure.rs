//! Where the log and the output go when that place misbehaves, as under a journal that
//! stops reading, a full disk or a parent's non-blocking pipe: serving goes on, no line is
//! cut into another, what is lost is counted, and an output that fails is an error. Found
//! by an outside audit of logs (2026-12-07).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::net::free_port;
use crate::support::process::{DEADLINE, Running, socketkit, wait_bounded};

/// A child killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    /// SIGTERM, then how it exited (within the tests' deadline).
    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the child this test started and has not reaped.
        unsafe { libc::kill(i32::try_from(self.0.id()).expect("a pid"), libc::SIGTERM) };
        wait_bounded(&mut self.0, DEADLINE)
    }
}

/// Waits until the server on `port` takes a connection (which it counts as one).
fn wait_for_server(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < DEADLINE, "the server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A pipe whose write end is non-blocking (as a parent may leave a file description) and
/// full: its read end, its write end, and its size.
fn full_non_blocking_pipe() -> (std::fs::File, std::fs::File, usize) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just made and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor owned here.
    let size = unsafe {
        libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK);
        libc::fcntl(fds[1], libc::F_GETPIPE_SZ)
    };
    let size = usize::try_from(size).expect("a size");
    let mut write = std::fs::File::from(write);
    write.write_all(&vec![b'.'; size]).expect("fill the pipe");
    (std::fs::File::from(read), write, size)
}

/// One connection to `port` that sends a byte, half-closes and reads to the end: how long
/// it took.
fn exchange(port: u16) -> Duration {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("a timeout");
    // A greeting server may have answered and closed already: only the timing matters.
    let _ = stream.write_all(b"x");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    started.elapsed()
}

/// `listen -k -v` whose stderr nobody reads past its first line: each connection waited
/// 200 ms for its `connection from` line to be written first, which never came.
#[test]
fn a_stuck_stderr_does_not_hold_listens_connections() {
    let port = free_port();
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "-v", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Reaped(cmd.spawn().expect("start listen"));
    let mut stderr = BufReader::new(child.0.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("the readiness line");
    assert!(first.starts_with("listening on "), "{first}");
    // About 200 bytes of log each: the pipe's 64 KiB fill well before the last ones.
    let took: Vec<Duration> = (0..500).map(|_| exchange(port)).collect();
    let mut last: Vec<Duration> = took[450..].to_vec();
    last.sort();
    assert!(
        last[25] < Duration::from_millis(100),
        "median of the last 50: {:?}",
        last[25]
    );
    drop(stderr);
}

/// `bench` and `--help` whose stdout fails (a full disk): exit 1 with the reason, where the
/// report was lost with exit 0.
#[test]
fn an_output_that_fails_is_an_error() {
    let mut server = socketkit();
    server.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(server, 1);
    let full = || {
        std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
    };
    for args in [
        &["bench", &server.addr(), "--count", "20", "-c", "2"][..],
        &[
            "bench",
            &server.addr(),
            "--count",
            "20",
            "-c",
            "2",
            "--json",
        ],
        &["--help"],
        &["serve", "--help"],
    ] {
        let mut cmd = socketkit();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(full())
            .stderr(Stdio::piped());
        let mut child = Reaped(cmd.spawn().expect("start"));
        let status = wait_bounded(&mut child.0, DEADLINE);
        let mut stderr = String::new();
        let _ = child
            .0
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no space left on device"),
            "{args:?}: {stderr}"
        );
    }
}

/// A stderr that is a non-blocking pipe (a parent left its file description so), full for
/// a moment: the lines wait for room, the readiness line first, instead of being dropped
/// with `EAGAIN`.
#[test]
fn a_non_blocking_stderr_loses_no_line() {
    let (mut read, write, size) = full_non_blocking_pipe();
    let port = free_port();
    let mut cmd = socketkit();
    cmd.args(["serve", "-v", "-l", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write));
    let mut child = Reaped(cmd.spawn().expect("start serve"));
    wait_for_server(port);
    for _ in 0..100 {
        exchange(port);
    }
    // The reader catches up; the rest is read after the server has stopped.
    let mut filler = vec![0; size];
    read.read_exact(&mut filler).expect("the filler");
    assert_eq!(child.terminate().code(), Some(0));
    drop(cmd);
    let mut log = String::new();
    read.read_to_string(&mut log).expect("the log");
    assert!(log.starts_with("listening on "), "{log}");
    let served = log.matches("answered at once").count();
    assert!(
        served == 101 || log.contains("dropped"),
        "{served} lines:\n{log}"
    );
}

/// The log on a disk that fills, then has room again: no line runs on from a cut one, and
/// the count of lines dropped is the count of lines lost (the count's own unwritten line
/// counted as one, and each failed write's mending line end as a line). Needs root (a
/// small tmpfs).
#[test]
fn a_full_disk_counts_what_it_lost_and_glues_no_lines() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    /// Unmounts on the way out, panicking or not.
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let log = dir.path().join("log");
    let port = free_port();
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "-l", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("the log"));
    let mut child = Reaped(cmd.spawn().expect("start serve"));
    wait_for_server(port);
    // The lines said so far (readiness, the engine, the probe's `closed`) out before the
    // disk fills: what the count counts is then the connections' lines alone.
    let read_log =
        || String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    crate::support::wait_until(DEADLINE, read_log, || read_log().contains(" closed "));
    let filler = dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![0; 64 * 1024]); // as much as fits
    for _ in 0..200 {
        exchange(port);
    }
    std::fs::remove_file(&filler).expect("room again");
    exchange(port);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(child.terminate().code(), Some(0));
    let text = String::from_utf8_lossy(&std::fs::read(&log).expect("the log")).into_owned();
    let whole = text
        .lines()
        .filter(|line| line.ends_with(|c: char| c.is_ascii_digit()) && line.contains(" closed "))
        .count();
    let said: usize = text
        .lines()
        .filter_map(|line| {
            line.split(" log line(s) dropped")
                .next()?
                .trim()
                .rsplit(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    // 200 and 1 exchanges, and the connection that found the server up.
    let lost = 202 - whole;
    assert!(lost > 0, "the disk never filled:\n{text}");
    assert!(
        said >= lost && said <= lost + 1,
        "{said} said dropped, {lost} lost:\n{text}"
    );
    assert!(
        !text.lines().any(|line| line.matches("DEBUG ").count() > 1),
        "{text}"
    );
}

/// `bench`'s report to a stdout that is a non-blocking pipe, full for a moment: it waits
/// for room (it was lost, exit 1 with `EAGAIN`), as `connect`'s data and the log do.
#[test]
fn a_report_waits_for_a_non_blocking_stdout() {
    let mut server = socketkit();
    server.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(server, 1);
    let (mut read, write, size) = full_non_blocking_pipe();
    let mut cmd = socketkit();
    cmd.args([
        "bench",
        &server.addr(),
        "--count",
        "20",
        "-c",
        "2",
        "--json",
    ])
    .stdin(Stdio::null())
    .stderr(Stdio::null())
    .stdout(Stdio::from(write));
    let mut child = Reaped(cmd.spawn().expect("start bench"));
    drop(cmd);
    std::thread::sleep(Duration::from_millis(500));
    let mut filler = vec![0; size];
    read.read_exact(&mut filler).expect("the filler");
    assert_eq!(wait_bounded(&mut child.0, DEADLINE).code(), Some(0));
    let mut report = String::new();
    read.read_to_string(&mut report).expect("the report");
    assert!(report.trim_start().starts_with('{'), "{report}");
}
