//! Where a greeting's connections land with several workers: one `SO_REUSEPORT` listener
//! per worker, and while one worker carries the load every connection goes to the same
//! listener, on either engine — so the other io_uring workers are never woken (their
//! threads' voluntary context switches stay where they were). Echo keeps the kernel's hash.
//! How the group spreads once a worker is busy is tested on real sockets in
//! `src/server/steering.rs`.

use std::time::{Duration, Instant};

use crate::io_engine::{greet_on_rings, io_uring_available, uring_workers};
use crate::support::net::{connect, queued_per_listener, read_to_end};
use crate::support::process::{Running, socketkit};

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

fn serve_with_two_workers(service: &[&str], engine: &str) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve")
        .args(service)
        .args(["-v", "--io-engine", engine, "--workers", "2"])
        .args(["-l", "127.0.0.1:0"]);
    Running::start(cmd, 1)
}

#[test]
fn a_greeting_s_connections_land_on_one_listener_on_either_engine() {
    let mut engines = vec!["epoll"];
    if io_uring_available() {
        engines.push("io_uring");
    }
    for engine in engines {
        let server = serve_with_two_workers(&[], engine);
        server.wait_for_stderr(
            &["new connections go to the first of its 2 listeners"],
            Duration::from_secs(10),
        );
        let (queues, mut clients) = queued_per_listener(&server, 32);
        assert_eq!(queues, [0, 32], "{engine}: connections queued per listener");
        for client in &mut clients {
            assert_eq!(read_to_end(client), "你好".as_bytes(), "{engine}");
        }
    }
}

#[test]
fn an_echo_s_connections_keep_the_kernel_s_hash() {
    let server = serve_with_two_workers(&["echo"], "epoll");
    let (queues, clients) = queued_per_listener(&server, 32);
    assert!(
        !server.stderr().contains("listeners until"),
        "echo is not steered"
    );
    assert_eq!(queues.len(), 2);
    // Both take some: all 32 on one listener by the hash is 1 in 2^31.
    assert!(queues[0] > 0, "connections queued per listener: {queues:?}");
    drop(clients);
}
