//! `socketkit forward`: relay every accepted connection to a target.

use std::path::PathBuf;
use std::sync::Arc;

use socketkit::access::RuleSources;
use socketkit::client::proxy::Proxy;
use socketkit::endpoint::Endpoint;
use socketkit::forward::socks::{SocksForward, SocksUsers};
use socketkit::forward::{Balance, Forward};
use socketkit::proxy_protocol::Version;
use socketkit::server::Handler;

use super::access::{self, networks};
use super::args::{ForwardArgs, ProxyVersion};
use super::exit::{CliError, read_text, sanitize};
use super::forward_args::BalancePolicy;
use super::given::Given;
use super::managed::{Listen, Managed};
use super::tls::ServerSetup;
use super::{forward_datagram, init_serving, resolve, server, sni_routes, target_file, tls};

/// Runs `forward`; `given` names the options written on the command line (a udp: relay
/// refuses those it cannot apply, defaults or not).
pub(crate) fn run(args: ForwardArgs, given: &Given) -> Result<(), CliError> {
    let mut managed = Managed::start(&args.server.managed)?;
    let listeners = managed.listeners(&args.server.listen, None)?;
    if listeners.is_empty() && !managed.inetd() {
        return Err(CliError::Usage(
            "forward needs at least one -l ENDPOINT".into(),
        ));
    }
    let timeout = args.timeout;
    if listeners
        .iter()
        .any(|l| !l.endpoint().transport().is_stream())
    {
        let mut endpoints = Vec::new();
        for listener in &listeners {
            match listener {
                Listen::Bind(endpoint) => endpoints.push(endpoint.clone()),
                Listen::Inherited(_) => {
                    return Err(CliError::Usage(
                        "a datagram relay binds its own sockets; inherited sockets are relayed \
                         as streams only"
                            .into(),
                    ));
                }
            }
        }
        return forward_datagram::run(&args, given, &endpoints);
    }
    let identity = target_identity(&args);
    if args.socks {
        // Options of --to targets; two have defaults, so what was written is checked.
        if let Some(option) = [
            ("balance", "--balance"),
            ("retry_after", "--retry-after"),
            ("check_interval", "--check-interval"),
            ("check_http", "--check-http"),
        ]
        .into_iter()
        .find_map(|(id, option)| given.contains(id).then_some(option))
        {
            return Err(CliError::Usage(format!(
                "{option} applies to --to targets, and a --socks proxy's clients name their own"
            )));
        }
        return socks(&args, given, identity, listeners, managed);
    }
    // Checked here: clap counts a flag's default as present for `requires`.
    for (given, option) in [
        (args.socks_users.is_some(), "--socks-users"),
        (!args.socks_allow.is_empty(), "--socks-allow"),
        (!args.socks_deny.is_empty(), "--socks-deny"),
        (!args.socks_allow_file.is_empty(), "--socks-allow-file"),
        (!args.socks_deny_file.is_empty(), "--socks-deny-file"),
    ] {
        if given {
            return Err(CliError::Usage(format!("{option} applies to --socks only")));
        }
    }
    let (target, rest) = targets(&args, given)?;
    let endpoints: Vec<_> = listeners.iter().map(|l| l.endpoint().clone()).collect();
    let routes = match &args.sni_route_file {
        Some(file) => sni_routes::read(file, &endpoints)?,
        None => sni_routes::from_args(&args.sni_route, &endpoints)?,
    };
    let routing = !routes.is_empty() || args.sni_route_file.is_some();
    if routing {
        sni_routes::check_targets(std::iter::once(&target).chain(&rest), &endpoints)?;
    }
    // The connector serves every tls: target; its options apply if any target is one.
    let tls_target = std::iter::once(&target)
        .chain(&rest)
        .chain(routes.iter().map(|(_, target)| target))
        .find(|t| matches!(t, Endpoint::Tls(_)))
        .unwrap_or(&target);
    let target_tls = tls::target_tls(&args.to_tls, identity, &args.tls_alpn, tls_target, false)?;
    let listener_tls = tls::server(&args.tls, &args.tls_alpn, &endpoints)?;
    tls::check_alpn_applies(
        &args.tls_alpn,
        target_tls.is_some() || listener_tls.is_some(),
    )?;
    let relay = match &target_tls {
        Some(tls) => Forward::tls(target, tls.connector.clone()),
        None => Forward::new(target),
    }
    .map_err(|err| CliError::Usage(err.to_string()))?
    .connect_timeout(timeout)
    .balance(match args.balance {
        BalancePolicy::RoundRobin => Balance::RoundRobin,
        BalancePolicy::First => Balance::First,
        BalancePolicy::LeastConn => Balance::LeastConnections,
        BalancePolicy::Source => Balance::Source,
    })
    .retry_after(args.retry_after);
    let relay = match args.check_interval {
        Some(interval) => relay.check_every(interval),
        None => relay,
    };
    let relay = relay.check_counts(args.check_rise.unwrap_or(1), args.check_fall.unwrap_or(1));
    let relay = match &args.check_http {
        Some(path) => relay
            .check_http(path)
            .map_err(|err| CliError::Usage(format!("--check-http: {err}")))?,
        None => relay,
    };
    let relay = rest.into_iter().try_fold(relay, |relay, target| {
        relay
            .or(target)
            .map_err(|err| CliError::Usage(err.to_string()))
    })?;
    let relay = match args.send_proxy {
        Some(ProxyVersion::V1) => relay.send_proxy(Version::V1),
        Some(ProxyVersion::V2) => relay.send_proxy(Version::V2),
        None => relay,
    };
    let relay = match &args.proxy {
        Some(url) => {
            let proxy = url
                .parse::<Proxy>()
                .map_err(|err| CliError::Usage(err.to_string()))?;
            relay
                .proxy(proxy)
                .map_err(|err| CliError::Usage(err.to_string()))?
        }
        None => relay,
    };
    let relay = if routing {
        // Put in force as a reload puts them: one table, checked whole, its errors naming
        // where the routes came from.
        let relay = relay.route_by_name();
        relay.reload_name_routes(routes).map_err(|err| {
            let from = match &args.sni_route_file {
                Some(file) => format!("--sni-route-file {}", file.display()),
                None => "--sni-route".to_owned(),
            };
            CliError::Usage(format!("invalid {from}: {err}"))
        })?;
        relay
    } else {
        relay
    };
    let relay = relay.name_wait(args.tls.tls_handshake_timeout);
    let mut what = format!(
        "forward to {}",
        described_targets(relay.targets().iter(), relay.balancing())
    );
    let routes = relay.name_routes();
    if !routes.is_empty() {
        what.push_str("; ");
        what.push_str(&sni_routes::listed(&routes, "SNI ", "; "));
    }
    if let Some(proxy) = relay.through() {
        what.push_str(&format!(" through {proxy}"));
    }
    serve(
        &args,
        given,
        listeners,
        listener_tls,
        managed,
        &what,
        |prepared| {
            let relay = match prepared.metrics() {
                Some(metrics) => relay.metrics(metrics),
                None => relay,
            };
            // The relay is complete: the hook's clone shares its targets from here on.
            if let Some(file) = &args.to_file {
                prepared.on_hangup(target_file::reload_on_hangup(file.clone(), relay.clone()));
                prepared.reads_on_hangup("targets", vec![file.clone()]);
            }
            if let Some(file) = &args.sni_route_file {
                let reload =
                    sni_routes::reload_on_hangup(file.clone(), endpoints.clone(), relay.clone());
                prepared.on_hangup(reload);
                prepared.reads_on_hangup("routes", vec![file.clone()]);
            }
            if let Some(reload) = target_tls.and_then(|tls| tls.reload_on_hangup(relay.clone())) {
                prepared.on_hangup(reload);
            }
            let checks = relay.health_checks();
            (relay, checks)
        },
    )
}

