//! The command line: parse → resolve → call the library → map the outcome to an exit code.
//! One file per subcommand; nothing here does network work of its own.

mod access;
mod args;
mod bench;
mod bench_options;
mod completions;
mod connect;
mod exit;
mod forward;
mod forward_args;
mod forward_datagram;
mod given;
mod listen;
mod log;
mod managed;
mod metrics;
mod nc_hints;
mod netcat;
mod pid_file;
mod ready;
mod resolve;
mod serve;
mod server;
mod signals;
mod sni_routes;
mod socket_file;
mod stderr;
mod stdio;
mod target_file;
mod tls;
mod tls_args;
mod values;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use args::{Cli, Command, LogArgs};
use exit::CliError;
use given::Given;

/// Leaves unsaid the panic tokio makes when its blocking pool gets no thread from the system
/// (`socketkit::error::NO_THREAD_PANIC`): the library catches it where it starts blocking
/// work and reports the shortage in words (a warning, an error), so the panic's message and
/// backtrace would only add noise SPEC §2.3 rules out. Every other panic is said as before.
fn quiet_thread_shortage_panics() {
    let said = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied());
        if !message.is_some_and(|text| text.starts_with(socketkit::error::NO_THREAD_PANIC)) {
            said(info);
        }
    }));
}

/// Runs the command line and returns the process's exit code.
pub(crate) fn run() -> ExitCode {
    // Before any thread starts, so that every thread inherits the mask: a parent that
    // blocked SIGTERM, or ignored SIGCHLD, must not leave a server deaf to a stop or
    // unable to wait for its programs.
    if let Err(err) = socketkit::server::reset_inherited_signals() {
        let op = socketkit::error::Op::SetOption("the signal mask");
        return CliError::Runtime(socketkit::Error::without_target(op, err)).report();
    }
    quiet_thread_shortage_panics();
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = Cli::command();
    if let Some(hint) = nc_hints::hint(&argv, &command) {
        return CliError::Usage(hint).report();
    }
    // Parsed in two steps (what `Cli::try_parse` does), keeping the matches: `serve`,
    // `forward` and `bench` need to know which options were written, not only their values.
    let matches = match command.try_get_matches() {
        Ok(matches) => matches,
        Err(err) => return clap_exit(&err, &argv),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return clap_exit(&err, &argv),
    };
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args, &Given::of(matches.subcommand_matches("serve"))),
        Command::Connect(args) => connect::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Forward(args) => {
            forward::run(*args, &Given::of(matches.subcommand_matches("forward")))
        }
        Command::Bench(args) => bench::run(args, &Given::of(matches.subcommand_matches("bench"))),
        Command::Completions(args) => completions::print_completions(args.shell),
        Command::Man => completions::print_man_page(),
    };
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => err.report(),
    };
    stderr::flush(stderr::EXIT_FLUSH);
    code
}

/// `--help` and `--version` print and succeed; a bare `socketkit` prints help on stdout (as a
/// bare `git` prints its usage) and is a usage error, its one `error:` line on stderr; every
/// other parse failure is clap's first line (`error: …`), exit 2, but for an argument that
/// is not UTF-8, which clap does not name: then the line names it (see [`not_utf8`]).
fn clap_exit(err: &clap::Error, argv: &[OsString]) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A stdout whose reader left (`| head`) wanted no more; one that failed (a full
            // disk) lost the text, and the exit code says so.
            // Styled where the log would be: on a terminal, unless NO_COLOR or TERM=dumb.
            let styled = log::colour(
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
                std::env::var_os("NO_COLOR"),
                std::env::var_os("TERM"),
            );
            let text = match styled {
                true => err.render().ansi().to_string(),
                false => err.render().to_string(),
            };
            match exit::write_stdout(text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(failed) => failed.report(),
            }
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Nobody may read stdout (`socketkit | head`): the error line still goes.
            let _ = write!(std::io::stdout(), "{}", err.render());
            let commands = "serve, connect, listen, forward, bench, completions or man";
            CliError::Usage(format!("no command given (one of {commands})")).report()
        }
        ErrorKind::InvalidUtf8 => CliError::Usage(not_utf8(argv)).report(),
        _ => {
            // clap's message runs until the first blank line (a missing argument is named
            // on the line after "not provided:"); the usage and tips after it are dropped.
            let rendered = err.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let joined = message.join(" ");
            let mut line = joined.strip_prefix("error: ").unwrap_or(&joined).to_owned();
            // The one tip kept, on the same line: the option or command clap thinks was
            // meant (`--worker` → `--workers`).
            if let Some(meant) = suggestion(err) {
                line.push_str(&format!(" (did you mean '{meant}'?)"));
            } else if err.kind() == ErrorKind::UnknownArgument && exec_without_dashes(argv) {
                line.push_str(
                    " (exec's program goes after --: socketkit serve exec -l … -- PROGRAM ARGS)",
                );
            }
            CliError::Usage(line).report()
        }
    }
}

/// Whether `argv` is `serve exec …` with no `--` before the program (`serve exec -l :7
/// cat`), which clap refuses as an unexpected argument.
fn exec_without_dashes(argv: &[OsString]) -> bool {
    argv.first().is_some_and(|command| command == "serve")
        && argv.iter().any(|word| word == "exec")
        && !argv.iter().any(|word| word == "--")
}

/// Which argument clap refused as not UTF-8, in words: `argument 'unix:/tmp/bad\xff.sock' is
/// not valid UTF-8`, the bytes that are no UTF-8 written `\xNN`.
fn not_utf8(argv: &[OsString]) -> String {
    let bad: Vec<usize> = (0..argv.len())
        .filter(|&i| argv[i].to_str().is_none())
        .collect();
    // Paths and a program's arguments may be any bytes: the one refused is the first that
    // clap refuses in the arguments up to it, as it parses from the left.
    let refused = bad.iter().copied().find(|&i| {
        let upto = std::iter::once(OsString::from("socketkit")).chain(argv[..=i].iter().cloned());
        Cli::command()
            .try_get_matches_from(upto)
            .is_err_and(|err| err.kind() == ErrorKind::InvalidUtf8)
    });
    match refused.or(bad.first().copied()) {
        Some(i) => format!("argument '{}' is not valid UTF-8", escape_bytes(&argv[i])),
        None => "an argument is not valid UTF-8".to_owned(),
    }
}

/// `arg` as text, each byte that is no UTF-8 written `\xNN` (control characters are left
/// for the `error:` line's own escaping).
fn escape_bytes(arg: &OsStr) -> String {
    let mut text = String::new();
    for chunk in arg.as_bytes().utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

/// The argument, subcommand or value clap suggests in place of a mistyped one, if any.
fn suggestion(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let kinds = [
        ContextKind::SuggestedArg,
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedValue,
    ];
    kinds.into_iter().find_map(|kind| match err.get(kind)? {
        ContextValue::String(meant) => Some(meant.clone()),
        ContextValue::Strings(meant) => meant.first().cloned(),
        _ => None,
    })
}

/// Sends the library's `tracing` events to stderr (see [`log::init`]).
fn init_logging(log_args: &LogArgs) {
    log::init(log_args);
}

/// [`init_logging`], for a command that serves (`serve`, `forward`, `listen`): and the
/// soft limit on open descriptors raised to the hard one, which a service manager or a
/// login shell leaves far apart (1024 and 524288 under systemd): each client holds one.
/// Not logged: nothing may come before the readiness lines, and `/proc/PID/limits` says it.
fn init_serving(log_args: &LogArgs) {
    init_logging(log_args);
    socketkit::server::use_the_hard_descriptor_limit();
    stderr::open_early();
}
