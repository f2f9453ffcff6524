//! The built-in services by name, as the command line picks them: [`Service`], the options
//! each takes ([`ServiceOption`]), and [`Service::configure`], which builds one from
//! [`ServiceOptions`] into a [`Configured`] service, ready to serve. The command line names
//! none of the services itself.
//!
//! How a service is served follows from what it is: the fixed answers (greeting, daytime,
//! qotd, time) and the streaming services (echo, discard, chargen) answer streams and
//! datagrams alike; exec answers streams only.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;

use super::chargen::Chargen;
use super::daytime::Daytime;
use super::discard::Discard;
use super::echo::Echo;
use super::exec::{Exec, ExecError};
use super::greeting::{DEFAULT_MESSAGE, Greeting};
use super::qotd::{Qotd, QuotesError};
use super::time::Time;
use crate::server::{DatagramHandler, Handler, Server};

/// A built-in service, by the name the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// [`greeting`](super::greeting): send a message, then close.
    Greeting,
    /// [`echo`](super::echo): RFC 862.
    Echo,
    /// [`discard`](super::discard): RFC 863.
    Discard,
    /// [`chargen`](super::chargen): RFC 864.
    Chargen,
    /// [`daytime`](super::daytime): RFC 867.
    Daytime,
    /// [`qotd`](super::qotd): RFC 865.
    Qotd,
    /// [`time`](super::time): RFC 868.
    Time,
    /// [`exec`](super::exec): a program per connection.
    Exec,
}

impl Service {
    /// Every service, in the order `socketkit serve --help` lists them.
    pub const ALL: [Service; 8] = [
        Service::Greeting,
        Service::Echo,
        Service::Discard,
        Service::Chargen,
        Service::Daytime,
        Service::Qotd,
        Service::Time,
        Service::Exec,
    ];

    /// The name used on the command line and in the `listening on` line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Greeting => "greeting",
            Service::Echo => "echo",
            Service::Discard => "discard",
            Service::Chargen => "chargen",
            Service::Daytime => "daytime",
            Service::Qotd => "qotd",
            Service::Time => "time",
            Service::Exec => "exec",
        }
    }

    /// Whether the service answers datagrams (UDP, Unix datagram) too.
    pub fn serves_datagrams(self) -> bool {
        self != Service::Exec
    }

    /// Builds the service from `options`, after checking that every option given is one it
    /// takes (greeting's message, qotd's quotes, exec's program and shell).
    ///
    /// # Errors
    ///
    /// An option of another service ([`Misplaced`]), a quotes file that cannot be used, or
    /// a program that cannot be run.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::services::{Service, ServiceOptions};
    /// let options = ServiceOptions { message: Some("hi".into()), ..Default::default() };
    /// let greeting = Service::Greeting.configure(options.clone()).unwrap();
    /// assert_eq!(greeting.service(), Service::Greeting);
    /// let err = Service::Echo.configure(options).unwrap_err();
    /// assert_eq!(err.to_string(), "the message option applies to the greeting service only");
    /// ```
    pub fn configure(self, options: ServiceOptions) -> Result<Configured, ServiceError> {
        options.check(self)?;
        let mut program = None;
        let serve = match self {
            Service::Greeting => {
                let message = options.message.as_deref().unwrap_or(DEFAULT_MESSAGE);
                both(Greeting::new(message))
            }
            Service::Echo => both(Echo),
            Service::Discard => both(Discard),
            Service::Chargen => both(Chargen::default()),
            Service::Daytime => both(Daytime),
            Service::Qotd => both(match &options.quotes {
                Some(path) => Qotd::from_file(path)?,
                None => Qotd::default(),
            }),
            Service::Time => both(Time),
            Service::Exec => {
                let exec = match options.shell {
                    true => Exec::shell(options.program)?,
                    false => Exec::new(options.program)?,
                };
                program = Some(exec.program_path().to_path_buf());
                streams(exec)
            }
        };
        Ok(Configured {
            service: self,
            serve,
            program,
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a built-in service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service '{0}' (expected one of: {list})", list = Service::ALL.map(Service::name).join(", "))]
pub struct UnknownService(pub String);

impl FromStr for Service {
    type Err = UnknownService;

    fn from_str(name: &str) -> Result<Service, UnknownService> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == name)
            .ok_or_else(|| UnknownService(name.to_owned()))
    }
}

/// An option that belongs to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceOption {
    /// greeting: the message.
    Message,
    /// qotd: a file of quotes.
    Quotes,
    /// exec: run the program with `sh -c`.
    Shell,
    /// exec: the program and its arguments.
    Program,
}

impl ServiceOption {
    /// The service that takes the option.
    pub fn service(self) -> Service {
        match self {
            ServiceOption::Message => Service::Greeting,
            ServiceOption::Quotes => Service::Qotd,
            ServiceOption::Shell | ServiceOption::Program => Service::Exec,
        }
    }

