//! Two saved runs side by side (`bench --compare A.json B.json`): each figure of A and B and
//! the ratio B/A, in a table; [`super::plot::compare_svg`] draws the same two runs.

use std::fmt::Write;

use super::report::Report;

/// One run to compare: its name (the file it was read from) and its report.
pub type Run<'a> = (&'a str, &'a Report);

/// The table of two runs: who they are (endpoint and configuration), then one row per
/// figure — the rate (conn/s, requests/s or blocks/s), MB/s for echo, connections held and
/// memory per connection for idle, the latency percentiles, the errors by kind — with A,
/// B and B/A (`-` where A is 0).
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # use socketkit::bench::{Config, Mode, Stats};
/// let stats = Stats::new(Duration::from_millis(250));
/// let setup = Config::new(Mode::Greeting).setup();
/// let a = stats.report("tcp:127.0.0.1:7".into(), "greeting", setup, Duration::from_secs(1));
/// let table = socketkit::bench::compare::table(("a.json", &a), ("b.json", &a));
/// assert!(table.contains("conn/s") && table.contains("B/A"));
/// ```
pub fn table(a: Run<'_>, b: Run<'_>) -> String {
    let mut out = String::new();
    for (letter, (name, report)) in [("A", a), ("B", b)] {
        let _ = writeln!(
            out,
            "{letter}  {name}: {} {} — {}",
            report.mode,
            report.endpoint,
            report.configuration()
        );
    }
    if a.1.mode != b.1.mode {
        let _ = writeln!(
            out,
            "   (different modes: their operations are not the same thing)"
        );
    }
    let _ = writeln!(out, "\n{:<20}{:>14}{:>14}{:>9}", "", "A", "B", "B/A");
    for row in rows(a.1, b.1) {
        let _ = writeln!(
            out,
            "{:<20}{:>14}{:>14}{:>9}",
            row.label,
            row.a
                .map_or_else(|| "-".to_owned(), |v| number(v, row.decimals)),
            row.b
                .map_or_else(|| "-".to_owned(), |v| number(v, row.decimals)),
            ratio(row.a, row.b)
        );
    }
    out
}

/// One line of the table.
struct Row {
    label: String,
    a: Option<f64>,
    b: Option<f64>,
    decimals: usize,
}

fn row(label: &str, a: Option<f64>, b: Option<f64>, decimals: usize) -> Row {
    Row {
        label: label.to_owned(),
        a,
        b,
        decimals,
    }
}

/// The figures worth comparing for these two runs, in the table's order.
fn rows(a: &Report, b: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    let idle = |r: &Report| r.held.is_some();
    if !(idle(a) && idle(b)) {
        let label = match (operation(a), operation(b)) {
            (x, y) if x == y => format!("{x}/s"),
            _ => "operations/s".to_owned(),
        };
        let rate = |r: &Report| (!idle(r)).then_some(r.rate_per_s);
        rows.push(row(&label, rate(a), rate(b), 1));
        rows.push(row(
            "completed",
            rate(a).map(|_| a.completed as f64),
            rate(b).map(|_| b.completed as f64),
            0,
        ));
    }
    if a.mode == "echo" || b.mode == "echo" {
        let mb = |r: &Report| (r.mode == "echo").then_some(r.mb_per_s);
        rows.push(row("MB/s", mb(a), mb(b), 2));
    }
    if idle(a) || idle(b) {
        let held = |r: &Report| r.held.map(|n| n as f64);
        rows.push(row("held", held(a), held(b), 0));
        let bench = |r: &Report| {
            let used = r.memory.as_ref()?.bench.as_ref()?;
            used.per_connection_bytes
        };
        rows.push(row("bench B/connection", bench(a), bench(b), 0));
        let server = |r: &Report| {
            let used = r.memory.as_ref()?.server.as_ref()?;
            used.per_connection_bytes
        };
        if server(a).is_some() || server(b).is_some() {
            rows.push(row("server B/connection", server(a), server(b), 0));
        }
    }
    let (la, lb) = (&a.latency_ms, &b.latency_ms);
    for (label, x, y) in [
        ("p50 ms", la.p50, lb.p50),
        ("p90 ms", la.p90, lb.p90),
        ("p99 ms", la.p99, lb.p99),
        ("p99.9 ms", la.p999, lb.p999),
        ("max ms", la.max, lb.max),
    ] {
        // A run that completed nothing has no latency: its zeros are no figure.
        let sampled = |r: &Report, v: f64| (r.completed > 0 || r.held.is_some()).then_some(v);
        rows.push(row(label, sampled(a, x), sampled(b, y), 3));
    }
    rows.push(row(
        "errors",
        Some(a.failed() as f64),
        Some(b.failed() as f64),
        0,
    ));
    let mut kinds: Vec<&String> = a.errors.keys().chain(b.errors.keys()).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let n = |r: &Report| r.errors.get(kind).copied().unwrap_or(0) as f64;
        rows.push(row(&format!("  {kind}"), Some(n(a)), Some(n(b)), 0));
    }
    rows
}

/// What one operation of the run is, for the rate's label.
fn operation(report: &Report) -> &'static str {
    let datagram = ["udp:", "unixgram:"]
        .iter()
        .any(|scheme| report.endpoint.starts_with(scheme));
    match (report.mode.as_str(), datagram) {
        (_, true) => "requests",
        ("echo", false) => "blocks",
        _ => "conn",
    }
}

fn number(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// B/A to two decimals; `-` when either is missing or A is 0 (no ratio to speak of).
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => format!("{:.2}", b / a),
        _ => "-".to_owned(),
    }
}
