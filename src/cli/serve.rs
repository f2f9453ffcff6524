//! `socketkit serve`: check the options, bind the listeners, announce them, serve until
//! SIGINT/SIGTERM.

use socketkit::endpoint::Endpoint;
use socketkit::server::{DatagramHandler, Handler, Server, ShutdownHandle};
use socketkit::services::Service;
use socketkit::services::chargen::Chargen;
use socketkit::services::daytime::Daytime;
use socketkit::services::discard::Discard;
use socketkit::services::echo::Echo;
use socketkit::services::exec::Exec;
use socketkit::services::greeting::{DEFAULT_MESSAGE, Greeting};
use socketkit::services::qotd::Qotd;
use socketkit::services::time::Time;
use tokio::signal::unix::{SignalKind, signal};

use super::args::ServeArgs;
use super::exit::CliError;
use super::{init_logging, ready, resolve};

/// The tutorial's port, used when no `-l` is given.
const DEFAULT_LISTEN: &str = ":12345";

/// A service with its configuration, checked before anything is bound.
enum Configured {
    Greeting(Greeting),
    Echo,
    Discard,
    Chargen,
    Daytime,
    Qotd(Qotd),
    Time,
    Exec(Exec),
}

pub(crate) fn run(args: ServeArgs) -> Result<(), CliError> {
    let service: Service = args
        .service
        .parse()
        .map_err(|err: socketkit::services::UnknownService| CliError::Usage(err.to_string()))?;
    let endpoints = endpoints(&args)?;
    if !service.serves_datagrams() {
        if let Some(datagram) = endpoints.iter().find(|e| !e.transport().is_stream()) {
            return Err(CliError::Usage(format!(
                "{service} serves streams only; {datagram} is a datagram endpoint"
            )));
        }
    }
    let configured = configure(service, &args)?;
    let mut builder = builder(&args)?;
    for endpoint in endpoints {
        builder.listen(endpoint);
    }
    init_logging(&args.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| runtime_error("tokio runtime", err))?;
    runtime.block_on(async move {
        let server = builder.bind().await?;
        // Signals are caught before the readiness lines, so a SIGTERM sent as soon as
        // a script reads them is a graceful shutdown, never the default death.
        watch_signals(server.shutdown_handle())?;
        ready::announce(&server.local_endpoints(), service.name());
        serve(server, configured).await?;
        Ok(())
    })
}

fn endpoints(args: &ServeArgs) -> Result<Vec<Endpoint>, CliError> {
    if args.listen.is_empty() {
        return Ok(vec![resolve::endpoint(DEFAULT_LISTEN)?]);
    }
    args.listen
        .iter()
        .map(|text| resolve::endpoint(text))
        .collect()
}

/// Checks that each option belongs to the service, and builds the service.
fn configure(service: Service, args: &ServeArgs) -> Result<Configured, CliError> {
    let only = |set: bool, option: &str, owner: Service| {
        if set && service != owner {
            Err(CliError::Usage(format!(
                "{option} applies to the {owner} service only"
            )))
        } else {
            Ok(())
        }
    };
    only(args.message.is_some(), "--message", Service::Greeting)?;
    only(args.quotes.is_some(), "--quotes", Service::Qotd)?;
    only(args.shell, "--shell", Service::Exec)?;
    only(
        !args.program.is_empty(),
        "a program after --",
        Service::Exec,
    )?;
    Ok(match service {
        Service::Greeting => {
            let message = args.message.as_deref().unwrap_or(DEFAULT_MESSAGE);
            Configured::Greeting(Greeting::new(message))
        }
        Service::Echo => Configured::Echo,
        Service::Discard => Configured::Discard,
        Service::Chargen => Configured::Chargen,
        Service::Daytime => Configured::Daytime,
        Service::Time => Configured::Time,
        Service::Qotd => Configured::Qotd(match &args.quotes {
            Some(path) => Qotd::from_file(path).map_err(|err| CliError::Usage(err.to_string()))?,
            None => Qotd::default(),
        }),
        Service::Exec => {
            let program = args.program.iter().cloned();
            let exec = if args.shell {
                Exec::shell(program)
            } else {
                Exec::new(program)
            };
            Configured::Exec(exec.map_err(|err| CliError::Usage(err.to_string()))?)
        }
    })
}

async fn serve(server: Server, configured: Configured) -> socketkit::Result<()> {
    match configured {
        Configured::Greeting(greeting) => both(server, greeting).await,
        Configured::Echo => both(server, Echo).await,
        Configured::Discard => both(server, Discard).await,
        Configured::Chargen => both(server, Chargen::default()).await,
        Configured::Daytime => both(server, Daytime).await,
        Configured::Qotd(qotd) => both(server, qotd).await,
        Configured::Time => both(server, Time).await,
        Configured::Exec(exec) => server.serve(exec).await,
    }
}

/// Serves a service that answers streams and datagrams alike.
async fn both<S: Handler + DatagramHandler + Clone>(
    server: Server,
    service: S,
) -> socketkit::Result<()> {
    server.serve_both(service.clone(), service).await
}

fn builder(args: &ServeArgs) -> Result<socketkit::server::Builder, CliError> {
    let mut builder = Server::builder();
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