/// The client certificate and key a `tls:` target is shown (`--to-tls-cert`, `--to-tls-key`).
fn target_identity(args: &ForwardArgs) -> Option<(PathBuf, PathBuf)> {
    let cert = &args.to_tls_cert;
    cert.to_tls_cert.clone().zip(cert.to_tls_key.clone())
}

/// Serves the handler `make` returns (given the metrics, with `--metrics`) on the
/// listeners, announced as `what`, after their TLS lines, with the health checks it returns
/// running beside it.
fn serve<H: Handler, C>(
    args: &ForwardArgs,
    given: &Given,
    listeners: Vec<Listen>,
    listener_tls: Option<ServerSetup>,
    managed: Managed,
    what: &str,
    make: impl FnOnce(&mut server::Prepared) -> (H, Option<C>),
) -> Result<(), CliError>
where
    C: Future<Output = ()> + Send + 'static,
{
    let mut prepared = server::prepare(
        &args.server,
        listeners,
        listener_tls.as_ref(),
        given,
        &managed,
    )?;
    let (handler, checks) = make(&mut prepared);
    init_serving(&args.log);
    let after_ready = || {
        if let Some(tls) = &listener_tls {
            tls.announce();
        }
        tls::warn_if_insecure(&args.to_tls);
        if let Some(checks) = checks {
            // On the server's runtime: they end with it.
            tokio::spawn(checks);
        }
    };
    server::run(prepared, what, managed, after_ready, |server| {
        server.serve(handler)
    })
}

