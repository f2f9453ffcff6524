//! `forward`'s health checks run each target's on its own: a target that hangs (takes the
//! connection, never answers the HTTP check) held every round until its check timed out,
//! so another target's death was seen after `--timeout` (7 s in the audit) rather than
//! within an interval (1 s). Found by an outside audit of fairness.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli_forward_targets::forward;

/// An HTTP server answering `200` to every connection until `stop` is set, then gone
/// (its port refuses): its address and its thread.
fn healthy(stop: Arc<AtomicBool>) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("address").to_string();
    let serving = thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).expect("blocking");
                    conn.set_read_timeout(Some(Duration::from_secs(2)))
                        .expect("timeout");
                    let mut request = [0u8; 1024];
                    let _ = conn.read(&mut request);
                    let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (addr, serving)
}

#[test]
fn a_hung_target_does_not_hold_up_another_targets_checks() {
    // Takes connections (the kernel's backlog does) and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_addr = hung.local_addr().expect("address").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (healthy_addr, serving) = healthy(Arc::clone(&stop));
    let relay = forward(
        &[
            "--check-interval",
            "200ms",
            "--check-http",
            "/health",
            "--check-fall",
            "1",
            "--timeout",
            "5s",
            "-v",
        ],
        &[&hung_addr, &healthy_addr],
    );
    // A few rounds in: the hung target's first check is still waiting for its answer.
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    serving.join().expect("the server thread ends");
    let stopped = Instant::now();
    // Whatever the reason (a check queued as the listener closed is reset, not refused).
    relay.wait_for_stderr(
        &[&format!("health check: tcp:{healthy_addr} is down")],
        Duration::from_secs(10),
    );
    let seen = stopped.elapsed();
    assert!(
        seen < Duration::from_secs(3),
        "the healthy target's death was seen after {seen:?} (the hung one's check takes 5s)"
    );
    drop(hung);
}

#[test]
fn a_target_a_reload_removed_while_it_was_checked_is_not_reported_down() {
    // The hung target's check is under way when a reload takes it out of the list: when
    // the check times out, the target is no longer the relay's, and "is down" would send an
    // operator after a server the relay no longer uses.
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_addr = hung.local_addr().expect("address").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (healthy_addr, serving) = healthy(Arc::clone(&stop));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("targets");
    std::fs::write(&file, format!("{hung_addr}\n{healthy_addr}\n")).expect("write");
    let mut cmd = crate::support::process::socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--check-interval", "200ms"])
        .args([
            "--check-http",
            "/health",
            "--check-fall",
            "1",
            "--timeout",
            "1s",
        ])
        .arg("-v")
        .arg("--to-file")
        .arg(&file);
    let relay = crate::support::process::Running::start(cmd, 1);
    // The hung target's first check is waiting for its answer (the healthy one's passed).
    thread::sleep(Duration::from_millis(300));
    let reloaded = Instant::now();
    std::fs::write(&file, format!("{healthy_addr}\n")).expect("rewrite");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(&["targets reloaded from"], Duration::from_secs(5));
    // Past the hung check's timeout, with room for a loaded machine.
    thread::sleep(Duration::from_secs(3).saturating_sub(reloaded.elapsed()));
    let log = relay.stderr();
    assert!(
        !log.contains(&format!("tcp:{hung_addr} is down")),
        "a removed target was reported:\n{log}"
    );
    // The list in force is still checked: the healthy target's death is seen.
    stop.store(true, Ordering::SeqCst);
    serving.join().expect("the server thread ends");
    relay.wait_for_stderr(
        &[&format!("health check: tcp:{healthy_addr} is down")],
        Duration::from_secs(10),
    );
    drop(hung);
}

#[test]
fn a_relay_stopped_during_a_check_does_not_take_the_answer_for_a_timeout() {
    // The target stops the relay as a check's request comes, answers 300 ms later, and
    // lets the relay go on 1.5 s after the stop: past the check's 1 s timeout, with the
    // answer waiting in the relay's socket. (The stopped relay's timer ran before its
    // socket was looked at, and the target was reported down.)
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let relay_pid = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (pid, stopped_once, end) = (
        Arc::clone(&relay_pid),
        Arc::clone(&stopped),
        Arc::clone(&done),
    );
    let target = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        listener.set_nonblocking(true).expect("non-blocking");
        while Instant::now() < deadline && !end.load(Ordering::SeqCst) {
            let Ok((mut conn, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).expect("blocking");
            conn.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let relay = pid.load(Ordering::SeqCst);
            if relay == 0 || stopped_once.load(Ordering::SeqCst) {
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            // SAFETY: kill(2) of the relay this test started; no memory involved.
            unsafe { libc::kill(relay, libc::SIGSTOP) };
            thread::sleep(Duration::from_millis(300));
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
            thread::sleep(Duration::from_millis(1200));
            // SAFETY: as above.
            unsafe { libc::kill(relay, libc::SIGCONT) };
            stopped_once.store(true, Ordering::SeqCst);
        }
    });
    let relay = forward(
        &[
            "--check-interval",
            "300ms",
            "--check-http",
            "/health",
            "--timeout",
            "1s",
            "-v",
        ],
        &[&addr],
    );
    relay_pid.store(relay.pid(), Ordering::SeqCst);
    let waited = Instant::now();
    while !stopped.load(Ordering::SeqCst) && waited.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(stopped.load(Ordering::SeqCst), "no check came");
    // A check or two after the stop.
    thread::sleep(Duration::from_millis(700));
    let log = relay.stderr();
    done.store(true, Ordering::SeqCst);
    target.join().expect("the target thread ends");
    assert!(!log.contains("is down"), "{log}");
}
