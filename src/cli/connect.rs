//! `socketkit connect`: a netcat client on standard input and output.

use std::collections::BTreeMap;
use std::io::{self, Write};

use socketkit::client::proxy::Proxy;
use socketkit::client::{self, ConnectOptions, Handshake};
use socketkit::endpoint::{Endpoint, Transport};
use socketkit::error::{Op, describe};
use socketkit::socket::Family;

use super::args::ConnectArgs;
use super::exit::CliError;
use super::netcat::{self, Netcat};
use super::{init_logging, resolve, socket_file, stdio, tls};

pub(crate) fn run(args: ConnectArgs) -> Result<(), CliError> {
    let first_port = args.port.first().map(|word| *word.ports.start());
    let text = netcat::endpoint_text(&args.endpoint, first_port, args.netcat.udp, None)?;
    let endpoint = resolve::target("connect", &text)?;
    netcat::check_numeric(args.netcat.numeric, &endpoint)?;
    stdio::check_wait(&args.bridge, &endpoint, true)?;
    netcat::refuse_proxy_for_a_dump(&args.netcat)?;
    // A range (`80-80` too) or several PORT words is a scan; one port is a connection.
    let scan = args.port.len() > 1 || args.port.iter().any(|word| word.range);
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
        Some(url) => {
            let proxy = url
                .parse::<Proxy>()
                .map_err(|err| CliError::Usage(err.to_string()))?;
            // -n means no lookup of any name, the proxy's too (as nc and ncat refuse it).
            netcat::check_numeric(args.netcat.numeric, &Endpoint::Tcp(proxy.server().clone()))?;
            Some(proxy)
        }
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
    if scan {
        return probe_ports(&args, &endpoint, options, proxy.is_some());
    }
    let connector = args.tls.connector(&endpoint, false)?;
    let nc = Netcat::resolve(&args.netcat, &endpoint)?;
    let mut bridge = stdio::options(&args.bridge, &nc);
    // A datagram has no connect for `-w` to bound: nc's `-u -w N` waits N for replies
    // after the input ends, and a script that gave it meant that (its 5 s cut to 1 s, a
    // late reply lost without a word). `--wait` still says it first.
    if !endpoint.transport().is_stream()
        && args.bridge.wait.is_none()
        && let Some(timeout) = args.timeout
    {
        bridge.wait = timeout;
    }
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
        None => client::connect_transport(&endpoint, options)?,
    };
    if let (None, Ok(peer)) = (&proxy, connected.socket.peer_addr()) {
        // ncat -v's "Connected to": the address actually reached, of the names tried.
        tracing::debug!("connected to {}:{peer}", endpoint.transport().scheme());
    }
    if args.probe {
        // A TLS port is open to a TLS client once the handshake is made, as `ncat --ssl -z`
        // says: a port that takes the connection but speaks no TLS is not.
        if let (Some(connector), Endpoint::Tls(hp)) = (&connector, &endpoint) {
            tls::warn_if_insecure(&args.tls.verify);
            client::probe::probe_tls(
                connected.socket,
                connector,
                &hp.host,
                &endpoint,
                options.timeout,
            )?;
        }
        return Ok(());
    }
    socket_file::end_on_signals(connected.socket_file())?;
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

/// `connect -z HOST PORT...` with a range LOW-HIGH or several ports: each port that takes a
/// connection is printed on stdout as its endpoint, in the order written (each range in
/// port order); the others are said at `-v`. Exit 0 when one or more took it.
fn probe_ports(
    args: &ConnectArgs,
    endpoint: &Endpoint,
    options: ConnectOptions,
    through_proxy: bool,
) -> Result<(), CliError> {
    let usage = |why: &str| Err(CliError::Usage(why.into()));
    if !args.probe && args.port.len() > 1 {
        return usage("several ports are for -z: connect bridges one port");
    }
    if !args.probe {
        return usage("a port range (LOW-HIGH) is for -z: connect bridges one port");
    }
    if through_proxy {
        return usage("-z with a port range probes directly, not through --proxy");
    }
    let Endpoint::Tcp(hp) = endpoint else {
        return usage("a port range probes tcp: ports only");
    };
    init_logging(&args.log);
    let mut open = 0usize;
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_kind = io::ErrorKind::ConnectionRefused;
    let mut stdout = io::stdout().lock();
    let mut reading = true;
    for word in &args.port {
        if !reading {
            break;
        }
        client::probe::probe_ports(
            endpoint,
            word.ports.clone(),
            options,
            client::probe::DEFAULT_PARALLEL,
            |port, outcome| match outcome {
                Ok(()) => {
                    open += 1;
                    let line = format!("tcp:{}:{port}\n", hp.host);
                    // Flushed line by line: a reader of a pipe sees each port as it is
                    // found, and one that has gone (`| head -1`) ends the scan.
                    reading = stdout.write_all(line.as_bytes()).is_ok() && stdout.flush().is_ok();
                    reading
                }
                Err(err) => {
                    tracing::debug!("{err}");
                    last_kind = err.kind();
                    *refusals.entry(describe(err.io_error())).or_default() += 1;
                    true
                }
            },
        )?;
    }
    if open > 0 {
        return Ok(());
    }
    let counts: Vec<String> = refusals
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    let err = io::Error::new(
        last_kind,
        format!("no port took a connection ({})", counts.join(", ")),
    );
    let words: Vec<String> = args.port.iter().map(ToString::to_string).collect();
    let scanned = format!("tcp:{}:{}", hp.host, words.join(","));
    Err(socketkit::Error::new(Op::Connect, scanned, err).into())
}
