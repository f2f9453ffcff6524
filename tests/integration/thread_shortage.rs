//! A process that can start no more threads (a container at its `pids.max`; here
//! `RLIMIT_NPROC` lowered on the running process, which binds once it is no longer root):
//! tokio's blocking pool panics when it needs a thread then. That killed the SIGHUP loop for
//! good (rules never reloaded again) and printed a panic with a backtrace for every client
//! of a relay whose target is a name. Found by an outside audit of containers.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::net::connect;
use crate::support::process::{DEADLINE, Running, socketkit};
use crate::support::wait_until;

/// A pids cgroup of this test's own (v1's controller, or v2's root), removed on drop with
/// every process still in it killed.
struct PidsGroup(PathBuf);

impl PidsGroup {
    /// A new group, or `None` (said) where this system has no pids controller to use.
    fn new(name: &str) -> Option<PidsGroup> {
        let v1 = Path::new("/sys/fs/cgroup/pids");
        let root = if v1.join("cgroup.procs").exists() {
            v1
        } else {
            Path::new("/sys/fs/cgroup")
        };
        let dir = root.join(format!("socketkit-test-{}-{name}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) if dir.join("pids.max").exists() => Some(PidsGroup(dir)),
            made => {
                let _ = std::fs::remove_dir(&dir);
                eprintln!("skipped: no pids cgroup to use here ({made:?})");
                None
            }
        }
    }

    /// `cmd`, to start inside the group.
    fn enter(&self, cmd: &mut std::process::Command) {
        let procs = CString::new(
            self.0
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("a path without NUL");
        // SAFETY: between fork and exec only open, write and close, on a path made before.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                match written {
                    1 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    }

    /// No new process or thread in the group (`false`), or as many as the system allows.
    fn allow_new(&self, allowed: bool) {
        let max = match allowed {
            true => "max".to_owned(),
            false => std::fs::read_to_string(self.0.join("pids.current")).expect("pids.current"),
        };
        self.allow(max.trim());
    }

    /// At most `max` processes and threads in the group (`max`: as many as the system allows).
    fn allow(&self, max: &str) {
        std::fs::write(self.0.join("pids.max"), max).expect("pids.max");
    }
}

impl Drop for PidsGroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("pids.max"), "max");
        let procs = std::fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
        for pid in procs
            .lines()
            .filter_map(|line| line.trim().parse::<i32>().ok())
        {
            // SAFETY: kill takes two integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn reloads_and_name_lookups_survive_a_thread_shortage() {
    let Some(group) = PidsGroup::new("reload") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("allow.txt");
    std::fs::write(&rules, "127.0.0.0/8\n").expect("write");
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--io-engine", "epoll"])
        .arg("--allow-file")
        .arg(&rules)
        .env_remove("RUST_BACKTRACE");
    group.enter(&mut cmd);
    let server = Running::start(cmd, 1);
    let mut cmd = socketkit();
    let target = format!("localhost:{}", server.port());
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &target])
        .env_remove("RUST_BACKTRACE");
    group.enter(&mut cmd);
    let relay = Running::start(cmd, 1);
    group.allow_new(false);

    server.signal(libc::SIGHUP);
    server.wait_for_stderr(&["rules reloaded: 1 allow, 0 deny"], DEADLINE);
    // Each client's lookup finds no thread, and says so at once: the clients after the
    // first do not wait on a lookup tokio keeps for later (they did, for `--timeout`).
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let mut stream = connect(&relay.addr());
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "three clients took {:?}",
        started.elapsed()
    );
    group.allow_new(true);
    // Reloads go on: 127.0.0.1 is refused after this one.
    std::fs::write(&rules, "10.0.0.0/8\n").expect("write");
    server.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(5),
        || server.stderr(),
        // Twice or more: tokio keeps the work it found no thread for, and runs it once it
        // has one (a reload read again is the same reload).
        || server.stderr().matches("rules reloaded").count() >= 2,
    );
    let mut stream = connect(&server.addr());
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "served after the rules refused it");
    for (name, process) in [("serve", &server), ("forward", &relay)] {
        let said = process.stderr();
        assert!(!said.contains("panicked"), "{name} panicked:\n{said}");
    }
}

/// `listen` with room for two threads: its stdin reader's thread cannot start. The error
/// said `i/o error on stdio`, which names the wrong thing.
#[test]
fn a_thread_that_cannot_start_is_named_as_one() {
    let Some(group) = PidsGroup::new("listen") else {
        return;
    };
    group.allow("2");
    let mut cmd = socketkit();
    cmd.args(["listen", "127.0.0.1:0"])
        .env_remove("RUST_BACKTRACE");
    group.enter(&mut cmd);
    let out = crate::support::process::run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: cannot start") && !out.stderr.contains("on stdio"),
        "{}",
        out.stderr
    );
}
