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

/// A loopback that holds 127.0.0.1 alone (`127.0.0.1/32`, as in some containers), in a
/// network namespace of the run's own: bench's spreading of connections over 127.0.0.1–8
/// falls back to 127.0.0.1, and no connection fails for it (seven workers of eight failed
/// every try with `EADDRNOTAVAIL`, counted as the server's errors).
#[test]
fn a_loopback_with_127_0_0_1_alone_takes_every_connection() {
    let tools = ["unshare", "ip"];
    if !crate::access_control::as_root()
        || !tools.iter().all(|t| crate::support::tools::available(t))
    {
        return;
    }
    // In the namespace: the server, then a run once it answers, then the server stopped.
    let script = r#"
ip link set lo up && ip addr del 127.0.0.1/8 dev lo && ip addr add 127.0.0.1/32 dev lo || exit 77
"$0" serve -l 127.0.0.1:7000 2>/dev/null &
server=$!
i=0
until "$0" connect -z 127.0.0.1 7000 2>/dev/null; do
  i=$((i+1)); [ $i -gt 200 ] && { kill $server; exit 78; }; sleep 0.05
done
"$0" bench 127.0.0.1:7000 -d 500ms --warmup 0 -c 8 --json; rc=$?
kill $server; wait
exit $rc
"#;
    let mut cmd = crate::support::process::command(std::path::Path::new("unshare"));
    cmd.args(["--net", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_socketkit"));
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"));
    assert!(
        report["completed"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    let errors: u64 = report["errors"]
        .as_object()
        .map_or(0, |kinds| kinds.values().filter_map(|n| n.as_u64()).sum());
    assert_eq!(errors, 0, "{report}");
}
