//! The picture of a run: completed operations per second over time, and the latency
//! percentiles, as a self-contained SVG (or an HTML page around it).

use std::fmt::Write;

use super::stats::Report;

const WIDTH: f64 = 760.0;
const CHART_HEIGHT: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

/// The report as an SVG document.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let stats = socketkit::bench::Stats::new(Duration::from_millis(250));
/// let report = stats.report("tcp:127.0.0.1:7".into(), "echo", Duration::from_secs(1), None);
/// let svg = socketkit::bench::plot::svg(&report);
/// assert!(svg.starts_with("<svg") && svg.contains("p99"));
/// ```
pub fn svg(report: &Report) -> String {
    let height = 2.0 * CHART_HEIGHT + 170.0;
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
    let summary = format!(
        "{:.0} /s over {:.1} s — {} completed, {} failed",
        report.rate_per_s,
        report.seconds,
        report.completed,
        report.failed()
    );
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{title}</text><text x="{LEFT}" y="38">{summary}</text>"#
    );
    rate_chart(&mut out, report, 70.0);
    latency_chart(&mut out, report, 70.0 + CHART_HEIGHT + 60.0);
    out.push_str("</svg>\n");
    out
}

/// The report as an HTML page holding the SVG and the numbers.
pub fn html(report: &Report) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>socketkit bench</title></head>\n<body style=\"font-family:sans-serif\">\n{}\n<pre>{}</pre>\n</body></html>\n",
        svg(report),
        escape(&report.to_string())
    )
}

fn rate_chart(out: &mut String, report: &Report, top: f64) {
    let points = &report.rate_timeline;
    let peak = points.iter().copied().fold(0.0, f64::max).max(1.0);
    axes(out, top, "operations / s", peak);
    if points.is_empty() {
        return;
    }
    let span = WIDTH - LEFT - RIGHT;
    let step = span / points.len().max(1) as f64;
    let mut path = String::new();
    for (i, rate) in points.iter().enumerate() {
        let x = LEFT + step * (i as f64 + 0.5);
        let y = top + CHART_HEIGHT * (1.0 - rate / peak);
        let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
    }
    let _ = write!(
        out,
        r##"<path d="{path}" fill="none" stroke="#2a6fdb" stroke-width="2"/>"##
    );
    let seconds = points.len() as f64 * report.interval_s;
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">time → {seconds:.1} s</text>"#,
        WIDTH - RIGHT,
        top + CHART_HEIGHT + 16.0
    );
}

fn latency_chart(out: &mut String, report: &Report, top: f64) {
    let l = &report.latency_ms;
    let bars = [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ];
    let peak = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(0.001);
    axes(out, top, "latency, ms", peak);
    let span = WIDTH - LEFT - RIGHT;
    let slot = span / bars.len() as f64;
    for (i, (name, value)) in bars.iter().enumerate() {
        let h = CHART_HEIGHT * value / peak;
        let x = LEFT + slot * i as f64 + slot * 0.2;
        let y = top + CHART_HEIGHT - h;
        let w = slot * 0.6;
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#e07b24"/>"##
        );
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{value:.3}</text>"#,
            x + w / 2.0,
            y - 4.0
        );
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{name}</text>"#,
            x + w / 2.0,
            top + CHART_HEIGHT + 16.0
        );
    }
}

fn axes(out: &mut String, top: f64, label: &str, peak: f64) {
    let bottom = top + CHART_HEIGHT;
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="#333"/><line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
        WIDTH - RIGHT
    );
    for tick in 0..=4 {
        let value = peak * f64::from(tick) / 4.0;
        let y = bottom - CHART_HEIGHT * f64::from(tick) / 4.0;
        let _ = write!(
            out,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text><line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT - 6.0,
            y + 4.0,
            short(value),
            WIDTH - RIGHT
        );
    }
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{label}</text>"#,
        top - 8.0
    );
}

fn short(value: f64) -> String {
    match value {
        v if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        0.0 => "0".to_owned(),
        v => format!("{v:.3}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
