//! `socketkit connect`: a netcat client on standard input and output.

use socketkit::client::{self, ConnectOptions, Handshake};
use socketkit::endpoint::Endpoint;
use socketkit::socket::Family;

use super::args::ConnectArgs;
use super::exit::CliError;
use super::{init_logging, resolve, stdio, tls};

pub(crate) fn run(args: ConnectArgs) -> Result<(), CliError> {
    let endpoint = resolve::target("connect", &args.endpoint)?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Some(Family::Inet),
        (_, true) => Some(Family::Inet6),
        _ => None,
    };
    let options = ConnectOptions {
        timeout: args.timeout,
        family,
    };
    let connector = args.tls.connector(&endpoint, false)?;
    let bridge = stdio::options(&args.bridge);
    init_logging(&args.log);
    let mut connected = client::connect(&endpoint, options)?;
    if let Ok(peer) = connected.socket.peer_addr() {
        // ncat -v's "Connected to": the address actually reached, of the names tried.
        tracing::debug!("connected to {}:{peer}", endpoint.transport().scheme());
    }
    if let (Some(connector), Endpoint::Tls(hp)) = (&connector, &endpoint) {
        tls::warn_if_insecure(&args.tls.verify);
        let handshake = Handshake::Client {
            connector,
            host: &hp.host,
            endpoint: &endpoint,
            timeout: options.timeout,
        };
        let input = stdio::input(false)?;
        stdio::run_tls(connected.socket, handshake, &input, bridge)?;
        return Ok(());
    }
    let datagrams = connected.is_datagram();
    let input = stdio::input(datagrams)?;
    stdio::run(&mut connected.socket, datagrams, &input, bridge)?;
    Ok(())
}
