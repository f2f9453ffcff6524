//! Restarts under load: the processes a SIGUSR2 leaves behind (grandchildren of the test,
//! adopted and reaped through `PR_SET_CHILD_SUBREAPER`), the pid file, and a bounded client
//! loop that counts every refused, reset or short answer.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::net::IO_TIMEOUT;

/// Makes this test process the reaper of its orphaned descendants, so the process a restart
/// starts (whose parent exits) is ours to wait for. Per process; calling it again is harmless.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer flag and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Processes started by restarts: killed (SIGKILL) and reaped on drop, unless reaped first.
#[derive(Default)]
pub struct Descendants(Vec<i32>);

impl Descendants {
    /// Takes charge of `pid`.
    pub fn add(&mut self, pid: i32) {
        self.0.push(pid);
    }

    /// Waits for `pid` (a process this test adopted) to exit within `limit`: its exit code.
    pub fn reap(&mut self, pid: i32, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only the status integer we pass.
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if rc == pid {
                self.0.retain(|&p| p != pid);
                assert!(
                    libc::WIFEXITED(status),
                    "process {pid} was killed: {status:#x}"
                );
                return libc::WEXITSTATUS(status);
            }
            assert!(
                rc == 0,
                "waitpid({pid}): {}",
                std::io::Error::last_os_error()
            );
            assert!(
                Instant::now() < deadline,
                "process {pid} still runs after {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Descendants {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let mut status = 0;
            // SAFETY: kill and waitpid on a pid this test adopted and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
        }
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a pid of a process this test started or adopted.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// The pid in `path` (`--pid-file`), if it holds one.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until `path` names a process other than `old`; returns the new pid.
pub fn wait_for_new_pid(path: &Path, old: i32, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(pid) = read_pid(path).filter(|&pid| pid != old) {
            return pid;
        }
        assert!(Instant::now() < deadline, "the pid file still names {old}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A TCP address (`127.0.0.1:41234`).
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// What each connection of the load does.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Reads to the end; the answer must be exactly these bytes.
    Greeting(&'static [u8]),
    /// Sends this many bytes, half-closes, reads to the end: the answer must be them.
    Echo(usize),
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Answered in full.
    pub ok: usize,
    /// Connections refused.
    pub refused: usize,
    /// Connections reset.
    pub reset: usize,
    /// Answers cut short or wrong.
    pub short: usize,
    /// Anything else, described.
    pub other: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.reset += other.reset;
        self.short += other.short;
        self.other.extend(other.other);
    }

    /// Fails the test unless every connection was answered in full.
    pub fn assert_clean(&self, total: usize) {
        assert!(
            self.ok == total && self.refused == 0 && self.reset == 0 && self.short == 0,
            "{} of {total} answered; refused {}, reset {}, short {}, other {:?}",
            self.ok,
            self.refused,
            self.reset,
            self.short,
            self.other.iter().take(5).collect::<Vec<_>>()
        );
    }
}

/// Runs `total` connections spread evenly over `over` on `threads` threads, and tallies them.
pub fn load(
    target: Target,
    mode: Mode,
    total: usize,
    over: Duration,
    threads: usize,
) -> thread::JoinHandle<Tally> {
    thread::spawn(move || {
        let start = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let target = target.clone();
                thread::spawn(move || {
                    let mut tally = Tally::default();
                    let mine: Vec<usize> = (t..total).step_by(threads).collect();
                    for i in mine {
                        let at = start + over.mul_f64(i as f64 / total as f64);
                        thread::sleep(at.saturating_duration_since(Instant::now()));
                        one(&target, mode, i, &mut tally);
                    }
                    tally
                })
            })
            .collect();
        let mut tally = Tally::default();
        for worker in workers {
            tally.add(worker.join().expect("a load thread panicked"));
        }
        tally
    })
}

/// A connected stream of either kind, with the test's timeouts.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn open(target: &Target) -> std::io::Result<Conn> {
        let conn = match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Conn::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Conn::Unix(s)
            }
        };
        Ok(conn)
    }

    fn exchange(&mut self, send: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut got = Vec::new();
        match self {
            Conn::Tcp(s) => {
                if !send.is_empty() {
                    s.write_all(send)?;
                    s.shutdown(Shutdown::Write)?;
                }
                s.read_to_end(&mut got)?;
            }
            Conn::Unix(s) => {
                if !send.is_empty() {
                    s.write_all(send)?;
                    s.shutdown(Shutdown::Write)?;
                }
                s.read_to_end(&mut got)?;
            }
        }
        Ok(got)
    }
}

fn one(target: &Target, mode: Mode, i: usize, tally: &mut Tally) {
    let mut conn = match Conn::open(target) {
        Ok(conn) => conn,
        Err(err) if err.kind() == ErrorKind::ConnectionRefused => return tally.refused += 1,
        Err(err) => return tally.other.push(format!("connect: {err}")),
    };
    let (send, expect) = match mode {
        Mode::Greeting(answer) => (Vec::new(), answer.to_vec()),
        Mode::Echo(len) => {
            let data: Vec<u8> = (0..len).map(|k| (i + k) as u8).collect();
            (data.clone(), data)
        }
    };
    match conn.exchange(&send) {
        Ok(got) if got == expect => tally.ok += 1,
        Ok(_) => tally.short += 1,
        Err(err) if err.kind() == ErrorKind::ConnectionReset => tally.reset += 1,
        Err(err) => tally.other.push(format!("exchange: {err}")),
    }
}

/// Once `old` (pid `pid`) has been asked to restart: waits for the new process to name
/// itself in `pid_file`, adopts it, and waits for `old` to exit 0; the new pid.
pub fn taken_over(
    old: &mut crate::support::process::Running,
    pid: i32,
    pid_file: &Path,
    adopted: &mut Descendants,
    limit: Duration,
) -> i32 {
    let new = wait_for_new_pid(pid_file, pid, limit);
    adopted.add(new);
    let status = old.wait(limit);
    assert_eq!(status.code(), Some(0), "{}", old.stderr());
    new
}

/// SIGUSR2 to `pid` (the process `old` runs, or one a restart started): the new pid once it
/// serves and `old` has exited 0 (see [`taken_over`]), within `limit`.
pub fn restarted(
    old: &mut crate::support::process::Running,
    pid: i32,
    pid_file: &Path,
    adopted: &mut Descendants,
    limit: Duration,
) -> i32 {
    send_signal(pid, libc::SIGUSR2);
    taken_over(old, pid, pid_file, adopted, limit)
}

/// SIGTERM to the adopted `pid`, which must exit 0 within 20 s.
pub fn stopped(pid: i32, adopted: &mut Descendants) {
    send_signal(pid, libc::SIGTERM);
    assert_eq!(adopted.reap(pid, Duration::from_secs(20)), 0);
}
