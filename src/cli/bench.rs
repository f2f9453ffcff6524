//! `socketkit bench`: run the load generator, show progress on a terminal, print the report.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use socketkit::bench::{self, Config, Mode, Report, Signal, Stats};
use socketkit::client::MAX_DATAGRAM;

use super::args::BenchArgs;
use super::exit::CliError;
use super::{init_logging, resolve, tls};

pub(crate) fn run(args: BenchArgs) -> Result<(), CliError> {
    let endpoint = resolve::target("bench", &args.endpoint)?;
    let mut config = config(&args)?;
    // Every connection makes a full handshake: resumption would measure something else.
    config.tls = args.tls.connector(&endpoint, true)?;
    if !endpoint.transport().is_stream() && config.size > MAX_DATAGRAM {
        return Err(CliError::Usage(format!(
            "invalid value '{}' for --size: a datagram to {endpoint} holds at most \
             {MAX_DATAGRAM} bytes",
            config.size
        )));
    }
    bench::reserve_descriptors(&config).map_err(|most| {
        CliError::Usage(format!(
            "invalid value '{}' for --connections: the open-file limit (ulimit -n) allows at \
             most {most}",
            config.connections
        ))
    })?;
    if let Some(path) = &args.report {
        report_kind(path)?;
    }
    init_logging(&args.log);
    tls::warn_if_insecure(&args.tls.verify);
    // One thread runs everything on the calling thread, with no cross-thread wake-ups.
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|err| io_error("tokio runtime", err))?;
    let stats = Arc::new(Stats::new(config.interval));
    let show_progress = std::io::stderr().is_terminal() && !args.json && !args.log.quiet;
    if !args.json {
        // A closed stdout (`| head`) is not the run's failure.
        let _ = std::io::stdout().write_all(header(&args, &endpoint).as_bytes());
    }
    let (warmup, duration) = (config.warmup, config.duration);
    let report = runtime.block_on(async {
        let stop = Signal::default();
        let ctrl_c = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                ctrl_c.set();
            }
        });
        let progress = show_progress.then(|| progress(Arc::clone(&stats), warmup, duration));
        let report = bench::run(&endpoint, config, Arc::clone(&stats), stop).await;
        if let Some((bar, task)) = progress {
            task.abort();
            bar.finish_and_clear();
        }
        report
    })?;
    let setup = format!(
        "{}, {}",
        humantime::format_duration(args.duration),
        load(&args)
    );
    output(&args, &report, &setup)?;
    if report.completed == 0 {
        return Err(CliError::Failed(nothing_completed(&args, &report, &stats)));
    }
    Ok(())
}

/// Why a run completed nothing, in words: the failures by kind and what the first one was.
fn nothing_completed(args: &BenchArgs, report: &Report, stats: &Stats) -> String {
    let head = format!(
        "nothing completed against {} in {:.3}s",
        report.endpoint, report.seconds
    );
    if report.errors.is_empty() {
        return format!("{head}: no operation finished within the run");
    }
    let kinds: Vec<String> = report
        .errors
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    let wrong = report.errors.contains_key("wrong bytes");
    let why = match (wrong, args.mode.as_str()) {
        (true, "echo") => "; the echoes differ from what was sent".to_owned(),
        (true, _) if args.expect.is_some() => "; the answers differ from --expect".to_owned(),
        (true, _) if args.expect_hex.is_some() => {
            "; the answers differ from --expect-hex".to_owned()
        }
        _ => stats
            .first_error()
            .map(|first| format!(" (first: {first})"))
            .unwrap_or_default(),
    };
    format!("{head}: {}{why}", kinds.join(", "))
}