    /// The option's name in words (`message`, `quotes`, `shell`, `program`).
    pub fn name(self) -> &'static str {
        match self {
            ServiceOption::Message => "message",
            ServiceOption::Quotes => "quotes",
            ServiceOption::Shell => "shell",
            ServiceOption::Program => "program",
        }
    }
}

/// The options of the built-in services, as a command line collects them; each belongs to
/// one service ([`ServiceOption::service`]).
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// greeting: the message (default [`DEFAULT_MESSAGE`]).
    pub message: Option<String>,
    /// qotd: quotes from a file instead of the built-in list.
    pub quotes: Option<PathBuf>,
    /// exec: run the program with `sh -c` (its words joined by spaces).
    pub shell: bool,
    /// exec: the program and its arguments.
    pub program: Vec<OsString>,
}

impl ServiceOptions {
    /// The options that are set, in the order of [`ServiceOption`].
    fn given(&self) -> impl Iterator<Item = ServiceOption> {
        [
            (self.message.is_some(), ServiceOption::Message),
            (self.quotes.is_some(), ServiceOption::Quotes),
            (self.shell, ServiceOption::Shell),
            (!self.program.is_empty(), ServiceOption::Program),
        ]
        .into_iter()
        .filter_map(|(set, option)| set.then_some(option))
    }

    /// The first option given that `service` does not take.
    fn check(&self, service: Service) -> Result<(), Misplaced> {
        match self.given().find(|option| option.service() != service) {
            Some(option) => Err(Misplaced { option, service }),
            None => Ok(()),
        }
    }
}

/// An option given to a service that does not take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {} option applies to the {} service only", option.name(), option.service())]
pub struct Misplaced {
    /// The option.
    pub option: ServiceOption,
    /// The service it was given to.
    pub service: Service,
}

/// Why a service cannot be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// An option of another service.
    #[error(transparent)]
    Misplaced(#[from] Misplaced),
    /// qotd's quotes file.
    #[error(transparent)]
    Quotes(#[from] QuotesError),
    /// exec's program.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// How a configured service runs a server (the only place that knows its handler type),
/// and whether that includes datagrams.
struct Serve {
    datagrams: bool,
    run: Box<dyn FnOnce(Server) -> ServeFuture + Send>,
}

type ServeFuture = Pin<Box<dyn Future<Output = crate::Result<()>> + Send>>;

/// A built-in service built from its options ([`Service::configure`]), ready to serve.
pub struct Configured {
    service: Service,
    serve: Serve,
    program: Option<std::path::PathBuf>,
}

impl fmt::Debug for Configured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Configured")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Configured {
    /// Which service it is.
    pub fn service(&self) -> Service {
        self.service
    }

    /// The exec service's program file, as found at start (`None` for other services).
    pub fn program(&self) -> Option<&std::path::Path> {
        self.program.as_deref()
    }

    /// Whether it answers datagrams (UDP, Unix datagram) too, as its handlers show.
    pub fn serves_datagrams(&self) -> bool {
        self.serve.datagrams
    }

    /// Serves `server`'s listeners until it shuts down: streams, and datagrams where the
    /// service answers them (see [`Server::serve_both`]).
    ///
    /// # Errors
    ///
    /// As [`Server::serve`]; a datagram listener for a service that
    /// [serves streams only](Service::serves_datagrams) is one.
    pub fn serve(self, server: Server) -> impl Future<Output = crate::Result<()>> + Send {
        (self.serve.run)(server)
    }
}

/// A service that answers streams and datagrams alike.
fn both<S: Handler + DatagramHandler + Clone>(service: S) -> Serve {
    Serve {
        datagrams: true,
        run: Box::new(move |server| Box::pin(server.serve_both(service.clone(), service))),
    }
}

/// A service that answers streams only.
fn streams<S: Handler>(service: S) -> Serve {
    Serve {
        datagrams: false,
        run: Box::new(move |server| Box::pin(server.serve(service))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_is_served_as_it_says() -> Result<(), ServiceError> {
        for service in Service::ALL {
            let mut options = ServiceOptions::default();
            if service == Service::Exec {
                options.program = vec!["cat".into()];
            }
            let configured = service.configure(options)?;
            assert_eq!(configured.service(), service);
            assert_eq!(
                configured.serves_datagrams(),
                service.serves_datagrams(),
                "{service}"
            );
        }
        Ok(())
    }

    #[test]
    fn options_of_another_service_are_named_with_their_owner() {
        let options = ServiceOptions {
            quotes: Some("q.txt".into()),
            program: vec!["cat".into()],
            ..Default::default()
        };
        let misplaced = |service: Service| match service.configure(options.clone()) {
            Err(ServiceError::Misplaced(misplaced)) => Some(misplaced.option),
            _ => None,
        };
        assert_eq!(misplaced(Service::Exec), Some(ServiceOption::Quotes));
        assert_eq!(misplaced(Service::Qotd), Some(ServiceOption::Program));
        assert_eq!(misplaced(Service::Echo), Some(ServiceOption::Quotes));
    }
}
