//! `forward --to-file FILE`: the relay's targets from a file, one endpoint a line (`#`
//! comments, blank lines skipped), read at start and again on every SIGHUP, when the new
//! list is put in force for the clients that come next (`Forward::reload_targets`, and
//! `DatagramForward::reload_targets` for a datagram relay). A file that no longer reads, or
//! names a target the relay cannot take, leaves the list in force as it was, and the log
//! says why — as `--allow-file` does for the access rules.

use std::path::{Path, PathBuf};

use socketkit::endpoint::Endpoint;
use socketkit::forward::datagram::DatagramForward;
use socketkit::forward::{Forward, MAX_TARGETS, Reloaded};

/// A relay whose targets a reload replaces: the stream relay or the datagram one.
pub(crate) trait Pool: Send + Sync + 'static {
    /// Puts `targets` in force for the clients that come next.
    fn reload(&self, targets: Vec<Endpoint>) -> Result<Reloaded, String>;
    /// The targets in force.
    fn listed(&self) -> Vec<Endpoint>;
}

impl Pool for Forward {
    fn reload(&self, targets: Vec<Endpoint>) -> Result<Reloaded, String> {
        self.reload_targets(targets).map_err(|err| err.to_string())
    }

    fn listed(&self) -> Vec<Endpoint> {
        self.targets()
    }
}

impl Pool for DatagramForward {
    fn reload(&self, targets: Vec<Endpoint>) -> Result<Reloaded, String> {
        self.reload_targets(targets)
            .map_err(|err| format!("cannot forward datagrams to these targets: {err}"))
    }

    fn listed(&self) -> Vec<Endpoint> {
        self.targets()
    }
}

use super::exit::{CliError, read_text, sanitize};
use super::resolve;

/// The targets `file` names, in order. An unreadable file is a runtime error (exit 1); a
/// line that is not a target, no target at all, or too many, a usage error naming it.
pub(crate) fn read(file: &Path) -> Result<Vec<Endpoint>, CliError> {
    let text = read_text("--to-file", file)?;
    let invalid =
        |why: String| CliError::Usage(format!("invalid --to-file {}: {why}", file.display()));
    let mut targets = Vec::new();
    for (number, written) in written_lines(&text) {
        let target = resolve::target("forward --to-file", written).map_err(|err| {
            let why = err.to_string();
            invalid(format!(
                "line {number}: {}",
                socketkit::error::excerpt(&why)
            ))
        })?;
        targets.push(target);
    }
    if targets.is_empty() {
        return Err(invalid("it names no target".into()));
    }
    if targets.len() > MAX_TARGETS {
        return Err(invalid(format!(
            "it names {} targets, and a relay takes at most {MAX_TARGETS}",
            targets.len()
        )));
    }
    Ok(targets)
}

/// The lines of a list file that say something, numbered from 1: what comes before a `#`,
/// trimmed, blank lines skipped.
pub(crate) fn written_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    (text.lines().enumerate())
        .map(|(number, line)| {
            let written = line.split_once('#').map_or(line, |(before, _)| before);
            (number + 1, written.trim())
        })
        .filter(|(_, written)| !written.is_empty())
}

/// What SIGHUP does for `relay`: reads `file` again and puts its targets in force, logging
/// what changed, or why nothing did.
pub(crate) fn reload_on_hangup(file: PathBuf, relay: impl Pool) -> impl Fn() -> bool + Send + Sync {
    move || {
        let shown = file.display();
        let reloaded =
            read(&file).and_then(|targets| relay.reload(targets).map_err(CliError::Usage));
        match reloaded {
            Ok(changed) => {
                let list: Vec<String> = relay.listed().iter().map(ToString::to_string).collect();
                let named = |what: &str, list: &[Endpoint]| {
                    let names: Vec<String> = list.iter().map(ToString::to_string).collect();
                    (!names.is_empty()).then(|| format!("{what} {}", names.join(", ")))
                };
                let changes: Vec<String> = [
                    named("added", &changed.added),
                    named("removed", &changed.removed),
                ]
                .into_iter()
                .flatten()
                .collect();
                let changes = match (changes.is_empty(), changed.reordered) {
                    (true, true) => "reordered".to_owned(),
                    (true, false) => "unchanged".to_owned(),
                    (false, _) => changes.join("; "),
                };
                tracing::info!(
                    "targets reloaded from {shown}: {} ({changes})",
                    list.join(", ")
                );
                true
            }
            // The error names the file.
            Err(err) => {
                tracing::warn!(
                    "targets not reloaded, the old ones stay: {}",
                    sanitize(&err.to_string())
                );
                false
            }
        }
    }
}
