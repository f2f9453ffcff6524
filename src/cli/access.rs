//! `--allow`, `--deny`, their files, the per-source limits and `--user`/`--group`: checked
//! before anything is bound (every fault is exit 2), applied by the server, re-read on
//! SIGHUP, and the privilege drop made once the listeners are bound.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use socketkit::access::{
    AccessControl, Identity, Rate, RuleError, RuleSources, SourceLimits, SourceSlot, drop_to,
    may_remove, parse_network, resolve_identity,
};
use socketkit::server::{Builder, Refusal};
use socketkit::socket::Address;
use tokio::signal::unix::Signal;

use super::args::AccessArgs;
use super::exit::CliError;
use super::signals::Gate;

/// The access settings of one command, checked.
#[derive(Debug, Default)]
pub(crate) struct Access {
    /// The rules, when any was given (reloaded on SIGHUP).
    pub(crate) control: Option<Arc<AccessControl>>,
    /// The per-source limits, when any was given.
    pub(crate) limits: Option<Arc<SourceLimits>>,
    /// Who to become after binding.
    pub(crate) identity: Option<Identity>,
    /// What else SIGHUP reloads (`forward --to-file`'s targets), after the rules.
    pub(crate) hangup_hooks: HangupHooks,
    /// Whether a reload would work, asked once the privileges are dropped: why not.
    pub(crate) reload_checks: ReloadChecks,
    /// The command has no SIGUSR2 restart (a datagram relay): its reload warnings say only
    /// what SIGHUP will not do.
    pub(crate) without_restart: bool,
    /// Where each SIGHUP's reload is counted, with `--metrics`.
    pub(crate) metrics: Option<Arc<socketkit::metrics::Metrics>>,
}

/// Checks of what SIGHUP reloads, each saying why it would fail (`None`: it would not).
#[derive(Default)]
pub(crate) struct ReloadChecks(Vec<Arc<dyn Fn() -> Option<Unreloadable> + Send + Sync>>);

/// What SIGHUP (and a restart's new process, which starts as the user) will not be able to
/// read again, and why.
pub(crate) struct Unreloadable {
    /// What it is, as the warning names it: `rules`, `TLS certificate`.
    pub(crate) what: &'static str,
    pub(crate) reason: String,
}

impl ReloadChecks {
    /// Adds `check`.
    pub(crate) fn push(
        &mut self,
        check: impl Fn() -> Option<Unreloadable> + Send + Sync + 'static,
    ) {
        self.0.push(Arc::new(check));
    }

    /// Adds a check that each of `files`, which SIGHUP reads again as `what`, can be opened
    /// — asked once the privileges are dropped, so as the user: a file only root may read
    /// fails the first reload and a SIGUSR2 restart (whose new process reads it at start),
    /// and is better said at start.
    pub(crate) fn push_files(&mut self, what: &'static str, files: Vec<PathBuf>) {
        self.push(move || {
            files.iter().find_map(|file| {
                let err = std::fs::File::open(file).err()?;
                let reason = format!(
                    "cannot read {}: {}",
                    file.display(),
                    socketkit::error::describe(&err)
                );
                Some(Unreloadable { what, reason })
            })
        });
    }
}

impl std::fmt::Debug for ReloadChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} checks", self.0.len())
    }
}

/// The reloads SIGHUP runs besides the access rules', each saying whether what it read is
/// in force.
#[derive(Default, Clone)]
pub(crate) struct HangupHooks(Vec<Arc<dyn Fn() -> bool + Send + Sync>>);

impl HangupHooks {
    /// Runs `hook` on every SIGHUP.
    pub(crate) fn add(&mut self, hook: impl Fn() -> bool + Send + Sync + 'static) {
        self.0.push(Arc::new(hook));
    }
}

impl std::fmt::Debug for HangupHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} hooks", self.0.len())
    }
}

/// The networks given to `flag` (`--allow`, `--socks-deny`…), each checked: exit 2 naming
/// the bad one.
pub(crate) fn networks(flag: &str, list: &[String]) -> Result<Vec<IpNet>, CliError> {
    list.iter()
        .map(|text| {
            parse_network(text).map_err(|reason| {
                CliError::Usage(format!("invalid network '{text}' for {flag}: {reason}"))
            })
        })
        .collect()
}

/// The rules of `sources`, read now, or none when no rule is given; a file that cannot be
/// read or parsed is exit 2.
pub(crate) fn control(sources: RuleSources) -> Result<Option<Arc<AccessControl>>, CliError> {
    if sources.is_empty() {
        return Ok(None);
    }
    // A file that cannot be read is an I/O error (exit 1), one that does not parse bad
    // usage (exit 2), as for every file an option names.
    let control = AccessControl::new(sources).map_err(|err| match err {
        RuleError::Read { .. } => CliError::Failed(err.to_string()),
        _ => CliError::Usage(err.to_string()),
    })?;
    Ok(Some(Arc::new(control)))
}

