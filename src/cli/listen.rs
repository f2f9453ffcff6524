//! `socketkit listen`: a netcat listener on standard input and output.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use socketkit::access::CidrSet;
use socketkit::client::traffic::{TrafficLog, Way};
use socketkit::client::{
    self, BridgeEnd, BridgeOptions, ByteCounts, Direction, Handshake, Input, Listening, WaitingFile,
};
use socketkit::endpoint::{Endpoint, Host, HostPort};
use socketkit::error::Op;
use socketkit::metrics::RefusalReason;
use socketkit::proxy_protocol;
use socketkit::server::{Inherited, InheritedSocket, MeteredConnection, MeteredListener};
use socketkit::socket::{Address, Socket};

use super::access;
use super::args::ListenArgs;
use super::exit::CliError;
use super::managed::{refuse_transport_before_fd, take_inherited};
use super::metrics::MetricsPlan;
use super::netcat::{self, Netcat};
use super::tls::ServerSetup;
use super::{init_serving, ready, resolve, server, socket_file, stdio, tls};

pub(crate) fn run(args: ListenArgs) -> Result<(), CliError> {
    let any_host = match (args.ipv4, args.ipv6) {
        (true, _) => "0.0.0.0",
        (_, true) => "[::]",
        _ => "",
    };
    // An inherited socket (`fd:3`) is taken first, while no other thread runs; its endpoint
    // is its real address, which every check below reads as a bound one's.
    let inherited = inherited_socket(&args)?;
    let endpoint = match &inherited {
        Some(socket) => socket.endpoint().clone(),
        None => resolve::endpoint(&netcat::endpoint_text(
            &args.endpoint,
            args.port,
            args.netcat.udp,
            Some(any_host),
        )?)?,
    };
    netcat::check_numeric(args.netcat.numeric, &endpoint)?;
    check_family(&endpoint, args.ipv4, args.ipv6)?;
    let endpoint = name_of_family(endpoint, args.ipv4, args.ipv6)?;
    stdio::check_wait(&args.bridge, &endpoint, false)?;
    let datagrams = !endpoint.transport().is_stream();
    if datagrams && (args.netcat.exec.is_some() || args.netcat.shell_command.is_some()) {
        // The peer is known only from its first datagram, which the program would miss.
        return Err(CliError::Usage(
            "-e/-c on listen take stream endpoints (connect -u -e works for UDP)".into(),
        ));
    }
    if datagrams && args.keep_open {
        return Err(CliError::Usage(
            "-k applies to stream endpoints only".into(),
        ));
    }
    let tls = tls::server(&args.tls, &args.tls_alpn, std::slice::from_ref(&endpoint))?;
    tls::check_alpn_applies(&args.tls_alpn, tls.is_some())?;
    let metrics = MetricsPlan::from_args(&args.metrics)?;
    if datagrams && metrics.is_some() {
        return Err(CliError::Usage(
            "--metrics applies to stream endpoints only".into(),
        ));
    }
    let proxy = server::proxy_protocol(&args.proxy)?
        .map(|(trusted, timeout)| ProxyPlan { trusted, timeout });
    if datagrams && proxy.is_some() {
        return Err(CliError::Usage(
            "--proxy-protocol applies to stream endpoints only".into(),
        ));
    }
    let nc = Netcat::resolve(&args.netcat, &endpoint)?;
    let options = stdio::options(&args.bridge, &nc);
    let access = access::resolve(&args.access)?;
    init_serving(&args.log);
    let mut listening = match inherited {
        Some(socket) => adopt(socket)?,
        None => client::listen_transport(&endpoint, args.ipv6)?,
    };
    let serving = metrics
        .as_ref()
        .map(MetricsPlan::bind_standalone)
        .transpose()?;
    // The socket file given to `--user`/`--group` before the drop, as `serve` does, so
    // that `--unix-mode 0660` opens it to the group and the user may remove it at exit.
    let files: Vec<std::path::PathBuf> = listening
        .local_endpoint()
        .path()
        .map(std::path::PathBuf::from)
        .into_iter()
        .collect();
    // Given first: in a sticky directory (`/tmp`) the user may remove a file it owns.
    let mut warnings = access.give_socket_files(&files);
    warnings.extend(access.files_left_behind(&files));
    access.drop_privileges()?;
    socket_file::end_on_signals(listening.socket_file())?;
    room_for_a_connection(listening.local_endpoint())?;
    ready::announce(std::slice::from_ref(listening.local_endpoint()), "listen");
    let registry = metrics.as_ref().map(MetricsPlan::metrics);
    let listener = MeteredListener::new(listening.local_endpoint().to_string(), registry.as_ref());
    if let Some(serving) = serving {
        serving.start();
    }
    if let Some(tls) = &tls {
        tls.announce();
    }
    warnings.extend(access.shut_out_warning());
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let input = nc.input(datagrams.then_some(&*listening.socket_mut()))?;
    if datagrams {
        let (first, peer) = listening.first_datagram_from(|peer| match access.check(peer) {
            Ok(_) => true,
            Err(refusal) => {
                let peer = peer.clone().to_canonical();
                let reason = refusal.reason.as_str();
                tracing::debug!(%peer, reason, "dropped a datagram: {}", refusal.detail);
                false
            }
        })?;
        // The fields of a connection's `connection from` line (SPEC §3.5), for the one
        // peer this listen answers.
        let local = listening.local_endpoint().to_string();
        let shown = peer.clone().to_canonical();
        tracing::debug!(
            peer = %shown,
            local = %local.split_once(':').map_or(local.as_str(), |(_, address)| address),
            listener = local.as_str(),
            "datagram from {shown}"
        );
        let mut options = options;
        if matches!(endpoint, Endpoint::Unixgram(_)) && peer.as_path().is_none() {
            // An unbound sender (logger -u, syslog clients) cannot be answered: what it and
            // any other sender send is printed, and stdin is not read.
            if nc.direction == Direction::SendOnly {
                return Err(CliError::Failed(format!(
                    "cannot send on {}: the first sender's socket is unnamed, so it cannot be answered",
                    listening.local_endpoint()
                )));
            }
            if nc.direction == Direction::Both {
                tracing::info!(
                    "the first sender's socket is unnamed: it cannot be answered, so stdin is not read (receiving from every sender)"
                );
            }
            options.direction = Direction::ReceiveOnly;
        } else if nc.direction == Direction::Both && stdio::stdin_is_dev_null() {
            // Nothing can ever be sent, so no end of input to wait out: a receiver started
            // in the background (`listen -u 5514 > log &`, whose stdin POSIX makes
            // /dev/null) took one sender's datagrams for a second and stopped. It receives
            // until it is stopped, as `nc -lu` and `ncat -lu` do.
            tracing::debug!("stdin is /dev/null: receiving until stopped");
            options.direction = Direction::ReceiveOnly;
        }
        let mut stdout = WaitingFile::new(stdio::output()?);
        if nc.direction != Direction::SendOnly && stdout.write_all(&first).is_err() {
            return Ok(()); // stdout is gone: nothing more is wanted
        }
        let options = BridgeOptions {
            peer: Some(peer),
            ..options
        };
        if let Some(log) = nc.log() {
            log.record(Way::Received, &first);
        }
        stdio::run(listening.socket_mut(), true, &input, options, nc.log())?;
        return Ok(());
    }
    loop {
        let (mut socket, peer) = listening.accept()?;
        listener.accepted();
        // SPEC §3's order: the PROXY header names the peer every rule after it sees.
        // The header's bytes crossed the socket: counted as received, as `serve` counts them.
        let (peer, header_len) = match &proxy {
            None => (peer, 0),
            Some(proxy) => match proxy.peer(&mut socket, peer.clone()) {
                Ok(named) => named,
                Err(detail) => {
                    refuse(&socket, &peer, RefusalReason::Proxy, &detail, &listener);
                    continue;
                }
            },
        };
        let _place = match access.check(&peer) {
            Ok(place) => place,
            Err(refusal) => {
                refuse(&socket, &peer, refusal.reason, &refusal.detail, &listener);
                continue;
            }
        };
        // Metered and logged as a server's connections are (SPEC §3.5): `connection from
        // PEER` now, the `closed` line with its bytes and duration when it ends.
        let mut connection = listener.connection(peer.clone(), || socket.local_addr().ok());
        connection.log_accepted();
        connection.received(header_len as u64);
        if let Some(exec) = &nc.exec {
            // The program has the socket: its bytes never pass through here.
            connection.stop_counting_bytes();
            if !args.keep_open {
                drop(listening);
                return netcat::run_exec(exec, socket, Some(&peer), false);
            }
            // One program at a time, as listen bridges one peer at a time.
            if let Err(err) = netcat::run_exec(exec, socket, Some(&peer), true) {
                tracing::warn!("{err}");
            }
            continue;
        }
        let counts = Arc::new(ByteCounts::default());
        let options = BridgeOptions {
            peer: Some(peer),
            counts: Some(Arc::clone(&counts)),
            // With -k, stdin read after a peer closed is the next peer's.
            shared_input: args.keep_open,
            ..options.clone()
        };
        if !args.keep_open {
            // Close the listener before bridging, so a second client is refused rather
            // than left waiting in the backlog.
            drop(listening);
            let end = bridge(socket, tls.as_ref(), &input, options, nc.log());
            closed(connection, &counts, &end);
            end?;
            return Ok(());
        }
        let end = bridge(socket, tls.as_ref(), &input, options, nc.log());
        closed(connection, &counts, &end);
        match end {
            Ok(BridgeEnd::OutputClosed) => return Ok(()),
            Ok(BridgeEnd::PeerClosed) => {}
            // No next connection could have any input: the failure is the listener's end.
            Err(err) if input.failed() => return Err(err),
            // A client that does not speak TLS, or not in time, is refused as `serve` refuses
            // it: said at -v only (by `closed`), or any client could grow the log a line per
            // connection.
            Err(CliError::Runtime(err)) if err.op() == Op::Handshake => {}
            Err(err) => tracing::warn!("{err}"),
        }
    }
}

