//! `socketkit connect`: a netcat client on standard input and output.

use socketkit::client::proxy::Proxy;
use socketkit::client::{self, ConnectOptions, Handshake};
use socketkit::endpoint::{Endpoint, Transport};
use socketkit::socket::Family;

use super::args::ConnectArgs;
use super::exit::CliError;
use super::netcat::{self, Netcat};
use super::{init_logging, resolve, socket_file, stdio, tls};

pub(crate) fn run(args: ConnectArgs) -> Result<(), CliError> {
    let text = netcat::endpoint_text(&args.endpoint, args.port, args.netcat.udp, None)?;
    let endpoint = resolve::target("connect", &text)?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Some(Family::Inet),
        (_, true) => Some(Family::Inet6),
        _ => None,
    };
    if (args.source.is_some() || args.source_port.is_some()) && endpoint.host_port().is_none() {
        return Err(CliError::Usage(
            "-s and -p apply to IP endpoints only".into(),
        ));
    }
    let proxy = match &args.proxy {
        Some(url) => Some(
            url.parse::<Proxy>()
                .map_err(|err| CliError::Usage(err.to_string()))?,
        ),
        None => None,
    };
    if proxy.is_some() && !matches!(endpoint, Endpoint::Tcp(_) | Endpoint::Tls(_)) {
        return Err(CliError::Usage(format!(
            "--proxy carries tcp: and tls: endpoints only, not {endpoint}"
        )));
    }
    if args.probe && !endpoint.transport().is_stream() {
        return Err(CliError::Usage(
            "-z probes stream endpoints only: a datagram has no connection to succeed".into(),
        ));
    }
    let options = ConnectOptions {
        timeout: args.timeout,
        family,
        source_ip: args.source,
        source_port: args.source_port,
    };
    let connector = args.tls.connector(&endpoint, false)?;
    let nc = Netcat::resolve(&args.netcat, &endpoint)?;
    let mut bridge = stdio::options(&args.bridge, &nc);
    if let Some(proxy) = &proxy {
        // The socket's peer is the proxy; errors name the target.
        bridge.peer_name = Some(format!("{endpoint} through {proxy}"));
    }
    init_logging(&args.log);
    let mut connected = match &proxy {
        Some(proxy) => {
            let connected = proxy.connect(&endpoint, options)?;
            tracing::debug!("connected to {endpoint} through {proxy}");
            connected
        }
        None => client::connect(&endpoint, options)?,
    };
    if let (None, Ok(peer)) = (&proxy, connected.socket.peer_addr()) {
        // ncat -v's "Connected to": the address actually reached, of the names tried.
        tracing::debug!("connected to {}:{peer}", endpoint.transport().scheme());
    }
    if args.probe {
        return Ok(());
    }
    if let Some(file) = connected.socket_file() {
        socket_file::remove_on_ending_signal(file)?;
    }
    if let Some(exec) = &nc.exec {
        // A unixgram client's temporary socket file must outlive the program and then go:
        // this process stays to remove it.
        let wait = endpoint.transport() == Transport::Unixgram;
        return netcat::run_exec(exec, connected.socket, None, wait);
    }
    if let (Some(connector), Endpoint::Tls(hp)) = (&connector, &endpoint) {
        tls::warn_if_insecure(&args.tls.verify);
        let handshake = Handshake::Client {
            connector,
            host: &hp.host,
            endpoint: &endpoint,
            timeout: options.timeout,
        };
        let input = nc.input(None)?;
        stdio::run_tls(connected.socket, handshake, &input, bridge, nc.log())?;
        return Ok(());
    }
    let datagrams = connected.is_datagram();
    let input = nc.input(datagrams.then_some(&connected.socket))?;
    stdio::run(&mut connected.socket, datagrams, &input, bridge, nc.log())?;
    Ok(())
}