/// An allow file that names no network admits no one: said at start and on every reload
/// that finds it so, for it is more often a file caught mid-rewrite than a wish.
fn everyone_shut_out(control: &AccessControl, what: &str) -> Option<String> {
    control
        .rules()
        .shuts_everyone_out()
        .then(|| format!("the {what} allow nothing: the allow files name no network"))
}

/// Reads `control`'s files again and says how it went, `what` naming the rules ("rules",
/// "socks destination rules"): a file that no longer parses keeps the rules in force
/// (`false`).
pub(crate) fn reload_and_say(control: &AccessControl, what: &str) -> bool {
    match control.reload() {
        Ok(()) => {
            let (allow, deny) = control.rules().len();
            tracing::info!("{what} reloaded: {allow} allow, {deny} deny");
            if let Some(warning) = everyone_shut_out(control, what) {
                tracing::warn!("{warning}");
            }
            true
        }
        Err(err) => {
            tracing::warn!("{what} not reloaded, the old ones stay: {err}");
            false
        }
    }
}

/// Checks every access option: networks, rule files (read now), the rate, the user and group.
pub(crate) fn resolve(args: &AccessArgs) -> Result<Access, CliError> {
    let sources = RuleSources {
        allow: networks("--allow", &args.allow)?,
        deny: networks("--deny", &args.deny)?,
        allow_files: args.allow_file.clone(),
        deny_files: args.deny_file.clone(),
    };
    let control = control(sources)?;
    let rate = args
        .rate_per_source
        .as_deref()
        .map(parse_rate)
        .transpose()?;
    let limits = (args.max_per_source.is_some() || rate.is_some())
        .then(|| SourceLimits::new(args.max_per_source, rate));
    let identity = if args.user.is_some() || args.group.is_some() {
        let identity = resolve_identity(args.user.as_deref(), args.group.as_deref())
            .map_err(|err| CliError::Usage(err.to_string()))?;
        Some(identity)
    } else {
        None
    };
    let mut reload_checks = ReloadChecks::default();
    let rule_files: Vec<PathBuf> = args
        .allow_file
        .iter()
        .chain(&args.deny_file)
        .cloned()
        .collect();
    if !rule_files.is_empty() {
        reload_checks.push_files("rules", rule_files);
    }
    Ok(Access {
        control,
        limits,
        identity,
        hangup_hooks: HangupHooks::default(),
        reload_checks,
        without_restart: false,
        metrics: None,
    })
}

impl Access {
    /// Adds the access stages to a server.
    pub(crate) fn apply(&self, builder: &mut Builder) {
        if let Some(control) = &self.control {
            builder.access_control(Arc::clone(control));
        }
        if let Some(limits) = &self.limits {
            builder.source_limits(Arc::clone(limits));
        }
    }

    /// What to warn of the rules at start, once the readiness lines are out: an allow
    /// file that names no network, which refuses every source.
    pub(crate) fn shut_out_warning(&self) -> Option<String> {
        everyone_shut_out(self.control.as_deref()?, "rules")
    }

    /// Gives the Unix socket files the server made to `--user`/`--group`, if given, as
    /// they would be had the user made them: `--unix-mode 0660` then opens a socket to the
    /// group as it says (root's files kept the group out). Call before dropping
    /// privileges; what cannot be given is warned of (the warnings, for after the readiness
    /// lines).
    pub(crate) fn give_socket_files(&self, files: &[PathBuf]) -> Vec<String> {
        let Some(identity) = self.identity else {
            return Vec::new();
        };
        files
            .iter()
            .filter_map(|file| {
                let given = std::os::unix::fs::lchown(file, Some(identity.uid), Some(identity.gid));
                given.err().map(|err| {
                    format!(
                        "{} stays root's: {}",
                        file.display(),
                        socketkit::error::describe(&err)
                    )
                })
            })
            .collect()
    }

    /// What `--user` will not be able to reload on SIGHUP (a key only root may read): said
    /// at start, after the readiness lines. Call once the privileges are dropped.
    pub(crate) fn reload_warnings(&self) -> Vec<String> {
        if self.identity.is_none() {
            return Vec::new();
        }
        let restart = match self.without_restart {
            true => "",
            false => {
                ", and a SIGUSR2 restart will fail (its new process reads the files as the user)"
            }
        };
        let warning = |Unreloadable { what, reason }| {
            format!("SIGHUP will not reload the {what}{restart}: {reason}")
        };
        (self.reload_checks.0.iter())
            .filter_map(|check| check().map(warning))
            .collect()
    }

