//! Running the real binaries: a clean environment, a bounded wait, the `listening on` line
//! parsed for the real address, and every child killed and reaped when its guard drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one child may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The `socketkit` binary under test.
pub fn socketkit() -> Command {
    command(Path::new(env!("CARGO_BIN_EXE_socketkit")))
}

/// The `socketkit` binary under test, run with at most `max_fds` open descriptors
/// (`ulimit -n` in a shell that then execs it, so the pid is socketkit's own).
pub fn socketkit_with_fd_limit(max_fds: u32) -> Command {
    socketkit_after(&format!("ulimit -n {max_fds}"))
}

/// The `socketkit` binary under test, started by a shell that first runs `setup` (a
/// `ulimit`) and then execs it, so the pid is socketkit's own.
pub fn socketkit_after(setup: &str) -> Command {
    let mut cmd = command(Path::new("/bin/sh"));
    cmd.arg("-c")
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_socketkit"));
    cmd
}

/// An example binary (`cargo test` builds them next to the test binary's directory).
pub fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path: PathBuf = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}",
        path.display()
    );
    command(&path)
}

/// A command with a cleared environment (only PATH kept), so no variable of the developer's
/// changes what the test sees — but for `SOCKETKIT_IO_ENGINE`, which `.ci/run` sets to run
/// the whole suite on each engine. `TMPDIR` is cargo's directory for the tests' files: a
/// unixgram client the test kills cannot remove the socket file it binds there, and the
/// files stay out of the machine's /tmp (a test may set its own).
pub fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for kept in ["PATH", "SOCKETKIT_IO_ENGINE"] {
        if let Some(value) = std::env::var_os(kept) {
            cmd.env(kept, value);
        }
    }
    cmd.env("TMPDIR", env!("CARGO_TARGET_TMPDIR"));
    cmd
}

/// Starts `cmd` with the limit `resource` (`libc::RLIMIT_*`) at `value`, soft and hard.
pub fn with_rlimit(cmd: &mut Command, resource: libc::__rlimit_resource_t, value: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: one setrlimit between fork and exec, on values the closure owns.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running child, killed and reaped on drop; its stderr is collected in the background
/// once the readiness lines have been read.
pub struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Disconnected once the child's stderr is at its end (everything is collected).
    // In a Mutex, as `announced`, so that a Running can be shared between threads.
    stderr_done: Mutex<mpsc::Receiver<()>>,
    endpoints: Vec<String>,
    // In a Mutex so that a Running can be shared between threads (it is only read by
    // `wait_for_listening`, which takes `&mut self`).
    announced: Mutex<mpsc::Receiver<String>>,
}

impl Running {
    /// Starts `cmd` with piped stdio and waits for `count` `listening on` lines on stderr.
    pub fn start(mut cmd: Command, count: usize) -> Running {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the program starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let collected = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        spawn_stderr_reader(stderr, Arc::clone(&collected), tx, done_tx);
        let mut running = Running {
            child,
            stderr: collected,
            stderr_done: Mutex::new(done_rx),
            endpoints: Vec::new(),
            announced: Mutex::new(rx),
        };
        running.wait_for_listening(count);
        running
    }

