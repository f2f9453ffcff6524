//! `socketkit serve`: bind the listeners, announce them, serve until SIGINT/SIGTERM.

use socketkit::server::{Server, ShutdownHandle};
use socketkit::services::Service;
use socketkit::services::greeting::{DEFAULT_MESSAGE, Greeting};
use tokio::signal::unix::{SignalKind, signal};

use super::args::ServeArgs;
use super::exit::CliError;
use super::{init_logging, ready, resolve};

/// The tutorial's port, used when no `-l` is given.
const DEFAULT_LISTEN: &str = ":12345";

pub(crate) fn run(args: ServeArgs) -> Result<(), CliError> {
    let service: Service = args
        .service
        .parse()
        .map_err(|err: socketkit::services::UnknownService| CliError::Usage(err.to_string()))?;
    let builder = builder(&args)?;
    init_logging(&args.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            CliError::Runtime(socketkit::Error::without_target(
                socketkit::error::Op::Create,
                err,
            ))
        })?;
    let message = args.message.unwrap_or_else(|| DEFAULT_MESSAGE.to_owned());
    runtime.block_on(async move {
        let server = builder.bind().await?;
        // Signals are caught before the readiness lines, so a SIGTERM sent as soon as
        // a script reads them is a graceful shutdown, never the default death.
        watch_signals(server.shutdown_handle())?;
        ready::announce(&server.local_endpoints(), service.name());
        match service {
            Service::Greeting => server.serve(Greeting::new(message)).await?,
        }
        Ok(())
    })
}

fn builder(args: &ServeArgs) -> Result<socketkit::server::Builder, CliError> {
    let mut builder = Server::builder();
    let listen: Vec<&str> = if args.listen.is_empty() {
        vec![DEFAULT_LISTEN]
    } else {
        args.listen.iter().map(String::as_str).collect()
    };
    for text in listen {
        builder.listen(resolve::endpoint(text)?);
    }
    if let Some(max) = args.max_connections {
        if max == 0 {
            return Err(CliError::Usage(
                "--max-connections must be at least 1".into(),
            ));
        }
        builder.max_connections(max);
    }
    if let Some(idle) = resolve::optional_duration("--idle-timeout", args.idle_timeout.as_deref())?
    {
        builder.idle_timeout(idle);
    }
    builder
        .backlog(args.backlog)
        .drain_timeout(resolve::duration("--drain-timeout", &args.drain_timeout)?);
    if let Some(mode) = &args.unix_mode {
        builder.unix_mode(resolve::octal_mode("--unix-mode", mode)?);
    }
    Ok(builder)
}

/// First SIGINT/SIGTERM: graceful shutdown. A second one: close everything now.
fn watch_signals(handle: ShutdownHandle) -> Result<(), CliError> {
    let install = |kind| {
        signal(kind).map_err(|err| {
            CliError::Runtime(socketkit::Error::new(
                socketkit::error::Op::Create,
                "signal handler",
                err,
            ))
        })
    };
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