/// The descriptors a connection of `listen` is given room for before the readiness line:
/// its socket, and what bridging it opens (stdio's duplicates, a splice pipe, a program's
/// pipes). Under a limit that leaves fewer, `listen` was ready and then failed at its first
/// client (`serve` checks the same before its readiness).
const ROOM_FOR_A_CONNECTION: usize = 4;

/// Refuses to announce a listener that would have no room for its first connection
/// ([`ROOM_FOR_A_CONNECTION`]): exit 1 saying so, before the readiness line.
fn room_for_a_connection(endpoint: &Endpoint) -> Result<(), CliError> {
    socketkit::server::room_for_a_connection(ROOM_FOR_A_CONNECTION)
        .map_err(|reason| CliError::runtime(Op::Listen, &endpoint.to_string(), reason))
}

/// Counts and logs a refused connection (in a server's words and fields) and resets it:
/// the client is told at once and we keep no TIME_WAIT.
fn refuse(
    socket: &Socket,
    peer: &Address,
    reason: RefusalReason,
    detail: &str,
    listener: &MeteredListener,
) {
    listener.refuse(peer, || socket.local_addr().ok(), reason, detail);
    let _ = socket.set_linger(Some(std::time::Duration::ZERO));
}

/// `--proxy-protocol` on `listen`: who may send a header, and how long it may take.
struct ProxyPlan {
    trusted: CidrSet,
    timeout: std::time::Duration,
}

