//! `socketkit bench` against `socketkit serve`: short, bounded runs whose counts and errors
//! are checked (never their speed).

use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::process::{DEADLINE, Output, Running, run, socketkit};

pub(super) fn serve(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").args(args);
    let count = args.iter().filter(|a| **a == "-l").count().max(1);
    Running::start(cmd, count)
}

/// `socketkit bench ENDPOINT OPTIONS…`, the options written as one line (no value has a
/// space in these tests).
pub(super) fn bench(endpoint: &str, options: &str) -> Output {
    let mut cmd = socketkit();
    cmd.args(["bench", endpoint])
        .args(options.split_whitespace());
    run(cmd, Vec::new(), DEADLINE)
}

pub(super) fn json(out: &Output) -> serde_json::Value {
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
        report["errors"]["wrong-bytes"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    // It connected: the error says what went wrong instead (issue 9).
    let line = out.stderr.trim_end();
    assert!(
        line.starts_with("error: nothing completed against tcp:127.0.0.1:")
            && line.contains(" wrong-bytes; the answers differ from --expect-hex"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    drop(server);

    let port = crate::support::net::free_port();
    let out = bench(
        &format!("127.0.0.1:{port}"),
        "-d 300ms --warmup 0 -c 2 --json",
    );
    assert_eq!(out.code(), 1);
    assert!(json(&out)["errors"]["ECONNREFUSED"].as_u64().unwrap_or(0) > 0);
}

/// A run that completed nothing has no latency to show: zeros read as an instant server.
#[test]
fn a_run_that_completed_nothing_shows_no_latency() {
    let port = crate::support::net::free_port();
    let out = bench(&format!("127.0.0.1:{port}"), "-d 200ms --warmup 0 -c 2");
    assert_eq!(out.code(), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("latency ms  none: nothing completed") && !stdout.contains("p50"),
        "{stdout}"
    );
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

/// The picture names the run's configuration, has a time axis with round ticks in seconds,
/// the percentiles on a log scale in decades, and (echo only) a throughput chart.
#[test]
fn the_svg_report_shows_configuration_time_axis_and_log_latency() -> TestResult {
    let dir = tempfile::tempdir()?;
    let greeting = serve(&["-l", "127.0.0.1:0"]);
    let echo = serve(&["echo", "-l", "127.0.0.1:0"]);
    let runs = [
        (&greeting, "greeting", "-c 3 --rate 500"),
        (&echo, "echo", "--mode echo -c 2 --size 512"),
    ];
    for (server, mode, load) in runs {
        let path = dir.path().join(format!("{mode}.svg"));
        let options = format!("{load} -d 1s --warmup 0 --report {}", path.display());
        let endpoint = &server.endpoints()[0];
        let out = bench(endpoint, &options);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        let svg = std::fs::read_to_string(&path)?;
        let title = format!("socketkit bench {mode} {endpoint}");
        assert!(svg.contains(&title), "{mode}: no title {title}: {svg}");
        for part in ["1s, ", &format!("mode {mode}"), "1 thread"] {
            assert!(svg.contains(part), "{mode}: configuration lacks {part}");
        }
        if mode == "echo" {
            assert!(svg.contains("2 connections") && svg.contains("512-byte blocks"));
            assert!(svg.contains("closed loop") && svg.contains("throughput, MB/s"));
        } else {
            assert!(svg.contains("3 connections") && svg.contains("open loop at 500/s"));
            assert!(
                !svg.contains("throughput, MB/s"),
                "greeting has no payload chart"
            );
        }
        // Time axis: labelled, ticks from 0s to the run's end in round steps.
        assert!(svg.contains("time, s"), "{mode}");
        for tick in [">0s<", ">0.2s<", ">0.4s<"] {
            assert!(svg.contains(tick), "{mode}: no time tick {tick}");
        }
        // Latency in decades: every y tick of that chart is a power of ten, and there are at
        // least two (the decade below the lowest percentile and the one above the max).
        let (_, latency) = svg
            .split_once("latency, ms (log scale)")
            .ok_or(format!("{mode}: no log-scale latency chart"))?;
        let decades = ["0.001", "0.01", "0.1", "1", "10", "100", "1000"]
            .iter()
            .filter(|d| latency.contains(&format!(r#"text-anchor="end">{d}</text>"#)))
            .count();
        let ticks = latency.matches(r#"text-anchor="end">"#).count();
        assert!(
            decades >= 2 && decades == ticks,
            "{mode}: latency ticks are not all decades: {latency}"
        );
        for name in ["p50", "p90", "p99", "p99.9", "max"] {
            assert!(svg.contains(&format!(">{name}<")), "{mode}: no {name} bar");
        }
    }
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

/// Issue 9: echo against a greeting server (which answers 6 bytes and closes) ended every
/// worker early, intermittently with the same panic; now every failed connection is counted
/// and retried until the end.
#[test]
fn echo_against_a_greeting_server_counts_failures_to_the_end() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    for _ in 0..3 {
        let started = Instant::now();
        let out = bench(
            &server.endpoints()[0],
            "--mode echo --size 1 -c 4 -d 300ms --warmup 0 --json",
        );
        assert_eq!(out.code(), 1, "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        let report = json(&out);
        assert!(report["seconds"].as_f64().unwrap_or(0.0) >= 0.3, "{report}");
        assert!(
            report["errors"].as_object().is_some_and(|e| !e.is_empty()),
            "{report}"
        );
        assert!(
            out.stderr
                .starts_with("error: nothing completed against tcp:127.0.0.1:"),
            "{}",
            out.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// Issue 9: `--count 1000` completed 1,050 (every worker's last operation counted) and
/// printed `for 0.0s`.
#[test]
fn count_completes_exactly_n_in_the_time_it_took() -> TestResult {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let endpoint = &server.endpoints()[0];
    for options in [
        "--count 1000 -c 64 -d 20s --warmup 200ms --json",
        "--count 333 -c 16 -d 20s --warmup 0 --mode greeting --rate 100000 --json",
    ] {
        let started = Instant::now();
        let out = bench(endpoint, options);
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(out.code(), 0, "{options}: {}", out.stderr);
        let report = json(&out);
        let asked: u64 = options.split_whitespace().nth(1).unwrap_or("0").parse()?;
        assert_eq!(report["completed"], asked, "{options}: {report}");
        let seconds = report["seconds"].as_f64().unwrap_or(0.0);
        assert!(
            seconds > 0.0 && seconds < wall,
            "{seconds}s of {wall}s: {report}"
        );
    }
    let out = bench(endpoint, "--count 500 -c 8 --warmup 0");
    let text = String::from_utf8(out.stdout)?;
    // After the header, the report's first line: "greeting tcp:… for 0.123s".
    let first = text
        .lines()
        .find(|line| line.starts_with("greeting "))
        .unwrap_or_default();
    let shown: f64 = first
        .rsplit(" for ")
        .next()
        .and_then(|s| s.strip_suffix('s'))
        .ok_or(format!("no time in {first:?}"))?
        .parse()?;
    assert!(shown > 0.0, "{first}");
    Ok(())
}

/// Issue 9: values that panicked (`--rate 99999999999`: "period must be non-zero"), aborted
/// out of memory (`-c`/`--size 99999999999`) or were taken silently (`0`) are refused with
/// the option's range, before any work.
#[test]
fn out_of_range_values_are_refused_with_their_range() {
    let cases = [
        (
            "--rate 99999999999",
            "--rate: must be a number from 0.001 to 1000000",
        ),
        (
            "-c 99999999999",
            "--connections: must be a whole number from 1 to 1000000",
        ),
        (
            "-c 10000000",
            "--connections: must be a whole number from 1 to 1000000",
        ),
        (
            "-c 0",
            "--connections: must be a whole number from 1 to 1000000",
        ),
        (
            "--size 99999999999",
            "--size: must be a whole number from 1 to 67108864",
        ),
        (
            "--size 0",
            "--size: must be a whole number from 1 to 67108864",
        ),
        (
            "--count 0",
            "--count: must be a whole number from 1 to 1000000000000",
        ),
        (
            "--threads 0",
            "--threads: must be a whole number from 1 to 1024",
        ),
        (
            "--count -1",
            "--count: must be a whole number from 1 to 1000000000000",
        ),
        ("-d 0", "--duration: must be from 1ms to 365d"),
        ("--timeout -1s", "--timeout: must be from 1ms to 365d"),
    ];
    for (options, expected) in cases {
        let started = Instant::now();
        let out = bench("127.0.0.1:1", options);
        assert_eq!(out.code(), 2, "{options}: {}", out.stderr);
        let line = out.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.starts_with("error: invalid ") && line.ends_with(expected),
            "{line}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{options}");
    }
    let out = bench("udp:127.0.0.1:1", "--size 70000");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains("holds at most 65507 bytes"),
        "{}",
        out.stderr
    );
}

/// Issue 9: many connections (`-c 10000000 -d 1s` ran on long past its second) still stop
/// on time: starting the workers watches the clock.
#[test]
fn many_connections_still_stop_on_time() {
    let port = crate::support::net::free_port();
    let endpoint = format!("127.0.0.1:{port}");
    for mode in ["greeting", "echo", "idle"] {
        let started = Instant::now();
        let options = format!("--mode {mode} -c 900 -d 300ms --warmup 0 --timeout 1s --json");
        let out = bench(&endpoint, &options);
        assert_eq!(out.code(), 1, "{mode}: {}", out.stderr);
        assert!(
            json(&out)["errors"]["ECONNREFUSED"].as_u64().unwrap_or(0) > 0,
            "{mode}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "{mode} took {took:?}");
    }
}

/// The table opens with the run's configuration (as wrk does); echo reports bytes and MB/s;
/// idle reports the connections held rather than a rate.
#[test]
fn the_table_says_what_was_run_and_what_each_mode_measures() -> TestResult {
    let server = serve(&["echo", "-l", "127.0.0.1:0"]);
    let endpoint = &server.endpoints()[0];
    let out = bench(endpoint, "--mode echo -c 1 --size 10 -d 100ms --warmup 0");
    let text = String::from_utf8(out.stdout)?;
    let load = text.lines().nth(1).unwrap_or_default();
    assert!(load.starts_with("  mode echo, 1 connection, "), "{text}");
    let out = bench(
        endpoint,
        "--mode echo -c 2 --size 1000 -d 300ms --warmup 100ms",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = String::from_utf8(out.stdout)?;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("Running 300ms bench @ {endpoint}, after a 100ms warm-up").as_str()),
        "{text}"
    );
    assert_eq!(
        lines.next(),
        Some(
            "  mode echo, 2 connections, 1000-byte blocks, 1000 bytes in flight, 1 thread, closed loop"
        ),
        "{text}"
    );
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("bytes"))
        .ok_or(format!("no bytes line: {text}"))?
        .trim()
        .parse()?;
    assert!(bytes > 0 && bytes.is_multiple_of(1000), "{text}");
    assert!(text.contains(" MB/s"), "{text}");

    let out = bench(endpoint, "--mode idle -c 3 -d 200ms --warmup 0");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = String::from_utf8(out.stdout)?;
    // An idle run holds its connections: no loop, closed or open.
    let load = text.lines().nth(1);
    assert_eq!(
        load,
        Some("  mode idle, holding 3 connections, 1 thread"),
        "{text}"
    );
    assert!(
        text.contains("  held                   3 connections"),
        "{text}"
    );
    assert!(!text.contains("  rate "), "idle has no rate: {text}");
    Ok(())
}
