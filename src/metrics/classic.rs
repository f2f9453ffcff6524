//! Prometheus's classic text format (0.0.4) from the OpenMetrics text the registry writes:
//! for the scrapers that do not ask for OpenMetrics (`Accept` without
//! `application/openmetrics-text`: promtool, older agents, `curl`), whose parsers would read
//! the OpenMetrics body but leave every counter untyped.

/// OpenMetrics text rewritten in the classic format: a counter's family is named as its
/// samples are (`x_total`, where OpenMetrics names it `x`), for a classic parser matches a
/// sample's `# TYPE` and `# HELP` by that name and would leave every counter untyped;
/// `# UNIT` and `# EOF` go, `unknown` is `untyped`. Samples and their label escaping are the
/// same in both.
pub fn classic_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    // A family's `# HELP` comes before its `# TYPE`, which says whether it is renamed.
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), kind),
                "unknown" => (name.to_owned(), "untyped"),
                _ => (name.to_owned(), kind),
            };
            if let Some(text) = help.take() {
                let text = text.split_once(' ').map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some(text) = help.take() {
            out.push_str(&format!("# HELP {text}\n"));
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_as_their_samples_and_the_rest_stays() {
        let open = "# HELP x_bytes Bytes.\n# TYPE x_bytes counter\nx_bytes_total{l=\"a\\\\b\"} 3\n\
                    # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# TYPE x_seconds histogram\n\
                    # UNIT x_seconds seconds\nx_seconds_count 0\n# EOF\n";
        assert_eq!(
            classic_text(open),
            "# HELP x_bytes_total Bytes.\n# TYPE x_bytes_total counter\nx_bytes_total{l=\"a\\\\b\"} 3\n\
             # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# TYPE x_seconds histogram\n\
             x_seconds_count 0\n"
        );
    }
}
