//! A SIGHUP that comes while a SIGUSR2 restart starts its new process: that process may
//! have read its files before they changed, so the reload is passed on to it once it
//! serves (it was lost: the old process reloaded and exited, and the new one served the
//! old rules until the next SIGHUP). Found by an outside audit of reloads under load.

use std::io::Read;
use std::time::Duration;

use crate::support::net::connect;
use crate::support::process::{Running, socketkit};
use crate::support::restart::{Descendants, become_subreaper, send_signal, stopped, taken_over};

#[test]
fn a_sighup_during_a_restart_reaches_the_new_process() {
    become_subreaper();
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("s.pid");
    let rules = dir.path().join("deny");
    std::fs::write(&rules, "# nobody yet\n").expect("write the rules");
    let mut cmd = socketkit();
    // Many workers, so that the new process takes a while to start (a ring and a thread
    // each): the SIGHUP below comes while it does.
    cmd.args(["serve", "-v", "-l", "127.0.0.1:0", "--workers", "300"])
        .arg("--deny-file")
        .arg(&rules)
        .arg("--pid-file")
        .arg(&pid_file);
    let mut old = Running::start(cmd, 1);
    let addr = old.addr();
    let pid = old.pid();
    let mut adopted = Descendants::default();
    send_signal(pid, libc::SIGUSR2);
    old.wait_for_stderr(&["restarting: starting"], Duration::from_secs(10));
    std::fs::write(&rules, "127.0.0.0/8\n").expect("write the rules");
    send_signal(pid, libc::SIGHUP);
    let new = taken_over(
        &mut old,
        pid,
        &pid_file,
        &mut adopted,
        Duration::from_secs(30),
    );
    old.wait_for_stderr(&["rules reloaded"], Duration::from_secs(10));
    let log = old.stderr();
    assert!(
        log.contains(&format!(
            "SIGHUP that came during the restart: passed on to process {new}"
        )),
        "{log}"
    );
    // The new process refuses 127.0.0.1 now: reset, no greeting.
    let refused = (0..50).any(|_| {
        let mut got = Vec::new();
        let read = connect(&addr).read_to_end(&mut got);
        std::thread::sleep(Duration::from_millis(20));
        read.is_err() || got.is_empty()
    });
    assert!(refused, "the new process still serves 127.0.0.1: {log}");
    stopped(new, &mut adopted);
}
