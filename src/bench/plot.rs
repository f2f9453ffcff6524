//! The picture of a run: completed operations per second over time (and, for echo runs, the
//! payload throughput), and the latency percentiles on a log scale, as a self-contained SVG
//! (or an HTML page around it).

use std::fmt::Write;

use super::stats::Report;

const WIDTH: f64 = 760.0;
const CHART_HEIGHT: f64 = 200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
/// Room above a chart for its label and below it for the x-axis labels.
const GAP: f64 = 70.0;

/// The report as an SVG document; `setup` is the run's configuration in words (target, mode,
/// connections, size, duration, rate), shown under the title.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let stats = socketkit::bench::Stats::new(Duration::from_millis(250));
/// let report = stats.report("tcp:127.0.0.1:7".into(), "echo", Duration::from_secs(1), None);
/// let svg = socketkit::bench::plot::svg(&report, "1s, 8 connections");
/// assert!(svg.starts_with("<svg") && svg.contains("p99") && svg.contains("8 connections"));
/// ```
pub fn svg(report: &Report, setup: &str) -> String {
    // Greeting runs count the bytes they read too, but only echo moves a payload worth a chart.
    let echo = report.mode == "echo";
    let charts = if echo { 3.0 } else { 2.0 };
    let height = 60.0 + charts * (CHART_HEIGHT + GAP) + 10.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    out.push_str(r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let title = format!(
        "socketkit bench {} {}",
        report.mode,
        escape(&report.endpoint)
    );
    let mut summary = format!(
        "{:.0} /s over {:.1} s — {} completed, {} failed",
        report.rate_per_s,
        report.seconds,
        report.completed,
        report.failed()
    );
    if echo {
        let _ = write!(summary, ", {:.2} MB/s", report.mb_per_s);
    }
    let _ = write!(
        out,
        r#"<title>{title}: {setup}</title><text x="{LEFT}" y="20" font-size="15" font-weight="bold">{title}</text><text x="{LEFT}" y="37">{setup}</text><text x="{LEFT}" y="53">{summary}</text>"#,
        setup = escape(setup)
    );
    let mut top = 60.0 + GAP - 20.0;
    timeline(&mut out, report, top, "operations / s", 1.0, "#2a6fdb");
    if echo {
        top += CHART_HEIGHT + GAP;
        // Every operation moves the same block, so throughput follows the rate bucket by
        // bucket: bytes per operation = MB/s ÷ operations/s over the whole run.
        let per_op = if report.rate_per_s > 0.0 {
            report.mb_per_s / report.rate_per_s
        } else {
            0.0
        };
        timeline(&mut out, report, top, "throughput, MB/s", per_op, "#2a9d5c");
    }
    top += CHART_HEIGHT + GAP;
    latency_chart(&mut out, report, top);
    out.push_str("</svg>\n");
    out
}

/// The report as an HTML page holding the SVG and the numbers.
pub fn html(report: &Report, setup: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>socketkit bench</title></head>\n<body style=\"font-family:sans-serif\">\n{}\n<pre>{}</pre>\n</body></html>\n",
        svg(report, setup),
        escape(&report.to_string())
    )
}

/// One value per timeline bucket (the rate times `scale`) against time in seconds.
fn timeline(out: &mut String, report: &Report, top: f64, label: &str, scale: f64, colour: &str) {
    let points: Vec<f64> = report.rate_timeline.iter().map(|r| r * scale).collect();
    let peak = points.iter().copied().fold(0.0, f64::max);
    let y_ticks = linear_ticks(peak);
    let y_top = y_ticks.last().copied().unwrap_or(1.0);
    frame(out, top, label);
    for value in &y_ticks {
        y_tick(
            out,
            top + CHART_HEIGHT * (1.0 - value / y_top),
            &short(*value),
        );
    }
    let seconds = (points.len() as f64 * report.interval_s).max(report.interval_s);
    let span = WIDTH - LEFT - RIGHT;
    let x_of = |t: f64| LEFT + span * t / seconds;
    let bottom = top + CHART_HEIGHT;
    for t in linear_ticks(seconds)
        .into_iter()
        .filter(|t| *t <= seconds + 1e-9)
    {
        let x = x_of(t);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}s</text>"##,
            bottom + 5.0,
            bottom + 18.0,
            short(t)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time, s</text>"#,
        LEFT + span / 2.0,
        bottom + 34.0
    );
    let mut path = String::new();
    for (i, value) in points.iter().enumerate() {
        // Each bucket's value is plotted at the middle of its span.
        let x = x_of((i as f64 + 0.5) * report.interval_s);
        let y = top + CHART_HEIGHT * (1.0 - value / y_top);
        let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
    }
    if !path.is_empty() {
        let _ = write!(
            out,
            r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>"#
        );
    }
}