    /// Becomes `--user`/`--group`, if given: call once the listeners are bound and before
    /// the first accept. A failure is exit 2: the server must not run as root by mistake.
    pub(crate) fn drop_privileges(&self) -> Result<(), CliError> {
        match self.identity {
            Some(identity) => drop_to(identity)
                .map_err(|err| CliError::Usage(format!("cannot drop privileges: {err}"))),
            None => Ok(()),
        }
    }

    /// What to warn of each of `files` (the socket files a server made, its pid file) that
    /// `--user`/`--group` will not be able to remove at exit: a directory only root may
    /// write (`/run`) keeps them, and saying so at start is the operator's chance to give
    /// the service a directory of its own. Asked before dropping privileges; said after the
    /// readiness lines, which come first on stderr.
    pub(crate) fn files_left_behind(&self, files: &[PathBuf]) -> Vec<String> {
        let Some(identity) = self.identity else {
            return Vec::new();
        };
        let left = files.iter().filter(|file| !may_remove(identity, file));
        left.map(|file| {
            let dir = file.parent().unwrap_or(Path::new("."));
            format!(
                "{} will stay after exit: user {} may not remove files in {} (give the service a directory it may write, such as systemd's RuntimeDirectory=)",
                file.display(),
                identity.uid,
                dir.display()
            )
        })
        .collect()
    }

    /// The rules and limits for one peer of `listen`, which runs no server: its place in
    /// the source's count (kept while bridging), or the reason it is refused.
    pub(crate) fn check(&self, peer: &Address) -> Result<Option<SourceSlot>, Refusal> {
        let Some(ip) = peer.ip() else {
            return Ok(None); // a Unix peer: outside every rule
        };
        if self.control.as_ref().is_some_and(|c| !c.admits(ip)) {
            return Err(Refusal::not_allowed());
        }
        match &self.limits {
            None => Ok(None),
            Some(limits) => limits.admit(ip).map(Some).map_err(Refusal::from),
        }
    }

    /// Re-reads the rule files on every SIGHUP, on the current tokio runtime. A file that no
    /// longer parses keeps the rules in force, and the log says which line and why.
    ///
    /// Without rules SIGHUP is caught all the same, and changes nothing: a server is told
    /// to reload by it, as daemons are, and its default action would kill the server
    /// without the shutdown that removes its socket files and pid file.
    ///
    /// `hangups` is caught already; a SIGHUP that comes before the server has said it is
    /// ready (`gate`) is taken once it has, so that no line comes before the readiness
    /// lines.
    pub(crate) fn reload_on_hangup(&self, mut hangups: Signal, mut gate: Gate) {
        let control = self.control.clone();
        let hooks = self.hangup_hooks.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if !gate.opened().await {
                    return; // stopped before it was ever ready: nothing to reload
                }
                // Read and parsed off the runtime's threads: a file of 300,000 routes took
                // seconds, during which no connection was accepted or served.
                let (control, hooks, metrics) = (control.clone(), hooks.clone(), metrics.clone());
                super::signals::off_runtime_or_here(move || {
                    // Every hook runs, whatever the one before it made of its file.
                    let results: Vec<bool> = hooks.0.iter().map(|hook| hook()).collect();
                    let mut ok = !results.contains(&false);
                    match &control {
                        Some(control) => ok = reload_and_say(control, "rules") && ok,
                        None if hooks.0.is_empty() => {
                            tracing::info!(
                                "SIGHUP: nothing to reload (no access rules, no TLS certificate files)"
                            );
                            return;
                        }
                        None => {}
                    }
                    if let Some(metrics) = &metrics {
                        metrics.reloaded(ok);
                    }
                })
                .await;
            }
        });
    }
}

/// `--rate-per-source N/DURATION`: DURATION read as every duration option reads it (a bare
/// number is seconds, `5/30`; 1ms to 365d), or a bare unit as one of it (`100/m`).
fn parse_rate(text: &str) -> Result<Rate, CliError> {
    let invalid = |reason: &str| {
        CliError::Usage(format!(
            "invalid rate '{text}' for --rate-per-source: {reason}"
        ))
    };
    let (count, per) = text
        .split_once('/')
        .ok_or_else(|| invalid("expected N/DURATION, e.g. 20/1s"))?;
    let per = per.trim();
    let one_of = format!("1{per}");
    // A unit alone is letters alone (`m`, `min`): `e3` would be read as the number 1e3.
    let unit_alone = !per.is_empty() && per.chars().all(|c| c.is_ascii_alphabetic());
    let written = match unit_alone {
        true => &one_of,
        false => per,
    };
    let per = super::values::parse_duration(written, std::time::Duration::from_millis(1))
        .map_err(|refused| invalid(&format!("'{per}': {}", refused.0)))?;
    // The count's own checks are the library's.
    let mut rate: Rate = format!("{count}/1s")
        .parse()
        .map_err(|reason: String| invalid(&reason))?;
    rate.per = per;
    Ok(rate)
}