    /// Waits for `count` more `listening on` lines (of the child, or of a process it
    /// started that writes to the same stderr), adding their endpoints to
    /// [`Running::endpoints`]; kills the child and fails the test if they do not come.
    pub fn wait_for_listening(&mut self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for _ in 0..count {
            let left = deadline.saturating_duration_since(Instant::now());
            let announced = self
                .announced
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match announced.recv_timeout(left) {
                Ok(endpoint) => self.endpoints.push(endpoint),
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("no `listening on` line in time; stderr:\n{}", self.stderr());
                }
            }
        }
    }

    /// Starts `cmd` like [`Running::start`], with `input` written to its stdin (which is
    /// then closed) once it is ready.
    pub fn start_with_stdin(cmd: Command, count: usize, input: Vec<u8>) -> Running {
        let mut running = Running::start(cmd, count);
        let mut stdin = running.child.stdin.take().expect("stdin is piped");
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        running
    }

    /// Everything the child wrote to stdout, once it has closed it (call after `wait`).
    pub fn stdout_text(&mut self) -> String {
        let mut text = String::new();
        let _ = self.take_stdout().read_to_string(&mut text);
        text
    }

    /// The endpoints from the readiness lines (`tcp:127.0.0.1:41234`).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The first endpoint without its `tcp:` scheme: `127.0.0.1:41234`.
    pub fn addr(&self) -> String {
        self.endpoints[0].trim_start_matches("tcp:").to_owned()
    }

    /// The port of the first endpoint.
    pub fn port(&self) -> u16 {
        let endpoint = &self.endpoints[0];
        endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit i32")
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped, so it is still ours.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Fails the test, showing stderr, unless stderr holds `text` now or within a moment:
    /// a thread of the harness reads the child's stderr, and may not have taken a line the
    /// child wrote just before what the test saw last.
    pub fn assert_said(&self, text: &str) {
        self.wait_for_stderr(&[text], Duration::from_secs(2));
    }

    /// Waits until stderr holds every one of `wanted`; fails the test, showing stderr, if
    /// `limit` passes first.
    pub fn wait_for_stderr(&self, wanted: &[&str], limit: Duration) {
        super::wait_until(
            limit,
            || format!("{wanted:?} not all in:\n{}", self.stderr()),
            || wanted.iter().all(|text| self.stderr().contains(text)),
        );
    }

    /// Takes the child's stdin pipe (dropping it closes the child's input).
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().expect("stdin is piped")
    }

    /// Takes the child's stdout pipe.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("stdout is piped")
    }

    /// Waits for the child to exit, failing the test past `limit`; then for its stderr to
    /// be read to the end (a little longer at most: a grandchild may hold it open), so that
    /// [`Running::stderr`] has all of it.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let status = wait_bounded(&mut self.child, limit);
        let done = self
            .stderr_done
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = done.recv_timeout(Duration::from_secs(2));
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_stderr_reader(
    stderr: ChildStderr,
    collected: Arc<Mutex<String>>,
    ready: mpsc::Sender<String>,
    done: mpsc::Sender<()>,
) {
    thread::spawn(move || {
        // Dropped at the end of stderr: tells `wait` that everything is collected.
        let _done = done;
        let reader = BufReader::new(stderr);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Ok(mut all) = collected.lock() {
                all.push_str(&line);
                all.push('\n');
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                let endpoint = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = ready.send(endpoint);
            }
        }
    });
}

/// The program's stdout, read line by line on a thread as a program would, each line handed
/// over a channel so that the test can bound its wait.
pub fn lines_of(stdout: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// What `child` wrote to stderr (piped), read to its end: call once it has exited.
pub fn stderr_of(child: &mut Child) -> Result<String, Box<dyn std::error::Error>> {
    read_piped(child.stderr.take(), "stderr")
}

/// What `child` wrote to stdout (piped), read to its end: call once it has exited.
pub fn stdout_of(child: &mut Child) -> Result<String, Box<dyn std::error::Error>> {
    read_piped(child.stdout.take(), "stdout")
}

/// `pipe` (a child's `name`) read to its end as text.
fn read_piped(pipe: Option<impl Read>, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut text = String::new();
    pipe.ok_or(format!("{name} is not piped"))?
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Waits for `child`, killing it and failing the test if it runs past `limit`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child ran past {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    /// The exit code (a signal death fails the test).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }
}

/// Runs `cmd` to completion with `input` on stdin, bounded by `limit`.
pub fn run(mut cmd: Command, input: Vec<u8>, limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the program starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = thread::spawn(move || {
        // The child may exit before reading everything; that is its business.
        let _ = stdin.write_all(&input);
    });
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_bounded(&mut child, limit);
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
    }
}

/// Reads a pipe to its end on a thread of its own.
pub fn drain<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        all
    })
}

/// A child whose stdin is fed `input` and whose stdout is hashed as it streams, while its
/// peak memory is sampled: for transfers too large to hold twice in a test.
pub struct Streamed {
    pub status: ExitStatus,
    pub stdout_len: usize,
    pub stdout_hash: u64,
    pub stderr: String,
    pub peak_rss_kib: u64,
}

/// Runs `cmd` with `input` streamed to stdin, bounded by `limit`; stdin is closed after it.
pub fn run_streamed(cmd: Command, input: Vec<u8>, limit: Duration) -> Streamed {
    run_streamed_with(cmd, input, true, limit)
}

/// As [`run_streamed`]; with `close_stdin` false, stdin stays open until the child exits (a
/// bridge whose input never ends).
pub fn run_streamed_with(
    mut cmd: Command,
    input: Vec<u8>,
    close_stdin: bool,
    limit: Duration,
) -> Streamed {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the program starts");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (exited, wait_for_exit) = mpsc::channel::<()>();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
        if !close_stdin {
            let _ = wait_for_exit.recv();
        }
    });
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut hasher = crate::support::net::Fnv::default();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0;
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n;
        }
        (len, hasher.finish())
    });
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let mut peak = 0;
    let deadline = Instant::now() + limit;
    let status = loop {
        peak = peak.max(peak_rss_kib(pid));
        if let Some(status) = child.try_wait().expect("try_wait works") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child ran past {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    drop(exited);
    let _ = writer.join();
    let (stdout_len, stdout_hash) = reader.join().unwrap_or_default();
    Streamed {
        status,
        stdout_len,
        stdout_hash,
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
        peak_rss_kib: peak,
    }
}

/// The peak resident memory of a live process (VmHWM), in KiB; 0 once it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
