//! The raw command line, as close to the flags as possible (clap derive). Numbers and
//! durations are range-checked here by the parsers of [`super::values`]; endpoints and
//! services stay strings and are checked in [`super::resolve`]. Every such failure is exit 2
//! with one line in our own words.
//!
//! Every numeric option takes values that start with `-` (`allow_hyphen_values`), so that
//! `--timeout -1s` is refused for its range rather than read as an unknown flag.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::tls::{TlsAlpnArgs, TlsConnectArgs, TlsServerArgs};
use super::values;

pub(crate) use super::forward_args::{ForwardArgs, ProxyVersion};

/// The most threads `--workers` and `--threads` may ask for: more than any machine has cores,
/// and few enough that starting them is quick (tens of thousands take seconds, and may
/// fail half way inside the runtime).
const MAX_THREADS: u64 = 1024;

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
    /// Wait for one peer on ENDPOINT and bridge it with stdin/stdout, like nc -l.
    Listen(ListenArgs),
    /// Relay every connection accepted on -l (or every UDP client) to --to.
    // Boxed: the largest of the commands' options by far.
    Forward(Box<ForwardArgs>),
    /// Load-test ENDPOINT: greeting (a connection per operation), echo, or idle.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout: `socketkit man | man -l -`.
    Man,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Log verbosity, shared by every command.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// More log lines on stderr (-v: one per connection, -vv: everything).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Only errors on stderr (the `listening on` lines still appear).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// How log lines look: text, or one JSON object per line (`listening on` stays text).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
}

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Plain lines.
    Text,
    /// One JSON object per line: ts, level, msg and the event's fields.
    Json,
}

/// Options of every command that runs a server (serve, forward).
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Where to listen (repeatable): HOST:PORT, :PORT, udp:HOST:PORT, unix:PATH…, or an
    /// inherited socket: fd:N, fd:NAME, tls:fd:N (systemd's LISTEN_FDS; with none given, all
    /// of them).
    #[arg(short = 'l', long = "listen", value_name = "ENDPOINT")]
    pub(crate) listen: Vec<String>,
    /// At most N connections at once (1-1000000000); past it, new clients wait in the
    /// backlog.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = values::whole::<usize>(1, 1_000_000_000))]
    pub(crate) max_connections: Option<usize>,
    /// Close a connection after this long with no bytes either way (e.g. 30s, 5m) [default:
    /// none; for a datagram relay's clients, `forward -l udp:`/`unixgram:`, 60s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = values::duration())]
    pub(crate) idle_timeout: Option<Duration>,
    /// The listen(2) backlog (0-65535; the kernel caps it at net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = socketkit::server::DEFAULT_BACKLOG,
          allow_hyphen_values = true, value_parser = values::whole::<u32>(0, 65_535))]
    pub(crate) backlog: u32,
    /// On SIGINT/SIGTERM, how long in-flight connections may finish (0: close them at once).
    #[arg(long, value_name = "DURATION", default_value = "5s", allow_hyphen_values = true,
          value_parser = values::duration_or_zero())]
    pub(crate) drain_timeout: Duration,
    /// On SIGINT/SIGTERM, keep accepting this long while /health answers 503, so a load
    /// balancer stops sending before the listeners close.
    #[arg(long, value_name = "DURATION", default_value = "0s", allow_hyphen_values = true,
          value_parser = values::duration_or_zero())]
    pub(crate) shutdown_delay: Duration,
    /// Permission bits of Unix socket files, in octal (e.g. 660); needs a unix: listener.
    #[arg(long, value_name = "MODE", allow_hyphen_values = true, value_parser = values::mode())]
    pub(crate) unix_mode: Option<u32>,
    /// Threads serving connections (1-1024), each with its own SO_REUSEPORT listener per
    /// TCP endpoint where the kernel supports it (default: the number of cores).
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = values::whole::<usize>(1, MAX_THREADS))]
    pub(crate) workers: Option<usize>,
    /// How to wait for connections: io_uring, epoll, or auto (io_uring where the kernel has
    /// it and the service is greeting, daytime, qotd, time, echo or discard with no
    /// per-connection rules; default: $SOCKETKIT_IO_ENGINE, else auto).
    #[arg(long, value_name = "ENGINE", value_parser = ["auto", "epoll", "io_uring"])]
    pub(crate) io_engine: Option<String>,
    #[command(flatten)]
    pub(crate) access: AccessArgs,
    #[command(flatten)]
    pub(crate) proxy: ProxyArgs,
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
    #[command(flatten)]
    pub(crate) managed: ManagedArgs,
}

