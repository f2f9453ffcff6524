//! What `connect` and `listen` take from netcat (SPEC §3.6): nc's two-argument endpoint forms,
//! `-u`, `-e`/`-c`, `--send-only`/`--recv-only`, `-C`, `-o`/`-x`. The hints for the nc flags
//! socketkit spells differently are in `nc_hints`.

use std::fs::File;
use std::path::Path;

use socketkit::client::traffic::{LogFormat, TrafficLog};
use socketkit::client::{Direction, Input, WaitingFile};
use socketkit::endpoint::{Endpoint, Host};
use socketkit::services::exec::Exec;
use socketkit::socket::{Address, Socket};

use super::args::NetcatArgs;
use super::exit::CliError;

/// `-s`'s address: an IP address; one with a zone (`fe80::1%eth0`) is refused in words that
/// say what to do instead, not as `invalid IP address syntax`.
pub(crate) fn source_address(text: &str) -> Result<std::net::IpAddr, String> {
    if let Some((address, _)) = text.trim_matches(['[', ']']).split_once('%')
        && address.parse::<std::net::Ipv6Addr>().is_ok()
    {
        return Err(format!(
            "'{text}': a source with a zone is not taken; give the zone with the target \
             ([fe80::1%eth0]:PORT) and leave -s out: the system connects from that \
             interface's address"
        ));
    }
    text.parse()
        .map_err(|err: std::net::AddrParseError| err.to_string())
}

/// The endpoint text of `ENDPOINT [PORT]`: with a port, ENDPOINT is a bare host
/// (`example.com 80`, `::1 80`); a lone number is a port to listen on (`listen 12399`). `-u`
/// turns the stream forms into their datagram ones.
pub(crate) fn endpoint_text(
    endpoint: &str,
    port: Option<u16>,
    udp: bool,
    any_host: Option<&str>,
) -> Result<String, CliError> {
    let mut text = match port {
        Some(port) if endpoint.contains(':') && !endpoint.starts_with('[') => {
            // An IPv6 address, with its zone when it has one (`fe80::1%eth0 80`, as nc takes it).
            let address = endpoint
                .split_once('%')
                .map_or(endpoint, |(address, _)| address);
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(CliError::Usage(format!(
                    "'{endpoint} {port}': with a separate PORT, the first argument is a bare host"
                )));
            }
            format!("[{endpoint}]:{port}")
        }
        Some(port) => format!("{endpoint}:{port}"),
        None if any_host.is_some() && endpoint.bytes().all(|b| b.is_ascii_digit()) => {
            format!(":{endpoint}")
        }
        None => endpoint.to_owned(),
    };
    if let Some(host) = any_host
        && let Some(port) = text.strip_prefix(':')
    {
        text = format!("{host}:{port}");
    }
    if !udp {
        return Ok(text);
    }
    let (scheme, rest) = match text.split_once(':') {
        Some((scheme @ ("tcp" | "udp" | "unix" | "unixgram" | "tls"), rest)) => (scheme, rest),
        // Not an endpoint as it stands (socat's `TCP4:h:p`, a port out of range): parsed
        // as written, so that its error names what the user wrote, not `udp:` before it.
        _ if text.parse::<Endpoint>().is_err() => return Ok(text),
        _ => ("tcp", text.as_str()),
    };
    match scheme {
        "tcp" | "udp" => Ok(format!("udp:{rest}")),
        "unix" | "unixgram" => Ok(format!("unixgram:{rest}")),
        _ => Err(CliError::Usage(format!(
            "-u does not apply to '{text}': TLS runs over streams"
        ))),
    }
}

/// `-n` (nc's; ncat's `--nodns`): refuses an endpoint whose host is a name, which would be
/// looked up. An IPv6 literal with a zone (`fe80::1%eth0`) is numeric: only the zone is a
/// name, and the system reads it without a lookup.
pub(crate) fn check_numeric(numeric: bool, endpoint: &Endpoint) -> Result<(), CliError> {
    let Some(host_port) = endpoint.host_port().filter(|_| numeric) else {
        return Ok(());
    };
    match &host_port.host {
        Host::Name(name)
            if name
                .split_once('%')
                .is_none_or(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_err()) =>
        {
            Err(CliError::Usage(format!(
                "-n takes numeric addresses only, and '{name}' is a name to look up"
            )))
        }
        _ => Ok(()),
    }
}

