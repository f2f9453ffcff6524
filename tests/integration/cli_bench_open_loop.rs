//! `socketkit bench` where the load and the server's pace part ways: an open loop faster
//! than the server (its latency must show the queue, and what never started must be
//! said), a run's end (no operation starts after it), `--count` with the default warm-up,
//! a run shorter than one time-series interval, and a server that closes without a word.
//! Each server here counts what it sees for itself (`cli_bench_truth::tcp_server`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::cli_bench::{bench, json};
use crate::cli_bench_truth::tcp_server;
use crate::support::process::{DEADLINE, run, socketkit};

/// A server that answers one connection at a time, each after `delay`.
fn slow_greeter(delay: Duration) -> (String, Arc<AtomicU64>, Arc<AtomicBool>) {
    tcp_server(move |mut stream| {
        thread::sleep(delay);
        let _ = stream.write_all(b"hello\n");
    })
}

/// 100 arrivals a second on one connection against a server that takes 20 ms each (at most
/// 50 a second): the arrivals queue, and by the end of 2 s each waits about a second. The
/// latency used to start when an arrival got its connection, which showed the 20 ms of
/// service alone, and the hundred arrivals that never started were in no figure.
#[test]
fn an_open_loop_faster_than_the_server_shows_the_queue_and_what_never_started() {
    let (addr, _accepted, done) = slow_greeter(Duration::from_millis(20));
    let out = bench(&addr, "-c 1 --rate 100 -d 2s --warmup 0 --json");
    done.store(true, Ordering::Relaxed);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report = json(&out);
    let p90 = report["latency_ms"]["p90"].as_f64().unwrap_or(0.0);
    assert!(p90 >= 200.0, "p90 {p90} ms: {report}");
    let not_started = report["not_started"].as_u64().unwrap_or(0);
    let completed = report["completed"].as_u64().unwrap_or(0);
    assert!(not_started >= 50, "{report}");
    // Every arrival of the span is either in the figures or in `not started` (give or
    // take the ones in flight at the ends).
    assert!((195..=205).contains(&(not_started + completed)), "{report}");
    // The table says it too.
    let out = bench(&addr, "-c 1 --rate 100 -d 1s --warmup 0");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("not started"), "{table}");
}

/// The same server well within its pace: nothing waits, nothing is left unstarted.
#[test]
fn an_open_loop_within_the_servers_pace_starts_every_arrival() {
    let (addr, _accepted, done) = slow_greeter(Duration::from_millis(5));
    let out = bench(&addr, "-c 2 --rate 20 -d 1s --warmup 0 --json");
    done.store(true, Ordering::Relaxed);
    let report = json(&out);
    assert!(
        report["not_started"].as_u64().unwrap_or(99) <= 1,
        "{report}"
    );
    assert!(report["completed"].as_u64().unwrap_or(0) >= 15, "{report}");
    let out_closed = bench(&addr, "-c 1 -d 200ms --warmup 0 --json");
    // A closed loop has no arrivals to miss.
    assert!(json(&out_closed)["not_started"].is_null(), "{out_closed:?}");
}

/// A server 200 ms per connection and a 1 s run: the connection in flight at the end is
/// the last the server sees. The slot it freed after the end used to open one more.
#[test]
fn no_operation_starts_after_the_end_of_the_run() {
    let (addr, accepted, done) = slow_greeter(Duration::from_millis(200));
    let out = bench(&addr, "-c 1 -d 1s --warmup 0 --json");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    // A connection opened at the end waits in the backlog until the server takes it.
    thread::sleep(Duration::from_millis(600));
    done.store(true, Ordering::Relaxed);
    let completed = json(&out)["completed"].as_u64().unwrap_or(0);
    let seen = accepted.load(Ordering::Relaxed);
    assert!(completed >= 3, "{completed}");
    assert!(
        seen <= completed + 1,
        "{completed} completed, the server saw {seen}"
    );
}

/// `--count 20 -c 1` with no `--warmup`: the server sees 20 connections, as `ab -n 20`'s
/// would (the default second of warm-up used to add thousands).
#[test]
fn count_without_a_warm_up_given_is_exactly_what_the_server_sees() {
    let (addr, accepted, done) = tcp_server(|mut stream| {
        let _ = stream.write_all(b"hello\n");
    });
    let out = bench(&addr, "--count 20 -c 1 -d 10s --json");
    thread::sleep(Duration::from_millis(100));
    done.store(true, Ordering::Relaxed);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report = json(&out);
    assert_eq!(report["completed"], 20, "{report}");
    assert_eq!(report["config"]["warmup_s"], 0.0, "{report}");
    assert_eq!(accepted.load(Ordering::Relaxed), 20, "{report}");
}

/// A 100 ms run has no whole 250 ms interval: its one point is its own rate, not its count
/// over 250 ms (2.5 times too low).
#[test]
fn a_run_shorter_than_one_interval_is_one_point_at_its_rate() {
    let (addr, _accepted, done) = tcp_server(|mut stream| {
        let _ = stream.write_all(b"hello\n");
    });
    let out = bench(&addr, "-c 1 -d 100ms --warmup 0 --json");
    done.store(true, Ordering::Relaxed);
    let report = json(&out);
    let rate = report["rate_per_s"].as_f64().unwrap_or(0.0);
    let timeline: Vec<f64> = report["rate_timeline"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(serde_json::Value::as_f64)
                .collect()
        })
        .unwrap_or_default();
    assert!(rate > 0.0, "{report}");
    assert_eq!(timeline.len(), 1, "{report}");
    assert!(
        (timeline[0] - rate).abs() <= rate * 0.05,
        "{timeline:?} against {rate}: {report}"
    );
}

/// A server that accepts and closes without a byte is not greeting: each connection is an
/// `eof` failure, on the closed loop and the open one (as wrk and ab count it), unless
/// `--expect ''` says nothing is the right answer.
#[test]
fn a_server_that_closes_without_a_word_is_no_greeting() {
    let (addr, _accepted, done) = tcp_server(drop);
    for options in [
        "-c 1 -d 300ms --warmup 0 --json",
        "-c 1 --rate 50 -d 300ms --warmup 0 --json",
    ] {
        let out = bench(&addr, options);
        let report = json(&out);
        assert_eq!(report["completed"], 0, "{options}: {report}");
        assert!(
            report["errors"]["eof"].as_u64().unwrap_or(0) > 0,
            "{options}: {report}"
        );
        assert_eq!(out.code(), 1, "{options}: {}", out.stderr);
    }
    let mut cmd = socketkit();
    cmd.args(["bench", &addr, "-c", "1", "-d", "300ms", "--warmup", "0"])
        .args(["--expect", "", "--json"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    done.store(true, Ordering::Relaxed);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(json(&out)["completed"].as_u64().unwrap_or(0) > 0, "{out:?}");
}
