//! What `serve` and `forward` share: the server's options, the runtime, signals, and the
//! readiness lines.

use std::future::Future;

use socketkit::endpoint::Endpoint;
use socketkit::server::{Builder, Server, ShutdownHandle};
use tokio::signal::unix::{SignalKind, signal};

use super::access::{self, Access};
use super::args::ServerArgs;
use super::exit::CliError;
use super::{ready, resolve};

/// The endpoints of `-l`, or `default` when none is given.
pub(crate) fn endpoints(args: &ServerArgs, default: &str) -> Result<Vec<Endpoint>, CliError> {
    if args.listen.is_empty() {
        return Ok(vec![resolve::endpoint(default)?]);
    }
    args.listen
        .iter()
        .map(|text| resolve::endpoint(text))
        .collect()
}

/// A builder with the options of `args` and the given endpoints.
pub(crate) fn builder(args: &ServerArgs, endpoints: Vec<Endpoint>) -> Result<Builder, CliError> {
    let mut builder = Server::builder();
    if let Some(max) = args.max_connections {
        builder.max_connections(max);
    }
    if let Some(idle) = args.idle_timeout {
        builder.idle_timeout(idle);
    }
    builder
        .backlog(args.backlog)
        .drain_timeout(args.drain_timeout);
    if let Some(mode) = args.unix_mode {
        if !endpoints.iter().any(|e| e.path().is_some()) {
            return Err(CliError::Usage(
                "--unix-mode applies to Unix socket files, and no -l is a unix: or unixgram: \
                 endpoint"
                    .into(),
            ));
        }
        builder.unix_mode(mode);
    }
    for endpoint in endpoints {
        builder.listen(endpoint);
    }
    builder.workers(workers(args));
    Ok(builder)
}

/// The access settings of `args`, checked (exit 2 on any fault), added to `builder`.
pub(crate) fn access(args: &ServerArgs, builder: &mut Builder) -> Result<Access, CliError> {
    let access = access::resolve(&args.access)?;
    access.apply(builder);
    Ok(access)
}

/// `--workers`, or the cores this process may use.
pub(crate) fn workers(args: &ServerArgs) -> usize {
    args.workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Binds, installs the signal handlers, announces `listening on … (what)`, and runs `serve`
/// on a multi-threaded runtime until a signal shuts the server down.
pub(crate) fn run<F, Fut>(
    builder: Builder,
    access: &Access,
    workers: usize,
    what: &str,
    serve: F,
) -> Result<(), CliError>
where
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = socketkit::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|err| runtime_error("tokio runtime", err))?;
    runtime.block_on(async move {
        let server = builder.bind().await?;
        // Bound (so ports below 1024 work as root), nothing accepted yet.
        access.drop_privileges()?;
        // Signals are caught before the readiness lines, so a SIGTERM sent as soon as
        // a script reads them is a graceful shutdown, never the default death.
        watch_signals(server.shutdown_handle())?;
        access.reload_on_hangup()?;
        ready::announce(&server.local_endpoints(), what);
        serve(server).await?;
        Ok(())
    })
}

fn runtime_error(what: &str, err: std::io::Error) -> CliError {
    CliError::Runtime(socketkit::Error::new(
        socketkit::error::Op::Create,
        what,
        err,
    ))
}

/// First SIGINT/SIGTERM: graceful shutdown. A second one: close everything now.
fn watch_signals(handle: ShutdownHandle) -> Result<(), CliError> {
    let install = |kind| signal(kind).map_err(|err| runtime_error("signal handler", err));
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if handle.is_shutting_down() {
                tracing::info!("second signal: closing every connection now");
            } else {
                tracing::info!("shutting down: listeners closed, draining connections");
            }
            handle.shutdown();
        }
    });
    Ok(())
}
