//! Where a greeting's connections land with several io_uring workers: one `SO_REUSEPORT`
//! listener per worker, and while one worker carries the load every connection goes to the
//! same listener, so the other workers are never woken (their threads' voluntary context
//! switches stay where they were). How the group spreads once a worker is busy is tested on
//! real sockets in `src/server/ring/steering.rs`.

use std::time::{Duration, Instant};

use crate::io_engine::{greet_on_rings, io_uring_available, uring_workers};
use crate::support::net::{connect, read_to_end};

/// Each io_uring worker thread of `pid` with its voluntary context switches so far.
fn worker_switches(pid: i32) -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.filter_map(Result::ok) {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.starts_with("socketkit-uring") {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        found.push((task.file_name().to_string_lossy().into_owned(), switches));
    }
    found.sort();
    found
}

fn greet(addr: &str, times: usize) {
    for _ in 0..times {
        assert_eq!(read_to_end(&mut connect(addr)), "你好".as_bytes());
    }
}

#[test]
fn a_greeting_load_one_worker_carries_never_wakes_the_other() {
    if !io_uring_available() {
        return;
    }
    let server = greet_on_rings("2");
    assert!(uring_workers(&server) > 0);
    // The workers start one after the other.
    let deadline = Instant::now() + Duration::from_secs(5);
    while worker_switches(server.pid()).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past the workers' start, whose own waits count too.
    greet(&server.addr(), 20);
    let before = worker_switches(server.pid());
    greet(&server.addr(), 300);
    let after = worker_switches(server.pid());
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(
        before.iter().map(|(tid, _)| tid).collect::<Vec<_>>(),
        after.iter().map(|(tid, _)| tid).collect::<Vec<_>>()
    );
    let mut woken: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|((_, b), (_, a))| a - b)
        .collect();
    woken.sort_unstable();
    assert!(
        woken[0] <= 2 && woken[1] >= 100,
        "wake-ups per worker over 300 connections: {woken:?} (one should take them all)"
    );
}
