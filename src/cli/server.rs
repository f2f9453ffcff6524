//! What `serve` and `forward` share: the server's options, the runtime, and the readiness
//! lines (signals and inherited sockets: [`super::managed`]).

use std::future::Future;

use socketkit::error::Op;
use socketkit::server::{Builder, Server};

use super::access::{self, Access};
use super::args::ServerArgs;
use super::exit::CliError;
use super::managed::{Listen, Managed};
use super::ready;

/// A builder with the options of `args` and the given endpoints.
pub(crate) fn builder(args: &ServerArgs, listeners: Vec<Listen>) -> Result<Builder, CliError> {
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

/// Binds (or, `--inetd`, takes the connection on stdin), installs the signal handlers,
/// announces `listening on … (what)`, and runs `serve` on a multi-threaded runtime until a
/// signal shuts the server down (see [`Managed::serve`]).
pub(crate) fn run<F, Fut>(
    builder: Builder,
    access: &Access,
    workers: usize,
    what: &str,
    managed: Managed,
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
        .map_err(|err| CliError::runtime(Op::Create, "tokio runtime", err))?;
    runtime.block_on(managed.serve(
        builder,
        access,
        |endpoints| ready::announce(endpoints, what),
        serve,
    ))
}