/// The netcat options, checked and opened.
#[derive(Debug)]
pub(crate) struct Netcat {
    /// `-e`/`-c`: the program to hand the socket to, instead of bridging stdio.
    pub(crate) exec: Option<Exec>,
    pub(crate) direction: Direction,
    crlf: bool,
    log: Option<TrafficLog>,
}

impl Netcat {
    /// Checks the options against `endpoint` and opens the log file.
    pub(crate) fn resolve(args: &NetcatArgs, endpoint: &Endpoint) -> Result<Netcat, CliError> {
        let is_tls = matches!(endpoint, Endpoint::Tls(_));
        let exec = match (&args.exec, &args.shell_command) {
            (Some(line), _) => Some(Exec::new(line.split_whitespace())),
            (None, Some(command)) => Some(Exec::shell([command])),
            (None, None) => None,
        };
        let exec = exec
            .transpose()
            .map_err(|err| CliError::Usage(err.to_string()))?;
        if is_tls && exec.is_some() {
            return Err(CliError::Usage(
                "-e/-c hand the raw socket to the program, so they do not apply to tls:".into(),
            ));
        }
        let direction = match (args.send_only, args.recv_only) {
            (true, _) => Direction::SendOnly,
            (_, true) => Direction::ReceiveOnly,
            _ => Direction::Both,
        };
        let log = match (&args.output, &args.hex_dump) {
            (Some(path), _) => Some(TrafficLog::new(create(path)?, LogFormat::Text)),
            (None, Some(path)) => Some(TrafficLog::new(create(path)?, LogFormat::Hex)),
            (None, None) => None,
        };
        Ok(Netcat {
            exec,
            direction,
            crlf: args.crlf,
            log,
        })
    }

    /// Standard input with `-C` and the log applied (for a datagram socket, `Some`, each
    /// read still at most one datagram).
    pub(crate) fn input(&self, datagram: Option<&Socket>) -> Result<Input, CliError> {
        if !self.crlf && self.log.is_none() {
            return super::stdio::input(datagram);
        }
        let reader = socketkit::client::traffic::TappedReader::new(
            WaitingFile::new(super::stdio::stdin()?),
            self.crlf,
            self.log.clone(),
        );
        let max_chunk = super::stdio::max_chunk(datagram);
        Input::spawn(reader, max_chunk)
            .map(|input| input.named("stdin"))
            .map_err(super::stdio::input_error)
    }

    /// The log of received bytes, if one was asked for.
    pub(crate) fn log(&self) -> Option<&TrafficLog> {
        self.log.as_ref()
    }
}

fn create(path: &Path) -> Result<File, CliError> {
    File::create(path).map_err(|err| {
        CliError::Runtime(socketkit::Error::new(
            socketkit::error::Op::Io,
            path.display(),
            err,
        ))
    })
}

/// Hands `socket` to the program of `-e`/`-c`, `peer` in its environment (the socket's own
/// peer when `None`): with `wait`, runs it and waits for it (the next peer of `listen -k`
/// comes after); otherwise becomes it, as nc does, so its exit status is ours and a signal
/// to us reaches it.
pub(crate) fn run_exec(
    exec: &Exec,
    socket: Socket,
    peer: Option<&Address>,
    wait: bool,
) -> Result<(), CliError> {
    let own;
    let peer = match peer {
        Some(peer) => peer,
        None => {
            own = socket.peer_addr().unwrap_or_else(|_| Address::unix(""));
            &own
        }
    };
    // As PID 1 (a container's entrypoint) the program is started, not exec'd into: as PID 1
    // it would get no default signal action, and a SIGTERM would not end it (`cat`); here
    // the ending signals end this process, and its exit ends the namespace's.
    let init = std::process::id() == 1;
    if !wait && !init {
        return Err(exec.exec_on(&socket, peer).into());
    }
    let mut child = exec.spawn_on(&socket, peer)?;
    // The program holds the socket now; our copy would keep the connection open after it
    // exits.
    drop(socket);
    let status = child.wait().map_err(|err| {
        CliError::Runtime(socketkit::Error::new(
            socketkit::error::Op::Spawn,
            "program",
            err,
        ))
    })?;
    tracing::debug!("the program exited: {status}");
    if init {
        // Its status is the run's, as when it was exec'd into.
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(1);
        super::stderr::flush(super::stderr::EXIT_FLUSH);
        std::process::exit(code);
    }
    Ok(())
}

