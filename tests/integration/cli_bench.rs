//! `socketkit bench` against `socketkit serve`: short, bounded runs whose counts and errors
//! are checked (never their speed).

use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::process::{DEADLINE, Output, Running, run, socketkit};

fn serve(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").args(args);
    let count = args.iter().filter(|a| **a == "-l").count().max(1);
    Running::start(cmd, count)
}

/// `socketkit bench ENDPOINT OPTIONS…`, the options written as one line (no value has a
/// space in these tests).
fn bench(endpoint: &str, options: &str) -> Output {
    let mut cmd = socketkit();
    cmd.args(["bench", endpoint])
        .args(options.split_whitespace());
    run(cmd, Vec::new(), DEADLINE)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"))
}

fn completed(out: &Output) -> u64 {
    json(out)["completed"].as_u64().unwrap_or(0)
}

#[test]
fn greeting_counts_connections_and_checks_the_bytes() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let out = bench(
        &server.endpoints()[0],
        "--count 300 -c 8 -d 20s --warmup 0 --expect 你好 --json",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report = json(&out);
    assert!(completed(&out) >= 300, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(report["latency_ms"]["p50"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn wrong_bytes_and_refused_are_counted_by_kind() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let out = bench(
        &server.endpoints()[0],
        "-d 300ms --warmup 0 -c 2 --expect-hex 00ff --json",
    );
    assert_eq!(out.code(), 1);
    let report = json(&out);
    assert_eq!(report["completed"], 0);
    assert!(
        report["errors"]["wrong bytes"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert!(
        out.stderr
            .starts_with("error: cannot connect to tcp:127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("nothing completed (wrong bytes"),
        "{}",
        out.stderr
    );
    drop(server);

    let port = crate::support::net::free_port();
    let out = bench(
        &format!("127.0.0.1:{port}"),
        "-d 300ms --warmup 0 -c 2 --json",
    );
    assert_eq!(out.code(), 1);
    assert!(json(&out)["errors"]["refused"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn echo_streams_verified_blocks() {
    let server = serve(&["echo", "-l", "127.0.0.1:0"]);
    let options = "--mode echo -c 2 --size 1000 --window 4000 -d 500ms --warmup 0 --json";
    let out = bench(&server.endpoints()[0], options);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report = json(&out);
    assert!(completed(&out) > 10, "{report}");
    assert!(report["mb_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(report["errors"], serde_json::json!({}));
}

#[test]
fn idle_reports_how_many_connections_the_server_held() {
    let echo = serve(&["echo", "-l", "127.0.0.1:0"]);
    let out = bench(&echo.endpoints()[0], "--mode idle -c 50 -d 300ms --json");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(json(&out)["held"], 50);
    // A greeting server closes every connection at once: none is held.
    let greeting = serve(&["-l", "127.0.0.1:0"]);
    let out = bench(
        &greeting.endpoints()[0],
        "--mode idle -c 20 -d 300ms --json",
    );
    assert_eq!(json(&out)["held"], 0, "{}", out.stderr);
}

#[test]
fn udp_and_unix_endpoints() -> TestResult {
    let dir = tempfile::tempdir()?;
    let unix = format!("unix:{}", dir.path().join("g.sock").display());
    let server = serve(&["-l", "udp:127.0.0.1:0", "-l", &unix]);
    for endpoint in server.endpoints() {
        let out = bench(
            endpoint,
            "--count 100 -c 4 -d 20s --warmup 0 --expect 你好 --json",
        );
        assert_eq!(out.code(), 0, "{endpoint}: {}", out.stderr);
        assert!(completed(&out) >= 100, "{endpoint}");
    }
    let echo = serve(&["echo", "-l", "udp:127.0.0.1:0"]);
    let options = "--mode echo --size 512 --count 100 -c 2 -d 20s --warmup 0 --json";
    let out = bench(&echo.endpoints()[0], options);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(json(&out)["errors"], serde_json::json!({}));
    Ok(())
}

#[test]
fn rate_opens_connections_at_the_asked_pace() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let out = bench(
        &server.endpoints()[0],
        "--rate 200 -c 16 -d 1s --warmup 0 --json",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let done = completed(&out);
    assert!(
        (150..=260).contains(&done),
        "{done} connections at 200/s for 1s"
    );
}

#[test]
fn report_files_and_the_table() -> TestResult {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let dir = tempfile::tempdir()?;
    for name in ["run.svg", "run.html"] {
        let path = dir.path().join(name);
        let options = format!("-d 300ms --warmup 0 --report {}", path.display());
        let out = bench(&server.endpoints()[0], &options);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        let text = String::from_utf8(out.stdout)?;
        assert!(
            text.contains("completed") && text.contains("p99.9"),
            "{text}"
        );
        let picture = std::fs::read_to_string(&path)?;
        assert!(
            picture.contains("<svg") && picture.contains("p99"),
            "{name}"
        );
    }
    assert_eq!(bench(&server.endpoints()[0], "--report run.png").code(), 2);
    Ok(())
}

#[test]
fn ctrl_c_ends_a_long_run_with_its_report() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let mut cmd = socketkit();
    cmd.args([
        "bench",
        &server.endpoints()[0],
        "-d",
        "60s",
        "--warmup",
        "0",
        "-c",
        "4",
    ]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGINT) };
    let status = crate::support::process::wait_bounded(&mut child, DEADLINE);
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("read");
    assert!(out.contains("completed"), "{out}");
}

#[test]
fn bad_options_are_exit_2() {
    for options in ["--mode storm", "--expect-hex zz", "--rate 0", "-d soon"] {
        assert_eq!(bench("127.0.0.1:1", options).code(), 2, "{options}");
    }
}
