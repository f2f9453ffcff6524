//! `socketkit bench` as people read a load test (issue 15 §3): two saved runs compared
//! (`--compare`), errors named by errno, and what an idle run's held connections cost in
//! memory. Short, bounded runs against `serve`; their counts are checked, never their speed.

use std::path::Path;

use crate::support::TestResult;
use crate::support::process::{DEADLINE, Output, Running, run, socketkit};

fn serve(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").args(args);
    Running::start(cmd, 1)
}

/// `socketkit bench ARGS…`, written as one line (no value has a space in these tests).
fn bench(args: &str) -> Output {
    let mut cmd = socketkit();
    cmd.arg("bench").args(args.split_whitespace());
    run(cmd, Vec::new(), DEADLINE)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"))
}

/// Runs `bench ENDPOINT OPTIONS --json` and saves its report to `file`.
fn saved(endpoint: &str, options: &str, file: &Path) -> Result<serde_json::Value, String> {
    let out = bench(&format!("{endpoint} {options} --json"));
    if out.code() != 0 {
        return Err(out.stderr);
    }
    std::fs::write(file, &out.stdout).map_err(|e| e.to_string())?;
    Ok(json(&out))
}

/// A row of the comparison table: its label's figures for A and B and the ratio.
fn row<'a>(table: &'a str, label: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .find(|line| line.starts_with(&format!("{label} ")))
        .map(|line| line[label.len()..].split_whitespace().collect())
}

#[test]
fn compare_prints_each_figure_of_both_runs_and_their_ratio() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = serve(&["-l", "127.0.0.1:0"]);
    let endpoint = &server.endpoints()[0];
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let ra = saved(endpoint, "--count 200 -c 2 -d 20s --warmup 0", &a)?;
    let rb = saved(endpoint, "--count 300 -c 4 -d 20s --warmup 0", &b)?;
    // The saved report carries its configuration and time series.
    assert_eq!(ra["config"]["connections"], 2, "{ra}");
    assert_eq!(rb["config"]["count"], 300, "{rb}");
    assert!(ra["rate_timeline"].is_array() && ra["interval_s"].as_f64() > Some(0.0));

    let out = bench(&format!("--compare {} {}", a.display(), b.display()));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let table = String::from_utf8(out.stdout)?;
    let who = |letter: &str, path: &Path, load: &str| {
        table.lines().any(|line| {
            line.starts_with(&format!(
                "{letter}  {}: greeting {endpoint} — ",
                path.display()
            )) && line.contains(load)
        })
    };
    assert!(who("A", &a, "mode greeting, 2 connections"), "{table}");
    assert!(who("B", &b, "mode greeting, 4 connections"), "{table}");
    let rate = row(&table, "conn/s").ok_or(format!("no conn/s row: {table}"))?;
    let (rate_a, rate_b) = (ra["rate_per_s"].as_f64(), rb["rate_per_s"].as_f64());
    let (rate_a, rate_b) = (rate_a.ok_or("rate")?, rate_b.ok_or("rate")?);
    assert_eq!(rate[0], format!("{rate_a:.1}"), "{table}");
    assert_eq!(rate[1], format!("{rate_b:.1}"), "{table}");
    assert_eq!(rate[2], format!("{:.2}", rate_b / rate_a), "{table}");
    assert_eq!(row(&table, "completed"), Some(vec!["200", "300", "1.50"]));
    for percentile in ["p50", "p90", "p99", "p99.9", "max"] {
        let figures = row(&table, &format!("{percentile} ms")).ok_or(percentile)?;
        assert_eq!(figures.len(), 3, "{percentile}: {table}");
    }
    assert_eq!(row(&table, "errors"), Some(vec!["0", "0", "-"]), "{table}");
    Ok(())
}

