//! `socketkit bench`: run the load generator, show progress on a terminal, print the report;
//! or, with `--compare`, read two saved reports and show them side by side.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use socketkit::bench::{self, Config, Mode, Report, Signal, Stats};
use socketkit::client::MAX_DATAGRAM;
use socketkit::endpoint::{Endpoint, Transport};
use socketkit::proxy_protocol::Version;
use tokio::signal::unix::SignalKind;

use super::args::{BenchArgs, ProxyVersion};
use super::exit::{CliError, write_stdout};
use super::given::Given;
use super::{bench_options, init_logging, resolve, tls};

pub(crate) fn run(args: BenchArgs, given: &Given) -> Result<(), CliError> {
    match (&args.compare, &args.endpoint) {
        (None, Some(endpoint)) => measure(&args, given, endpoint),
        (Some(files), None) => compare(&args, files),
        (Some(_), Some(endpoint)) => Err(CliError::Usage(format!(
            "--compare reads two saved runs and runs nothing: give it no ENDPOINT (got \
             '{endpoint}')"
        ))),
        (None, None) => Err(CliError::Usage(
            "bench needs an ENDPOINT to load (or --compare A.json B.json)".to_owned(),
        )),
    }
}

/// `--compare A B`: the two saved runs as a table, and drawn if `--report` asks.
fn compare(args: &BenchArgs, files: &[PathBuf]) -> Result<(), CliError> {
    let [a, b] = files else {
        // clap takes exactly two values (num_args = 2).
        return Err(CliError::Usage(
            "--compare takes two files: A.json B.json".to_owned(),
        ));
    };
    if let Some(path) = &args.report {
        report_kind(path)?;
    }
    let (a_report, b_report) = (saved_run(a)?, saved_run(b)?);
    let (a_name, b_name) = (a.display().to_string(), b.display().to_string());
    let runs = ((a_name.as_str(), &a_report), (b_name.as_str(), &b_report));
    write_stdout(bench::compare::table(runs.0, runs.1).as_bytes())?;
    if let Some(path) = &args.report {
        let body = if report_kind(path)? {
            bench::plot::compare_html(runs.0, runs.1)
        } else {
            bench::plot::compare_svg(runs.0, runs.1)
        };
        std::fs::write(path, body).map_err(|err| io_error(&path.display().to_string(), err))?;
    }
    Ok(())
}

/// A run saved with `--json`; a file that cannot be read or holds something else is bad
/// usage, named.
fn saved_run(path: &Path) -> Result<Report, CliError> {
    let text = socketkit::option_file::read(path).map_err(|err| {
        CliError::Usage(format!(
            "cannot read {}: {}",
            path.display(),
            socketkit::error::describe(&err)
        ))
    })?;
    serde_json::from_slice(&text).map_err(|err| {
        CliError::Usage(format!(
            "{} is not a saved bench run (the --json output of socketkit bench): {err}",
            path.display()
        ))
    })
}

/// One load test against `endpoint`.
fn measure(args: &BenchArgs, given: &Given, endpoint: &str) -> Result<(), CliError> {
    let endpoint = resolve::target("bench", endpoint)?;
    let mut config = config(args)?;
    bench_options::check(args, given, config.mode, &endpoint)?;
    // `--count N` asks for N operations, as `ab -n` does: the default warm-up would add
    // a second's worth unasked (one given on purpose stays).
    if config.count.is_some() && !given.contains("warmup") {
        config.warmup = Duration::ZERO;
    }
    // Every connection makes a full handshake: resumption would measure something else.
    config.tls = args.tls.connector(&endpoint, true)?;
    if config.send_proxy.is_some() && !is_tcp(&endpoint) {
        return Err(CliError::Usage(format!(
            "--send-proxy applies to tcp: and tls: endpoints, not {endpoint}"
        )));
    }
    if !endpoint.transport().is_stream() && config.size > MAX_DATAGRAM {
        return Err(CliError::Usage(format!(
            "invalid value '{}' for --size: a datagram to {endpoint} holds at most \
             {MAX_DATAGRAM} bytes",
            config.size
        )));
    }
    bench::reserve_descriptors(&config).map_err(|most| match most {
        // Not the option's fault: no count of connections would do.
        0 => CliError::Failed(
            "the open-file limit (ulimit -n) leaves no descriptor for a connection".to_owned(),
        ),
        most => CliError::Usage(format!(
            "invalid value '{}' for --connections: the open-file limit (ulimit -n) allows at \
             most {most}",
            config.connections
        )),
    })?;
    if let Some(path) = &args.report {
        report_kind(path)?;
    }
    if let Some(pid) = args.server_pid {
        server_pid(pid)?;
        config.server_pid = Some(pid);
    }
    init_logging(&args.log);
    tls::warn_if_insecure(&args.tls.verify);
    warn_if_unixgram_queue_is_short(&endpoint, config.connections);
    super::signals::runtime_can_start().map_err(|err| io_error("tokio runtime", err))?;
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
        write_stdout(header(&config, &endpoint).as_bytes())?;
    }
    let (warmup, duration) = (config.warmup, config.duration);
    let stop = Signal::default();
    let interrupted = stop.clone();
    let report = runtime.block_on(async {
        // Ctrl-C, and SIGTERM (what `timeout` and CI runners send), end the run early with
        // its report.
        let mut terminate = super::signals::catch(SignalKind::terminate())
            .map_err(|err| io_error("a SIGTERM handler", err))?;
        let signalled = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = tokio::signal::ctrl_c() => if result.is_err() { return },
                _ = terminate.recv() => {}
            }
            signalled.set();
        });
        let progress = show_progress.then(|| progress(Arc::clone(&stats), warmup, duration));
        let report = bench::run(&endpoint, config, Arc::clone(&stats), stop).await;
        if let Some((bar, task)) = progress {
            task.abort();
            bar.finish_and_clear();
        }
        report.map_err(CliError::from)
    })?;
    if interrupted.is_set() && stats.measured().is_none() {
        return Err(CliError::Failed(format!(
            "interrupted during the warm-up against {endpoint}: nothing was measured"
        )));
    }
    output(args, &report)?;
    if report.completed == 0 {
        return Err(CliError::Failed(nothing_completed(args, &report, &stats)));
    }
    if report.held == Some(0) {
        return Err(CliError::Failed(format!(
            "no connection held against {} at the end of the run: the server closed every \
             one it took",
            report.endpoint
        )));
    }
    Ok(())
}