fn config(args: &BenchArgs) -> Result<Config, CliError> {
    let mode = match args.mode.as_str() {
        "greeting" => Mode::Greeting,
        "echo" => Mode::Echo,
        "idle" => Mode::Idle,
        other => {
            return Err(CliError::Usage(format!(
                "unknown mode '{other}' (expected greeting, echo or idle)"
            )));
        }
    };
    let mut config = Config::new(mode);
    config.connections = args.connections;
    config.threads = args.threads;
    config.duration = args.duration;
    config.warmup = args.warmup;
    config.timeout = args.timeout;
    config.count = args.count;
    config.rate = args.rate;
    config.size = args.size;
    config.window = args.window.unwrap_or(config.size);
    config.expect = match (&args.expect, &args.expect_hex) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(hex)) => Some(decode_hex(hex)?),
        (None, None) => None,
    };
    Ok(config)
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, CliError> {
    let bad = || CliError::Usage(format!("invalid hex '{hex}' for --expect-hex"));
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// SVG or HTML, by the report file's extension.
fn report_kind(path: &std::path::Path) -> Result<bool, CliError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => Ok(false),
        Some("html" | "htm") => Ok(true),
        _ => Err(CliError::Usage(format!(
            "--report {}: the file name must end in .svg or .html",
            path.display()
        ))),
    }
}

/// `setup` is the run's configuration in words, for the picture's title.
fn output(args: &BenchArgs, report: &Report, setup: &str) -> Result<(), CliError> {
    let text = if args.json {
        serde_json::to_string(report)
            .map_err(|err| io_error("report", std::io::Error::other(err)))?
            + "\n"
    } else {
        report.to_string()
    };
    // A closed stdout (`| head`) is not the run's failure.
    let _ = std::io::stdout().write_all(text.as_bytes());
    if let Some(path) = &args.report {
        let body = if report_kind(path)? {
            bench::plot::html(report, setup)
        } else {
            bench::plot::svg(report, setup)
        };
        std::fs::write(path, body).map_err(|err| io_error(&path.display().to_string(), err))?;
    }
    Ok(())
}

/// The run's configuration before it starts, as wrk opens: what is measured, for how long,
/// and with what load.
fn header(args: &BenchArgs, endpoint: &socketkit::endpoint::Endpoint) -> String {
    let span = humantime::format_duration(args.duration);
    let warmup = if args.warmup.is_zero() {
        "no warm-up".to_owned()
    } else {
        format!(
            "after a {} warm-up",
            humantime::format_duration(args.warmup)
        )
    };
    format!(
        "Running {span} bench @ {endpoint}, {warmup}\n  {}\n",
        load(args)
    )
}

/// The load in words: mode, connections, block size, threads, rate, count.
fn load(args: &BenchArgs) -> String {
    let mut load = vec![
        format!("mode {}", args.mode),
        format!("{} connections", args.connections),
    ];
    if args.mode == "echo" {
        let window = args.window.unwrap_or(args.size);
        load.push(format!(
            "{}-byte blocks, {window} bytes in flight",
            args.size
        ));
    }
    load.push(match args.threads {
        1 => "1 thread".to_owned(),
        n => format!("{n} threads"),
    });
    load.push(match args.rate {
        Some(rate) => format!("open loop at {rate}/s"),
        None => "closed loop".to_owned(),
    });
    if let Some(count) = args.count {
        load.push(format!("stopping at {count} operations"));
    }
    load.join(", ")
}

/// A progress bar over the measured span with the live rate and errors, refreshed 10 times a
/// second; only on a terminal. The warm-up is labelled as such and not counted in the
/// elapsed time.
fn progress(
    stats: Arc<Stats>,
    warmup: Duration,
    duration: Duration,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    let style = ProgressStyle::with_template("{prefix:>8} {bar:30} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let shown = bar.clone();
    let task = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut last = (started, 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let now = tokio::time::Instant::now();
            let since = now.duration_since(started);
            if since < warmup {
                shown.set_prefix("warm-up");
                shown.set_message(format!(
                    "{:.1}s of {:.1}s, not counted",
                    since.as_secs_f64(),
                    warmup.as_secs_f64()
                ));
                continue;
            }
            let measured = since - warmup;
            let done = stats.completed();
            let rate = done.saturating_sub(last.1) as f64
                / now.duration_since(last.0).as_secs_f64().max(0.001);
            last = (now, done);
            shown.set_prefix(format!("{:.1}s", measured.as_secs_f64()));
            shown.set_position(measured.as_millis() as u64);
            shown.set_message(format!(
                "{rate:>9.0}/s  {done} done  {} errors",
                stats.failed()
            ));
        }
    });
    (bar, task)
}

fn io_error(what: &str, err: std::io::Error) -> CliError {
    CliError::Runtime(socketkit::Error::new(socketkit::error::Op::Io, what, err))
}
