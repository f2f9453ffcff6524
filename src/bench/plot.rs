//! The picture of a run: completed operations per second over time (and, for echo runs, the
//! payload throughput), and the latency percentiles on a log scale, as a self-contained SVG
//! (or an HTML page around it). Two runs (`--compare`) are drawn in the same charts, one
//! colour each, with a legend naming them and their configurations.

use std::fmt::Write;

use super::compare::Run;
use super::report::Report;

const WIDTH: f64 = 760.0;
const CHART_HEIGHT: f64 = 200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
/// Room above a chart for its label and below it for the x-axis labels.
const GAP: f64 = 70.0;
/// Height of one line of the header.
const LINE: f64 = 16.0;
/// The colours of the runs of a comparison, A then B.
const RUN_COLOURS: [&str; 2] = ["#2a6fdb", "#e07b24"];

/// One run as drawn: its report, its name in the legend (none for a lone run) and the
/// colour of each of its charts.
struct Series<'a> {
    report: &'a Report,
    name: Option<String>,
    rate: &'static str,
    throughput: &'static str,
    latency: &'static str,
}

/// The report as an SVG document, with the run's configuration (target, mode,
/// connections, size, duration, rate) under the title.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use socketkit::bench::{Config, Mode, Stats};
/// let stats = Stats::new(Duration::from_millis(250));
/// let mut config = Config::new(Mode::Echo);
/// config.connections = 8;
/// let report = stats.report("tcp:127.0.0.1:7".into(), "echo", config.setup(), Duration::from_secs(1));
/// let svg = socketkit::bench::plot::svg(&report);
/// assert!(svg.starts_with("<svg") && svg.contains("p99") && svg.contains("8 connections"));
/// ```
pub fn svg(report: &Report) -> String {
    draw(&[Series {
        report,
        name: None,
        rate: "#2a6fdb",
        throughput: "#2a9d5c",
        latency: "#e07b24",
    }])
}

/// Two runs in one SVG: A and B in their own colours in every chart, each named in the
/// legend with its endpoint and configuration.
pub fn compare_svg(a: Run<'_>, b: Run<'_>) -> String {
    let series: Vec<Series<'_>> = [("A", a), ("B", b)]
        .into_iter()
        .zip(RUN_COLOURS)
        .map(|((letter, (name, report)), colour)| Series {
            report,
            name: Some(format!("{letter}  {name}")),
            rate: colour,
            throughput: colour,
            latency: colour,
        })
        .collect();
    draw(&series)
}

/// The report as an HTML page holding the SVG and the numbers.
pub fn html(report: &Report) -> String {
    page(&svg(report), &report.to_string())
}

/// Two runs as an HTML page holding their SVG and the comparison table.
pub fn compare_html(a: Run<'_>, b: Run<'_>) -> String {
    page(&compare_svg(a, b), &super::compare::table(a, b))
}

fn page(svg: &str, text: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>socketkit bench</title></head>\n<body style=\"font-family:sans-serif\">\n{svg}\n<pre>{}</pre>\n</body></html>\n",
        escape(text)
    )
}

/// The whole picture: the header, then the rate chart, the throughput chart if a run is an
/// echo run (greeting runs count the bytes they read too, but only echo moves a payload
/// worth a chart), and the latency chart.
fn draw(series: &[Series<'_>]) -> String {
    let echo = series.iter().any(|s| s.report.mode == "echo");
    let charts = if echo { 3.0 } else { 2.0 };
    let mut body = String::new();
    let header = header(&mut body, series);
    let mut top = header + GAP - 20.0;
    timeline(&mut body, series, top, "operations / s", |_| Some(1.0));
    if echo {
        top += CHART_HEIGHT + GAP;
        // Every operation moves the same block, so throughput follows the rate bucket by
        // bucket: bytes per operation = MB/s ÷ operations/s over the whole run.
        timeline(&mut body, series, top, "throughput, MB/s", |r| {
            (r.mode == "echo").then(|| {
                if r.rate_per_s > 0.0 {
                    r.mb_per_s / r.rate_per_s
                } else {
                    0.0
                }
            })
        });
    }
    top += CHART_HEIGHT + GAP;
    latency_chart(&mut body, series, top);
    let height = header + charts * (CHART_HEIGHT + GAP) + 10.0;
    let title: Vec<String> = series
        .iter()
        .map(|s| {
            format!(
                "{} {}: {}",
                s.report.mode,
                s.report.endpoint,
                s.report.configuration()
            )
        })
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="#fff"/><title>socketkit bench {}</title>{body}</svg>
"##,
        escape(&title.join(" vs "))
    )
}