/// The PROXY protocol options of a server behind a load balancer (SPEC §3.3).
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Expect a PROXY protocol header (v1 or v2) on every connection; its client address
    /// becomes the peer. Needs --trusted-proxy.
    #[arg(long, requires = "trusted_proxy")]
    pub(crate) proxy_protocol: bool,
    /// A network allowed to send PROXY headers (repeatable): ADDRESS or ADDRESS/LENGTH.
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol")]
    pub(crate) trusted_proxy: Vec<String>,
    /// How long a connection may take to send its PROXY header [default: 5s].
    #[arg(long, value_name = "DURATION", requires = "proxy_protocol",
          allow_hyphen_values = true, value_parser = values::duration())]
    pub(crate) proxy_header_timeout: Option<Duration>,
}

/// The metrics endpoint (SPEC §3.5).
#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics on http://HOST:PORT/metrics and a health check on /health.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) metrics: Option<String>,
}

/// Who may connect, how often and how many at once, and as whom the server runs (SPEC
/// §3.2); on serve, forward and listen -k.
#[derive(Debug, Args, Default)]
pub(crate) struct AccessArgs {
    /// Admit only sources in CIDR (repeatable; a bare address is a /32 or /128).
    #[arg(long, value_name = "CIDR")]
    pub(crate) allow: Vec<String>,
    /// Refuse sources in CIDR (repeatable); a deny always wins over an allow.
    #[arg(long, value_name = "CIDR")]
    pub(crate) deny: Vec<String>,
    /// Allow rules from FILE, one CIDR per line, `#` comments; serve and forward re-read it
    /// on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub(crate) allow_file: Vec<PathBuf>,
    /// Deny rules from FILE, as --allow-file.
    #[arg(long, value_name = "FILE")]
    pub(crate) deny_file: Vec<PathBuf>,
    /// At most N connections at once from one source (an IPv4 address or an IPv6 /64),
    /// 1-4294967295.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = values::whole::<u32>(1, u32::MAX.into()))]
    pub(crate) max_per_source: Option<u32>,
    /// New connections per source, as N/DURATION (e.g. 20/1s, 100/1m); excess refused.
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub(crate) rate_per_source: Option<String>,
    /// After binding, drop root and run as USER (a name or a number).
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// After binding, run with GROUP (default: the user's primary group).
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
}

/// Options for running under a service manager (systemd, inetd, s6, runit).
#[derive(Debug, Args)]
pub(crate) struct ManagedArgs {
    /// Serve the one connection on stdin/stdout, then exit (inetd nowait, systemd
    /// Accept=yes). Access rules apply as on a listener: a refused connection is reset
    /// unserved, and the exit status is 0.
    #[arg(long, conflicts_with_all = ["listen", "pid_file"])]
    pub(crate) inetd: bool,
    /// Write the pid of the serving process to FILE (after a SIGUSR2 restart, the new one).
    #[arg(long, value_name = "FILE")]
    pub(crate) pid_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The service to run.
    #[arg(value_name = "SERVICE", default_value = "greeting")]
    pub(crate) service: String,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// The greeting's message [default: 你好].
    #[arg(long, value_name = "TEXT")]
    pub(crate) message: Option<String>,
    /// qotd: quotes from FILE (separated by blank lines or '%' lines), each < 512 bytes.
    #[arg(long, value_name = "FILE")]
    pub(crate) quotes: Option<PathBuf>,
    /// exec: run the program with `/bin/sh -c` (its words joined by spaces).
    #[arg(long)]
    pub(crate) shell: bool,
    #[command(flatten)]
    pub(crate) tls: TlsServerArgs,
    #[command(flatten)]
    pub(crate) tls_alpn: TlsAlpnArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// exec: the program and its arguments, after `--`. Its stdin and stdout are the
    /// connection's socket itself (pipes on tls: listeners); socketkit, which then does not
    /// see the bytes, leaves them out of the metrics and the -v closing line.
    #[arg(last = true, value_name = "PROGRAM")]
    pub(crate) program: Vec<OsString>,
}

