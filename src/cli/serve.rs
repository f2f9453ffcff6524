//! `socketkit serve`: check the options against the service, then run it (see
//! [`super::server`] for binding, signals and readiness). Which services there are, what
//! options each takes and how each is served is the library's catalog
//! (`socketkit::services::Service`); this file knows only the command line's words for them.

use socketkit::endpoint::Transport;
use socketkit::services::qotd::QuotesError;
use socketkit::services::{Service, ServiceError, ServiceOption, ServiceOptions, UnknownService};

use super::args::ServeArgs;
use super::exit::CliError;
use super::given::Given;
use super::managed::Managed;
use super::{init_serving, server, tls};

/// The most a UDP datagram over IPv4 carries (65,535 less the IP and UDP headers).
const MAX_UDP_ANSWER: usize = 65_507;

/// The tutorial's port, used when no `-l` is given.
const DEFAULT_LISTEN: &str = ":12345";

pub(crate) fn run(args: ServeArgs, given: &Given) -> Result<(), CliError> {
    let service: Service = args
        .service
        .parse()
        .map_err(|err: UnknownService| CliError::Usage(err.to_string()))?;
    let mut managed = Managed::start(&args.server.managed)?;
    let listeners = managed.listeners(&args.server.listen, Some(DEFAULT_LISTEN))?;
    if !service.serves_datagrams()
        && let Some(datagram) = listeners
            .iter()
            .find(|l| !l.endpoint().transport().is_stream())
    {
        return Err(CliError::Usage(format!(
            "{service} serves streams only; {datagram} is a datagram endpoint"
        )));
    }
    if let [first, ..] = listeners.as_slice()
        && listeners
            .iter()
            .all(|l| !l.endpoint().transport().is_stream())
    {
        refuse_stream_only_options(&args, given, &first.endpoint().to_string())?;
    }
    // A greeting longer than a UDP datagram holds would go unanswered, datagram after
    // datagram, with nothing said at the default level.
    if let Some(message) = &args.message
        && message.len() > MAX_UDP_ANSWER
        && let Some(udp) = listeners
            .iter()
            .find(|l| l.endpoint().transport() == Transport::Udp)
    {
        return Err(CliError::Usage(format!(
            "--message is {} bytes, more than a UDP datagram holds ({MAX_UDP_ANSWER}): {} could \
             not answer with it",
            message.len(),
            udp.endpoint()
        )));
    }
    let options = ServiceOptions {
        message: args.message,
        quotes: args.quotes,
        shell: args.shell,
        program: args.program,
    };
    let configured = service.configure(options).map_err(usage)?;
    check_program_for_user(&configured, &args.server.access)?;
    let endpoints: Vec<_> = listeners.iter().map(|l| l.endpoint().clone()).collect();
    let tls = tls::server(&args.tls, &args.tls_alpn, &endpoints)?;
    tls::check_alpn_applies(&args.tls_alpn, tls.is_some())?;
    let prepared = server::prepare(&args.server, listeners, tls.as_ref(), given, &managed)?;
    init_serving(&args.log);
    let runs_programs = configured.program().is_some();
    let after_ready = || {
        if let Some(tls) = &tls {
            tls.announce();
        }
        // PID 1 of a PID namespace adopts every orphan, and socketkit waits only for the
        // programs it started: what they leave running in the background would stay as
        // zombies, until the namespace's process limit refuses new connections' programs.
        if runs_programs && std::process::id() == 1 {
            super::signals::reap_orphans_as_init();
        }
    };
    server::run(prepared, service.name(), managed, after_ready, |server| {
        configured.serve(server)
    })
}

/// With `--user`/`--group`, the exec program must be one the server, once it has dropped
/// root, may run: checked at start (exit 2), as a missing program is, rather than reset at
/// every connection after the server said it was ready.
fn check_program_for_user(
    configured: &socketkit::services::Configured,
    access: &super::args::AccessArgs,
) -> Result<(), CliError> {
    let Some(program) = configured.program() else {
        return Ok(());
    };
    if access.user.is_none() && access.group.is_none() {
        return Ok(());
    }
    // An identity that does not resolve is refused with its own words later.
    let Ok(identity) =
        socketkit::access::resolve_identity(access.user.as_deref(), access.group.as_deref())
    else {
        return Ok(());
    };
    if socketkit::access::may_execute(identity, program) {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "program '{}' may not be run by user {} and group {} (--user/--group): it, or a \
         directory above it, lacks the execute permission for them",
        program.display(),
        identity.uid,
        identity.gid
    )))
}

/// The options that shape connections, refused when every listener is a datagram one
/// (they would be silently ignored); `given` catches those that have a default. With a
/// stream listener beside, they apply to it.
fn refuse_stream_only_options(
    args: &ServeArgs,
    given: &Given,
    first: &str,
) -> Result<(), CliError> {
    let server = &args.server;
    let stream_only = [
        ("--backlog", given.contains("backlog")),
        ("--max-connections", server.max_connections.is_some()),
        ("--idle-timeout", server.idle_timeout.is_some()),
        ("--drain-timeout", given.contains("drain_timeout")),
        ("--proxy-protocol", server.proxy.proxy_protocol),
    ];
    match stream_only.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(CliError::Usage(format!(
            "{name} applies to stream listeners only, and every listener here is a datagram \
             one (such as {first})"
        ))),
        None => Ok(()),
    }
}

/// A service that cannot be configured is bad usage, except a file that cannot be read
/// (an I/O error, exit 1, as for every file an option names); an option of another service
/// is named as the command line spells it.
fn usage(err: ServiceError) -> CliError {
    match err {
        ServiceError::Misplaced(misplaced) => {
            let option = match misplaced.option {
                ServiceOption::Message => "--message",
                ServiceOption::Quotes => "--quotes",
                ServiceOption::Shell => "--shell",
                ServiceOption::Program => "a program after --",
            };
            let owner = misplaced.option.service();
            CliError::Usage(format!("{option} applies to the {owner} service only"))
        }
        ServiceError::Quotes(unreadable @ QuotesError::Read { .. }) => {
            CliError::Failed(unreadable.to_string())
        }
        other => CliError::Usage(other.to_string()),
    }
}
