//! What `serve` and `forward` share: the server's options, the runtime, and the readiness
//! lines (signals and inherited sockets: [`super::managed`]).

use std::future::Future;
use std::time::Duration;

use socketkit::access::{CidrSet, parse_network};
use socketkit::error::Op;
use socketkit::server::{Builder, IO_ENGINE_VAR, IoEngine, Server, UnknownEngine};

use super::access::{self, Access};
use super::args::{ProxyArgs, ServerArgs};
use super::exit::CliError;
use super::given::Given;
use super::managed::{Listen, Managed};
use super::metrics::MetricsPlan;
use super::ready;
use super::tls::ServerSetup;

/// A server made from a command's options, checked, waiting for [`run`].
pub(crate) struct Prepared {
    builder: Builder,
    access: Access,
    metrics: Option<MetricsPlan>,
    workers: usize,
}

impl Prepared {
    /// Runs `hook` on every SIGHUP, after the access rules are reloaded.
    pub(crate) fn on_hangup(&mut self, hook: impl Fn() -> bool + Send + Sync + 'static) {
        self.access.hangup_hooks.add(hook);
    }

    /// Says at start, under `--user`, which of `files` (what a SIGHUP hook reads again, as
    /// `what`) the user cannot read.
    pub(crate) fn reads_on_hangup(&mut self, what: &'static str, files: Vec<std::path::PathBuf>) {
        self.access.reload_checks.push_files(what, files);
    }

    /// The metrics the server will count into, with `--metrics`.
    pub(crate) fn metrics(&self) -> Option<std::sync::Arc<socketkit::metrics::Metrics>> {
        self.metrics.as_ref().map(MetricsPlan::metrics)
    }
}

/// Checks the server options of `args` (exit 2 on any fault) and makes the server of
/// `listeners` with them, terminating TLS with `tls` if given.
pub(crate) fn prepare(
    args: &ServerArgs,
    listeners: Vec<Listen>,
    tls: Option<&ServerSetup>,
    given: &Given,
    managed: &Managed,
) -> Result<Prepared, CliError> {
    refuse_under_inetd(args, given, managed)?;
    let mut builder = builder(args, listeners)?;
    if let Some(tls) = tls {
        tls.apply(&mut builder);
    }
    let mut access = access(args, &mut builder)?;
    let metrics = MetricsPlan::from_args(&args.metrics)?;
    access.metrics = metrics.as_ref().map(MetricsPlan::metrics);
    if let Some(tls) = tls {
        let counted = metrics.as_ref().map(MetricsPlan::metrics);
        if let Some(counted) = &counted {
            tls.record_expiry(counted);
        }
        if let Some(reload) = tls.reload_on_hangup(counted) {
            access.hangup_hooks.add(reload);
            let tls = std::sync::Arc::clone(&tls.tls);
            access.reload_checks.push(move || {
                let reason = tls.check_reload().err()?.to_string();
                Some(super::access::Unreloadable {
                    what: "TLS certificate",
                    reason,
                })
            });
        }
    }
    Ok(Prepared {
        builder,
        access,
        metrics,
        workers: workers(args),
    })
}

/// A builder with the options of `args` and the given endpoints.
fn builder(args: &ServerArgs, listeners: Vec<Listen>) -> Result<Builder, CliError> {
    let mut builder = Server::builder();
    if let Some(max) = args.max_connections {
        builder.max_connections(max);
    }
    if let Some(idle) = args.idle_timeout {
        builder.idle_timeout(idle);
    }
    builder
        .backlog(args.backlog)
        .drain_timeout(args.drain_timeout)
        .shutdown_delay(args.shutdown_delay);
    if let Some((trusted, timeout)) = proxy_protocol(&args.proxy)? {
        builder.proxy_protocol(trusted, timeout);
    }
    if let Some(mode) = args.unix_mode {
        if !listeners.iter().any(|l| l.endpoint().path().is_some()) {
            return Err(CliError::Usage(
                "--unix-mode applies to Unix socket files, and no -l is a unix: or unixgram: \
                 endpoint"
                    .into(),
            ));
        }
        builder.unix_mode(mode);
    }
    for listener in listeners {
        match listener {
            Listen::Bind(endpoint) => builder.listen(endpoint),
            Listen::Inherited(socket) => builder.listen_inherited(socket),
        };
    }
    builder.workers(workers(args));
    builder.io_engine(io_engine(args)?);
    Ok(builder)
}

/// `--io-engine`, or what `SOCKETKIT_IO_ENGINE` says (exit 2 if it says nonsense), or auto.
fn io_engine(args: &ServerArgs) -> Result<IoEngine, CliError> {
    match &args.io_engine {
        // clap allows only the three names.
        Some(name) => name
            .parse()
            .map_err(|err: UnknownEngine| CliError::Usage(err.to_string())),
        None => {
            IoEngine::from_env().map_err(|err| CliError::Usage(format!("{IO_ENGINE_VAR}: {err}")))
        }
    }
}

/// The access settings of `args`, checked (exit 2 on any fault), added to `builder`.
fn access(args: &ServerArgs, builder: &mut Builder) -> Result<Access, CliError> {
    let access = access::resolve(&args.access)?;
    access.apply(builder);
    Ok(access)
}

