//! The readiness lines: one `listening on ENDPOINT (SERVICE)` line per listener on stderr,
//! written before anything else, so that scripts and tests can wait for them and read the
//! real port.

use socketkit::endpoint::Endpoint;

use super::exit::sanitize;
use super::stderr;

/// Writes one readiness line per endpoint, in one write so lines never interleave with logs.
/// Control characters are escaped: a Unix path with a newline in it would otherwise write a
/// second `listening on` line that a supervisor would take for a real one. So is a
/// backslash in the endpoint (`\\`), so that a path with a newline (`\n`) and one with a
/// backslash and an `n` in it do not read the same.
pub(crate) fn announce(endpoints: &[Endpoint], what: &str) {
    let mut text = String::new();
    for endpoint in endpoints {
        let endpoint = endpoint.to_string().replace('\\', "\\\\");
        text.push_str(&sanitize(&format!("listening on {endpoint} ({what})")));
        text.push('\n');
    }
    write_whole(&text);
}

/// Writes `text` (whole lines) to stderr, lines whole: stderr is unbuffered, and `writeln!`
/// with arguments writes each piece on its own, so another process sharing the stream (the
/// process a restart replaces, still draining) could write into the middle of a line that
/// a script reads a port from. Never dropped, even when log events are (see [`stderr`]).
pub(crate) fn write_whole(text: &str) {
    stderr::write(text.as_bytes(), stderr::Line::Notice);
}
