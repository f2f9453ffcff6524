//! `socketkit forward -l udp:… --to udp:…`: the UDP relay, one upstream socket per client
//! (see [`socketkit::forward::datagram`]). Its own small runtime: the stream server's
//! connection limits, TLS and access rules have no datagram meaning here yet, and are refused.

use socketkit::endpoint::Endpoint;
use socketkit::forward::datagram::{BoundDatagramForward, DatagramForward};
use tokio::signal::unix::{SignalKind, signal};

use super::args::ForwardArgs;
use super::exit::CliError;
use super::{init_logging, ready};

/// Relays datagrams from every `endpoints` (all `udp:`) to `target` until SIGINT/SIGTERM.
pub(crate) fn run(
    args: &ForwardArgs,
    endpoints: &[Endpoint],
    target: Endpoint,
) -> Result<(), CliError> {
    if let Some(stream) = endpoints.iter().find(|e| e.transport().is_stream()) {
        return Err(CliError::Usage(format!(
            "forward relays streams to streams and udp: to udp:, not {stream} with a udp: \
             listener"
        )));
    }
    refuse_stream_only_options(args)?;
    let mut relay = DatagramForward::new(target).map_err(CliError::Usage)?;
    if let Some(idle) = args.server.idle_timeout {
        relay = relay.idle_timeout(idle);
    }
    if let Some(max) = args.server.max_connections {
        relay = relay.max_clients(max);
    }
    init_logging(&args.log);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| runtime_error("tokio runtime", err))?;
    runtime.block_on(async move {
        let bound: Vec<BoundDatagramForward> = endpoints
            .iter()
            .map(|endpoint| relay.bind(endpoint))
            .collect::<socketkit::Result<_>>()?;
        let install = |kind| signal(kind).map_err(|err| runtime_error("signal handler", err));
        let mut interrupt = install(SignalKind::interrupt())?;
        let mut terminate = install(SignalKind::terminate())?;
        let locals: Vec<Endpoint> = bound.iter().map(|b| b.local_endpoint().clone()).collect();
        ready::announce(&locals, &format!("forward to {}", relay.target()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut relays = tokio::task::JoinSet::new();
        for relay in bound {
            let mut stopped = stopped.clone();
            relays.spawn(relay.run(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
        }
        let outcome = tokio::select! {
            _ = interrupt.recv() => Ok(()),
            _ = terminate.recv() => Ok(()),
            Some(ended) = relays.join_next() => match ended {
                Ok(result) => result.map_err(CliError::from),
                Err(err) => Err(runtime_error("relay", std::io::Error::other(err))),
            },
        };
        let _ = stop.send(true);
        while relays.join_next().await.is_some() {}
        outcome
    })
}

/// The options of a stream `forward` that mean nothing for the UDP relay yet: refused rather
/// than silently ignored.
fn refuse_stream_only_options(args: &ForwardArgs) -> Result<(), CliError> {
    let access = &args.server.access;
    let given = [
        ("--allow", !access.allow.is_empty()),
        ("--deny", !access.deny.is_empty()),
        ("--allow-file", !access.allow_file.is_empty()),
        ("--deny-file", !access.deny_file.is_empty()),
        ("--max-per-source", access.max_per_source.is_some()),
        ("--rate-per-source", access.rate_per_source.is_some()),
        ("--user", access.user.is_some()),
        ("--group", access.group.is_some()),
        ("--workers", args.server.workers.is_some()),
        ("--io-engine", args.server.io_engine.is_some()),
        ("--unix-mode", args.server.unix_mode.is_some()),
        ("--pid-file", args.server.managed.pid_file.is_some()),
        ("--tls-cert", args.tls.tls_cert.is_some()),
        ("--tls-key", args.tls.tls_key.is_some()),
        ("--tls-self-signed", args.tls.tls_self_signed),
        ("--tls-client-ca", args.tls.tls_client_ca.is_some()),
        ("--tls-ca", args.to_tls.tls_ca.is_some()),
        ("--tls-sni", args.to_tls.tls_sni.is_some()),
        ("--tls-insecure", args.to_tls.tls_insecure),
        ("--to-tls-cert", args.to_tls_cert.to_tls_cert.is_some()),
        ("--to-tls-key", args.to_tls_cert.to_tls_key.is_some()),
        ("--tls-alpn", !args.tls_alpn.tls_alpn.is_empty()),
    ];
    match given.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(CliError::Usage(format!(
            "{name} applies to stream forwarding only, not to a udp: listener"
        ))),
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
