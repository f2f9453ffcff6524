//! `socketkit forward -l udp:… --to udp:…` (and `unixgram:` on either side): the datagram
//! relay, one upstream socket per client (see [`socketkit::forward::datagram`]). Its own
//! small runtime, with the server options that have a datagram meaning — `--idle-timeout`,
//! `--max-connections`, `--metrics`, `--shutdown-delay`, `--unix-mode`, `--pid-file`, the access rules
//! and per-source limits, `--user`/`--group`, `--to-file` (read again on SIGHUP, with the
//! rule files) — and every other one refused by name (exit 2), never ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use socketkit::endpoint::Endpoint;
use socketkit::forward::datagram::{BoundDatagramForward, DatagramForward};
use tokio::signal::unix::{Signal, SignalKind};

use super::signals::catch;

use super::access::Access;
use super::args::ForwardArgs;
use super::exit::CliError;
use super::forward_args::BalancePolicy;
use super::given::Given;
use super::metrics::{MetricsPlan, MetricsSocket};
use super::pid_file::PidFile;
use super::target_file;
use super::{init_serving, ready};

/// Relays datagrams from every `endpoints` (all `udp:` or `unixgram:`) to `target` until
/// SIGINT/SIGTERM.
pub(crate) fn run(
    args: &ForwardArgs,
    given: &Given,
    endpoints: &[Endpoint],
) -> Result<(), CliError> {
    if let Some(stream) = endpoints.iter().find(|e| e.transport().is_stream()) {
        return Err(CliError::Usage(format!(
            "forward relays streams to streams and datagrams (udp:, unixgram:) to datagrams, \
             not {stream} beside a datagram listener"
        )));
    }
    refuse_stream_only_options(args, given)?;
    let mut access = super::access::resolve(&args.server.access)?;
    access.without_restart = true;
    if let Some(file) = &args.to_file {
        access
            .reload_checks
            .push_files("targets", vec![file.clone()]);
    }
    let (first, rest) = super::forward::targets(args, given)?;
    let mut relay = DatagramForward::new(first).map_err(CliError::Usage)?;
    if let Some(control) = &access.control {
        relay = relay.access_control(Arc::clone(control));
    }
    if let Some(limits) = &access.limits {
        relay = relay.source_limits(Arc::clone(limits));
    }
    for target in rest {
        relay = relay.or(target).map_err(CliError::Usage)?;
    }
    if args.balance == BalancePolicy::Source {
        relay = relay.by_source();
    }
    if let Some(idle) = args.server.idle_timeout {
        relay = relay.idle_timeout(idle);
    }
    if let Some(max) = args.server.max_connections {
        relay = relay.max_clients(max);
    }
    if let Some(mode) = args.server.unix_mode {
        if !endpoints.iter().any(|e| e.path().is_some()) {
            return Err(CliError::Usage(
                "--unix-mode applies to Unix socket files, and no -l is a unixgram: endpoint"
                    .into(),
            ));
        }
        relay = relay.unix_mode(mode);
    }
    let metrics = MetricsPlan::from_args(&args.server.metrics)?;
    if let Some(plan) = &metrics {
        relay = relay.metrics(plan.metrics());
    }
    let shutdown_delay = args.server.shutdown_delay;
    init_serving(&args.log);
    super::signals::runtime_can_start().map_err(|err| runtime_error("tokio runtime", err))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| runtime_error("tokio runtime", err))?;
    runtime.block_on(async move {
        let mut bound: Vec<BoundDatagramForward> = endpoints
            .iter()
            .map(|endpoint| relay.bind(endpoint))
            .collect::<socketkit::Result<_>>()?;
        // A target that does not resolve is an error before the readiness line.
        for listener in &mut bound {
            listener.resolve_targets().await?;
        }
        // Not a restart: a datagram relay hands nothing over on SIGUSR2.
        let http = metrics
            .as_ref()
            .map(|plan| plan.bind(MetricsSocket::Bind))
            .transpose()?;
        let reload = reload(
            args,
            &relay,
            &access,
            metrics.as_ref().map(MetricsPlan::metrics),
        );
        let mut signals = Signals::install(reload)?;
        let locals: Vec<Endpoint> = bound.iter().map(|b| b.local_endpoint().clone()).collect();
        // Bound (so ports below 1024 work as root), nothing received yet: the socket files
        // are given to `--user` first, so that it may remove them at exit.
        let files: Vec<PathBuf> = locals
            .iter()
            .filter_map(|local| local.path().map(PathBuf::from))
            .collect();
        // Written before the readiness lines (whoever waits for them finds it), while
        // still root (a service's pid file is in a directory only root may write).
        let _pid_file = args
            .server
            .managed
            .pid_file
            .as_deref()
            .map(PidFile::write)
            .transpose()?;
        let mut left_behind = files.clone();
        left_behind.extend(args.server.managed.pid_file.clone());
        // Given first: in a sticky directory (`/tmp`) the user may remove a file it owns.
        let mut warnings = access.give_socket_files(&files);
        warnings.extend(access.files_left_behind(&left_behind));
        warnings.extend(access.shut_out_warning());
        access.drop_privileges()?;
        warnings.extend(access.reload_warnings());
        let targets = super::forward::described_targets(relay.targets().iter(), relay.balancing());
        ready::announce(&locals, &format!("forward to {targets}"));
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        if let Some(http) = http {
            http.announce();
            tokio::spawn(http.serve());
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut relays = tokio::task::JoinSet::new();
        for relay in bound {
            let mut stopped = stopped.clone();
            relays.spawn(relay.run(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
        }
        let outcome = tokio::select! {
            () = signals.next() => Ok(()),
            Some(ended) = relays.join_next() => match ended {
                Ok(result) => result.map_err(CliError::from),
                Err(err) => Err(runtime_error("relay", std::io::Error::other(err))),
            },
        };
        if outcome.is_ok() {
            // As `serve`'s UDP listeners: `/health` says 503 at once, and the relay goes on
            // for the delay (a second signal cuts it short) so a balancer stops sending first.
            if let Some(plan) = &metrics {
                plan.metrics().set_draining();
            }
            if !shutdown_delay.is_zero() {
                relay_for(shutdown_delay, &mut signals).await;
            }
            tracing::info!("shutting down: the datagram relay stops");
        }
        let _ = stop.send(true);
        while relays.join_next().await.is_some() {}
        outcome
    })
}

/// What SIGHUP does: `--to-file`'s reload, and the rule files'.
type Reload = Arc<dyn Fn() + Send + Sync>;

/// What SIGHUP reloads: `--to-file` and the access rules' files, or nothing; counted in
/// `metrics`.
fn reload(
    args: &ForwardArgs,
    relay: &DatagramForward,
    access: &Access,
    metrics: Option<Arc<socketkit::metrics::Metrics>>,
) -> Option<Reload> {
    let targets = args
        .to_file
        .clone()
        .map(|file| target_file::reload_on_hangup(file, relay.clone()));
    let control = access.control.clone();
    if targets.is_none() && control.is_none() {
        return None;
    }
    Some(Arc::new(move || {
        let targets_ok = targets.as_ref().is_none_or(|targets| targets());
        let rules_ok = control
            .as_ref()
            .is_none_or(|control| super::access::reload_and_say(control, "rules"));
        if let Some(metrics) = &metrics {
            metrics.reloaded(targets_ok && rules_ok);
        }
    }))
}

/// SIGINT and SIGTERM, either of which stops the relay; SIGHUP, which reloads `--to-file`
/// (and is said and ignored without one: a daemon is told to reload by it, and its default
/// action would kill the relay); and SIGUSR2, which asks a server to restart: the relay has
/// no listeners to hand over, so it says so and goes on.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    user2: Signal,
    reload: Option<Reload>,
}

impl Signals {
    fn install(reload: Option<Reload>) -> Result<Signals, CliError> {
        let install = |kind| catch(kind).map_err(|err| runtime_error("signal handler", err));
        Ok(Signals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
            user2: install(SignalKind::user_defined2())?,
            reload,
        })
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                // Files are read off the runtime's thread, which relays every datagram.
                _ = self.hangup.recv() => match &self.reload {
                    Some(reload) => {
                        let reload = Arc::clone(reload);
                        super::signals::off_runtime_or_here(move || reload()).await;
                    }
                    None => tracing::info!("SIGHUP: nothing to reload (no --to-file, no access rules)"),
                },
                _ = self.user2.recv() => {
                    tracing::info!("SIGUSR2: a datagram relay has no listeners to hand over; it goes on");
                }
            }
        }
    }
}