/// The `--to` targets (or `--to-file`'s), the first and the rest (clap makes sure there is
/// one unless `--socks` is given); `--balance` and `--retry-after` given for one `--to` are
/// refused, as options that would do nothing (a file may name more after a reload).
pub(crate) fn targets(
    args: &ForwardArgs,
    given: &Given,
) -> Result<(Endpoint, Vec<Endpoint>), CliError> {
    if let Some(file) = &args.to_file {
        let mut targets = target_file::read(file)?;
        let first = targets.remove(0);
        return Ok((first, targets));
    }
    let Some((first, rest)) = args.to.split_first() else {
        return Err(CliError::Usage(
            "forward needs --to ENDPOINT (or --socks)".into(),
        ));
    };
    if rest.is_empty()
        && let Some(option) = [("balance", "--balance"), ("retry_after", "--retry-after")]
            .into_iter()
            .find_map(|(id, option)| given.contains(id).then_some(option))
    {
        return Err(CliError::Usage(format!(
            "{option} applies to several --to targets, and there is one"
        )));
    }
    let target = |to: &String| resolve::target("forward --to", to);
    Ok((
        target(first)?,
        rest.iter().map(target).collect::<Result<_, _>>()?,
    ))
}

/// The targets for the readiness line: `tcp:A`, or `tcp:A, tcp:B in turn` (round robin),
/// `tcp:A, else tcp:B` (first up), `tcp:A, tcp:B by fewest connections`, `tcp:A, tcp:B by
/// source address`.
pub(crate) fn described_targets<'a>(
    targets: impl Iterator<Item = &'a Endpoint>,
    balance: Balance,
) -> String {
    let list: Vec<String> = targets.map(ToString::to_string).collect();
    if list.len() == 1 {
        return list.join("");
    }
    match balance {
        Balance::RoundRobin => format!("{} in turn", list.join(", ")),
        Balance::First => list.join(", else "),
        Balance::LeastConnections => format!("{} by fewest connections", list.join(", ")),
        Balance::Source => format!("{} by source address", list.join(", ")),
    }
}

/// `forward --socks`: a SOCKS5 proxy on the listeners.
fn socks(
    args: &ForwardArgs,
    given: &Given,
    identity: Option<(PathBuf, PathBuf)>,
    listeners: Vec<Listen>,
    managed: Managed,
) -> Result<(), CliError> {
    tls::refuse_client_options(&args.to_tls, identity.as_ref())?;
    let endpoints: Vec<_> = listeners.iter().map(|l| l.endpoint().clone()).collect();
    let listener_tls = tls::server(&args.tls, &args.tls_alpn, &endpoints)?;
    tls::check_alpn_applies(&args.tls_alpn, listener_tls.is_some())?;
    let proxy = SocksForward::new().timeout(args.timeout);
    let proxy = match &args.socks_users {
        Some(file) => proxy.users(socks_users(file)?),
        None => proxy,
    };
    let sources = RuleSources {
        allow: networks("--socks-allow", &args.socks_allow)?,
        deny: networks("--socks-deny", &args.socks_deny)?,
        allow_files: args.socks_allow_file.clone(),
        deny_files: args.socks_deny_file.clone(),
    };
    let rules_from_files = !sources.allow_files.is_empty() || !sources.deny_files.is_empty();
    let control = access::control(sources)?;
    let proxy = match &control {
        Some(control) => proxy.destination_control(Arc::clone(control)),
        None => proxy,
    };
    serve(
        args,
        given,
        listeners,
        listener_tls,
        managed,
        "socks5 proxy",
        // Its targets are whatever its clients name: not labels for the metrics, nor
        // anything to check.
        |prepared: &mut server::Prepared| {
            if let Some(control) = control.filter(|_| rules_from_files) {
                prepared
                    .on_hangup(move || access::reload_and_say(&control, "socks destination rules"));
                let files = args.socks_allow_file.iter().chain(&args.socks_deny_file);
                prepared.reads_on_hangup("socks destination rules", files.cloned().collect());
            }
            if let Some(file) = args.socks_users.clone() {
                prepared.reads_on_hangup("socks users", vec![file.clone()]);
                let proxy = proxy.clone();
                prepared.on_hangup(move || reload_socks_users(&file, &proxy));
            }
            (proxy, None::<std::future::Pending<()>>)
        },
    )
}

/// SIGHUP's reload of `--socks-users FILE`: the file's users take the clients that come
/// next; one that no longer reads keeps the users in force, and the log says why.
fn reload_socks_users(file: &std::path::Path, proxy: &SocksForward) -> bool {
    match socks_users(file) {
        Ok(users) => {
            let count = users.len();
            proxy.reload_users(users);
            tracing::info!("socks users reloaded from {}: {count}", file.display());
            true
        }
        Err(err) => {
            tracing::warn!(
                "socks users not reloaded, the old ones stay: {}",
                sanitize(&err.to_string())
            );
            false
        }
    }
}

/// The users of `--socks-users FILE`: an unreadable file is a runtime error (exit 1), a
/// malformed one a usage error naming its line (exit 2).
fn socks_users(file: &std::path::Path) -> Result<SocksUsers, CliError> {
    let text = read_text("SOCKS users", file)?;
    SocksUsers::from_text(&text)
        .map_err(|why| CliError::Usage(format!("invalid --socks-users {}: {why}", file.display())))
}
