//! `socketkit serve`: check the options against the service, then run it (see
//! [`super::server`] for binding, signals and readiness).

use socketkit::server::{DatagramHandler, Handler, Server};
use socketkit::services::Service;
use socketkit::services::chargen::Chargen;
use socketkit::services::daytime::Daytime;
use socketkit::services::discard::Discard;
use socketkit::services::echo::Echo;
use socketkit::services::exec::Exec;
use socketkit::services::greeting::{DEFAULT_MESSAGE, Greeting};
use socketkit::services::qotd::Qotd;
use socketkit::services::time::Time;

use super::args::ServeArgs;
use super::exit::CliError;
use super::{init_logging, server};

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
    let endpoints = server::endpoints(&args.server, DEFAULT_LISTEN)?;
    if !service.serves_datagrams() {
        if let Some(datagram) = endpoints.iter().find(|e| !e.transport().is_stream()) {
            return Err(CliError::Usage(format!(
                "{service} serves streams only; {datagram} is a datagram endpoint"
            )));
        }
    }
    let configured = configure(service, &args)?;
    let builder = server::builder(&args.server, endpoints)?;
    init_logging(&args.log);
    let workers = server::workers(&args.server)?;
    server::run(builder, workers, service.name(), |server| {
        serve(server, configured)
    })
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
