//! `socketkit bench` against Unix datagram servers: what the socket's queue limit and a
//! missing socket file do to a run.

use super::cli_bench::{bench, json, serve};
use crate::support::TestResult;

/// Issue 9: a datagram endpoint whose socket file is missing made every worker give up at
/// once, and the run then polled its finished driver again (`async fn resumed after
/// completion`, exit 101). Now the workers retry, and the run ends with its report and one
/// error line naming the cause.
#[test]
fn a_missing_unixgram_socket_is_reported_not_a_panic() -> TestResult {
    let dir = tempfile::tempdir()?;
    let endpoint = format!("unixgram:{}", dir.path().join("nope.sock").display());
    let out = bench(&endpoint, "-d 300ms --warmup 100ms -c 4 --json");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let line = out.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!(
            "error: nothing completed against {endpoint} in 0.3"
        )) && line.ends_with("(first: no such file or directory)"),
        "{line}"
    );
    assert_eq!(json(&out)["completed"], 0);
    Ok(())
}

/// A unixgram server's socket queues `net.unix.max_dgram_qlen` datagrams: with more clients
/// than that, the run says so before it starts (the latencies then show the kernel's queue,
/// docs/platform-notes.md); with as many or fewer, it says nothing.
#[test]
fn more_unixgram_clients_than_the_kernel_queues_are_warned_about() -> TestResult {
    let Some(limit) = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
    else {
        println!("skipped: no /proc/sys/net/unix/max_dgram_qlen to compare with");
        return Ok(());
    };
    if limit > 256 {
        println!("skipped: net.unix.max_dgram_qlen is {limit}, more clients than a test runs");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("echo.sock");
    let _server = serve(&["echo", "-l", &format!("unixgram:{}", path.display())]);
    let endpoint = format!("unixgram:{}", path.display());
    for (clients, warned) in [(limit + 1, true), (limit, false)] {
        let out = bench(
            &endpoint,
            &format!("--mode echo -c {clients} -d 200ms --warmup 0 --json"),
        );
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert_eq!(
            out.stderr.contains("net.unix.max_dgram_qlen"),
            warned,
            "{clients} clients: {}",
            out.stderr
        );
    }
    Ok(())
}
