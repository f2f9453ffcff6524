//! `bench --send-proxy v1|v2`: every connection of every TCP mode starts with a PROXY
//! header — a `--proxy-protocol` server admits them all, and a plain echo server sends the
//! header back, which the echo check sees.

use crate::balancer::{sample, start_with_metrics};
use crate::support::process::{DEADLINE, Output, run, socketkit};

/// A `serve SERVICE --proxy-protocol` trusting the load generator's loopback sources, with
/// its metrics address.
fn proxied(service: &str, extra: &[&str]) -> (crate::support::process::Running, String) {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        service,
        "-l",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ])
    // The load generator spreads its connections over 127.0.0.1-8.
    .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.0/8"])
    .args(extra);
    start_with_metrics(cmd)
}

fn bench(endpoint: &str, options: &str) -> Output {
    let mut cmd = socketkit();
    cmd.args(["bench", endpoint, "--json"])
        .args(options.split_whitespace());
    run(cmd, Vec::new(), DEADLINE)
}

fn parsed(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"))
}

#[test]
fn every_mode_sends_a_header_a_proxy_protocol_server_admits() {
    let (greeting, metrics) = proxied("greeting", &[]);
    let endpoint = &greeting.endpoints()[0];
    for options in [
        // The readiness loop of closed-loop greeting runs.
        "--send-proxy v2 --count 300 -c 8 -d 20s --warmup 0 --expect 你好",
        // Open loop: the async greeting.
        "--send-proxy v1 --rate 300 -c 8 -d 500ms --warmup 0 --expect 你好",
    ] {
        let out = bench(endpoint, options);
        assert_eq!(out.code(), 0, "{options}: {}", out.stderr);
        let report = parsed(&out);
        assert_eq!(report["errors"], serde_json::json!({}), "{options}");
        assert!(report["completed"].as_u64().unwrap_or(0) > 0, "{report}");
    }
    let listener = format!("listener=\"{endpoint}\"");
    let refused = sample(
        &metrics,
        "socketkit_connections_refused_total",
        &format!("{listener},reason=\"proxy\""),
    );
    assert_eq!(refused, 0);

    let (echo, _metrics) = proxied("echo", &[]);
    let options = "--mode echo --send-proxy v2 -c 2 --size 1000 -d 500ms --warmup 0";
    let out = bench(&echo.endpoints()[0], options);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report = parsed(&out);
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(report["completed"].as_u64().unwrap_or(0) > 10, "{report}");

    // Idle connections without a header would be closed after 100ms; with one they stay.
    let (idle, _metrics) = proxied("echo", &["--proxy-header-timeout", "100ms"]);
    let out = bench(
        &idle.endpoints()[0],
        "--mode idle --send-proxy v1 -c 20 -d 500ms",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(parsed(&out)["held"], 20, "{}", out.stderr);
    let out = bench(&idle.endpoints()[0], "--mode idle -c 20 -d 500ms");
    assert_eq!(
        parsed(&out)["held"],
        0,
        "without the header: {}",
        out.stderr
    );
}

#[test]
fn a_plain_echo_server_sends_the_header_back_and_the_echo_check_fails() {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let echo = crate::support::process::Running::start(cmd, 1);
    let options = "--mode echo --send-proxy v2 -c 2 --size 1000 -d 300ms --warmup 0";
    let out = bench(&echo.endpoints()[0], options);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let report = parsed(&out);
    assert!(
        report["errors"]["wrong-bytes"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
}

#[test]
fn send_proxy_needs_a_tcp_endpoint() -> crate::support::TestResult {
    let dir = tempfile::tempdir()?;
    let unix = format!("unix:{}", dir.path().join("s.sock").display());
    for endpoint in [unix.as_str(), "udp:127.0.0.1:9"] {
        let out = bench(endpoint, "--send-proxy v2");
        assert_eq!(out.code(), 2, "{}", out.stderr);
        assert_eq!(
            out.stderr,
            format!("error: --send-proxy applies to tcp: and tls: endpoints, not {endpoint}\n")
        );
    }
    Ok(())
}
