//! `socketkit bench` when operations fail: every failed operation pauses its worker
//! (10 ms, docs/cli.md) before the next try, in every mode and loop, so a refused port or a
//! wrong answer is counted a hundred times a second per worker, not tens of thousands.
//! The bounds are upper bounds on a count the pause caps: a slow machine only lowers them.

use crate::support::net::free_port;
use crate::support::process::{DEADLINE, Output, Running, run, socketkit};

/// `socketkit bench ENDPOINT OPTIONS…` with `-d 500ms --warmup 0 --json` added.
fn bench(endpoint: &str, options: &str) -> Output {
    let mut cmd = socketkit();
    cmd.args(["bench", endpoint, "-d", "500ms", "--warmup", "0", "--json"])
        .args(options.split_whitespace());
    run(cmd, Vec::new(), DEADLINE)
}

/// The errors a run counted, all kinds together, after checking it failed as a run that
/// completed nothing does.
fn errors(out: &Output) -> u64 {
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"));
    assert_eq!(report["completed"], 0, "{report}");
    report["errors"]
        .as_object()
        .map_or(0, |kinds| kinds.values().filter_map(|n| n.as_u64()).sum())
}

/// At most one failure per 10 ms pause per worker over the 500 ms run is 50 a worker; twice
/// that leaves room for timer slack, and is still far below the tens of thousands a worker
/// counted without the pause.
const MOST_PER_WORKER: u64 = 100;

#[test]
fn refused_connections_pause_every_worker() {
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let udp = format!("udp:127.0.0.1:{port}");
    let cases = [
        // Closed-loop TCP greeting runs on the readiness loops, TLS on tasks.
        (tcp.as_str(), "-c 1"),
        (tcp.as_str(), "-c 2 --threads 2"),
        (&format!("tls:127.0.0.1:{port}"), "-c 1"),
        (tcp.as_str(), "-c 1 --mode echo"),
        (udp.as_str(), "-c 1"),
        (udp.as_str(), "-c 1 --mode echo"),
        // Open loop: one error per arrival, and the slot held through the pause.
        (tcp.as_str(), "-c 1 --rate 100000"),
        (udp.as_str(), "-c 1 --rate 100000"),
    ];
    for (endpoint, options) in cases {
        let out = bench(endpoint, options);
        let workers: u64 = if options.contains("-c 2") { 2 } else { 1 };
        let counted = errors(&out);
        assert!(
            (1..=MOST_PER_WORKER * workers).contains(&counted),
            "{endpoint} {options}: {counted} errors in 500 ms: {}",
            out.stderr
        );
    }
}

#[test]
fn wrong_answers_pause_every_worker() {
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "-l", "udp:127.0.0.1:0"]);
    let server = Running::start(cmd, 2);
    for endpoint in server.endpoints() {
        for options in ["-c 2 --expect hello", "-c 2 --expect hello --rate 100000"] {
            let out = bench(endpoint, options);
            let counted = errors(&out);
            assert!(
                (1..=MOST_PER_WORKER * 2).contains(&counted),
                "{endpoint} {options}: {counted} wrong answers in 500 ms: {}",
                out.stderr
            );
        }
    }
}
