//! The readiness lines: one `listening on ENDPOINT (SERVICE)` line per listener on stderr,
//! written before anything else, so that scripts and tests can wait for them and read the
//! real port.

use std::io::Write;

use socketkit::endpoint::Endpoint;

/// Writes one readiness line per endpoint, in one write so lines never interleave with logs.
pub(crate) fn announce(endpoints: &[Endpoint], what: &str) {
    let mut text = String::new();
    for endpoint in endpoints {
        text.push_str(&format!("listening on {endpoint} ({what})\n"));
    }
    let mut stderr = std::io::stderr().lock();
    // stderr is unbuffered; if it is gone there is no one to tell, so the error is moot.
    let _ = stderr.write_all(text.as_bytes());
}