/// The percentiles as bars on a log scale: the max is often 100× the median, and on a linear
/// scale it would flatten p50–p99 into the axis.
fn latency_chart(out: &mut String, report: &Report, top: f64) {
    let l = &report.latency_ms;
    let bars = [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ];
    let positive = || bars.iter().map(|(_, v)| *v).filter(|v| *v > 0.0);
    let low = positive().fold(f64::INFINITY, f64::min);
    let high = positive().fold(0.0, f64::max);
    let (low, high) = if high > 0.0 { (low, high) } else { (1.0, 1.0) };
    let first = low.log10().floor() as i32;
    let last = (high.log10().ceil() as i32).max(first + 1);
    let y_of = |v: f64| {
        let fraction = (v.log10() - f64::from(first)) / f64::from(last - first);
        top + CHART_HEIGHT * (1.0 - fraction.clamp(0.0, 1.0))
    };
    frame(out, top, "latency, ms (log scale)");
    for exponent in first..=last {
        let value = 10f64.powi(exponent);
        y_tick(out, y_of(value), &short(value));
    }
    let bottom = top + CHART_HEIGHT;
    let slot = (WIDTH - LEFT - RIGHT) / bars.len() as f64;
    for (i, (name, value)) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.2;
        let w = slot * 0.6;
        let y = if *value > 0.0 { y_of(*value) } else { bottom };
        let h = bottom - y;
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#e07b24"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{value:.3}</text><text x="{:.1}" y="{:.1}" text-anchor="middle">{name}</text>"##,
            x + w / 2.0,
            y - 4.0,
            x + w / 2.0,
            bottom + 18.0
        );
    }
}

/// The two axis lines and the chart's label above it.
fn frame(out: &mut String, top: f64, label: &str) {
    let bottom = top + CHART_HEIGHT;
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="#333"/><line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/><text x="{LEFT}" y="{:.1}" font-weight="bold">{label}</text>"##,
        WIDTH - RIGHT,
        top - 10.0
    );
}

/// A y-axis label with its grid line.
fn y_tick(out: &mut String, y: f64, text: &str) {
    let _ = write!(
        out,
        r##"<text x="{}" y="{:.1}" text-anchor="end">{text}</text><line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##,
        LEFT - 6.0,
        y + 4.0,
        WIDTH - RIGHT
    );
}

/// Round ticks from 0 up to the first one at or above `peak`: steps of 1, 2 or 5 times a
/// power of ten, about five of them.
fn linear_ticks(peak: f64) -> Vec<f64> {
    if !(peak.is_finite() && peak > 0.0) {
        return vec![0.0, 1.0];
    }
    let rough = peak / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    // Bounded: peak / step ≤ 5 by the choice of step, so at most 7 ticks.
    let count = (peak / step).ceil() as usize;
    (0..=count.max(1)).map(|i| step * i as f64).collect()
}

fn short(value: f64) -> String {
    match value {
        v if v >= 10_000.0 => format!("{}k", trim(v / 1000.0, 1)),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 1.0 => trim(v, 1),
        0.0 => "0".to_owned(),
        v => trim(v, 3),
    }
}

/// `value` with at most `decimals` decimals and no trailing zeros: 0.5, not 0.500.
fn trim(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_peak() {
        assert_eq!(linear_ticks(7.3), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        let labels: Vec<String> = linear_ticks(1.0).into_iter().map(short).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(linear_ticks(0.0), vec![0.0, 1.0]);
        assert_eq!(short(0.2), "0.2");
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(0.001), "0.001");
    }
}
