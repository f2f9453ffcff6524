//! `socketkit connect`: a netcat client on standard input and output.

use socketkit::client::{self, ConnectOptions};
use socketkit::socket::Family;

use super::args::ConnectArgs;
use super::exit::CliError;
use super::{init_logging, resolve, stdio};

pub(crate) fn run(args: ConnectArgs) -> Result<(), CliError> {
    let endpoint = resolve::endpoint(&args.endpoint)?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Some(Family::Inet),
        (_, true) => Some(Family::Inet6),
        _ => None,
    };
    let options = ConnectOptions {
        timeout: resolve::optional_duration("--timeout", args.timeout.as_deref())?,
        family,
    };
    let bridge = stdio::options(&args.bridge)?;
    init_logging(&args.log);
    let mut connected = client::connect(&endpoint, options)?;
    let datagrams = connected.is_datagram();
    let input = stdio::input(datagrams)?;
    stdio::run(&mut connected.socket, datagrams, &input, bridge)?;
    Ok(())
}