/// Options of the stdio bridge (connect, listen).
#[derive(Debug, Args)]
pub(crate) struct BridgeArgs {
    /// Give up when no byte has moved either way for this long (exit 1).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = values::duration())]
    pub(crate) idle_timeout: Option<Duration>,
    /// UDP and unixgram only: after stdin ends, wait this long for further replies (by
    /// default 1s, or what -w gives). Not a connect timeout, which ncat's --wait and nc's
    /// -w are.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = values::duration_or_zero())]
    pub(crate) wait: Option<Duration>,
    /// At the end of stdin, keep the socket open for sending instead of half-closing it,
    /// for peers and proxies that take a half-close as the end (ncat's --no-shutdown).
    #[arg(long, conflicts_with_all = ["send_only", "recv_only"])]
    pub(crate) no_shutdown: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Where to connect: HOST:PORT, [IPv6]:PORT, tls:HOST:PORT, udp:HOST:PORT, unix:PATH,
    /// unixgram:PATH; or HOST with PORT after it, as nc takes them.
    #[arg(value_name = "ENDPOINT")]
    pub(crate) endpoint: String,
    /// The port, when ENDPOINT is a bare host (`connect example.com 80`); with -z, ranges
    /// LOW-HIGH and several ports (`-z HOST 22 80 8000-8080`, as nc's) probe each port and
    /// print those that accept.
    #[arg(value_name = "PORT", value_parser = values::ports())]
    pub(crate) port: Vec<values::PortWord>,
    /// Give up each connection attempt after this long (e.g. 3s). It bounds the connect
    /// only, as ncat's -w; unlike OpenBSD nc's -w it does not end an idle connection: that
    /// is --idle-timeout (exit 1). On a UDP or unixgram endpoint, which has no connect, it
    /// is the reply wait, as nc's -u -w.
    #[arg(short = 'w', long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = values::duration())]
    pub(crate) timeout: Option<Duration>,
    /// Use IPv4 addresses only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,
    /// Use IPv6 addresses only.
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
    /// Probe: exit 0 if the connection succeeds, 1 if not; send nothing.
    #[arg(short = 'z', conflicts_with_all = ["exec", "shell_command", "send_only", "recv_only"])]
    pub(crate) probe: bool,
    /// Connect from this local address.
    #[arg(short = 's', long = "source", value_name = "ADDR",
          value_parser = super::netcat::source_address)]
    pub(crate) source: Option<std::net::IpAddr>,
    /// Connect from this local port (1-65535).
    #[arg(short = 'p', long = "source-port", value_name = "PORT", allow_hyphen_values = true,
          value_parser = values::whole::<u16>(1, 65_535))]
    pub(crate) source_port: Option<u16>,
    /// Connect through a proxy: socks5://HOST[:PORT] (the target's name resolved here),
    /// socks5h://… (resolved by the proxy), http://HOST[:PORT] (CONNECT; the default
    /// without a scheme), socks4://… or socks4a://…; USER:PASSWORD@ before the host to
    /// authenticate (SOCKS4: USER@, a user id).
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    #[command(flatten)]
    pub(crate) netcat: NetcatArgs,
    #[command(flatten)]
    pub(crate) bridge: BridgeArgs,
    #[command(flatten)]
    pub(crate) tls: TlsConnectArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

