//! The one argument the server examples take: the endpoint to listen on.

use socketkit::endpoint::Endpoint;

/// The first command-line argument as an endpoint, or `default`; a malformed one ends the
/// program with an `error:` line and exit code 2, as the CLI does.
pub(crate) fn endpoint_arg(default: &str) -> Endpoint {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| default.to_owned());
    text.parse().unwrap_or_else(|err| {
        eprintln!("error: {err}");
        std::process::exit(2)
    })
}