#[test]
fn compare_with_report_draws_both_runs_in_one_picture() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = serve(&["echo", "-l", "127.0.0.1:0"]);
    let endpoint = &server.endpoints()[0];
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    saved(
        endpoint,
        "--mode echo -c 1 --size 500 -d 600ms --warmup 0",
        &a,
    )?;
    saved(
        endpoint,
        "--mode echo -c 2 --size 2000 -d 600ms --warmup 0",
        &b,
    )?;
    let svg_path = dir.path().join("ab.svg");
    let out = bench(&format!(
        "--compare {} {} --report {}",
        a.display(),
        b.display(),
        svg_path.display()
    ));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(row(&String::from_utf8(out.stdout)?, "MB/s").is_some());
    let svg = std::fs::read_to_string(&svg_path)?;
    assert!(svg.starts_with("<svg") && svg.contains("socketkit bench: A vs B"));
    // The legend names each run and its configuration.
    for (letter, path, load) in [
        ("A", &a, "1 connection, 500-byte blocks"),
        ("B", &b, "2 connections, 2000-byte blocks"),
    ] {
        assert!(
            svg.contains(&format!("{letter}  {} — echo {endpoint}", path.display())),
            "{letter}: not in the legend"
        );
        assert!(svg.contains(load), "{letter}: configuration missing");
    }
    // Two lines in each time chart (rate and throughput), two bars per percentile.
    assert_eq!(svg.matches("<path d=").count(), 4, "{svg}");
    let (_, latency) = svg
        .split_once("latency, ms (log scale)")
        .ok_or("no latency chart")?;
    for colour in ["#2a6fdb", "#e07b24"] {
        let bars = latency
            .matches(&format!(r#"fill="{colour}"/><text"#))
            .count();
        assert_eq!(bars, 5, "{colour}: one bar per percentile");
    }

    let html_path = dir.path().join("ab.html");
    let out = bench(&format!(
        "--compare {} {} --report {}",
        a.display(),
        b.display(),
        html_path.display()
    ));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let html = std::fs::read_to_string(&html_path)?;
    assert!(html.contains("<svg") && html.contains("B/A"), "{html}");
    Ok(())
}

/// A file that is missing or holds no saved run, and an ENDPOINT given with --compare or
/// neither given: one `error:` line naming what is wrong, exit 2 (SPEC §2.3).
#[test]
fn compare_refuses_what_it_cannot_read_with_one_line_naming_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.json");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not json\n")?;
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"endpoint": "tcp:127.0.0.1:7"}"#)?;
    let server = serve(&["-l", "127.0.0.1:0"]);
    let good = dir.path().join("good.json");
    saved(&server.endpoints()[0], "--count 10 -c 1 --warmup 0", &good)?;
    let (g, m, t, o) = (
        good.display(),
        missing.display(),
        text.display(),
        other.display(),
    );
    let cases = [
        (
            format!("--compare {g} {m}"),
            format!("error: cannot read {m}: no such file or directory"),
        ),
        (
            format!("--compare {t} {g}"),
            format!("error: {t} is not a saved bench run (the --json output of socketkit bench): "),
        ),
        (
            format!("--compare {g} {o}"),
            format!("error: {o} is not a saved bench run (the --json output of socketkit bench): missing field"),
        ),
        (
            format!("127.0.0.1:9 --compare {g} {g}"),
            "error: --compare reads two saved runs and runs nothing: give it no ENDPOINT (got '127.0.0.1:9')".to_owned(),
        ),
        (
            "-c 4".to_owned(),
            "error: bench needs an ENDPOINT to load (or --compare A.json B.json)".to_owned(),
        ),
        (
            format!("--compare {g} {g} --report ab.png"),
            "error: --report ab.png: the file name must end in .svg or .html".to_owned(),
        ),
        (format!("--compare {g}"), "error: ".to_owned()),
        (format!("--compare {g} {g} --json"), "error: ".to_owned()),
    ];
    for (args, want) in cases {
        let out = bench(&args);
        assert_eq!(out.code(), 2, "{args}: {}", out.stderr);
        let line = out.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{args}: {line}");
        assert!(line.starts_with(&want), "{args}: {line}");
        assert!(out.stdout.is_empty(), "{args}: printed before failing");
    }
    Ok(())
}