/// A Unix datagram socket queues at most `net.unix.max_dgram_qlen` datagrams (10 by
/// default on Linux); with more clients than that, the rest wait in the kernel and are not
/// let in in turn, so the latencies measure the system's limit more than the server
/// (docs/platform-notes.md). Said once, before the run.
fn warn_if_unixgram_queue_is_short(endpoint: &Endpoint, connections: usize) {
    if endpoint.transport() != Transport::Unixgram {
        return;
    }
    let Some(limit) = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
    else {
        return; // not Linux, or no /proc: nothing known to say
    };
    if connections > limit {
        tracing::warn!(
            "{connections} clients to {endpoint}, whose socket queues at most {limit} \
             datagrams (net.unix.max_dgram_qlen): the others wait in the kernel, not in turn, \
             and the latencies will show it; raise the sysctl to measure the server"
        );
    }
}

/// `--server-pid` (of an idle run: see [`bench_options`]) names a process that exists.
fn server_pid(pid: u32) -> Result<(), CliError> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(CliError::Usage(format!(
            "invalid value '{pid}' for --server-pid: no such process"
        )));
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
    let wrong = report.errors.contains_key("wrong-bytes");
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
    config.send_proxy = args.send_proxy.map(|version| match version {
        ProxyVersion::V1 => Version::V1,
        ProxyVersion::V2 => Version::V2,
    });
    config.expect = match (&args.expect, &args.expect_hex) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(hex)) => Some(decode_hex(hex)?),
        (None, None) => None,
    };
    Ok(config)
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, CliError> {
    let bad = || CliError::Usage(format!("invalid hex '{hex}' for --expect-hex"));
    if !hex.len().is_multiple_of(2) {
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

fn output(args: &BenchArgs, report: &Report) -> Result<(), CliError> {
    let text = if args.json {
        serde_json::to_string(report)
            .map_err(|err| io_error("report", std::io::Error::other(err)))?
            + "\n"
    } else {
        report.to_string()
    };
    write_stdout(text.as_bytes())?;
    if let Some(path) = &args.report {
        let body = if report_kind(path)? {
            bench::plot::html(report)
        } else {
            bench::plot::svg(report)
        };
        std::fs::write(path, body).map_err(|err| io_error(&path.display().to_string(), err))?;
    }
    Ok(())
}

/// The run's configuration before it starts, as wrk opens: what is measured, for how long,
/// and with what load.
fn header(config: &Config, endpoint: &socketkit::endpoint::Endpoint) -> String {
    let setup = config.setup();
    let warmup = if setup.warmup_s == 0.0 {
        "no warm-up".to_owned()
    } else {
        format!("after a {} warm-up", setup.warmup_text())
    };
    format!(
        "Running {} bench @ {endpoint}, {warmup}\n  {}\n",
        setup.duration_text(),
        setup.load(config.mode.name())
    )
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

/// Whether `endpoint` is TCP (plain or under TLS): where a PROXY header can go.
fn is_tcp(endpoint: &Endpoint) -> bool {
    matches!(endpoint.transport(), Transport::Tcp | Transport::Tls)
}