/// The title, and per run its configuration and its figures (with a colour swatch and its
/// name when there are several); returns where the header ends.
fn header(out: &mut String, series: &[Series<'_>]) -> f64 {
    let title = match series {
        [one] => format!(
            "socketkit bench {} {}",
            one.report.mode, one.report.endpoint
        ),
        _ => "socketkit bench: A vs B".to_owned(),
    };
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    let mut y = 20.0;
    for s in series {
        let report = s.report;
        if let Some(name) = &s.name {
            y += LINE + 4.0;
            let _ = write!(
                out,
                r#"<rect x="{LEFT}" y="{:.1}" width="14" height="10" fill="{}"/><text x="{:.1}" y="{y:.1}" font-weight="bold">{} — {} {}</text>"#,
                y - 9.0,
                s.rate,
                LEFT + 20.0,
                escape(name),
                report.mode,
                escape(&report.endpoint)
            );
        }
        let mut summary = format!(
            "{:.0} /s over {:.1} s — {} completed, {} failed",
            report.rate_per_s,
            report.seconds,
            report.completed,
            report.failed()
        );
        if report.mode == "echo" {
            let _ = write!(summary, ", {:.2} MB/s", report.mb_per_s);
        }
        if let Some(held) = report.held {
            let _ = write!(summary, ", {held} held");
        }
        let indent = if s.name.is_some() { LEFT + 20.0 } else { LEFT };
        for line in [report.configuration(), summary] {
            y += LINE;
            let _ = write!(
                out,
                r#"<text x="{indent:.1}" y="{y:.1}">{}</text>"#,
                escape(&line)
            );
        }
    }
    y + 7.0
}

/// One value per timeline bucket (the rate times the run's `scale`; a run whose scale is
/// `None` is not drawn) against time in seconds.
fn timeline(
    out: &mut String,
    series: &[Series<'_>],
    top: f64,
    label: &str,
    scale: impl Fn(&Report) -> Option<f64>,
) {
    let lines: Vec<(&Series<'_>, Vec<f64>)> = series
        .iter()
        .filter_map(|s| {
            let scale = scale(s.report)?;
            Some((
                s,
                s.report.rate_timeline.iter().map(|r| r * scale).collect(),
            ))
        })
        .collect();
    let peak = lines
        .iter()
        .flat_map(|(_, points)| points.iter().copied())
        .fold(0.0, f64::max);
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
    let seconds = lines
        .iter()
        .map(|(s, points)| (points.len() as f64 * s.report.interval_s).max(s.report.interval_s))
        .fold(0.0, f64::max)
        .max(f64::EPSILON);
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
    for (s, points) in &lines {
        let colour = if label.starts_with("throughput") {
            s.throughput
        } else {
            s.rate
        };
        let mut path = String::new();
        for (i, value) in points.iter().enumerate() {
            // Each bucket's value is plotted at the middle of its span.
            let x = x_of((i as f64 + 0.5) * s.report.interval_s);
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
}

/// The percentiles as bars on a log scale: the max is often 100× the median, and on a linear
/// scale it would flatten p50–p99 into the axis. Several runs: one bar each per percentile,
/// side by side.
fn latency_chart(out: &mut String, series: &[Series<'_>], top: f64) {
    const NAMES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
    let values = |r: &Report| {
        let l = &r.latency_ms;
        [l.p50, l.p90, l.p99, l.p999, l.max]
    };
    let positive: Vec<f64> = series
        .iter()
        .flat_map(|s| values(s.report))
        .filter(|v| *v > 0.0)
        .collect();
    let low = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let high = positive.iter().copied().fold(0.0, f64::max);
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
    let slot = (WIDTH - LEFT - RIGHT) / NAMES.len() as f64;
    // The bars of one percentile take 60% of its slot between them.
    let w = slot * 0.6 / series.len().max(1) as f64;
    for (i, name) in NAMES.iter().enumerate() {
        let start = LEFT + slot * i as f64 + slot * 0.2;
        for (k, s) in series.iter().enumerate() {
            let value = values(s.report)[i];
            let x = start + w * k as f64;
            let y = if value > 0.0 { y_of(value) } else { bottom };
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                w - 2.0,
                bottom - y,
                s.latency,
                x + w / 2.0,
                y - 4.0,
                bar_label(value)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{name}</text>"#,
            start + slot * 0.3,
            bottom + 18.0
        );
    }
}

/// A bar's value: three significant figures at most, so that two bars' labels fit side by
/// side.
fn bar_label(value: f64) -> String {
    match value {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v if v >= 1.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
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
