//! The raw command line, as close to the flags as possible (clap derive). Values that need
//! checking (endpoints, durations, services) stay strings here and are checked in
//! [`super::resolve`], so that every such failure becomes exit 2 with our own words.

use clap::{Args, Parser, Subcommand};

/// socketkit: network programming made simple and correct.
#[derive(Debug, Parser)]
#[command(name = "socketkit", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a service: greeting (default, the tutorial's server on port 12345), echo, discard,
    /// chargen, daytime, qotd, time, exec.
    Serve(ServeArgs),
    /// Connect to ENDPOINT and bridge it with stdin/stdout, like nc.
    Connect(ConnectArgs),
}

/// Options shared by every command that runs a server.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// More log lines on stderr (-v: one per connection, -vv: everything).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Only errors on stderr (the `listening on` lines still appear).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The service to run.
    #[arg(value_name = "SERVICE", default_value = "greeting")]
    pub(crate) service: String,
    /// Where to listen (repeatable): HOST:PORT, :PORT, udp:HOST:PORT, unix:PATH…
    #[arg(short = 'l', long = "listen", value_name = "ENDPOINT")]
    pub(crate) listen: Vec<String>,
    /// The greeting's message.
    #[arg(long, value_name = "TEXT")]
    pub(crate) message: Option<String>,
    /// qotd: quotes from FILE (separated by blank lines or '%' lines), each < 512 bytes.
    #[arg(long, value_name = "FILE")]
    pub(crate) quotes: Option<std::path::PathBuf>,
    /// exec: run the program with `sh -c` (its words joined by spaces).
    #[arg(long)]
    pub(crate) shell: bool,
    /// At most N connections at once; past it, new clients wait in the backlog.
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// Close a connection after this long with no bytes either way (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION")]
    pub(crate) idle_timeout: Option<String>,
    /// The listen(2) backlog.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub(crate) backlog: u32,
    /// On SIGINT/SIGTERM, how long in-flight connections may finish.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub(crate) drain_timeout: String,
    /// Permission bits of Unix socket files, in octal (e.g. 660).
    #[arg(long, value_name = "MODE")]
    pub(crate) unix_mode: Option<String>,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// exec: the program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROGRAM")]
    pub(crate) program: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Where to connect: HOST:PORT, [IPv6]:PORT or unix:PATH.
    #[arg(value_name = "ENDPOINT")]
    pub(crate) endpoint: String,
    /// Give up connecting after this long (e.g. 3s).
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}
