//! `forward --sni-route NAME=ENDPOINT` and `--sni-route-file FILE`: the routes by server
//! name, checked against the listeners, and the file read again on every SIGHUP, its routes
//! put in force for the clients that come next (`Forward::reload_name_routes`). A file that
//! no longer reads, or names a route the relay cannot take, leaves the routes in force as
//! they were, and the log says why — as `--to-file` does for the targets.

use std::path::{Path, PathBuf};

use socketkit::endpoint::Endpoint;
use socketkit::forward::Forward;

use super::exit::{CliError, read_text, sanitize};
use super::resolve;

/// The `--sni-route NAME=ENDPOINT`s given on the command line, each checked.
pub(crate) fn from_args(
    routes: &[String],
    listeners: &[Endpoint],
) -> Result<Vec<(String, Endpoint)>, CliError> {
    routes
        .iter()
        .map(|route| {
            parse(route, listeners)
                .map_err(|why| CliError::Usage(format!("invalid --sni-route '{route}': {why}")))
        })
        .collect()
}

/// The routes of `file`: `NAME=ENDPOINT` or `NAME ENDPOINT` a line, `#` comments and blank
/// lines skipped; none at all is allowed (every client goes to `--to` until a reload adds
/// some). An unreadable file is a runtime error (exit 1), a line that is not a route a
/// usage error naming it.
pub(crate) fn read(
    file: &Path,
    listeners: &[Endpoint],
) -> Result<Vec<(String, Endpoint)>, CliError> {
    let text = read_text("--sni-route-file", file)?;
    let mut routes = Vec::new();
    for (number, written) in super::target_file::written_lines(&text) {
        let route = match written.split_once(char::is_whitespace) {
            Some((name, target)) if !name.contains('=') => format!("{name}={}", target.trim()),
            _ => written.to_owned(),
        };
        let route = parse(&route, listeners).map_err(|why| {
            CliError::Usage(format!(
                "invalid --sni-route-file {}: line {number}: {}",
                file.display(),
                socketkit::error::excerpt(&why)
            ))
        })?;
        routes.push(route);
    }
    Ok(routes)
}

/// One route, `NAME=ENDPOINT`. A route from a plain listener passes the client's TLS
/// handshake through, so its target cannot be `tls:` (TLS inside TLS).
fn parse(route: &str, listeners: &[Endpoint]) -> Result<(String, Endpoint), String> {
    let Some((name, target)) = route.split_once('=') else {
        return Err("expected NAME=ENDPOINT (as in shop.example.com=127.0.0.1:8443)".to_owned());
    };
    socketkit::tls::check_server_name(name).map_err(|err| err.to_string())?;
    let target = resolve::target("forward --sni-route", target).map_err(|err| err.to_string())?;
    if passes_tls_through(listeners) && matches!(target, Endpoint::Tls(_)) {
        return Err(
            "a plain listener passes the client's TLS through to the target, so the \
                    target cannot be tls: (TLS inside TLS); name it tcp:"
                .to_owned(),
        );
    }
    Ok((name.to_owned(), target))
}

/// Whether a relay that routes by name passes its clients' TLS through (a plain listener
/// among `listeners`): then no target of it may be `tls:`.
fn passes_tls_through(listeners: &[Endpoint]) -> bool {
    listeners.iter().any(|l| !matches!(l, Endpoint::Tls(_)))
}

/// Refuses a `tls:` one among `targets` (`--to`'s) when the relay routes by name and passes
/// TLS through: those clients' TLS would be wrapped in TLS again.
pub(crate) fn check_targets<'a>(
    targets: impl IntoIterator<Item = &'a Endpoint>,
    listeners: &[Endpoint],
) -> Result<(), CliError> {
    if !passes_tls_through(listeners) {
        return Ok(());
    }
    match targets.into_iter().find(|t| matches!(t, Endpoint::Tls(_))) {
        Some(tls) => Err(CliError::Usage(format!(
            "--to {tls}: a plain listener with --sni-route passes the client's TLS through to \
             every target, so none can be tls: (TLS inside TLS); name it tcp:"
        ))),
        None => Ok(()),
    }
}

/// What SIGHUP does for `relay` with `--sni-route-file`: reads `file` again and puts its
/// routes in force, logging what changed, or why nothing did.
pub(crate) fn reload_on_hangup(
    file: PathBuf,
    listeners: Vec<Endpoint>,
    relay: Forward,
) -> impl Fn() -> bool + Send + Sync {
    move || {
        let shown = file.display();
        let reloaded = read(&file, &listeners).and_then(|routes| {
            (relay.reload_name_routes(routes))
                .map_err(|err| CliError::Usage(format!("invalid --sni-route-file {shown}: {err}")))
        });
        match reloaded {
            Ok(changed) => {
                let mut changes = Vec::new();
                if !changed.added.is_empty() {
                    changes.push(format!("added {}", listed(&changed.added, "", ", ")));
                }
                if !changed.removed.is_empty() {
                    changes.push(format!("removed {}", listed(&changed.removed, "", ", ")));
                }
                if changes.is_empty() {
                    changes.push("unchanged".to_owned());
                }
                let count = relay.name_routes().len();
                tracing::info!(
                    "SNI routes reloaded from {shown}: {count} ({})",
                    changes.join("; ")
                );
                true
            }
            Err(err) => {
                tracing::warn!(
                    "SNI routes not reloaded, the old ones stay: {}",
                    sanitize(&err.to_string())
                );
                false
            }
        }
    }
}

/// The most routes a log line names one by one; a file may hold thousands.
const NAMED: usize = 8;

/// `routes` as `{prefix}NAME to ENDPOINT`, joined by `separator`, the first [`NAMED`] of
/// them and then how many more.
pub(crate) fn listed(routes: &[(String, Endpoint)], prefix: &str, separator: &str) -> String {
    let mut each: Vec<String> = (routes.iter().take(NAMED))
        .map(|(name, target)| format!("{prefix}{name} to {target}"))
        .collect();
    if routes.len() > NAMED {
        each.push(format!("and {} more", routes.len() - NAMED));
    }
    each.join(separator)
}