/// Waits out `--shutdown-delay` while the relays go on, or until a second signal.
async fn relay_for(delay: Duration, signals: &mut Signals) {
    tracing::info!(
        "relaying for {} more while /health answers 503",
        humantime::format_duration(delay)
    );
    tokio::select! {
        // Time the relay was stopped (^Z, a paused VM) is given back: the datagrams sent
        // meanwhile wait in its sockets, and stopping at once would drop them.
        () = socketkit::server::sleep_running(delay) => {}
        () = signals.next() => tracing::info!("second signal: stopping now"),
    }
}

/// The options of a stream `forward` that mean nothing for the datagram relay: refused,
/// with why, rather than silently ignored. `given` catches those that have a default.
fn refuse_stream_only_options(args: &ForwardArgs, given: &Given) -> Result<(), CliError> {
    let no_tls = "a datagram relay has no TLS";
    let given = [
        ("--workers", args.server.workers.is_some(), ""),
        ("--io-engine", args.server.io_engine.is_some(), ""),
        (
            "--backlog",
            given.contains("backlog"),
            "a datagram socket has no listen(2) backlog",
        ),
        (
            "--drain-timeout",
            given.contains("drain_timeout"),
            "a datagram relay has no connections to drain and stops at once",
        ),
        (
            "--timeout",
            given.contains("timeout"),
            "a datagram target is not connected to, datagrams are just sent",
        ),
        (
            "--proxy-protocol",
            args.server.proxy.proxy_protocol,
            "PROXY headers start stream connections",
        ),
        (
            "--send-proxy",
            args.send_proxy.is_some(),
            "PROXY headers start stream connections",
        ),
        (
            "--proxy",
            args.proxy.is_some(),
            "a proxy carries tcp: and tls: connections",
        ),
        ("--socks", args.socks, "SOCKS5 clients connect over streams"),
        (
            "--check-interval",
            args.check_interval.is_some(),
            "a datagram target takes no connection to check",
        ),
        (
            "--retry-after",
            given.contains("retry_after"),
            "a datagram relay cannot tell that a target is down",
        ),
        (
            "--balance least-conn",
            args.balance == BalancePolicy::LeastConn,
            "a datagram relay sends each new client to the next target in turn",
        ),
        (
            "--balance first",
            args.balance == BalancePolicy::First,
            "a datagram relay cannot tell that a target is down, and sends each new client to \
             the next target in turn",
        ),
        (
            "--socks-users",
            args.socks_users.is_some(),
            "SOCKS5 clients connect over streams",
        ),
        (
            "--socks-allow",
            !args.socks_allow.is_empty(),
            "SOCKS5 clients connect over streams",
        ),
        (
            "--socks-deny",
            !args.socks_deny.is_empty(),
            "SOCKS5 clients connect over streams",
        ),
        ("--tls-cert", !args.tls.tls_cert.is_empty(), no_tls),
        ("--tls-key", !args.tls.tls_key.is_empty(), no_tls),
        ("--tls-self-signed", args.tls.tls_self_signed, no_tls),
        ("--tls-client-ca", args.tls.tls_client_ca.is_some(), no_tls),
        ("--tls-ca", args.to_tls.tls_ca.is_some(), no_tls),
        (
            "--tls-fingerprint",
            args.to_tls.tls_fingerprint.is_some(),
            no_tls,
        ),
        ("--tls-sni", args.to_tls.tls_sni.is_some(), no_tls),
        ("--tls-insecure", args.to_tls.tls_insecure, no_tls),
        (
            "--to-tls-cert",
            args.to_tls_cert.to_tls_cert.is_some(),
            no_tls,
        ),
        (
            "--to-tls-key",
            args.to_tls_cert.to_tls_key.is_some(),
            no_tls,
        ),
        ("--tls-alpn", !args.tls_alpn.tls_alpn.is_empty(), no_tls),
        ("--sni-route", !args.sni_route.is_empty(), no_tls),
        ("--sni-route-file", args.sni_route_file.is_some(), no_tls),
    ];
    match given.iter().find(|(_, given, _)| *given) {
        Some((name, _, why)) => {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            Err(CliError::Usage(format!(
                "{name} applies to stream forwarding only, not to a datagram listener{why}"
            )))
        }
        None => Ok(()),
    }
}

fn runtime_error(what: &str, err: std::io::Error) -> CliError {
    CliError::Runtime(socketkit::Error::new(
        socketkit::error::Op::Create,
        what,
        err,
    ))
}