/// OpenBSD nc's `-x HOST:PORT` is its SOCKS proxy; socketkit's `-x` (ncat's) is a hex dump
/// to a file. Taken as a file, `ProxyCommand nc -x proxy:1080 %h %p` connected directly,
/// past the proxy (Tor, a bastion), and exited 0. A value shaped as HOST:PORT is refused
/// with the socketkit way; a file of that name is still `-x ./NAME`. So is an IP address
/// alone, nc's proxy on its default port (1080): a dump file is seldom named as an address.
/// (On `connect` only: `listen` has no proxy.)
pub(crate) fn refuse_proxy_for_a_dump(args: &NetcatArgs) -> Result<(), CliError> {
    let Some(text) = args.hex_dump.as_deref().and_then(std::path::Path::to_str) else {
        return Ok(());
    };
    let with_port = !text.contains('/')
        && text.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
        });
    // An address first: `::1` is no HOST:PORT.
    let proxy = match text.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("[{text}]:1080"),
        Ok(std::net::IpAddr::V4(_)) => format!("{text}:1080"),
        Err(_) if with_port => text.to_owned(),
        Err(_) => return Ok(()),
    };
    Err(CliError::Usage(format!(
        "-x {text} looks like nc's SOCKS proxy (-x HOST[:PORT]): socketkit's -x is a hex \
         dump to a file; for the proxy give --proxy socks5://{proxy} (a file of that name: \
         -x ./{text})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netcat_forms_make_endpoints() {
        let text = |e, p, u, any| endpoint_text(e, p, u, any).unwrap();
        assert_eq!(text("example.com", Some(80), false, None), "example.com:80");
        assert_eq!(text("::1", Some(80), false, None), "[::1]:80");
        // With its zone, as nc takes it.
        assert_eq!(
            text("fe80::1%eth0", Some(80), false, None),
            "[fe80::1%eth0]:80"
        );
        assert_eq!(
            text("fe80::1%2", Some(53), true, None),
            "udp:[fe80::1%2]:53"
        );
        assert!(endpoint_text("no:such%host", Some(80), false, None).is_err());
        assert_eq!(text("127.0.0.1", Some(53), true, None), "udp:127.0.0.1:53");
        assert_eq!(text("unix:/tmp/s", None, true, None), "unixgram:/tmp/s");
        assert_eq!(text("12399", None, false, Some("")), ":12399");
        assert_eq!(text("12399", None, false, Some("0.0.0.0")), "0.0.0.0:12399");
        assert_eq!(text(":12399", None, false, Some("[::]")), "[::]:12399");
        assert!(endpoint_text("tls:h:1", None, true, None).is_err());
        // Left as written for the parser to name what is wrong with it.
        assert_eq!(text("TCP4:h:1", None, true, None), "TCP4:h:1");
    }

    #[test]
    fn a_source_with_a_zone_is_refused_saying_what_to_do() {
        assert_eq!(source_address("fe80::1").ok(), "fe80::1".parse().ok());
        assert_eq!(source_address("10.0.0.1").ok(), "10.0.0.1".parse().ok());
        for zoned in ["fe80::1%eth0", "[fe80::1%eth0]"] {
            let err = source_address(zoned).unwrap_err();
            assert!(err.contains("leave -s out"), "{err}");
        }
        assert_eq!(
            source_address("1.2.3").unwrap_err(),
            "invalid IP address syntax"
        );
    }
}
