//! A SIGUSR2 restart between two versions, as a package upgrade or downgrade makes one: the
//! new file is whatever was installed, and may know less of the handover than the process
//! that starts it. Found by an outside audit of upgrades.

use std::path::Path;
use std::time::Duration;

use crate::managed_restart::{own_binary, replace};
use crate::support::process::{Running, command};
use crate::support::restart::{Descendants, become_subreaper, send_signal};
use crate::support::tools;
use crate::support::{TestResult, wait_until};

/// How long a restart may take.
const RESTART: Duration = Duration::from_secs(15);

/// Stands for an older socketkit that knows nothing of the pid file's handover: it writes
/// what it holds open and its environment to files beside it, reports ready as every
/// version does (its pid, on the descriptor `SOCKETKIT_HANDOVER_READY_FD` names), and waits.
const OLDER: &str = r#"#!/usr/bin/env python3
import os, sys, time
here = os.path.dirname(os.path.abspath(sys.argv[0]))
held = []
for fd in os.listdir('/proc/self/fd'):
    try:
        held.append(os.readlink('/proc/self/fd/' + fd))
    except OSError:
        pass
open(os.path.join(here, 'held.txt'), 'w').write('\n'.join(held) + '\n')
names = [name for name in os.environ if name.startswith('SOCKETKIT_')]
open(os.path.join(here, 'env.txt'), 'w').write('\n'.join(names) + '\n')
os.write(int(os.environ['SOCKETKIT_HANDOVER_READY_FD']), b'%d\n' % os.getpid())
time.sleep(10)
"#;

/// A downgrade: the pid file went to the new process as an inherited descriptor named by
/// a variable, which an older version neither claimed nor closed, so every program its
/// `exec` service ran could write it (under `--user`, a root-owned pid file). It waits on
/// the readiness socket now, where a process that does not ask for it never holds it.
#[test]
fn an_older_successor_never_holds_the_pid_file() -> TestResult {
    if !tools::available("python3") {
        return Ok(());
    }
    become_subreaper();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let binary = own_binary(dir.path())?;
    let pid_file = dir.path().join("s.pid");
    let mut cmd = command(&binary);
    cmd.args(["serve", "-l", "127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    let mut old = Running::start(cmd, 1);
    replace(&binary, OLDER, 0o755)?;
    let mut adopted = Descendants::default();
    send_signal(old.pid(), libc::SIGUSR2);
    let held = dir.path().join("held.txt");
    wait_until(RESTART, || old.stderr(), || held_and_said(&held, &old));
    assert_eq!(old.wait(RESTART).code(), Some(0), "{}", old.stderr());
    let stand_in = old
        .stderr()
        .split("restarted: process ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse::<i32>().ok())
        .expect("the new process's pid");
    adopted.add(stand_in);
    let held = std::fs::read_to_string(&held)?;
    assert!(
        !held.lines().any(|target| Path::new(target) == pid_file),
        "the older version holds the pid file:\n{held}"
    );
    let env = std::fs::read_to_string(dir.path().join("env.txt"))?;
    assert!(!env.contains("PID_FILE"), "{env}");
    Ok(())
}

/// Whether the stand-in has written what it holds and the old process has seen it ready.
fn held_and_said(held: &Path, old: &Running) -> bool {
    held.exists() && old.stderr().contains("restarted: process ")
}

/// Release 2 of the stand-in: says it ran, and reports ready.
const RELEASE_2: &str = r#"#!/usr/bin/env python3
import os, sys, time
here = os.path.dirname(os.path.abspath(sys.argv[0]))
open(os.path.join(here, 'ran.txt'), 'w').write('release 2\n')
os.write(int(os.environ['SOCKETKIT_HANDOVER_READY_FD']), b'%d\n' % os.getpid())
time.sleep(10)
"#;

/// An upgrade that repoints a symlink (`update-alternatives`, `current -> releases/N`):
/// SIGUSR2 ran the file the link named at start (`/proc/self/exe`), the old release, and
/// said it had restarted. It runs the path it was started by, as the docs say.
#[test]
fn a_restart_follows_the_symlink_it_was_started_by() -> TestResult {
    if !tools::available("python3") {
        return Ok(());
    }
    become_subreaper();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let (one, two) = (dir.path().join("1"), dir.path().join("2"));
    std::fs::create_dir(&one)?;
    std::fs::create_dir(&two)?;
    own_binary(&one)?;
    let release_2 = two.join("socketkit");
    replace(&release_2, RELEASE_2, 0o755)?;
    let link = dir.path().join("socketkit");
    std::os::unix::fs::symlink(one.join("socketkit"), &link)?;
    let mut old = Running::start(
        {
            let mut cmd = command(&link);
            cmd.args(["serve", "-l", "127.0.0.1:0"]);
            cmd
        },
        1,
    );
    // Repointed as `ln -sfn` does: a new link renamed over the old one.
    let fresh = dir.path().join("socketkit.new");
    std::os::unix::fs::symlink(&release_2, &fresh)?;
    std::fs::rename(&fresh, &link)?;
    let mut adopted = Descendants::default();
    send_signal(old.pid(), libc::SIGUSR2);
    assert_eq!(old.wait(RESTART).code(), Some(0), "{}", old.stderr());
    if let Some(pid) = old
        .stderr()
        .split("restarted: process ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse::<i32>().ok())
    {
        adopted.add(pid);
    }
    let ran = std::fs::read_to_string(dir.path().join("ran.txt")).unwrap_or_default();
    assert_eq!(ran, "release 2\n", "the old release ran:\n{}", old.stderr());
    Ok(())
}
