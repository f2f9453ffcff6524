//! `forward`'s command line (see [`super::args`] for the conventions).

use std::time::Duration;

use clap::Args;

use super::args::{LogArgs, ServerArgs};
use super::tls::{TlsAlpnArgs, TlsClientArgs, TlsServerArgs, TlsTargetCertArgs};
use super::values;

#[derive(Debug, Args)]
#[command(mut_arg("listen", |arg| arg.help(
    "Where to listen (repeatable): HOST:PORT, :PORT, tls:HOST:PORT, unix:PATH, or \
     udp:HOST:PORT and unixgram:PATH (with a udp: or unixgram: --to)")))]
pub(crate) struct ForwardArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Where to relay each connection: HOST:PORT, tls:HOST:PORT or unix:PATH; from udp: and
    /// unixgram: listeners, udp:HOST:PORT or unixgram:PATH. Repeat it for several stream
    /// targets: clients are spread over them (--balance), and one that cannot be reached
    /// passes the client to the next.
    #[arg(long, value_name = "ENDPOINT", required_unless_present_any = ["socks", "to_file"])]
    pub(crate) to: Vec<String>,
    /// Read the targets from FILE instead of --to, one endpoint a line (# comments); on
    /// SIGHUP it is read again and its targets take the clients that come next.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to", "socks"])]
    pub(crate) to_file: Option<std::path::PathBuf>,
    /// Relay the clients whose TLS handshake asks for the server name NAME (SNI) to
    /// ENDPOINT instead (repeatable; NAME may be *.DOMAIN, any one label). On a plain
    /// listener TLS passes through: the target gets the client's handshake and answers with
    /// its own certificate. Clients that ask for no name, or for one no route has, go to
    /// --to.
    #[arg(long, value_name = "NAME=ENDPOINT")]
    pub(crate) sni_route: Vec<String>,
    /// Read the --sni-route routes from FILE, NAME=ENDPOINT or NAME ENDPOINT a line (#
    /// comments); on SIGHUP it is read again and its routes take the clients that come
    /// next.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sni_route", "socks"])]
    pub(crate) sni_route_file: Option<std::path::PathBuf>,
    /// With several --to: round-robin (each client to the next target), first (the first
    /// target that is up; the others are its backups), least-conn (the target with the
    /// fewest relayed connections open) or source (the target the client's address hashes
    /// to: the same one each time it comes back).
    #[arg(long, value_enum, value_name = "POLICY", default_value = "round-robin")]
    pub(crate) balance: BalancePolicy,
    /// With several --to: how long a target that could not be reached is tried after the
    /// others (0: failures are not remembered).
    #[arg(long, value_name = "DURATION", default_value = "10s", allow_hyphen_values = true,
          value_parser = values::duration_or_zero())]
    pub(crate) retry_after: Duration,
    /// Check every --to target this often: connect (as a client would, TLS and PROXY header
    /// included) and close. One that fails is tried after the others until a check passes.
    /// --sni-route targets are checked too, by connection only.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = values::duration())]
    pub(crate) check_interval: Option<Duration>,
    /// With --check-interval: each check also asks for PATH over HTTP (GET PATH HTTP/1.1)
    /// and passes only on a 2xx or 3xx status.
    #[arg(long, value_name = "PATH", requires = "check_interval")]
    pub(crate) check_http: Option<String>,
    /// With --check-interval: failed checks in a row that take a target out (HAProxy's
    /// fall, 1-1000).
    #[arg(long, value_name = "N", requires = "check_interval", allow_hyphen_values = true,
          value_parser = values::whole::<u32>(1, 1000))]
    pub(crate) check_fall: Option<u32>,
    /// With --check-interval: passing checks in a row that take a target back (HAProxy's
    /// rise, 1-1000).
    #[arg(long, value_name = "N", requires = "check_interval", allow_hyphen_values = true,
          value_parser = values::whole::<u32>(1, 1000))]
    pub(crate) check_rise: Option<u32>,
    /// Be a SOCKS5 (and SOCKS4/4a) proxy instead of relaying to --to: each client names its
    /// own target (as ssh -D serves). Who may use it is --allow/--deny and where it listens.
    #[arg(long, conflicts_with_all = ["to", "send_proxy", "proxy", "sni_route"])]
    pub(crate) socks: bool,
    /// With --socks: ask every client for a user name and password listed in FILE, one
    /// USER:PASSWORD a line; read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub(crate) socks_users: Option<std::path::PathBuf>,
    /// With --socks: let clients reach only addresses in these networks (repeatable; a
    /// name is resolved here and only its allowed addresses are tried).
    #[arg(long, value_name = "CIDR")]
    pub(crate) socks_allow: Vec<String>,
    /// With --socks: never let clients reach addresses in these networks (repeatable; e.g.
    /// 127.0.0.0/8 and the private networks, so that the proxy reaches no local service).
    #[arg(long, value_name = "CIDR")]
    pub(crate) socks_deny: Vec<String>,
    /// With --socks: --socks-allow networks from FILE, one CIDR a line (# comments); read
    /// again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub(crate) socks_allow_file: Vec<std::path::PathBuf>,
    /// With --socks: --socks-deny networks from FILE, as --socks-allow-file.
    #[arg(long, value_name = "FILE")]
    pub(crate) socks_deny_file: Vec<std::path::PathBuf>,
    /// Give up each connection attempt to the target after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", allow_hyphen_values = true,
          value_parser = values::duration())]
    pub(crate) timeout: Duration,
    /// Start each connection to the target with a PROXY protocol header naming the client
    /// (v2 also carries the client's TLS server name, ALPN and certificate CN as TLVs).
    #[arg(long, value_enum, value_name = "VERSION")]
    pub(crate) send_proxy: Option<ProxyVersion>,
    /// Reach the target through a proxy, as connect's option does: socks5://HOST[:PORT],
    /// socks5h://…, http://HOST[:PORT] (CONNECT), socks4://… or socks4a://…, with
    /// USER:PASSWORD@ before the host.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    #[command(flatten)]
    pub(crate) tls: TlsServerArgs,
    #[command(flatten)]
    pub(crate) to_tls: TlsClientArgs,
    #[command(flatten)]
    pub(crate) to_tls_cert: TlsTargetCertArgs,
    #[command(flatten)]
    pub(crate) tls_alpn: TlsAlpnArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

/// The `--send-proxy` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProxyVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// The `--balance` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BalancePolicy {
    /// Each client to the next target in turn.
    RoundRobin,
    /// Each client to the first target that is up.
    First,
    /// Each client to the target with the fewest relayed connections open.
    LeastConn,
    /// Each client to the target its address hashes to, the same each time it comes back.
    Source,
}