/// `--proxy-protocol`: the trusted networks and the header timeout, or `None` without it
/// (also `listen`'s, which runs no server).
pub(crate) fn proxy_protocol(args: &ProxyArgs) -> Result<Option<(CidrSet, Duration)>, CliError> {
    if !args.proxy_protocol {
        return Ok(None);
    }
    let trusted = args
        .trusted_proxy
        .iter()
        .map(|text| {
            parse_network(text).map_err(|why| {
                CliError::Usage(format!(
                    "invalid network '{text}' for --trusted-proxy: {why}"
                ))
            })
        })
        .collect::<Result<CidrSet, CliError>>()?;
    if trusted.is_empty() {
        return Err(CliError::Usage(
            "--proxy-protocol needs --trusted-proxy CIDR (the load balancers' addresses)".into(),
        ));
    }
    let timeout = args.proxy_header_timeout.unwrap_or(Duration::from_secs(5));
    Ok(Some((trusted, timeout)))
}

/// Under `--inetd` every connection is a process of its own, and the service manager
/// listens: an option that counts or shares across connections (a metrics endpoint,
/// per-source limits, a connection limit, workers) or shapes a listener (its backlog, the
/// accepting it goes on with after a signal) would do nothing, and one that looks like a
/// security control doing nothing is worse than a refusal (exit 2). `given` catches those
/// that have a default.
fn refuse_under_inetd(args: &ServerArgs, given: &Given, managed: &Managed) -> Result<(), CliError> {
    if !managed.inetd() {
        return Ok(());
    }
    let access = &args.access;
    const COUNTING: &str = "each connection is a process of its own";
    const LISTENING: &str = "the service manager listens, not socketkit";
    let unusable = [
        ("--metrics", args.metrics.metrics.is_some(), COUNTING),
        (
            "--max-per-source",
            access.max_per_source.is_some(),
            COUNTING,
        ),
        (
            "--rate-per-source",
            access.rate_per_source.is_some(),
            COUNTING,
        ),
        (
            "--max-connections",
            args.max_connections.is_some(),
            COUNTING,
        ),
        ("--workers", args.workers.is_some(), COUNTING),
        ("--backlog", given.contains("backlog"), LISTENING),
        (
            "--shutdown-delay",
            given.contains("shutdown_delay"),
            LISTENING,
        ),
    ];
    match unusable.iter().find(|(_, given, _)| *given) {
        Some((name, _, why)) => Err(CliError::Usage(format!(
            "{name} does not apply to --inetd ({why})"
        ))),
        None => Ok(()),
    }
}

/// `--workers`, or the cores this process may use.
pub(crate) fn workers(args: &ServerArgs) -> usize {
    args.workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Binds (or, `--inetd`, takes the connection on stdin) and the metrics endpoint, installs
/// the signal handlers, announces `listening on … (what)` and then `metrics on …`, and runs
/// `serve` on a tokio runtime (current-thread for one worker, multi-threaded for more) until
/// a signal shuts the server down (see
/// [`Managed::serve`]).
pub(crate) fn run<F, Fut>(
    prepared: Prepared,
    what: &str,
    mut managed: Managed,
    after_ready: impl FnOnce(),
    serve: F,
) -> Result<(), CliError>
where
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = socketkit::Result<()>>,
{
    let Prepared {
        mut builder,
        access,
        metrics,
        workers,
    } = prepared;
    // One worker: a current-thread runtime, so that the thread that waits for the server
    // is the one that serves it (no second thread to hand over to and wake), and, while
    // nothing blocks, the process's only thread (the kernel looks up its descriptors
    // without taking references).
    super::signals::runtime_can_start()
        .map_err(|err| CliError::runtime(Op::Spawn, "the runtime", err))?;
    let mut runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        threads_can_start(workers)
            .map_err(|err| CliError::runtime(Op::Spawn, "the runtime's threads", err))?;
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        runtime.worker_threads(workers);
        runtime
    };
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|err| CliError::runtime(Op::Spawn, "the runtime", err))?;
    if let Some(plan) = &metrics {
        builder.metrics(plan.metrics());
    }
    runtime.block_on(async move {
        // Bound first: before the privileges are dropped, like the listeners.
        let metrics = metrics
            .as_ref()
            .map(|plan| plan.bind(managed.metrics_socket()))
            .transpose()?;
        let announce = |endpoints: &[_]| ready::announce(endpoints, what);
        managed
            .serve(builder, &access, metrics, announce, after_ready, serve)
            .await
    })
}

/// Starts `count` threads that live at once, then lets them end: tokio's multi-threaded
/// runtime panics (and may then hang) when the system refuses it a worker thread (`ulimit
/// -u`, a container's pids limit), so the refusal is met here first, as an error.
fn threads_can_start(count: usize) -> std::io::Result<()> {
    // Held while they start, so that all `count` exist at once: each waits for a read of
    // it, which the write holds back.
    let gate = std::sync::Arc::new(std::sync::RwLock::new(()));
    let held = gate.write();
    let mut started = Vec::with_capacity(count);
    let mut refused = Ok(());
    for _ in 0..count {
        let gate = std::sync::Arc::clone(&gate);
        match std::thread::Builder::new().spawn(move || drop(gate.read())) {
            Ok(thread) => started.push(thread),
            Err(err) => {
                refused = Err(err);
                break;
            }
        }
    }
    drop(held);
    for thread in started {
        let _ = thread.join();
    }
    refused
}