impl ProxyPlan {
    /// The client the PROXY header on `socket` names (or `peer` itself for a v2 `LOCAL`
    /// header) and the header's length, with the header taken off the socket; or why the
    /// connection is refused. A Unix peer is trusted: the socket file's permissions decide
    /// who connects.
    fn peer(&self, socket: &mut Socket, peer: Address) -> Result<(Address, usize), String> {
        if peer.ip().is_some_and(|ip| !self.trusted.contains(ip)) {
            return Err("not a trusted proxy".into());
        }
        match proxy_protocol::read_header_with_len(socket, self.timeout) {
            Ok((header, len)) => Ok((header.client().unwrap_or(peer), len)),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// Bridges one accepted stream, through a TLS handshake on a `tls:` listener.
fn bridge(
    mut socket: Socket,
    tls: Option<&ServerSetup>,
    input: &Input,
    options: BridgeOptions,
    log: Option<&TrafficLog>,
) -> Result<BridgeEnd, CliError> {
    match tls {
        Some(tls) => {
            let handshake = Handshake::Server {
                config: tls.tls.current(),
                timeout: tls.handshake_timeout,
            };
            stdio::run_tls(socket, handshake, input, options, log)
        }
        None => stdio::run(&mut socket, false, input, options, log),
    }
}

/// `-4`/`-6` with an address of the other family is a contradiction.
fn check_family(endpoint: &Endpoint, ipv4: bool, ipv6: bool) -> Result<(), CliError> {
    let Some(hp) = endpoint.host_port() else {
        if ipv4 || ipv6 {
            return Err(CliError::Usage(
                "-4 and -6 apply to IP endpoints only".into(),
            ));
        }
        return Ok(());
    };
    match &hp.host {
        Host::Ip(ip) if (ipv4 && ip.is_ipv6()) || (ipv6 && ip.is_ipv4()) => Err(CliError::Usage(
            format!("{endpoint} is not of the family -4/-6 asks for"),
        )),
        _ => Ok(()),
    }
}

/// With `-4`/`-6`, a host name becomes its first address of that family (`listen -4
/// localhost 80` binds 127.0.0.1 where localhost is ::1 first, as nc, ncat and socat do):
/// exit 1 when it has none.
fn name_of_family(endpoint: Endpoint, ipv4: bool, ipv6: bool) -> Result<Endpoint, CliError> {
    let Some(HostPort {
        host: Host::Name(name),
        port,
    }) = endpoint.host_port().cloned()
    else {
        return Ok(endpoint);
    };
    if !ipv4 && !ipv6 {
        return Ok(endpoint);
    }
    let fail = |err: std::io::Error| {
        CliError::Runtime(socketkit::Error::new(
            socketkit::error::Op::Listen,
            &endpoint,
            err,
        ))
    };
    // In the words every other lookup fails in (`cannot resolve NAME: …`).
    let found = socketkit::socket::ToAddress::to_addresses(&(name.as_str(), port), None)?
        .into_iter()
        .filter_map(|address| address.as_socket_addr())
        .find(|addr| addr.is_ipv4() == ipv4)
        .ok_or_else(|| {
            fail(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                match ipv4 {
                    true => format!("{name} has no IPv4 address (IPv4 only: -4)"),
                    false => format!("{name} has no IPv6 address (IPv6 only: -6)"),
                },
            ))
        })?;
    let host_port = HostPort {
        host: Host::Ip(found.ip()),
        port,
    };
    Ok(match endpoint {
        Endpoint::Udp(_) => Endpoint::Udp(host_port),
        Endpoint::Tls(_) => Endpoint::Tls(host_port),
        _ => Endpoint::Tcp(host_port),
    })
}

/// Ends `connection` with the bytes its bridge moved: into the listener's metrics, and at
/// `-v` into its `closed` line.
fn closed(
    mut connection: MeteredConnection,
    counts: &ByteCounts,
    end: &Result<BridgeEnd, CliError>,
) {
    connection.received(counts.received.load(Relaxed));
    connection.sent(counts.sent.load(Relaxed));
    // A client that never completed the TLS handshake was refused, as `serve` counts it
    // (`refused_total{reason="tls"}`), not a connection served.
    if let Err(CliError::Runtime(err)) = end
        && err.op() == Op::Handshake
    {
        let detail = format!(
            "TLS handshake failed: {}",
            socketkit::error::describe(err.io_error())
        );
        connection.refuse(RefusalReason::Tls, &detail);
    }
}

/// The inherited socket ENDPOINT names (`fd:N`, `fd:NAME`, `tls:fd:N`), taken from
/// socket activation (`LISTEN_FDS` for this process) as `serve -l` takes it, with the same
/// errors; `None` when ENDPOINT is one to bind. Called first thing, while no other thread
/// runs: taking the sockets removes the variables that named them.
fn inherited_socket(args: &ListenArgs) -> Result<Option<InheritedSocket>, CliError> {
    let text = args.endpoint.as_str();
    if args.port.is_none() {
        refuse_transport_before_fd(text)?;
    }
    let names_fd = text.starts_with("fd:") || text.starts_with("tls:fd:");
    if !names_fd || args.port.is_some() {
        // `listen fd:3 80` is read as a host and a port, and refused as such.
        return Ok(None);
    }
    if args.netcat.udp {
        return Err(CliError::Usage(format!(
            "-u does not apply to {text}: an inherited socket is served as the kind it is"
        )));
    }
    // SAFETY: `listen` runs on the main thread before it starts any other (the stdin
    // reader, a metrics runtime and the bridge's threads all come later).
    let mut passed =
        unsafe { Inherited::from_env() }.map_err(|err| CliError::Usage(err.to_string()))?;
    let Some(mut sockets) = take_inherited(&mut passed, text)? else {
        return Ok(None);
    };
    if sockets.len() > 1 {
        return Err(CliError::Usage(format!(
            "cannot listen on {text}: it names {} sockets, and listen takes one",
            sockets.len()
        )));
    }
    // `take_inherited` gives one socket at least, or an error.
    Ok(sockets.pop())
}

/// Listens on an inherited socket as on a bound one: the same `Listening`, its endpoint
/// the socket's real address (`tls:` kept for `tls:fd:N`).
fn adopt(socket: InheritedSocket) -> Result<Listening, CliError> {
    let name = socket.name().to_owned();
    let tls = matches!(socket.endpoint(), Endpoint::Tls(_));
    let fd = socket
        .into_fd()
        .map_err(|err| CliError::Usage(err.to_string()))?;
    let listening = client::listen_inherited(fd, &name)?;
    Ok(if tls {
        listening.speaking_tls()?
    } else {
        listening
    })
}