/// Failures are counted by errno where they had one, and by a word where they had none
/// (our own deadline: `timeout`).
#[test]
fn errors_are_named_by_errno_or_by_our_word_for_them() -> TestResult {
    let port = crate::support::net::free_port();
    let out = bench(&format!("127.0.0.1:{port} -d 200ms --warmup 0 -c 2"));
    assert_eq!(out.code(), 1);
    let text = String::from_utf8(out.stdout)?;
    let errors = text
        .lines()
        .find(|l| l.trim_start().starts_with("errors"))
        .ok_or(format!("no errors line: {text}"))?;
    assert!(errors.contains("(ECONNREFUSED "), "{errors}");
    assert!(
        out.stderr
            .contains(" ECONNREFUSED (first: connection refused)"),
        "{}",
        out.stderr
    );
    // discard never answers nor closes: every greeting runs into --timeout.
    let discard = serve(&["discard", "-l", "127.0.0.1:0"]);
    let options = "-d 400ms --warmup 0 -c 2 --timeout 50ms --json";
    let out = bench(&format!("{} {options}", discard.endpoints()[0]));
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let report = json(&out);
    let errors = report["errors"].as_object().ok_or("no errors")?;
    assert!(errors["timeout"].as_u64() > Some(0), "{report}");
    assert_eq!(errors.len(), 1, "{report}");
    Ok(())
}

/// Idle runs report what the held connections cost: the bench's own memory per
/// connection, and with --server-pid the server's (PSS, else RSS), in the table and JSON.
#[test]
fn idle_reports_memory_per_held_connection_of_bench_and_server() -> TestResult {
    // A fresh server per run: one that held connections before reuses what they freed.
    let server = serve(&["echo", "-l", "127.0.0.1:0"]);
    let (endpoint, pid) = (&server.endpoints()[0], server.pid());
    let out = bench(&format!(
        "{endpoint} --mode idle -c 200 -d 300ms --server-pid {pid}"
    ));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains("  held                 200 connections"),
        "{text}"
    );
    for who in ["bench ", "server"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("  memory      {who}")))
            .ok_or(format!("no {who} memory line: {text}"))?;
        let per: Vec<&str> = line
            .split_once(" per connection")
            .ok_or(format!("no per-connection figure: {line}"))?
            .0
            .split_whitespace()
            .rev()
            .take(2)
            .collect();
        assert!(
            ["B", "KiB", "MiB"].contains(&per[0]) && per[1].parse::<f64>().is_ok(),
            "{line}"
        );
        assert!(line.contains("PSS ") || line.contains("RSS "), "{line}");
    }
    assert!(text.contains(&format!(", pid {pid})")), "{text}");

    let server = serve(&["echo", "-l", "127.0.0.1:0"]);
    let (endpoint, pid) = (&server.endpoints()[0], server.pid());
    let out = bench(&format!(
        "{endpoint} --mode idle -c 200 -d 300ms --server-pid {pid} --json"
    ));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report = json(&out);
    assert_eq!(report["held"], 200);
    let memory = &report["memory"];
    assert_eq!(memory["server_pid"], pid);
    for who in ["bench", "server"] {
        let used = &memory[who];
        let (before, after) = (used["before_bytes"].as_u64(), used["after_bytes"].as_u64());
        assert!(before > Some(0) && after > Some(0), "{who}: {report}");
        let per = used["per_connection_bytes"]
            .as_f64()
            .ok_or("per connection")?;
        // The growth spread over the 200 connections, rounded to the byte.
        let grown = after.unwrap_or(0) as f64 - before.unwrap_or(0) as f64;
        assert_eq!(per, (grown / 200.0).round(), "{who}: {report}");
        let measure = used["measure"].as_str().unwrap_or("");
        assert!(["pss_anon", "pss", "rss"].contains(&measure), "{measure}");
    }
    // A server holding 200 more connections has grown.
    assert!(
        memory["server"]["after_bytes"].as_u64() > memory["server"]["before_bytes"].as_u64(),
        "{report}"
    );
    Ok(())
}

#[test]
fn server_pid_is_for_idle_runs_of_a_live_process() {
    let cases = [
        (
            "127.0.0.1:9 --server-pid 1",
            "error: --server-pid does not apply to --mode greeting: it measures the server's memory per held connection",
        ),
        (
            "127.0.0.1:9 --mode idle --server-pid 4194304",
            "error: invalid value '4194304' for --server-pid: no such process",
        ),
        (
            "127.0.0.1:9 --mode idle --server-pid 0",
            "error: invalid value '0' for --server-pid: must be a whole number from 1 to 4194304",
        ),
    ];
    for (args, want) in cases {
        let out = bench(args);
        assert_eq!(out.code(), 2, "{args}: {}", out.stderr);
        assert_eq!(out.stderr.trim_end(), want, "{args}");
    }
}