/// What `connect` and `listen` take from netcat (SPEC §3.6).
#[derive(Debug, Args)]
pub(crate) struct NetcatArgs {
    /// UDP: a HOST:PORT endpoint becomes udp:HOST:PORT, unix:PATH becomes unixgram:PATH.
    #[arg(short = 'u', long = "udp")]
    pub(crate) udp: bool,
    /// Run PROG (split at spaces, no shell) with its stdin and stdout on the socket, in the
    /// environment of `serve exec` (SOCKETKIT_PEER_ADDR…).
    #[arg(
        short = 'e',
        long = "exec",
        value_name = "PROG",
        conflicts_with = "shell_command"
    )]
    pub(crate) exec: Option<String>,
    /// As --exec, through `/bin/sh -c CMD`.
    #[arg(short = 'c', long = "sh-exec", value_name = "CMD")]
    pub(crate) shell_command: Option<String>,
    /// Only send: what the peer sends is dropped, and the end of stdin ends the run.
    #[arg(long, conflicts_with_all = ["recv_only", "exec", "shell_command"])]
    pub(crate) send_only: bool,
    /// Only receive: stdin is not read and the socket is not half-closed.
    #[arg(long, conflicts_with_all = ["exec", "shell_command"])]
    pub(crate) recv_only: bool,
    /// Send each LF of stdin as CRLF (for line protocols: SMTP, HTTP by hand).
    #[arg(short = 'C', long = "crlf", conflicts_with_all = ["exec", "shell_command"])]
    pub(crate) crlf: bool,
    /// Numeric addresses only, as nc's -n: a host name is refused, never looked up.
    #[arg(short = 'n', long = "nodns")]
    pub(crate) numeric: bool,
    /// Write a copy of the bytes of both directions to FILE.
    #[arg(short = 'o', long = "output", value_name = "FILE",
          conflicts_with_all = ["exec", "shell_command", "hex_dump"])]
    pub(crate) output: Option<PathBuf>,
    /// Write a hex dump of both directions to FILE: `>` sent, `<` received, with offsets.
    #[arg(short = 'x', long = "hex-dump", value_name = "FILE",
          conflicts_with_all = ["exec", "shell_command"])]
    pub(crate) hex_dump: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Where to listen: HOST:PORT, :PORT, PORT, tls:HOST:PORT, udp:HOST:PORT, unix:PATH,
    /// unixgram:PATH; or HOST with PORT after it, as nc takes them.
    #[arg(value_name = "ENDPOINT")]
    pub(crate) endpoint: String,
    /// The port, when ENDPOINT is a bare host (`listen 127.0.0.1 8080`).
    #[arg(value_name = "PORT", value_parser = values::whole::<u16>(0, 65_535))]
    pub(crate) port: Option<u16>,
    /// After a connection ends, accept the next one (streams only).
    #[arg(short = 'k', long = "keep-open")]
    pub(crate) keep_open: bool,
    /// Listen on IPv4 only (a bare port: 0.0.0.0).
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,
    /// Listen on IPv6 only (a bare port: [::], IPv6 alone).
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
    #[command(flatten)]
    pub(crate) netcat: NetcatArgs,
    #[command(flatten)]
    pub(crate) access: AccessArgs,
    #[command(flatten)]
    pub(crate) proxy: ProxyArgs,
    #[command(flatten)]
    pub(crate) bridge: BridgeArgs,
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
    #[command(flatten)]
    pub(crate) tls: TlsServerArgs,
    #[command(flatten)]
    pub(crate) tls_alpn: TlsAlpnArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The server under test: HOST:PORT, tls:HOST:PORT, unix:PATH, udp:HOST:PORT,
    /// unixgram:PATH (none with --compare).
    #[arg(value_name = "ENDPOINT")]
    pub(crate) endpoint: Option<String>,
    /// Run nothing: read two saved runs (--json output) and show them side by side, each
    /// figure of A and B and the ratio B/A; with --report, draw both in one picture.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], conflicts_with = "json")]
    pub(crate) compare: Option<Vec<PathBuf>>,
    /// greeting: connect, read to end, close; echo: stream verified blocks; idle: hold
    /// connections open.
    #[arg(long, value_name = "MODE", default_value = "greeting")]
    pub(crate) mode: String,
    /// Concurrent operations (greeting, echo) or connections to hold (idle), 1-1000000.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 64,
          allow_hyphen_values = true, value_parser = values::whole::<usize>(1, 1_000_000))]
    pub(crate) connections: usize,
    /// How long to measure (after the warm-up).
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "5s",
          allow_hyphen_values = true, value_parser = values::duration())]
    pub(crate) duration: Duration,
    /// How long to run before measuring (not idle, which opens its connections once).
    #[arg(long, value_name = "DURATION", default_value = "1s", allow_hyphen_values = true,
          value_parser = values::duration_or_zero())]
    pub(crate) warmup: Duration,
    /// Open loop: start N operations per second (0.001-1000000, at most -c at once)
    /// instead of keeping -c busy; greeting, and echo on a datagram endpoint.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = values::decimal(0.001, 1e6))]
    pub(crate) rate: Option<f64>,
    /// Stop after exactly N completed operations (or at the end of --duration, whichever
    /// comes first).
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = values::whole::<u64>(1, 1_000_000_000_000))]
    pub(crate) count: Option<u64>,
    /// greeting: the text every answer must be.
    #[arg(long, value_name = "TEXT", conflicts_with = "expect_hex")]
    pub(crate) expect: Option<String>,
    /// greeting: the bytes every answer must be, in hex (e4bda0e5a5bd).
    #[arg(long, value_name = "HEX")]
    pub(crate) expect_hex: Option<String>,
    /// echo: block size in bytes; greeting on udp:/unixgram: the request datagram's size
    /// (1-67108864; a datagram holds at most 65507).
    #[arg(long, value_name = "BYTES", default_value_t = 4096, allow_hyphen_values = true,
          value_parser = values::whole::<usize>(1, 64 << 20))]
    pub(crate) size: usize,
    /// echo on a stream: bytes in flight per connection (1-1073741824; default: one
    /// block).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true,
          value_parser = values::whole::<usize>(1, 1 << 30))]
    pub(crate) window: Option<usize>,
    /// Give up on one operation after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", allow_hyphen_values = true,
          value_parser = values::duration())]
    pub(crate) timeout: Duration,
    /// Threads generating load (1-1024; the default leaves the other cores to the server).
    #[arg(long, value_name = "N", default_value_t = 1, allow_hyphen_values = true,
          value_parser = values::whole::<usize>(1, MAX_THREADS))]
    pub(crate) threads: usize,
    /// TCP: start every connection with a PROXY protocol header (v1 or v2) naming its
    /// real source and destination, for a server run with --proxy-protocol.
    #[arg(long, value_enum, value_name = "VERSION")]
    pub(crate) send_proxy: Option<ProxyVersion>,
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write a picture of the run (or of the two runs of --compare): FILE.svg or
    /// FILE.html.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// idle: also read this server process's memory (anonymous PSS, else RSS) before the
    /// connections are opened and while they are held, and report it per connection.
    #[arg(long, value_name = "PID", allow_hyphen_values = true,
          value_parser = values::whole::<u32>(1, 4_194_304))]
    pub(crate) server_pid: Option<u32>,
    #[command(flatten)]
    pub(crate) tls: TlsConnectArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}
