//! The second stage of argument handling: raw strings to checked values, without touching the
//! network. Every failure here is a usage error (exit 2). (Numbers and durations are checked
//! while parsing, by [`super::values`].)

use socketkit::endpoint::{Endpoint, Host};

use super::exit::CliError;

/// An endpoint as written, or a usage error in the SPEC's words.
pub(crate) fn endpoint(text: &str) -> Result<Endpoint, CliError> {
    text.parse()
        .map_err(|err: socketkit::endpoint::EndpointError| CliError::Usage(err.to_string()))
}

/// An endpoint to connect to (`command` says who connects): it needs a host and a port
/// other than 0, which only a listener can use.
pub(crate) fn target(command: &str, text: &str) -> Result<Endpoint, CliError> {
    let endpoint = endpoint(text)?;
    if let Some(hp) = endpoint.host_port() {
        let problem = match (&hp.host, hp.port) {
            (Host::Any, _) => Some(format!(
                "{command} needs a host (as in 127.0.0.1:{})",
                hp.port
            )),
            (_, 0) => Some(format!("{command} needs a port from 1 to 65535")),
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(CliError::Usage(format!(
                "invalid endpoint '{text}': {problem}"
            )));
        }
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_a_host_and_a_port() {
        let err = |text| target("connect", text).unwrap_err().to_string();
        assert_eq!(
            err(":80"),
            "invalid endpoint ':80': connect needs a host (as in 127.0.0.1:80)"
        );
        assert_eq!(
            err("udp:127.0.0.1:0"),
            "invalid endpoint 'udp:127.0.0.1:0': connect needs a port from 1 to 65535"
        );
        assert!(target("connect", "127.0.0.1:80").is_ok());
        assert!(target("connect", "unix:/x").is_ok());
    }
}
