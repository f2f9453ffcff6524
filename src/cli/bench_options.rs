//! Which endpoints each `bench` mode can load: a run that cannot be done (idle on a datagram
//! endpoint) is bad usage, refused before anything runs, rather than a run that fails.

use socketkit::bench::Mode;
use socketkit::endpoint::Endpoint;

use super::exit::CliError;

/// Refuses a mode the endpoint cannot carry.
pub(crate) fn check(mode: Mode, endpoint: &Endpoint) -> Result<(), CliError> {
    let datagram = !endpoint.transport().is_stream();
    if mode == Mode::Idle && datagram {
        return Err(CliError::Usage(format!(
            "--mode idle holds stream connections (tcp:, tls:, unix:), and {endpoint} is a \
             datagram endpoint"
        )));
    }
    Ok(())
}
